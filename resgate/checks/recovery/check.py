"""The recovery judge: per injected fault, time to detection and to healthy, RTO, and the error ratio after.

Pure functions of :class:`~resgate.checks.recovery.evidence.RecoveryEvidence` and
:class:`RecoveryThresholds`: :func:`fault_figures` computes each fault's figures, :func:`detect` lists
the anomalies, :func:`check` gathers them and lets :func:`resgate.checks.result.judge` decide.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.recovery.evidence import (
    FaultEvent,
    HealthObservation,
    RecoveryEvidence,
    Served,
    as_object,
)
from resgate.checks.recovery.leader import (
    DEFAULT_MAX_HEARTBEAT_AGE_S,
    LEADER_FAILING_KINDS,
    leader_anomalies,
)
from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector, judge
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.contract.errors import ConfigError
from resgate.contract.fields import optional_number

NAME = "recovery"
DEFAULT_AFTER_WINDOW_S = 10.0
DEFAULT_ERROR_RATIO_TOLERANCE = 0.01
DEFAULT_MIN_THROUGHPUT_RATIO = 0.5
MIN_EXPECTED_REQUESTS = 10
"""An after-window in which the baseline rate expects fewer completed ok requests than this is too short to
judge (the next fault or the load's end cut it): a handful of requests cannot tell an outage from chance."""
MIN_AFTER_WINDOW_S = 2.0
"""Nor is an after-window shorter than this: the first moments after a recovery (a pool refilling, a cache
warming) are not the service's steady state, and a fraction of a second of them would decide alone."""

FAILING_KINDS = frozenset(
    {"rto_missed", "never_recovered", "error_ratio_not_back", "throughput_not_back", *LEADER_FAILING_KINDS}
)
UNDECIDED_KINDS = frozenset({"no_data"})
# ``serving_unmeasured``: the after-window was cut too short to judge, by the next fault's start (faults
# scheduled back to back) or by the end of the load (a fault late in the schedule, or one that healed after
# the load had ended). Its RTO is still judged; saying "unknown" for the whole check would punish the
# schedule, not the system, so it is only reported. A window the load covered in which nothing completed is
# not this case: it is ``throughput_not_back``.
INFO_KINDS = frozenset({"not_detected", "aborted", "serving_unmeasured"})


# --------------------------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class RecoveryThresholds:
    """``rto_s``: the recovery time objective; ``error_ratio_tolerance``: how far above the baseline the error
    ratio may stay after recovery (``None`` = do not judge the error ratio); ``min_throughput_ratio``: the
    fraction of the baseline's completed ok requests per second the service must serve again after recovery
    (``None`` = do not judge throughput); ``after_window_s``: how long after recovery both are measured;
    ``max_heartbeat_age_s``: the oldest heartbeat a leader may act on (``leader_loss`` faults)."""

    rto_s: float = DEFAULT_RTO_SECONDS
    error_ratio_tolerance: float | None = DEFAULT_ERROR_RATIO_TOLERANCE
    after_window_s: float = DEFAULT_AFTER_WINDOW_S
    min_throughput_ratio: float | None = DEFAULT_MIN_THROUGHPUT_RATIO
    max_heartbeat_age_s: float = DEFAULT_MAX_HEARTBEAT_AGE_S

    @property
    def judges_serving(self) -> bool:
        """True when the ledger is needed: the error ratio or the throughput after recovery is judged."""
        return self.error_ratio_tolerance is not None or self.min_throughput_ratio is not None

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, *, where: str = "thresholds.recovery"
    ) -> RecoveryThresholds:
        """Validate ``{rto_s?, error_ratio_tolerance?, after_window_s?, min_throughput_ratio?}`` (missing keys
        take the defaults; ``error_ratio_tolerance: null`` or ``min_throughput_ratio: null`` switches that
        part off)."""
        d = as_object(d or {}, where)
        keys = {"rto_s", "error_ratio_tolerance", "after_window_s", "min_throughput_ratio"}
        keys.add("max_heartbeat_age_s")
        unknown = set(d) - keys
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        rto = optional_number(d, "rto_s", where, lo=0)
        if rto is not None and rto <= 0:
            raise ConfigError(f"must be > 0, got {rto}", where=f"{where}.rto_s")
        tol = optional_number(d, "error_ratio_tolerance", where, lo=0)
        if tol is not None and tol > 1:
            raise ConfigError(f"must be <= 1, got {tol}", where=f"{where}.error_ratio_tolerance")
        after = optional_number(d, "after_window_s", where, lo=0)
        if after is not None and after <= 0:
            raise ConfigError(f"must be > 0, got {after}", where=f"{where}.after_window_s")
        ratio = optional_number(d, "min_throughput_ratio", where, lo=0)
        if ratio is not None and not 0 < ratio <= 1:
            raise ConfigError(f"must be > 0 and <= 1, got {ratio}", where=f"{where}.min_throughput_ratio")
        hb = optional_number(d, "max_heartbeat_age_s", where, lo=0)
        if hb is not None and hb <= 0:
            raise ConfigError(f"must be > 0, got {hb}", where=f"{where}.max_heartbeat_age_s")
        return cls(
            max_heartbeat_age_s=DEFAULT_MAX_HEARTBEAT_AGE_S if hb is None else hb,
            rto_s=DEFAULT_RTO_SECONDS if rto is None else rto,
            error_ratio_tolerance=tol if "error_ratio_tolerance" in d else DEFAULT_ERROR_RATIO_TOLERANCE,
            after_window_s=DEFAULT_AFTER_WINDOW_S if after is None else after,
            min_throughput_ratio=ratio if "min_throughput_ratio" in d else DEFAULT_MIN_THROUGHPUT_RATIO,
        )


