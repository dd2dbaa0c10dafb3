"""The recovery check: after each injected fault, did the target become healthy again within the RTO, and
did the client error ratio return to its pre-fault level?

Evidence is the fault timeline (``{ts, fault_id, kind, target, event}`` with ``event`` one of injected,
detected, recovered, aborted, ended), health observations of services (either ``{ts, service, healthy}``
probes or the local supervisor's ``{ts, service, replica, event}`` timeline) and, optionally, error-ratio
windows derived from the client ledger (:func:`error_ratio_windows`).

Per fault, measured from its ``injected`` event:

- **time to detection** — the first observation of the target service at or after injection that signals a
  failure (``healthy: false``, or an event in :data:`UNHEALTHY_EVENTS` such as unhealthy/exited/killed);
- **time to healthy** — the first moment after that detection (or after injection, when nothing was
  detected) at which every known replica of the target service is healthy. A replica's state is its last
  observation; replicas whose last event is in :data:`RETIRED_EVENTS` no longer count. Only when the health
  observations say nothing about the target after injection does the fault timeline's own ``detected`` /
  ``recovered`` events stand in (``source: "fault_timeline"``);
- **RTO met** — time to healthy ``<= rto_s`` (default :data:`resgate.contract.constants.DEFAULT_RTO_SECONDS`);
- **error ratio back** — the ledger error ratio (outcome ``fail`` or ``info``) in the windows starting
  within ``after_window_s`` after recovery (and ending before the next injection) is at most the baseline
  ratio (windows ending before the first injection) plus ``error_ratio_tolerance``.

A fault whose target was still unhealthy when the observation ended is a failure ("never recovered"); a run
in which nothing was injected is ``unknown``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.ledger import LedgerRecord
from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector, Validity
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.contract.errors import ConfigError

NAME = "recovery"
DEFAULT_WINDOW_S = 5.0
DEFAULT_AFTER_WINDOW_S = 10.0
DEFAULT_ERROR_RATIO_TOLERANCE = 0.01

FAULT_EVENTS = frozenset({"injected", "detected", "recovered", "aborted", "ended"})
HEALTHY_EVENTS = frozenset({"healthy"})
UNHEALTHY_EVENTS = frozenset(
    {"unhealthy", "exited", "killed", "crashed", "stopped", "paused", "hung", "down", "failed", "timeout"}
)
"""Supervisor events that signal a failure (and so count as detection). Other non-healthy events, such as
``started`` or ``restarting``, leave the replica not yet healthy without counting as a detection."""
RETIRED_EVENTS = frozenset({"removed", "retired", "deregistered"})
"""Events after which a replica is no longer part of the service (it was replaced, e.g. an ECS task)."""

FAILING_KINDS = frozenset({"rto_missed", "never_recovered", "error_ratio_not_back"})
UNDECIDED_KINDS = frozenset({"no_data"})
# ``error_ratio_unmeasured``: the fault healed after the load had ended (e.g. a consumer that rejoins its
# group after the session timeout). Its RTO is still judged; the error-ratio part cannot be, and saying
# "unknown" for the whole check would punish a fault placed late in the schedule, so it is only reported.
INFO_KINDS = frozenset({"not_detected", "aborted", "error_ratio_unmeasured"})


# --------------------------------------------------------------------------------------------- evidence


def _num(
    d: Mapping[str, Any], key: str, where: str, *, required: bool = True, minimum: float | None = None
) -> Any:
    v = d.get(key)
    if v is None:
        if required:
            raise ConfigError("is required", where=f"{where}.{key}")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"must be a finite number, got {v!r}", where=f"{where}.{key}")
    if minimum is not None and v < minimum:
        raise ConfigError(f"must be >= {minimum:g}, got {v!r}", where=f"{where}.{key}")
    return float(v)


def _str(d: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise ConfigError("is required", where=f"{where}.{key}")
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "":
        raise ConfigError(f"must be a non-empty string, got {v!r}", where=f"{where}.{key}")
    return str(v)


def _obj(d: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ConfigError(f"must be an object, got {type(d).__name__}", where=where)
    return d


def _list(v: Any, where: str) -> Sequence[Any]:
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Sequence):
        raise ConfigError("must be a list", where=where)
    return v


@dataclass(frozen=True)
class FaultEvent:
    """One line of the fault timeline."""

    ts: float
    fault_id: str
    kind: str
    target: str
    event: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.recovery.faults[0]") -> FaultEvent:
        """Validate ``{ts, fault_id, kind, target, event}``; ``event`` must be in :data:`FAULT_EVENTS`."""
        d = _obj(d, where)
        event = d.get("event")
        if event not in FAULT_EVENTS:
            raise ConfigError(f"must be one of {sorted(FAULT_EVENTS)}, got {event!r}", where=f"{where}.event")
        return cls(
            ts=_num(d, "ts", where),
            fault_id=_str(d, "fault_id", where),  # type: ignore[arg-type]
            kind=_str(d, "kind", where),  # type: ignore[arg-type]
            target=_str(d, "target", where),  # type: ignore[arg-type]
            event=event,
        )


@dataclass(frozen=True)
class HealthObservation:
    """One health observation of a service replica (``replica`` is ``None`` for service-level probes).

    ``healthy`` is the replica's state after this observation; ``event`` is the supervisor's event name
    when the observation came from its timeline.
    """

    ts: float
    service: str
    healthy: bool
    replica: str | None = None
    event: str | None = None

    @property
    def signals_failure(self) -> bool:
        """True when this observation is evidence that the replica failed (counts as detection)."""
        return not self.healthy and (self.event is None or self.event in UNHEALTHY_EVENTS)

    @property
    def retired(self) -> bool:
        """True when the replica left the service with this observation."""
        return self.event in RETIRED_EVENTS

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, where: str = "evidence.recovery.health[0]"
    ) -> HealthObservation:
        """Validate a probe ``{ts, service, healthy, replica?}`` or a supervisor line ``{ts, service, replica,
        event}`` (healthy iff ``event`` is in :data:`HEALTHY_EVENTS`)."""
        d = _obj(d, where)
        ts = _num(d, "ts", where)
        service = _str(d, "service", where)
        replica = _str(d, "replica", where, required=False)
        event = _str(d, "event", where, required=False)
        healthy = d.get("healthy")
        if healthy is None:
            if event is None:
                raise ConfigError("needs either 'healthy' (bool) or 'event'", where=where)
            healthy = event in HEALTHY_EVENTS
        elif not isinstance(healthy, bool):
            raise ConfigError(f"must be true or false, got {healthy!r}", where=f"{where}.healthy")
        return cls(ts=ts, service=service, healthy=healthy, replica=replica, event=event)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ErrorWindow:
    """Client requests and failures (outcome fail or info) in ``[start, end)``."""

    start: float
    end: float
    requests: int
    failures: int

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, where: str = "evidence.recovery.error_windows[0]"
    ) -> ErrorWindow:
        """Validate ``{start, end, requests, failures}``."""
        d = _obj(d, where)
        start, end = _num(d, "start", where), _num(d, "end", where)
        if end <= start:
            raise ConfigError(f"end ({end}) must be after start ({start})", where=f"{where}.end")
        counts = {}
        for key in ("requests", "failures"):
            v = d.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"must be an integer >= 0, got {v!r}", where=f"{where}.{key}")
            counts[key] = v
        if counts["failures"] > counts["requests"]:
            raise ConfigError("failures exceed requests", where=f"{where}.failures")
        return cls(start=start, end=end, **counts)


def error_ratio_windows(
    records: Iterable[LedgerRecord | Mapping[str, Any]], window_s: float = DEFAULT_WINDOW_S
) -> list[ErrorWindow]:
    """Cut ledger records into fixed windows aligned on the earliest ``ts``.

    Returns one :class:`ErrorWindow` per non-empty window, in time order; a failure is outcome fail or info.
    """
    if not (window_s > 0):
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    points: list[tuple[float, bool]] = []
    for r in records:
        if isinstance(r, Mapping):
            points.append((float(r["ts"]), r["outcome"] != "ok"))
        else:
            points.append((r.ts, r.failed))
    if not points:
        return []
    t0 = min(ts for ts, _ in points)
    acc: dict[int, list[int]] = {}
    for ts, failed in points:
        slot = acc.setdefault(int((ts - t0) // window_s), [0, 0])
        slot[0] += 1
        slot[1] += failed
    return [
        ErrorWindow(start=t0 + i * window_s, end=t0 + (i + 1) * window_s, requests=n, failures=f)
        for i, (n, f) in sorted(acc.items())
    ]


@dataclass(frozen=True)
class RecoveryEvidence:
    """What the recovery check judges.

    ``faults``: the fault timeline; ``health``: health observations; ``error_windows``: ledger error-ratio
    windows (``None`` = not collected); ``observed_until``: end of observation (``None`` = the latest ``ts``
    in the evidence); ``baseline_error_ratio``: pre-fault error ratio (``None`` = from the windows that end
    before the first injection).
    """

    faults: tuple[FaultEvent, ...]
    health: tuple[HealthObservation, ...]
    error_windows: tuple[ErrorWindow, ...] | None = None
    observed_until: float | None = None
    baseline_error_ratio: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.recovery") -> RecoveryEvidence:
        """Build from ``{faults, health, error_windows?, observed_until?, baseline_error_ratio?}``."""
        d = _obj(d, where)
        unknown = set(d) - {"faults", "health", "error_windows", "observed_until", "baseline_error_ratio"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        faults = tuple(
            FaultEvent.from_dict(e, where=f"{where}.faults[{i}]")
            for i, e in enumerate(_list(d.get("faults") or [], f"{where}.faults"))
        )
        health = tuple(
            HealthObservation.from_dict(e, where=f"{where}.health[{i}]")
            for i, e in enumerate(_list(d.get("health") or [], f"{where}.health"))
        )
        windows = None
        if d.get("error_windows") is not None:
            windows = tuple(
                ErrorWindow.from_dict(e, where=f"{where}.error_windows[{i}]")
                for i, e in enumerate(_list(d["error_windows"], f"{where}.error_windows"))
            )
        baseline = _num(d, "baseline_error_ratio", where, required=False, minimum=0)
        if baseline is not None and baseline > 1:
            raise ConfigError(f"must be <= 1, got {baseline}", where=f"{where}.baseline_error_ratio")
        return cls(
            faults=faults,
            health=health,
            error_windows=windows,
            observed_until=_num(d, "observed_until", where, required=False),
            baseline_error_ratio=baseline,
        )


def evidence_from_run(
    faults: Iterable[Mapping[str, Any]],
    health: Iterable[Mapping[str, Any]],
    *,
    records: Iterable[LedgerRecord | Mapping[str, Any]] | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    observed_until: float | None = None,
) -> RecoveryEvidence:
    """Build :class:`RecoveryEvidence` from timeline dicts and, optionally, ledger records (error windows)."""
    ev = RecoveryEvidence.from_dict(
        {"faults": list(faults), "health": list(health), "observed_until": observed_until}
    )
    if records is None:
        return ev
    return RecoveryEvidence(
        faults=ev.faults,
        health=ev.health,
        error_windows=tuple(error_ratio_windows(records, window_s)),
        observed_until=ev.observed_until,
    )


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
        d = _obj(d or {}, where)
        unknown = set(d) - {"rto_s", "error_ratio_tolerance", "after_window_s"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        rto = _num(d, "rto_s", where, required=False, minimum=0)
        if rto is not None and rto <= 0:
            raise ConfigError(f"must be > 0, got {rto}", where=f"{where}.rto_s")
        tol = _num(d, "error_ratio_tolerance", where, required=False, minimum=0)
        if tol is not None and tol > 1:
            raise ConfigError(f"must be <= 1, got {tol}", where=f"{where}.error_ratio_tolerance")
        after = _num(d, "after_window_s", where, required=False, minimum=0)
        if after is not None and after <= 0:
            raise ConfigError(f"must be > 0, got {after}", where=f"{where}.after_window_s")
        return cls(
            rto_s=DEFAULT_RTO_SECONDS if rto is None else rto,
            error_ratio_tolerance=tol if "error_ratio_tolerance" in d else DEFAULT_ERROR_RATIO_TOLERANCE,
            after_window_s=DEFAULT_AFTER_WINDOW_S if after is None else after,
        )


# --------------------------------------------------------------------------------------------- measure


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


def fault_timelines(events: Iterable[FaultEvent]) -> list[FaultTimeline]:
    """Group fault events by ``fault_id`` (first occurrence of each event wins), ordered by injection time."""
    by_id: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        f = by_id.setdefault(e.fault_id, {"fault_id": e.fault_id, "kind": e.kind, "target": e.target})
        if e.event == "injected":
            f["kind"], f["target"] = e.kind, e.target
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


def measure_fault(fault: FaultTimeline, observations: Sequence[HealthObservation]) -> dict[str, Any]:
    """Detection and recovery of one injected fault from its target's health observations (sorted by ts).

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
    detection = next((i for i, o in enumerate(after) if o.signals_failure), None)
    recovered = None
    for i, o in enumerate(after):
        state[o.replica] = o
        # Before the failure is seen, "all healthy" only means the fault has not landed yet.
        if (detection is None or i >= detection) and _all_healthy(state):
            recovered = o.ts
            break
    return {
        "detected_ts": None if detection is None else after[detection].ts,
        "recovered_ts": recovered,
        "source": "health",
        "observed_after": True,
    }


