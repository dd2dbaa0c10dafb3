"""The recovery check's evidence: the fault timeline, health observations and ledger error-ratio windows.

Each record type validates its dict form (``ConfigError`` naming the entry and key);
:func:`error_ratio_windows` cuts ledger records into fixed windows; :func:`evidence_from_run` builds
:class:`RecoveryEvidence` from timeline dicts and, optionally, the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.ledger import LedgerRecord
from resgate.contract.errors import ConfigError

DEFAULT_WINDOW_S = 5.0

FAULT_EVENTS = frozenset({"injected", "detected", "recovered", "aborted", "ended"})
HEALTHY_EVENTS = frozenset({"healthy"})
UNHEALTHY_EVENTS = frozenset(
    {"unhealthy", "exited", "killed", "crashed", "stopped", "paused", "hung", "down", "failed", "timeout"}
)
"""Supervisor events that signal a failure (and so count as detection). Other non-healthy events, such as
``started`` or ``restarting``, leave the replica not yet healthy without counting as a detection."""
RETIRED_EVENTS = frozenset({"removed", "retired", "deregistered"})
"""Events after which a replica is no longer part of the service (it was replaced, e.g. an ECS task)."""


def number_field(
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


def as_object(d: Any, where: str) -> Mapping[str, Any]:
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
    held_s: float | None = None
    """For an ``injected`` event of a fault held for a while (a hang, a database outage, a partition…), how
    long it was to be held: ``detail.duration_s``; None for an instantaneous fault (a kill)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.recovery.faults[0]") -> FaultEvent:
        """Validate ``{ts, fault_id, kind, target, event, detail?}``; ``event`` must be in
        :data:`FAULT_EVENTS`; a positive ``detail.duration_s`` of an ``injected`` event is ``held_s``."""
        d = as_object(d, where)
        event = d.get("event")
        if event not in FAULT_EVENTS:
            raise ConfigError(f"must be one of {sorted(FAULT_EVENTS)}, got {event!r}", where=f"{where}.event")
        detail = d.get("detail")
        held = detail.get("duration_s") if event == "injected" and isinstance(detail, Mapping) else None
        if (
            isinstance(held, bool)
            or not isinstance(held, (int, float))
            or not math.isfinite(held)
            or held <= 0
        ):
            held = None
        return cls(
            ts=number_field(d, "ts", where),
            fault_id=_str(d, "fault_id", where),  # type: ignore[arg-type]
            kind=_str(d, "kind", where),  # type: ignore[arg-type]
            target=_str(d, "target", where),  # type: ignore[arg-type]
            event=event,
            held_s=None if held is None else float(held),
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
        d = as_object(d, where)
        ts = number_field(d, "ts", where)
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
        d = as_object(d, where)
        start, end = number_field(d, "start", where), number_field(d, "end", where)
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
        d = as_object(d, where)
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
        baseline = number_field(d, "baseline_error_ratio", where, required=False, minimum=0)
        if baseline is not None and baseline > 1:
            raise ConfigError(f"must be <= 1, got {baseline}", where=f"{where}.baseline_error_ratio")
        return cls(
            faults=faults,
            health=health,
            error_windows=windows,
            observed_until=number_field(d, "observed_until", where, required=False),
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