# --------------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class FaultTimeline:
    """A fault's events gathered by ``fault_id``; ``*_ts`` are ``None`` when that event is absent.

    ``injecting_ts``: its injection started; ``injected_ts``: it was in effect; ``lifting_ts`` /
    ``ended_ts``: for a held fault, its lift started / was done."""

    fault_id: str
    kind: str
    target: str
    injected_ts: float | None
    detected_ts: float | None
    recovered_ts: float | None
    aborted_ts: float | None
    ended_ts: float | None
    held_s: float | None = None
    injecting_ts: float | None = None
    lifting_ts: float | None = None
    effect_observed: bool | None = None
    """Whether the conductor saw the fault act (its ``effect`` events); None when it said nothing."""
    effect_evidence: str | None = None

    @property
    def started_ts(self) -> float | None:
        """When its injection started (the ``injecting`` event, else ``injected`` for a timeline written
        before that event existed): what separates this fault from the one before it."""
        start, effect = self.injecting_ts, self.injected_ts
        if start is not None and (effect is None or start <= effect):
            return start
        return self.injected_ts

    @property
    def lifted_ts(self) -> float | None:
        """When a held fault stopped acting: its ``ended`` event (the lift was done), else its ``aborted``
        event, else its scheduled end (in effect + ``held_s``); None for an instantaneous fault, which is
        judged from the moment it was in effect."""
        if self.held_s is None or self.injected_ts is None:
            return None
        for t in (self.ended_ts, self.aborted_ts):
            if t is not None and t >= self.injected_ts:
                return t
        return self.injected_ts + self.held_s


def fault_timelines(events: Iterable[FaultEvent]) -> list[FaultTimeline]:
    """Group fault events by ``fault_id`` (first occurrence of each event wins), ordered by start time."""
    by_id: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        f = by_id.setdefault(e.fault_id, {"fault_id": e.fault_id, "kind": e.kind, "target": e.target})
        if e.event in ("injecting", "injected"):
            f["kind"], f["target"] = e.kind, e.target
            if e.held_s is not None:
                f.setdefault("held_s", e.held_s)
        if e.event == "effect":  # over the whole fault: one observation of its effect is enough
            f["effect_observed"] = bool(f.get("effect_observed")) or bool(e.observed)
            if e.observed or not f.get("effect_evidence"):
                f["effect_evidence"] = e.evidence
        f.setdefault(f"{e.event}_ts", e.ts)
    out = [
        FaultTimeline(
            fault_id=f["fault_id"],
            kind=f["kind"],
            target=f["target"],
            injected_ts=f.get("injected_ts"),
            detected_ts=f.get("detected_ts"),
            recovered_ts=f.get("recovered_ts"),
            aborted_ts=f.get("aborted_ts"),
            ended_ts=f.get("ended_ts"),
            held_s=f.get("held_s"),
            injecting_ts=f.get("injecting_ts"),
            lifting_ts=f.get("lifting_ts"),
            effect_observed=f.get("effect_observed"),
            effect_evidence=f.get("effect_evidence"),
        )
        for f in by_id.values()
    ]
    return sorted(out, key=lambda f: (f.started_ts is None, f.started_ts or 0.0, f.fault_id))