def _ratio(windows: Iterable[ErrorWindow]) -> tuple[float | None, int]:
    n = f = 0
    for w in windows:
        n += w.requests
        f += w.failures
    return (f / n if n else None), n


def measure(evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> dict[str, Any]:
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
        m = measure_fault(f, [o for o in health if o.service == svc])
        assert f.injected_ts is not None
        row: dict[str, Any] = {
            "fault_id": f.fault_id,
            "kind": f.kind,
            "target": f.target,
            "service": svc,
            "injected_ts": f.injected_ts,
            "ended_ts": f.ended_ts,
            "aborted": f.aborted_ts is not None,
            **m,
            "time_to_detect_s": None if m["detected_ts"] is None else m["detected_ts"] - f.injected_ts,
            "time_to_healthy_s": None if m["recovered_ts"] is None else m["recovered_ts"] - f.injected_ts,
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


# --------------------------------------------------------------------------------------------- detect / judge


def _ex(row: Mapping[str, Any], kind: str, **more: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "fault_id": row["fault_id"],
        "fault_kind": row["kind"],
        "target": row["target"],
        "injected_ts": row["injected_ts"],
        **more,
    }


def detect(
    measurement: Mapping[str, Any], evidence: RecoveryEvidence, thresholds: RecoveryThresholds
) -> list:
    """Anomalies as dicts ``{kind, fault_id?, fault_kind?, target?, injected_ts?, ...figures, reason?}`` with
    ``kind`` in :data:`FAILING_KINDS`, :data:`UNDECIDED_KINDS` or :data:`INFO_KINDS` (reported only)."""
    out: list[dict[str, Any]] = []
    rows = measurement["faults"]
    if not rows:
        return [{"kind": "no_data", "reason": "nothing was injected"}]
    judge_errors = thresholds.error_ratio_tolerance is not None
    baseline = measurement["baseline_error_ratio"]
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
                        observed_until=measurement["observed_until"],
                        unhealthy_for_at_least_s=measurement["observed_until"] - row["injected_ts"],
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


def judge(anomalies: Iterable[Mapping[str, Any]]) -> Validity:
    """False if any anomaly is in :data:`FAILING_KINDS`, else "unknown" if any is undecided, else True."""
    kinds = {a["kind"] for a in anomalies}
    if kinds & FAILING_KINDS:
        return False
    if kinds & UNDECIDED_KINDS:
        return UNKNOWN
    return True


def check(evidence: RecoveryEvidence, thresholds: RecoveryThresholds) -> CheckResult:
    """Judge every injected fault's recovery.

    Returns a :class:`CheckResult` named ``"recovery"`` with counts ``{faults, recovered, rto_met,
    rto_missed, never_recovered, error_ratio_not_back, undecided, not_detected, aborted,
    max_time_to_healthy_s, anomalies}``, capped anomaly ``examples`` (see :func:`detect`) and
    ``details = {rto_s, baseline_error_ratio, faults: [per-fault figures]}``.
    """
    m = measure(evidence, thresholds)
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
    valid = judge(anomalies)
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
