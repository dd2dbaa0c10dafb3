"""The backpressure check: under an overload burst the target sheds load clearly, keeps the requests it
accepts fast, and is back to its baseline soon after the burst.

Evidence is the fault timeline's ``overload`` faults and the client ledger (the burst's own requests and
the load's). The windows are the run's phases (:func:`resgate.checks.slo.phases.phase_windows`): the
*baseline* (before the first fault) and each burst's *during* window (from its injection's start to its
lift). Per burst, its requests sent during the window are split into *accepted* (outcome ``ok``), *shed*
(429, or 503 with ``Retry-After``: the client is told to come back, and nothing was done) and *unclear*
(a timeout, a reset, a refused or broken connection, a 503 without ``Retry-After``, any other 5xx: the
client cannot tell what happened, or when to retry); other 4xx (a 409 duplicate, a 422) are answers, not
overload, and are not counted. The anomalies, one function each:

- ``unclear_rejections`` — the share of rejected requests (shed + unclear) that were shed is below
  ``min_clear_shed_ratio`` (default 0.95). Example: 40 shed and 60 timeouts → 0.4: the target queued
  instead of saying "not now".
- ``accepted_latency_unbounded`` — the p95 latency of the accepted requests is above
  ``max_accepted_p95_ms`` (default 1000 ms). Example: everything accepted, p95 4.2 s: an unbounded queue.
- ``slow_to_recover`` / ``not_back_to_baseline`` — after the lift, the first ``window_s`` window (sliding
  by a second, default 2 s) whose accepted p95 is at most ``latency_factor`` × the baseline's p95 plus
  ``latency_slack_ms`` *and* whose accepted requests per second are at least ``min_throughput_ratio`` of
  the baseline's starts more than ``recover_within_s`` (default 10 s) after the lift, or there is none
  before the load ends. Example: a queue of 3,000 stale requests served for 12 s after the burst.
- ``no_overload`` (unknown) — nothing was rejected and the accepted p95 stayed within its bound: the burst
  did not overload the target, which proves nothing about shedding. ``no_burst`` (unknown): the timeline
  has no injected ``overload`` fault; ``no_baseline`` (unknown): no request was accepted before it.

Lost acknowledged orders are integrity's to judge (the burst's requests are in the ledger). How the
``retryable`` check reads the same answers: a shed (429, or 503 with Retry-After) is an allowed failure
class there by default, so a correct shed never fails the good build; a timeout with an idempotency key
is allowed there too (retryable judges whether a retry is *safe*), which is why an overload that times
out instead of shedding is judged here, where it is a failure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.ledger import LedgerRecord
from resgate.checks.result import UNKNOWN, CheckResult, judge
from resgate.checks.slo.phases import phase_windows
from resgate.contract.errors import ConfigError
from resgate.contract.fields import number_field

NAME = "backpressure"
FAULT_KIND = "overload"
FAILING_KINDS = frozenset(
    {"unclear_rejections", "accepted_latency_unbounded", "slow_to_recover", "not_back_to_baseline"}
)
UNDECIDED_KINDS = frozenset({"no_burst", "no_baseline", "no_overload"})
STEP_S = 1.0
EXAMPLES_PER_BURST = 5


# ------------------------------------------------------------------------------------------ thresholds
@dataclass(frozen=True)
class BackpressureThresholds:
    """The bounds of the module docstring, each with its default."""

    min_clear_shed_ratio: float = 0.95
    max_accepted_p95_ms: float = 1000.0
    recover_within_s: float = 10.0
    latency_factor: float = 2.0
    latency_slack_ms: float = 50.0
    min_throughput_ratio: float = 0.5
    window_s: float = 2.0

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, *, where: str = "checks.backpressure"
    ) -> BackpressureThresholds:
        """Validate the ``checks.backpressure`` section; missing keys take the defaults; a ConfigError names
        the field otherwise."""
        d = d or {}
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ConfigError(
                f"unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}", where=where
            )
        bounds = {
            "min_clear_shed_ratio": (0, 1),
            "max_accepted_p95_ms": (1, 600_000),
            "recover_within_s": (0, 3600),
            "latency_factor": (1, 100),
            "latency_slack_ms": (0, 60_000),
            "min_throughput_ratio": (0, 1),
            "window_s": (0.5, 60),
        }
        return cls(
            **{
                key: number_field(d, key, where, default=getattr(cls, key), lo=lo, hi=hi)
                for key, (lo, hi) in bounds.items()
            }
        )


Thresholds = BackpressureThresholds


# ------------------------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class BurstWindow:
    """One overload fault's window: from its injection's start to its lift."""

    fault_id: str
    start: float
    lift: float


@dataclass(frozen=True)
class BackpressureEvidence:
    """The bursts, the baseline window ``[baseline_start, baseline_end)``, the ledger and the load's end."""

    bursts: tuple[BurstWindow, ...]
    baseline_start: float
    baseline_end: float
    load_end: float
    records: tuple[LedgerRecord, ...]