def target_service(target: str, services: Iterable[str]) -> str:
    """The health-observed service a fault target names: the target itself, or its part before ``/``
    (``"gateway/2"`` -> ``"gateway"``) when only that is observed."""
    known = set(services)
    if target in known:
        return target
    head = target.split("/", 1)[0]
    return head if head in known else target


def _all_healthy(state: Mapping[str | None, HealthObservation]) -> bool:
    live = [o for o in state.values() if not o.retired]
    return bool(live) and all(o.healthy for o in live)


def fault_recovery(
    fault: FaultTimeline, observations: Sequence[HealthObservation], *, until_ts: float | None = None
) -> dict[str, Any]:
    """Detection and recovery of one injected fault from its target's health observations (sorted by ts).

    Detection is the first failure signal at or after the injection started and before ``until_ts`` (the
    next fault's start: a later fault's failure is not this one's); a replica killed while the injection
    call was still running is this fault's. Recovery is the first moment after detection at
    which every live replica is healthy; for a held fault it is judged once the fault was lifted
    (:attr:`FaultTimeline.lifted_ts`): healthy at that moment (after a failure seen while it acted, or none)
    means recovered then, since nothing can recover from a partition while it lasts.

    Returns ``{detected_ts, recovered_ts, source, observed_after}``: ``source`` is ``"health"`` or
    ``"fault_timeline"``; ``observed_after`` is False when no observation of the target follows injection.
    """
    t0 = fault.started_ts
    assert t0 is not None and fault.injected_ts is not None
    state: dict[str | None, HealthObservation] = {}
    after: list[HealthObservation] = []
    for o in observations:
        if o.ts < t0:
            state[o.replica] = o
        else:
            after.append(o)
    if not after:
        return {
            "detected_ts": fault.detected_ts,
            "recovered_ts": fault.recovered_ts,
            "source": "fault_timeline",
            "observed_after": False,
        }
    detection = next(
        (i for i, o in enumerate(after) if o.signals_failure and (until_ts is None or o.ts < until_ts)), None
    )
    detected_ts = None if detection is None else after[detection].ts
    lifted = fault.lifted_ts
    recovered = None
    if lifted is not None and (detected_ts is None or detected_ts <= lifted):
        seen = 0
        for o in after:
            if o.ts > lifted:
                break
            state[o.replica] = o
            seen += 1
        recovered = lifted if _all_healthy(state) else _first_all_healthy(state, after[seen:])
    else:
        for i, o in enumerate(after):
            state[o.replica] = o
            # Before the failure is seen, "all healthy" only means the fault has not landed yet.
            if (detection is None or i >= detection) and _all_healthy(state):
                recovered = o.ts
                break
    return {
        "detected_ts": detected_ts,
        "recovered_ts": recovered,
        "source": "health",
        "observed_after": True,
    }


def _first_all_healthy(
    state: dict[str | None, HealthObservation], later: Sequence[HealthObservation]
) -> float | None:
    for o in later:
        state[o.replica] = o
        if _all_healthy(state):
            return o.ts
    return None


