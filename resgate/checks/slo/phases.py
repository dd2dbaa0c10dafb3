"""A run cut into phases by its fault timeline, and the SLO figures of each phase.

Phases (each a set of time intervals over the load, so every client request belongs to exactly one):

- ``baseline`` — from the load's start to the first injection;
- ``during:<fault>`` — while a fault acts: from its ``injected`` event until it is lifted (a held fault's
  ``ended``/``aborted`` event, else its scheduled end). An instantaneous fault (a kill) has nothing to lift:
  it acts until its target is healthy again (the killed replica is back), at most ``rto_s``;
- ``recovery:<fault>`` — from the lift until the target is healthy (health observations, as the recovery
  check reads them) plus ``settle_s`` (default 5 s: connections re-established, retries drained), never
  longer than ``rto_s`` after the lift. Short enough that a gate with faults every few seconds keeps some
  *steady* time between them;
- ``steady`` — everything else after the first injection: what users live with between faults.

Where windows overlap, ``during`` wins over ``recovery`` and a later fault over an earlier one.

Per phase: requests, failures (ledger outcome ``fail`` or ``info``, as the recovery check counts them), the
error ratio, throughput (requests per second of the phase's time), and p50/p95/p99 from the phase's merged
histogram (per-second histograms of ``latency_ms`` rounded as Locust rounds them, merged — never an average
of percentiles). ``samples`` are the per-second p95s, for the regression test against a golden profile.

A fault's phases start when its injection started (its ``injecting`` event; ``injected``, when it was in
effect, for a timeline written before that event existed), as the recovery check separates faults.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resgate.checks import histogram as h
from resgate.checks.ledger import LedgerRecord
from resgate.checks.recovery import (
    FAULT_EVENTS,
    FaultEvent,
    HealthObservation,
    fault_recovery,
    fault_timelines,
    target_service,
)
from resgate.contract.constants import DEFAULT_RTO_SECONDS

PHASES: tuple[str, ...] = ("baseline", "during", "recovery", "steady")
"""The phase kinds, in the order a run goes through them."""
DEFAULT_SETTLE_S = 5.0
SAMPLE_WINDOW_S = 1.0
MAX_SAMPLES = 3600
_FAILED = frozenset({"fail", "info"})


def locust_bucket(ms: float) -> float:
    """The bucket Locust files a response time under: exact below 100 ms, then rounded to 2 significant
    digits (to 10 ms below 1 s, to 100 ms below 10 s, ...)."""
    if ms < 100:
        return float(round(ms))
    digits = len(str(round(ms))) - 2
    return float(round(ms, -digits))


@dataclass(frozen=True)
class PhaseWindow:
    """One phase's nominal interval ``[start, end)``; ``fault_id``/``fault_kind`` for during and recovery."""

    phase: str
    start: float
    end: float
    fault_id: str | None = None
    fault_kind: str | None = None

    @property
    def key(self) -> str:
        """``"baseline"``, ``"steady"``, ``"during:<fault>"`` or ``"recovery:<fault>"``."""
        return self.phase if self.fault_id is None else f"{self.phase}:{self.fault_id}"


