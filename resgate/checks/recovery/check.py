"""The recovery judge: per injected fault, time to detection and to healthy, RTO, and the error ratio after.

Pure functions of :class:`~resgate.checks.recovery.evidence.RecoveryEvidence` and
:class:`RecoveryThresholds`: :func:`fault_figures` computes each fault's figures, :func:`detect` lists
the anomalies, :func:`check` gathers them and lets :func:`resgate.checks.result.judge` decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.recovery.evidence import (
    ErrorWindow,
    FaultEvent,
    HealthObservation,
    RecoveryEvidence,
    as_object,
    number_field,
)
from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector, judge
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.contract.errors import ConfigError

NAME = "recovery"
DEFAULT_AFTER_WINDOW_S = 10.0
DEFAULT_ERROR_RATIO_TOLERANCE = 0.01

FAILING_KINDS = frozenset({"rto_missed", "never_recovered", "error_ratio_not_back"})
UNDECIDED_KINDS = frozenset({"no_data"})
# ``error_ratio_unmeasured``: the fault healed after the load had ended (e.g. a consumer that rejoins its
# group after the session timeout). Its RTO is still judged; the error-ratio part cannot be, and saying
# "unknown" for the whole check would punish a fault placed late in the schedule, so it is only reported.
INFO_KINDS = frozenset({"not_detected", "aborted", "error_ratio_unmeasured"})


# --------------------------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class RecoveryThresholds:
    """``rto_s``: the recovery time objective; ``error_ratio_tolerance``: how far above the baseline the error
    ratio may stay after recovery (``None`` = do not judge the error ratio); ``after_window_s``: how long
    after recovery the error ratio is measured."""

    rto_s: float = DEFAULT_RTO_SECONDS
    error_ratio_tolerance: float | None = DEFAULT_ERROR_RATIO_TOLERANCE
    after_window_s: float = DEFAULT_AFTER_WINDOW_S

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, *, where: str = "thresholds.recovery"
    ) -> RecoveryThresholds:
        """Validate ``{rto_s?, error_ratio_tolerance?, after_window_s?}`` (missing keys take the defaults;
        ``error_ratio_tolerance: null`` switches the error-ratio part off)."""
        d = as_object(d or {}, where)
        unknown = set(d) - {"rto_s", "error_ratio_tolerance", "after_window_s"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        rto = number_field(d, "rto_s", where, required=False, minimum=0)
        if rto is not None and rto <= 0:
            raise ConfigError(f"must be > 0, got {rto}", where=f"{where}.rto_s")
        tol = number_field(d, "error_ratio_tolerance", where, required=False, minimum=0)
        if tol is not None and tol > 1:
            raise ConfigError(f"must be <= 1, got {tol}", where=f"{where}.error_ratio_tolerance")
        after = number_field(d, "after_window_s", where, required=False, minimum=0)
        if after is not None and after <= 0:
            raise ConfigError(f"must be > 0, got {after}", where=f"{where}.after_window_s")
        return cls(
            rto_s=DEFAULT_RTO_SECONDS if rto is None else rto,
            error_ratio_tolerance=tol if "error_ratio_tolerance" in d else DEFAULT_ERROR_RATIO_TOLERANCE,
            after_window_s=DEFAULT_AFTER_WINDOW_S if after is None else after,
        )


# --------------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class FaultTimeline:
    """A fault's events gathered by ``fault_id``; ``*_ts`` are ``None`` when that event is absent."""

    fault_id: str
    kind: str
    target: str
    injected_ts: float | None
    detected_ts: float | None
    recovered_ts: float | None
    aborted_ts: float | None
    ended_ts: float | None
    held_s: float | None = None

    @property
    def lifted_ts(self) -> float | None:
        """When a held fault stopped acting: its ``ended`` or ``aborted`` event, else its scheduled end
        (injection + ``held_s``); None for an instantaneous fault, which is judged from its injection."""
        if self.held_s is None or self.injected_ts is None:
            return None
        ends = [t for t in (self.ended_ts, self.aborted_ts) if t is not None and t >= self.injected_ts]
        return min(ends) if ends else self.injected_ts + self.held_s