class _Completions:
    """Completed requests counted by the moment they completed, without those in flight across a fault's
    start (``start < boundary < end``): such a request saw both sides, so it counts for neither fault."""

    def __init__(self, requests: Sequence[Served], boundaries: Sequence[float]) -> None:
        cuts = sorted(boundaries)
        kept = [r for r in requests if not _straddles(r, cuts)]
        kept.sort(key=lambda r: r.end)
        self.kept = kept
        self.ends = [r.end for r in kept]
        self.ok_before = [0]
        for r in kept:
            self.ok_before.append(self.ok_before[-1] + r.ok)
        self.first_start = min((r.start for r in requests), default=None)
        self.last_end = max((r.end for r in requests), default=None)
        self.straddling = len(requests) - len(kept)

    def between(self, a: float, b: float) -> tuple[int, int]:
        """``(ok, failed)`` of the requests that completed in ``[a, b)``."""
        if b <= a:
            return 0, 0
        i, j = bisect_left(self.ends, a), bisect_left(self.ends, b)
        ok = self.ok_before[j] - self.ok_before[i]
        return ok, (j - i) - ok

    def sent_between(self, a: float, b: float) -> tuple[int, int, int]:
        """``(ok, failed, in_flight)`` of the requests sent at or after ``a`` that completed in ``[a, b)``;
        ``in_flight``: those that completed there but were sent before ``a``."""
        if b <= a:
            return 0, 0, 0
        i, j = bisect_left(self.ends, a), bisect_left(self.ends, b)
        ok = failed = early = 0
        for r in self.kept[i:j]:
            if r.start < a:
                early += 1
            elif r.ok:
                ok += 1
            else:
                failed += 1
        return ok, failed, early


def _straddles(r: Served, cuts: Sequence[float]) -> bool:
    i = bisect_right(cuts, r.start)
    return i < len(cuts) and cuts[i] < r.end


def _baseline(done: _Completions, first_start: float | None) -> dict[str, Any]:
    """The load before the first fault started: ``{baseline_requests, baseline_error_ratio,
    baseline_ok_per_s}`` (None where nothing completed before it)."""
    out: dict[str, Any] = {"baseline_requests": None, "baseline_error_ratio": None, "baseline_ok_per_s": None}
    if first_start is None or done.first_start is None or done.first_start >= first_start:
        return out
    ok, failed = done.between(done.first_start, first_start)
    n = ok + failed
    out["baseline_requests"] = n
    if n:
        out["baseline_error_ratio"] = failed / n
        out["baseline_ok_per_s"] = ok / (first_start - done.first_start)
    return out


def _after_window(
    done: _Completions,
    recovered_ts: float,
    *,
    after_window_s: float,
    next_fault: tuple[str, float] | None,
    load_ended_ts: float | None,
) -> dict[str, Any]:
    """The window in which a recovered fault must serve again: from its recovery for ``after_window_s``, cut
    at the next fault's start and at the load's end (unknown: at the last completed request, the most the
    ledger can vouch for), judged on the requests sent in it (those in flight across the recovery moment
    were sent into the fault: counted as ``in_flight_at_recovery`` only). Returns ``{after_window: [start,
    end], after_cut_by, in_flight_at_recovery, requests_after, error_ratio_after, ok_per_s_after}``."""
    end, cut_by = recovered_ts + after_window_s, "after_window_s"
    if next_fault is not None and next_fault[1] < end:
        end, cut_by = next_fault[1], f"the start of the next fault ({next_fault[0]})"
    if load_ended_ts is not None and load_ended_ts < end:
        end, cut_by = load_ended_ts, "the end of the load"
    elif load_ended_ts is None and done.last_end is not None and done.last_end < end:
        end, cut_by = done.last_end, "the last completed request (the load's end is unknown)"
    end = max(end, recovered_ts)  # cut before it began (the next fault started first): an empty window
    # Only what was sent after recovery shows whether the service serves again: a request sent into the
    # outage that times out just after it (a client deadline of 3 s behind a 50 % loss) is the outage's.
    ok, failed, in_flight = done.sent_between(recovered_ts, end)
    n, span = ok + failed, end - recovered_ts
    return {
        "after_window": [recovered_ts, end],
        "after_cut_by": cut_by,
        "in_flight_at_recovery": in_flight,
        "requests_after": n,
        "error_ratio_after": failed / n if n else None,
        "ok_per_s_after": ok / span if span > 0 else None,
    }