def evidence_from_run(
    faults: Iterable[Mapping[str, Any]], records: Iterable[LedgerRecord]
) -> BackpressureEvidence:
    """The windows from the fault timeline (``faults.jsonl`` lines) through the run's phases, and the
    ledger; the load spans the ledger's first to last request."""
    recs = tuple(sorted(records, key=lambda r: r.ts))
    start = recs[0].ts if recs else 0.0
    end = recs[-1].ts + 0.001 if recs else 0.0
    windows = phase_windows(list(faults), [], load_start=start, load_end=end) if recs else []
    baseline = next((w for w in windows if w.phase == "baseline"), None)
    bursts = tuple(
        BurstWindow(w.fault_id or "", w.start, w.end)
        for w in windows
        if w.phase == "during" and w.fault_kind == FAULT_KIND
    )
    return BackpressureEvidence(
        bursts=bursts,
        baseline_start=baseline.start if baseline else start,
        baseline_end=baseline.end if baseline else start,
        load_end=end,
        records=recs,
    )


# ------------------------------------------------------------------------------------------- measures
def answer_class(record: LedgerRecord) -> str | None:
    """``accepted`` | ``shed`` | ``unclear`` for an overload's answer, None for a plain 4xx answer."""
    if record.outcome == "ok":
        return "accepted"
    s = record.status
    if s == 429 or (s == 503 and record.retry_after is not None):
        return "shed"
    if isinstance(s, int) and 400 <= s < 500:
        return None
    return "unclear"


def p95(values: Sequence[float]) -> float | None:
    """The nearest-rank 95th percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _between(records: Sequence[LedgerRecord], start: float, end: float) -> list[LedgerRecord]:
    return [r for r in records if start <= r.ts < end]


def burst_figures(records: Sequence[LedgerRecord], burst: BurstWindow) -> dict[str, Any]:
    """``{fault_id, requests, accepted, shed, unclear, clear_shed_ratio, accepted_p95_ms}`` of the requests
    sent during the burst (``clear_shed_ratio`` None when nothing was rejected)."""
    counts = {"accepted": 0, "shed": 0, "unclear": 0}
    latencies = []
    inside = _between(records, burst.start, burst.lift)
    for r in inside:
        c = answer_class(r)
        if c is not None:
            counts[c] += 1
        if c == "accepted":
            latencies.append(r.latency_ms)
    rejected = counts["shed"] + counts["unclear"]
    return {
        "fault_id": burst.fault_id,
        "requests": len(inside),
        **counts,
        "clear_shed_ratio": counts["shed"] / rejected if rejected else None,
        "accepted_p95_ms": p95(latencies),
    }


def baseline_figures(ev: BackpressureEvidence) -> dict[str, Any]:
    """``{accepted, accepted_rps, accepted_p95_ms}`` of the baseline window (rps None when it has no time)."""
    ok = [r for r in _between(ev.records, ev.baseline_start, ev.baseline_end) if r.outcome == "ok"]
    span = ev.baseline_end - ev.baseline_start
    return {
        "accepted": len(ok),
        "accepted_rps": len(ok) / span if span > 0 else None,
        "accepted_p95_ms": p95([r.latency_ms for r in ok]),
    }


def time_back_to_baseline(
    records: Sequence[LedgerRecord],
    lift: float,
    load_end: float,
    baseline: Mapping[str, Any],
    t: BackpressureThresholds,
) -> float | None:
    """Seconds from ``lift`` to the start of the first ``window_s`` window (stepping by a second, inside the
    load) whose accepted p95 is within ``latency_factor`` × baseline p95 + ``latency_slack_ms`` and whose
    accepted rps is at least ``min_throughput_ratio`` × the baseline's; None when there is none."""
    bound = t.latency_factor * baseline["accepted_p95_ms"] + t.latency_slack_ms
    floor = t.min_throughput_ratio * baseline["accepted_rps"]
    k = 0.0
    while lift + k + t.window_s <= load_end:
        ok = [r for r in _between(records, lift + k, lift + k + t.window_s) if r.outcome == "ok"]
        latency = p95([r.latency_ms for r in ok])
        if ok and latency is not None and latency <= bound and len(ok) / t.window_s >= floor:
            return k
        k += STEP_S
    return None