def fault_timelines(events: Iterable[FaultEvent]) -> list[FaultTimeline]:
    """Group fault events by ``fault_id`` (first occurrence of each event wins), ordered by injection time."""
    by_id: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        f = by_id.setdefault(e.fault_id, {"fault_id": e.fault_id, "kind": e.kind, "target": e.target})
        if e.event == "injected":
            f["kind"], f["target"] = e.kind, e.target
            f.setdefault("held_s", e.held_s)
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
        )
        for f in by_id.values()
    ]
    return sorted(out, key=lambda f: (f.injected_ts is None, f.injected_ts or 0.0, f.fault_id))


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

    Detection is the first failure signal at or after injection and before ``until_ts`` (the next fault's
    injection: a later fault's failure is not this one's). Recovery is the first moment after detection at
    which every live replica is healthy; for a held fault it is judged once the fault was lifted
    (:attr:`FaultTimeline.lifted_ts`): healthy at that moment (after a failure seen while it acted, or none)
    means recovered then, since nothing can recover from a partition while it lasts.

    Returns ``{detected_ts, recovered_ts, source, observed_after}``: ``source`` is ``"health"`` or
    ``"fault_timeline"``; ``observed_after`` is False when no observation of the target follows injection.
    """
    assert fault.injected_ts is not None
    t0 = fault.injected_ts
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


def _ratio(windows: Iterable[ErrorWindow]) -> tuple[float | None, int]:
    n = f = 0
    for w in windows:
        n += w.requests
        f += w.failures
    return (f / n if n else None), n


def fault_figures(evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> dict[str, Any]:
    """Per-fault figures: ``{faults: [ {fault_id, kind, target, injected_ts, ended_ts, aborted, detected_ts,
    time_to_detect_s, recovered_ts, time_to_healthy_s, source, observed_after, error_ratio_after,
    requests_after}], not_injected: [fault_id], observed_until, baseline_error_ratio, baseline_requests}``.
    """
    timelines = fault_timelines(evidence.faults)
    health = sorted(evidence.health, key=lambda o: o.ts)
    services = {o.service for o in health}
    all_ts = [e.ts for e in evidence.faults] + [o.ts for o in health]
    all_ts += [w.end for w in evidence.error_windows or ()]
    observed_until = (
        evidence.observed_until if evidence.observed_until is not None else max(all_ts, default=None)
    )
    injected = [f for f in timelines if f.injected_ts is not None]
    first_injection = min((f.injected_ts for f in injected), default=None)  # type: ignore[type-var]
    baseline, baseline_n = evidence.baseline_error_ratio, None
    if baseline is None and evidence.error_windows is not None and first_injection is not None:
        baseline, baseline_n = _ratio(w for w in evidence.error_windows if w.end <= first_injection)
    out_faults = []
    for f in injected:
        svc = target_service(f.target, services)
        assert f.injected_ts is not None
        nxt = [g.injected_ts for g in injected if g.injected_ts is not None and g.injected_ts > f.injected_ts]
        m = fault_recovery(f, [o for o in health if o.service == svc], until_ts=min(nxt, default=None))
        clock = f.lifted_ts if f.lifted_ts is not None else f.injected_ts
        row: dict[str, Any] = {
            "fault_id": f.fault_id,
            "kind": f.kind,
            "target": f.target,
            "service": svc,
            "injected_ts": f.injected_ts,
            "ended_ts": f.ended_ts,
            "lifted_ts": f.lifted_ts,
            "aborted": f.aborted_ts is not None,
            **m,
            "time_to_detect_s": None if m["detected_ts"] is None else m["detected_ts"] - f.injected_ts,
            # from the injection of an instantaneous fault, from the lifting of a held one
            "time_to_healthy_s": None if m["recovered_ts"] is None else max(0.0, m["recovered_ts"] - clock),
            "error_ratio_after": None,
            "requests_after": None,
        }
        if m["recovered_ts"] is not None and evidence.error_windows is not None:
            start = m["recovered_ts"]
            stop = start + thresholds.after_window_s
            later = [g.injected_ts for g in injected if g.injected_ts is not None and g.injected_ts > start]
            if later:
                stop = min(stop, min(later))
            # Windows that end after the next injection would charge this fault with the next one's errors.
            ratio, n = _ratio(
                w
                for w in evidence.error_windows
                if start <= w.start and (w.end <= stop or not later) and w.start < stop
            )
            row["error_ratio_after"], row["requests_after"] = ratio, n
        out_faults.append(row)
    return {
        "faults": out_faults,
        "not_injected": [f.fault_id for f in timelines if f.injected_ts is None],
        "observed_until": observed_until,
        "baseline_error_ratio": baseline,
        "baseline_requests": baseline_n,
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


def detect(figures: Mapping[str, Any], evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> list:
    """Anomalies as dicts ``{kind, fault_id?, fault_kind?, target?, injected_ts?, ...figures, reason?}`` with
    ``kind`` in :data:`FAILING_KINDS`, :data:`UNDECIDED_KINDS` or :data:`INFO_KINDS` (reported only)."""
    out: list[dict[str, Any]] = []
    rows = figures["faults"]
    if not rows:
        return [{"kind": "no_data", "reason": "nothing was injected"}]
    judge_errors = thresholds.error_ratio_tolerance is not None
    baseline = figures["baseline_error_ratio"]
    if judge_errors and evidence.error_windows is None:
        out.append({"kind": "no_data", "reason": "no error-ratio windows in the evidence"})
    elif judge_errors and baseline is None:
        out.append(
            {"kind": "no_data", "reason": "no client requests before the first injection (no baseline)"}
        )
    for row in rows:
        if row["aborted"]:
            out.append(_ex(row, "aborted"))
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
        if judge_errors and evidence.error_windows is not None and baseline is not None:
            if row["error_ratio_after"] is None:
                out.append(
                    _ex(
                        row,
                        "error_ratio_unmeasured",
                        reason="no client requests in the windows after recovery",
                    )
                )
            elif row["error_ratio_after"] > baseline + thresholds.error_ratio_tolerance:  # type: ignore[operator]
                out.append(
                    _ex(
                        row,
                        "error_ratio_not_back",
                        error_ratio_after=row["error_ratio_after"],
                        requests_after=row["requests_after"],
                        baseline_error_ratio=baseline,
                        tolerance=thresholds.error_ratio_tolerance,
                    )
                )
    return out


def check(evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> CheckResult:
    """Judge every injected fault's recovery.

    Returns a :class:`CheckResult` named ``"recovery"`` with counts ``{faults, recovered, rto_met,
    rto_missed, never_recovered, error_ratio_not_back, undecided, not_detected, aborted,
    max_time_to_healthy_s, anomalies}``, capped anomaly ``examples`` (see :func:`detect`) and
    ``details = {rto_s, baseline_error_ratio, faults: [per-fault figures]}``.
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
        "undecided": by_kind.get("no_data", 0),
        "not_detected": by_kind.get("not_detected", 0),
        "error_ratio_unmeasured": by_kind.get("error_ratio_unmeasured", 0),
        "aborted": by_kind.get("aborted", 0),
        "max_time_to_healthy_s": max(times, default=None),
    }
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
        "baseline_error_ratio": m["baseline_error_ratio"],
        "observed_until": m["observed_until"],
        "faults": rows,
        "not_injected": m["not_injected"],
    }
    return CheckResult(
        name=NAME, valid=valid, counts=counts, examples=ex.examples, error=error, details=details
    )