def fault_figures(evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> dict[str, Any]:
    """Per-fault figures: ``{faults: [ {fault_id, kind, target, service, started_ts, injected_ts, lifted_ts,
    ended_ts, aborted, detected_ts, time_to_detect_s, recovered_ts, time_to_healthy_s, source,
    observed_after, next_fault_id, after_window, after_cut_by, requests_after, error_ratio_after,
    ok_per_s_after}], not_injected: [fault_id], observed_until, baseline_error_ratio, baseline_requests,
    baseline_ok_per_s, load_ended_ts, straddling_requests}``.

    The faults are ordered by when their injection started; that start, not the moment the fault was in
    effect, ends the previous fault's windows (a database stop fails requests while it is still stopping).
    Detection is timed from the moment the fault was in effect, recovery from then (instantaneous) or from
    the end of its lift (held).
    """
    timelines = fault_timelines(evidence.faults)
    health = sorted(evidence.health, key=lambda o: o.ts)
    services = {o.service for o in health}
    all_ts = [e.ts for e in evidence.faults] + [o.ts for o in health]
    all_ts += [r.end for r in evidence.requests or ()]
    observed_until = (
        evidence.observed_until if evidence.observed_until is not None else max(all_ts, default=None)
    )
    started = [f for f in timelines if f.started_ts is not None]
    boundaries = [f.started_ts for f in started if f.started_ts is not None]
    done = _Completions(evidence.requests or (), boundaries)
    base = _baseline(done, min(boundaries, default=None))
    if evidence.baseline_error_ratio is not None:
        base["baseline_error_ratio"] = evidence.baseline_error_ratio
    out_faults = []
    for i, f in enumerate(started):
        if f.injected_ts is None:  # its injection started but never took effect (an error): no recovery
            continue
        svc = target_service(f.target, services)
        nxt = next(((g.fault_id, g.started_ts) for g in started[i + 1 :] if g.started_ts is not None), None)
        m = fault_recovery(
            f, [o for o in health if o.service == svc], until_ts=None if nxt is None else nxt[1]
        )
        clock = f.lifted_ts if f.lifted_ts is not None else f.injected_ts
        detected = m["detected_ts"]
        row: dict[str, Any] = {
            "fault_id": f.fault_id,
            "kind": f.kind,
            "target": f.target,
            "service": svc,
            "started_ts": f.started_ts,
            "injected_ts": f.injected_ts,
            "ended_ts": f.ended_ts,
            "lifted_ts": f.lifted_ts,
            "aborted": f.aborted_ts is not None,
            "effect_observed": f.effect_observed,
            "effect": f.effect_evidence,
            **m,
            # a replica seen failing while the injection call ran was detected at once
            "time_to_detect_s": None if detected is None else max(0.0, detected - f.injected_ts),
            # from the moment an instantaneous fault was in effect, from the end of a held one's lift
            "time_to_healthy_s": None if m["recovered_ts"] is None else max(0.0, m["recovered_ts"] - clock),
            "next_fault_id": None if nxt is None else nxt[0],
            "after_window": None,
            "after_cut_by": None,
            "requests_after": None,
            "error_ratio_after": None,
            "ok_per_s_after": None,
        }
        if m["recovered_ts"] is not None and evidence.requests is not None:
            row.update(
                _after_window(
                    done,
                    m["recovered_ts"],
                    after_window_s=thresholds.after_window_s,
                    next_fault=nxt,
                    load_ended_ts=evidence.load_ended_ts,
                )
            )
        out_faults.append(row)
    return {
        "faults": out_faults,
        "not_injected": [f.fault_id for f in timelines if f.injected_ts is None],
        "observed_until": observed_until,
        **base,
        "load_ended_ts": evidence.load_ended_ts,
        "straddling_requests": done.straddling,
    }


# --------------------------------------------------------------------------------------------- detect


def _ex(row: Mapping[str, Any], kind: str, **more: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "fault_id": row["fault_id"],
        "fault_kind": row["kind"],
        "target": row["target"],
        "injected_ts": row["injected_ts"],
        **more,
    }


def _serving(row: Mapping[str, Any], figures: Mapping[str, Any], th: RecoveryThresholds) -> list:
    """Whether a recovered fault's service serves again in its after-window (see :func:`_after_window`):
    ``throughput_not_back`` when its completed ok requests per second stay below ``min_throughput_ratio``
    of the baseline's (no completed request at all included), ``error_ratio_not_back`` when its error ratio
    stays above the baseline's plus the tolerance; ``serving_unmeasured`` when the window is shorter than
    :data:`MIN_AFTER_WINDOW_S` or too short for the baseline rate to expect :data:`MIN_EXPECTED_REQUESTS`."""
    rate, baseline = figures["baseline_ok_per_s"], figures["baseline_error_ratio"]
    start, end = row["after_window"]
    expected = (rate or 0.0) * max(0.0, end - start)
    if end - start < MIN_AFTER_WINDOW_S:
        expected = 0.0  # too short to judge, whatever the rate
    if expected < MIN_EXPECTED_REQUESTS and figures["load_ended_ts"] is None:
        # Without the load's end, silence after recovery may be the load gone or the service gone.
        return [
            _ex(
                row,
                "no_data",
                reason="too few requests completed after recovery to judge, and the load's end is unknown",
            )
        ]
    if expected < MIN_EXPECTED_REQUESTS:
        return [
            _ex(
                row,
                "serving_unmeasured",
                reason=f"the window after recovery was cut to {max(0.0, end - start):.2f} s by "
                f"{row['after_cut_by']}: too short to judge",
                after_window=row["after_window"],
            )
        ]
    out = []
    if th.min_throughput_ratio is not None and row["ok_per_s_after"] < th.min_throughput_ratio * rate:
        out.append(
            _ex(
                row,
                "throughput_not_back",
                ok_per_s_after=row["ok_per_s_after"],
                baseline_ok_per_s=rate,
                min_throughput_ratio=th.min_throughput_ratio,
                requests_after=row["requests_after"],
                after_window=row["after_window"],
            )
        )
    if th.error_ratio_tolerance is None:
        return out
    if row["error_ratio_after"] is None:
        if not out:  # throughput not judged: an error ratio of nothing is not a measurement
            out.append(_ex(row, "no_data", reason="no request completed in the window after recovery"))
    elif row["error_ratio_after"] > baseline + th.error_ratio_tolerance:
        out.append(
            _ex(
                row,
                "error_ratio_not_back",
                error_ratio_after=row["error_ratio_after"],
                requests_after=row["requests_after"],
                baseline_error_ratio=baseline,
                tolerance=th.error_ratio_tolerance,
                after_window=row["after_window"],
            )
        )
    return out


def detect(figures: Mapping[str, Any], evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> list:
    """Anomalies as dicts ``{kind, fault_id?, fault_kind?, target?, injected_ts?, ...figures, reason?}`` with
    ``kind`` in :data:`FAILING_KINDS`, :data:`UNDECIDED_KINDS` or :data:`INFO_KINDS` (reported only)."""
    out: list[dict[str, Any]] = []
    rows = figures["faults"]
    if not rows:
        return [{"kind": "no_data", "reason": "nothing was injected"}]
    serving = thresholds.judges_serving
    if serving and evidence.requests is None:
        out.append({"kind": "no_data", "reason": "no client ledger in the evidence"})
        serving = False
    elif serving and figures["baseline_error_ratio"] is None:
        out.append(
            {"kind": "no_data", "reason": "no client request completed before the first fault (no baseline)"}
        )
        serving = False
    for row in rows:
        if row["aborted"]:
            out.append(_ex(row, "aborted"))
        if row["effect_observed"] is False:  # a calm run is no proof of recovery
            reason = f"fault {row['fault_id']} had no observed effect: {row['effect'] or 'nothing seen'}"
            out.append(_ex(row, "no_data", reason=reason))
        if row["recovered_ts"] is None:
            if not row["observed_after"]:
                out.append(
                    _ex(row, "no_data", reason=f"no health observation of {row['service']} after injection")
                )
            else:
                out.append(
                    _ex(
                        row,
                        "never_recovered",
                        observed_until=figures["observed_until"],
                        unhealthy_for_at_least_s=figures["observed_until"] - row["injected_ts"],
                        rto_s=thresholds.rto_s,
                    )
                )
            continue
        if row["detected_ts"] is None:
            out.append(_ex(row, "not_detected"))
        if row["time_to_healthy_s"] > thresholds.rto_s:
            out.append(
                _ex(
                    row,
                    "rto_missed",
                    time_to_healthy_s=row["time_to_healthy_s"],
                    rto_s=thresholds.rto_s,
                    recovered_ts=row["recovered_ts"],
                )
            )
        if serving:
            out += _serving(row, figures, thresholds)
    return out + _leaders(rows, evidence, thresholds)


def _leaders(rows: Sequence[Mapping[str, Any]], evidence: RecoveryEvidence, th: RecoveryThresholds) -> list:
    """The leader judgments of each ``leader_loss`` fault (:mod:`resgate.checks.recovery.leader`); each
    row gains its ``leader`` figures."""
    by_fault = {o.fault_id: o for o in evidence.leaders}
    out: list[dict[str, Any]] = []
    for row in rows:
        if row["kind"] != "leader_loss":
            continue
        figures, anomalies = leader_anomalies(
            by_fault.get(row["fault_id"]),
            row["injected_ts"],
            rto_s=th.rto_s,
            max_heartbeat_age_s=th.max_heartbeat_age_s,
        )
        if isinstance(row, dict):
            row["leader"] = figures
        out += [_ex(row, a.pop("kind"), **a) for a in anomalies]
    return out


def check(evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> CheckResult:
    """Judge every injected fault's recovery.

    Returns a :class:`CheckResult` named ``"recovery"`` with counts ``{faults, recovered, rto_met,
    rto_missed, never_recovered, error_ratio_not_back, throughput_not_back, undecided, not_detected,
    serving_unmeasured, aborted, max_time_to_healthy_s, anomalies}``, capped anomaly ``examples`` (see
    :func:`detect`) and ``details = {rto_s, min_throughput_ratio, baseline_error_ratio, baseline_ok_per_s,
    load_ended_ts, straddling_requests, observed_until, faults: [per-fault figures], not_injected}``.
    """
    m = fault_figures(evidence, thresholds)
    anomalies = detect(m, evidence, thresholds)
    rows = m["faults"]
    by_kind: dict[str, int] = {}
    for a in anomalies:
        by_kind[a["kind"]] = by_kind.get(a["kind"], 0) + 1
    times = [r["time_to_healthy_s"] for r in rows if r["time_to_healthy_s"] is not None]
    counts = {
        "faults": len(rows),
        "recovered": len(times),
        "rto_met": sum(1 for t in times if t <= thresholds.rto_s),
        "rto_missed": by_kind.get("rto_missed", 0),
        "never_recovered": by_kind.get("never_recovered", 0),
        "error_ratio_not_back": by_kind.get("error_ratio_not_back", 0),
        "throughput_not_back": by_kind.get("throughput_not_back", 0),
        "undecided": by_kind.get("no_data", 0),
        "not_detected": by_kind.get("not_detected", 0),
        "serving_unmeasured": by_kind.get("serving_unmeasured", 0),
        "aborted": by_kind.get("aborted", 0),
        "max_time_to_healthy_s": max(times, default=None),
    }
    leaders = [r["leader"] for r in rows if r.get("leader")]
    if leaders:
        again = [f["time_to_leader_s"] for f in leaders if f["time_to_leader_s"] is not None]
        counts["leader_losses"] = len(leaders)
        counts["max_time_to_leader_s"] = max(again, default=None)
        counts["split_brain"] = by_kind.get("split_brain", 0) + by_kind.get("stale_leader", 0)
    ex = ExampleCollector()
    # Failures first, so the capped list always shows what made the check fail.
    for a in sorted(
        anomalies, key=lambda a: (a["kind"] not in FAILING_KINDS, a["kind"] not in UNDECIDED_KINDS)
    ):
        ex.add(a)
    counts["anomalies"] = ex.total
    valid = judge(anomalies, failing=FAILING_KINDS, undecided=UNDECIDED_KINDS)
    error = None
    if valid == UNKNOWN:
        reasons = sorted({a["reason"] for a in anomalies if a["kind"] in UNDECIDED_KINDS})
        error = "; ".join(reasons)
    details = {
        "rto_s": thresholds.rto_s,
        "min_throughput_ratio": thresholds.min_throughput_ratio,
        "baseline_error_ratio": m["baseline_error_ratio"],
        "baseline_ok_per_s": m["baseline_ok_per_s"],
        "load_ended_ts": m["load_ended_ts"],
        "straddling_requests": m["straddling_requests"],
        "observed_until": m["observed_until"],
        "faults": rows,
        "not_injected": m["not_injected"],
    }
    return CheckResult(
        name=NAME, valid=valid, counts=counts, examples=ex.examples, error=error, details=details
    )