# ------------------------------------------------------------------------------------------ detectors
def unclear_rejections(fig: Mapping[str, Any], t: BackpressureThresholds) -> list[dict[str, Any]]:
    """A burst whose rejected requests were shed clearly less often than ``min_clear_shed_ratio``."""
    ratio = fig["clear_shed_ratio"]
    if ratio is None or ratio >= t.min_clear_shed_ratio:
        return []
    return [
        {
            "kind": "unclear_rejections",
            "fault_id": fig["fault_id"],
            "shed": fig["shed"],
            "unclear": fig["unclear"],
            "clear_shed_ratio": round(ratio, 4),
            "min_clear_shed_ratio": t.min_clear_shed_ratio,
        }
    ]


def accepted_latency_unbounded(fig: Mapping[str, Any], t: BackpressureThresholds) -> list[dict[str, Any]]:
    """A burst whose accepted requests' p95 exceeded ``max_accepted_p95_ms``."""
    v = fig["accepted_p95_ms"]
    if v is None or v <= t.max_accepted_p95_ms:
        return []
    return [
        {
            "kind": "accepted_latency_unbounded",
            "fault_id": fig["fault_id"],
            "accepted_p95_ms": v,
            "max_accepted_p95_ms": t.max_accepted_p95_ms,
        }
    ]


def no_overload(fig: Mapping[str, Any], t: BackpressureThresholds) -> list[dict[str, Any]]:
    """A burst that rejected nothing and kept its accepted p95 within bound: it proved nothing."""
    v = fig["accepted_p95_ms"]
    overloaded = fig["shed"] + fig["unclear"] > 0 or (v is not None and v > t.max_accepted_p95_ms)
    return (
        []
        if overloaded
        else [{"kind": "no_overload", "fault_id": fig["fault_id"], "requests": fig["requests"]}]
    )


def not_recovered(fault_id: str, back_s: float | None, t: BackpressureThresholds) -> list[dict[str, Any]]:
    """``not_back_to_baseline`` when no window after the lift was back, ``slow_to_recover`` when the first
    was more than ``recover_within_s`` after it."""
    if back_s is None:
        return [
            {"kind": "not_back_to_baseline", "fault_id": fault_id, "recover_within_s": t.recover_within_s}
        ]
    if back_s > t.recover_within_s:
        return [
            {
                "kind": "slow_to_recover",
                "fault_id": fault_id,
                "back_after_s": back_s,
                "recover_within_s": t.recover_within_s,
            }
        ]
    return []


# --------------------------------------------------------------------------------------------- check
def check(evidence: BackpressureEvidence, thresholds: BackpressureThresholds) -> CheckResult:
    """Judge every overload burst of the run.

    Returns a :class:`CheckResult` named ``"backpressure"``: False on any anomaly of :data:`FAILING_KINDS`,
    else "unknown" on any of :data:`UNDECIDED_KINDS`, else True. Counts ``{bursts, requests, accepted, shed,
    unclear}`` summed over the bursts; ``examples`` the anomalies (capped); ``details = {baseline: {accepted,
    accepted_rps, accepted_p95_ms}, bursts: [{fault_id, requests, accepted, shed, unclear,
    clear_shed_ratio, accepted_p95_ms, back_after_s}], limits: {the thresholds}}``.
    """
    t = thresholds
    base = baseline_figures(evidence)
    anomalies: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    if not evidence.bursts:
        anomalies.append({"kind": "no_burst"})
    if not base["accepted"] or not base["accepted_rps"]:
        anomalies.append({"kind": "no_baseline"})
    for burst in evidence.bursts:
        fig = burst_figures(evidence.records, burst)
        silent = no_overload(fig, t)
        anomalies += silent or [*unclear_rejections(fig, t), *accepted_latency_unbounded(fig, t)]
        back = None
        if base["accepted"] and base["accepted_rps"]:
            back = time_back_to_baseline(evidence.records, burst.lift, evidence.load_end, base, t)
            if not silent:
                anomalies += not_recovered(burst.fault_id, back, t)
        rows.append({**fig, "back_after_s": back})
    counts = {
        "bursts": len(evidence.bursts),
        **{k: sum(r[k] for r in rows) for k in ("requests", "accepted", "shed", "unclear")},
    }
    details = {"baseline": base, "bursts": rows, "limits": dataclasses.asdict(t)}
    valid = judge(anomalies, failing=FAILING_KINDS, undecided=UNDECIDED_KINDS)
    examples = anomalies[: EXAMPLES_PER_BURST * max(1, len(rows))]
    error = None
    if valid == UNKNOWN:
        kinds = sorted({a["kind"] for a in anomalies} & UNDECIDED_KINDS)
        error = "nothing proves the target sheds load: " + ", ".join(kinds)
    return CheckResult(name=NAME, valid=valid, counts=counts, examples=examples, details=details, error=error)