@dataclass(frozen=True)
class PhaseFigures:
    """The SLO figures of one phase; latencies in ms and ratios ``None`` when the phase has no requests."""

    phase: str
    key: str
    fault_id: str | None
    fault_kind: str | None
    start_ts: float
    end_ts: float
    duration_s: float
    requests: int
    failures: int
    error_ratio: float | None
    throughput_rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    samples: tuple[float, ...] = field(default=())

    def to_row(self) -> dict[str, Any]:
        """The ``phases`` table row: every field, ``samples`` as a list."""
        return {
            "phase": self.phase,
            "key": self.key,
            "fault_id": self.fault_id,
            "fault_kind": self.fault_kind,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "failures": self.failures,
            "error_ratio": self.error_ratio,
            "throughput_rps": self.throughput_rps,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "samples": list(self.samples),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PhaseFigures:
        """The inverse of :meth:`to_row` (a golden profile's or a ``phases`` table's row)."""

        def num(k: str) -> float | None:
            v = row.get(k)
            return None if v is None else float(v)

        return cls(
            phase=str(row["phase"]),
            key=str(row["key"]),
            fault_id=row.get("fault_id"),
            fault_kind=row.get("fault_kind"),
            start_ts=float(row["start_ts"]),
            end_ts=float(row["end_ts"]),
            duration_s=float(row["duration_s"]),
            requests=int(row["requests"]),
            failures=int(row["failures"]),
            error_ratio=num("error_ratio"),
            throughput_rps=num("throughput_rps"),
            p50_ms=num("p50_ms"),
            p95_ms=num("p95_ms"),
            p99_ms=num("p99_ms"),
            samples=tuple(float(x) for x in row.get("samples") or ()),
        )


def phase_windows(
    faults: Iterable[Mapping[str, Any]],
    health: Iterable[Mapping[str, Any]],
    *,
    load_start: float,
    load_end: float,
    rto_s: float = DEFAULT_RTO_SECONDS,
    settle_s: float = DEFAULT_SETTLE_S,
) -> list[PhaseWindow]:
    """The nominal windows of a run ``[load_start, load_end)``: baseline, each injected fault's during and
    recovery (see the module docstring), then steady from the first injection to the end (it owns whatever
    no other window covers). Fault rows are
    ``faults.jsonl`` lines (events other than :data:`FAULT_EVENTS` are ignored);
    health rows are ``health.jsonl`` lines."""
    events = [FaultEvent.from_dict(f) for f in faults if f.get("event") in FAULT_EVENTS]
    # A fault's phases start when its injection *started* (its ``injecting`` event, else ``injected``): a
    # database that is stopping already fails requests, and those belong to this fault.
    injected = [t for t in fault_timelines(events) if t.injected_ts is not None and t.started_ts is not None]
    obs = sorted((HealthObservation.from_dict(r) for r in health if "service" in r), key=lambda o: o.ts)
    services = {o.service for o in obs}
    # Without any injection the whole load is steady: there is nothing for a baseline to come before.
    first = min((t.started_ts for t in injected if t.started_ts is not None), default=load_start)
    out = [PhaseWindow("baseline", load_start, max(load_start, min(first, load_end)))]
    for t in injected:
        start = t.started_ts
        assert start is not None
        later = [g.started_ts for g in injected if g.started_ts is not None and g.started_ts > start]
        svc = target_service(t.target, services)
        rec = fault_recovery(t, [o for o in obs if o.service == svc], until_ts=min(later, default=None))
        healthy = rec["recovered_ts"]
        if t.lifted_ts is not None:
            lift = t.lifted_ts
        elif healthy is None:  # a kill acts until its target is healthy again, at most rto_s
            lift = start + rto_s
        else:
            lift = min(max(healthy, start), start + rto_s)
        settled = (max(healthy, lift) if healthy is not None else lift + rto_s) + settle_s
        out.append(PhaseWindow("during", start, lift, t.fault_id, t.kind))
        out.append(PhaseWindow("recovery", lift, min(settled, lift + rto_s), t.fault_id, t.kind))
    out.append(PhaseWindow("steady", out[0].end, load_end))
    return out


def _rank(w: PhaseWindow, index: int) -> tuple[int, float, int]:
    order = {"during": 3, "recovery": 2, "baseline": 1, "steady": 0}[w.phase]
    return (order, w.start, index)


def _owner(ts: float, windows: Sequence[PhaseWindow]) -> int:
    """The index of the window that owns moment ``ts``; the last window (steady) owns whatever no other
    window covers, even outside the load's window."""
    best, best_rank = len(windows) - 1, (-1, 0.0, 0)
    for i, w in enumerate(windows):
        if w.start <= ts < w.end:
            r = _rank(w, i)
            if r > best_rank:
                best, best_rank = i, r
    return best


class _Owners:
    """Which window owns each moment, resolved once per elementary segment (between consecutive window
    bounds) so that assigning a million records is a binary search each."""

    def __init__(self, windows: Sequence[PhaseWindow]) -> None:
        self.fallback = len(windows) - 1
        self.cuts = sorted({x for w in windows for x in (w.start, w.end)})
        self.owners = [_owner((a + b) / 2, windows) for a, b in itertools.pairwise(self.cuts)]

    def __call__(self, ts: float) -> int:
        i = bisect.bisect_right(self.cuts, ts) - 1
        return self.owners[i] if 0 <= i < len(self.owners) else self.fallback


def _durations(windows: Sequence[PhaseWindow], start: float, end: float) -> list[float]:
    """Seconds of ``[start, end)`` each window owns once overlaps are resolved (elementary segments)."""
    cuts = sorted({start, end, *(x for w in windows for x in (w.start, w.end) if start < x < end)})
    out = [0.0] * len(windows)
    for a, b in itertools.pairwise(cuts):
        if b > a:
            out[_owner((a + b) / 2, windows)] += b - a
    return out


def phase_figures(
    records: Iterable[LedgerRecord | Mapping[str, Any]],
    windows: Sequence[PhaseWindow],
    *,
    load_start: float,
    load_end: float,
    window_s: float = SAMPLE_WINDOW_S,
    latency_from: str = "sent",
) -> list[PhaseFigures]:
    """Assign each record (by ``ts``) to the phase that owns that moment and compute each phase's figures
    (see the module docstring), latencies from each request's send or, with ``latency_from="intended"``,
    from its intended start (:meth:`LedgerRecord.latency`). Returns one :class:`PhaseFigures` per window
    that owns time or requests, in the order of ``windows``."""
    owner = _Owners(windows)
    per_window: list[dict[int, h.Histogram]] = [{} for _ in windows]
    requests = [0] * len(windows)
    failures = [0] * len(windows)
    for r in records:
        if isinstance(r, Mapping):
            ts, ms, outcome = float(r["ts"]), float(r["latency_ms"]), r.get("outcome")
            if latency_from == "intended" and r.get("intended_latency_ms") is not None:
                ms = float(r["intended_latency_ms"])
        else:
            ts, ms, outcome = r.ts, r.latency(latency_from), r.outcome
        i = owner(ts)
        requests[i] += 1
        failures[i] += outcome in _FAILED
        sec = per_window[i].setdefault(int((ts - load_start) // window_s), {})
        b = locust_bucket(ms)
        sec[b] = sec.get(b, 0) + 1
    durations = _durations(windows, load_start, load_end)
    out = []
    for i, w in enumerate(windows):
        if not requests[i] and durations[i] <= 0:
            continue
        merged = h.merge(per_window[i].values())
        samples = tuple(
            p for k in sorted(per_window[i]) if (p := h.percentile(per_window[i][k], 95.0)) is not None
        )[:MAX_SAMPLES]
        n = requests[i]
        out.append(
            PhaseFigures(
                phase=w.phase,
                key=w.key,
                fault_id=w.fault_id,
                fault_kind=w.fault_kind,
                start_ts=w.start,
                end_ts=w.end,
                duration_s=durations[i],
                requests=n,
                failures=failures[i],
                error_ratio=failures[i] / n if n else None,
                throughput_rps=n / durations[i] if durations[i] > 0 else None,
                p50_ms=h.percentile(merged, 50.0),
                p95_ms=h.percentile(merged, 95.0),
                p99_ms=h.percentile(merged, 99.0),
                samples=samples,
            )
        )
    return out


def run_phases(
    faults: Iterable[Mapping[str, Any]],
    health: Iterable[Mapping[str, Any]],
    records: Iterable[LedgerRecord | Mapping[str, Any]],
    *,
    rto_s: float = DEFAULT_RTO_SECONDS,
    settle_s: float = DEFAULT_SETTLE_S,
    load_start: float | None = None,
    load_end: float | None = None,
    latency_from: str = "sent",
) -> list[PhaseFigures]:
    """The run's phases and their figures: :func:`phase_windows` then :func:`phase_figures`. The load's
    window defaults to the ledger's first and last ``ts`` (plus a millisecond, so the last record is in).
    Returns ``[]`` for an empty ledger. The one function both conductors call."""
    recs = list(records) if iter(records) is records else records  # a stream is read twice below
    stamps = [float(r["ts"]) if isinstance(r, Mapping) else r.ts for r in recs]
    if not stamps:
        return []
    start = min(stamps) if load_start is None else load_start
    end = max(stamps) + 0.001 if load_end is None else load_end
    windows = phase_windows(faults, health, load_start=start, load_end=end, rto_s=rto_s, settle_s=settle_s)
    return phase_figures(recs, windows, load_start=start, load_end=end, latency_from=latency_from)
