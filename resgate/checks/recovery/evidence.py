"""The recovery check's evidence: the fault timeline, health observations and the ledger's requests.

Each record type validates its dict form (``ConfigError`` naming the entry and key);
:func:`served_requests` turns ledger records into when each request started and completed;
:func:`evidence_from_run` builds :class:`RecoveryEvidence` from timeline dicts and, optionally, the ledger.

A fault's timeline has two moments at each end: ``injecting`` (its injection started: nothing of it acted
before) and ``injected`` (it was in effect), and for a fault held for a while, ``lifting`` (its lift
started) and ``ended`` (it was lifted). Timelines written before ``injecting`` existed fall back to
``injected`` for the start. A ``leader_loss`` fault adds a ``leader_samples`` line (the leader figures
of every replica over the fault, :mod:`resgate.checks.recovery.leader`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from resgate.checks.ledger import LedgerRecord
from resgate.contract.errors import ConfigError
from resgate.contract.fields import number_field, optional_number

FAULT_EVENTS = frozenset(
    {"injecting", "injected", "effect", "detected", "recovered", "lifting", "aborted", "ended"}
)
HEALTHY_EVENTS = frozenset({"healthy"})
UNHEALTHY_EVENTS = frozenset(
    {"unhealthy", "exited", "killed", "crashed", "stopped", "paused", "hung", "down", "failed", "timeout"}
)
"""Supervisor events that signal a failure (and so count as detection). Other non-healthy events, such as
``started`` or ``restarting``, leave the replica not yet healthy without counting as a detection."""
RETIRED_EVENTS = frozenset({"removed", "retired", "deregistered"})
"""Events after which a replica is no longer part of the service (it was replaced, e.g. an ECS task)."""


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
    """For an ``injecting``/``injected`` event of a fault held for a while (a hang, a database outage, a
    partition…), how long it was to be held: ``detail.duration_s``; None for an instantaneous fault."""
    observed: bool | None = None
    """For an ``effect`` event: whether the fault was seen to act (``detail.observed``)."""
    evidence: str | None = None
    """For an ``effect`` event: what was seen, or why nothing was (``detail.evidence``)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.recovery.faults[0]") -> FaultEvent:
        """Validate ``{ts, fault_id, kind, target, event, detail?}``; ``event`` must be in
        :data:`FAULT_EVENTS`; a positive ``detail.duration_s`` of an ``injecting`` or ``injected`` event is
        ``held_s``; an ``effect`` event's ``detail`` is ``{observed: bool, evidence: str}``."""
        d = as_object(d, where)
        event = d.get("event")
        if event not in FAULT_EVENTS:
            raise ConfigError(f"must be one of {sorted(FAULT_EVENTS)}, got {event!r}", where=f"{where}.event")
        detail = d.get("detail")
        held = (
            detail.get("duration_s")
            if event in ("injecting", "injected") and isinstance(detail, Mapping)
            else None
        )
        if (
            isinstance(held, bool)
            or not isinstance(held, (int, float))
            or not math.isfinite(held)
            or held <= 0
        ):
            held = None
        observed = evidence = None
        if event == "effect":
            detail = as_object(detail, f"{where}.detail")
            observed = detail.get("observed")
            if not isinstance(observed, bool):
                raise ConfigError(
                    f"must be true or false, got {observed!r}", where=f"{where}.detail.observed"
                )
            evidence = str(detail.get("evidence") or "")
        return cls(
            ts=number_field(d, "ts", where),
            fault_id=_str(d, "fault_id", where),  # type: ignore[arg-type]
            kind=_str(d, "kind", where),  # type: ignore[arg-type]
            target=_str(d, "target", where),  # type: ignore[arg-type]
            event=event,
            held_s=None if held is None else float(held),
            observed=observed,
            evidence=evidence,
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


class Served(NamedTuple):
    """One client request of the ledger as recovery sees it: when it started, when it ended (its response
    or its failure came back), in epoch seconds; ``ok`` is outcome ok (fail or info is a failure)."""

    start: float
    end: float
    ok: bool

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.recovery.requests[0]") -> Served:
        """Validate ``{start, end, ok}`` (``end >= start``)."""
        d = as_object(d, where)
        start, end = number_field(d, "start", where), number_field(d, "end", where)
        if end < start:
            raise ConfigError(f"end ({end}) must not be before start ({start})", where=f"{where}.end")
        ok = d.get("ok")
        if not isinstance(ok, bool):
            raise ConfigError(f"must be true or false, got {ok!r}", where=f"{where}.ok")
        return cls(start, end, ok)


def served_requests(records: Iterable[LedgerRecord | Mapping[str, Any]]) -> list[Served]:
    """Ledger records as :class:`Served` (``end = ts + latency_ms / 1000``: the ledger's ``ts`` is when the
    request started), sorted by ``end``."""
    out: list[Served] = []
    for r in records:
        if isinstance(r, Mapping):
            ts, latency, ok = float(r["ts"]), float(r.get("latency_ms") or 0.0), r["outcome"] == "ok"
        else:
            ts, latency, ok = r.ts, r.latency_ms or 0.0, not r.failed
        out.append(Served(ts, ts + max(0.0, latency) / 1000.0, ok))
    out.sort(key=lambda s: s.end)
    return out


@dataclass(frozen=True)
class RecoveryEvidence:
    """What the recovery check judges.

    ``faults``: the fault timeline; ``health``: health observations; ``requests``: the ledger's requests
    (``None`` = not collected), sorted by ``end``; ``observed_until``: end of observation (``None`` = the
    latest ``ts`` in the evidence); ``baseline_error_ratio``: pre-fault error ratio (``None`` = from the
    requests that completed before the first fault started); ``load_ended_ts``: when the load stopped
    sending (``None`` = unknown): an after-window past it is not measured, while a window before it with no
    completed request is an outage.
    """

    faults: tuple[FaultEvent, ...]
    health: tuple[HealthObservation, ...]
    requests: tuple[Served, ...] | None = None
    observed_until: float | None = None
    baseline_error_ratio: float | None = None
    load_ended_ts: float | None = None
    leaders: tuple[Any, ...] = ()
    """The ``leader_samples`` events of ``leader_loss`` faults, as
    :class:`~resgate.checks.recovery.leader.LeaderObservation`."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.recovery") -> RecoveryEvidence:
        """Build from ``{faults, health, requests?, observed_until?, baseline_error_ratio?,
        load_ended_ts?, leaders?}`` (``requests``: ``[{start, end, ok}]``; ``leaders``: the fault
        timeline's ``leader_samples`` lines)."""
        from resgate.checks.recovery.leader import parse_leaders

        d = as_object(d, where)
        keys = {"faults", "health", "requests", "observed_until", "baseline_error_ratio", "load_ended_ts"}
        keys.add("leaders")
        unknown = set(d) - keys
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
        requests = None
        if d.get("requests") is not None:
            requests = tuple(
                sorted(
                    (
                        Served.from_dict(e, where=f"{where}.requests[{i}]")
                        for i, e in enumerate(_list(d["requests"], f"{where}.requests"))
                    ),
                    key=lambda s: s.end,
                )
            )
        baseline = optional_number(d, "baseline_error_ratio", where, lo=0)
        if baseline is not None and baseline > 1:
            raise ConfigError(f"must be <= 1, got {baseline}", where=f"{where}.baseline_error_ratio")
        return cls(
            faults=faults,
            health=health,
            requests=requests,
            observed_until=optional_number(d, "observed_until", where),
            baseline_error_ratio=baseline,
            load_ended_ts=optional_number(d, "load_ended_ts", where),
            leaders=parse_leaders(_list(d.get("leaders") or [], f"{where}.leaders"), f"{where}.leaders"),
        )


def evidence_from_run(
    faults: Iterable[Mapping[str, Any]],
    health: Iterable[Mapping[str, Any]],
    *,
    records: Iterable[LedgerRecord | Mapping[str, Any]] | None = None,
    observed_until: float | None = None,
    load_ended_ts: float | None = None,
    load_duration_s: float | None = None,
    leaders: Iterable[Mapping[str, Any]] = (),
) -> RecoveryEvidence:
    """Build :class:`RecoveryEvidence` from timeline dicts and, optionally, the ledger's records.

    The load's end keeps a fault late in the schedule, whose after-window falls past it, from being judged on
    the silence that follows the load: ``load_ended_ts`` (from the load's live lines,
    :func:`load_end_from_live`), else the first request plus ``load_duration_s`` (an estimate: Locust's run
    time starts a little before its first request, seconds on a busy machine). Unknown (both ``None``), an
    after-window with no completed request is undecided rather than passed.
    """
    ev = RecoveryEvidence.from_dict(
        {
            "faults": list(faults),
            "health": list(health),
            "observed_until": observed_until,
            "leaders": list(leaders),
        }
    )
    if records is None:
        return ev
    served = served_requests(records)
    first = min((s.start for s in served), default=None)
    if load_ended_ts is None and first is not None and load_duration_s is not None:
        load_ended_ts = first + load_duration_s
    return RecoveryEvidence(
        faults=ev.faults,
        health=ev.health,
        requests=tuple(served),
        observed_until=ev.observed_until,
        load_ended_ts=load_ended_ts,
        leaders=ev.leaders,
    )


def load_end_from_live(lines: Iterable[Mapping[str, Any]]) -> float | None:
    """When the load stopped, from its per-second live lines (``loadgen.stats``: every process writes one
    line per second from its test's start to its stop, zero-filled, the last one for the second in which
    it stopped): the start of the latest such second, a moment the load was still running. None without
    lines."""
    seconds = []
    for line in lines:
        ts = line.get("ts")
        if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
            seconds.append(float(int(ts)))
    return max(seconds, default=None)
