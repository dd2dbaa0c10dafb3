"""The timeline event's own fields (besides the run fields of :class:`lambdas.common.event.RunEvent`).

::

    {
      "cluster": "pb-cluster",                          # ECS cluster of the target services
      "services": {"gateway": "pb-gateway", ...},       # gate config name -> ECS service name
      "faults": {"kill_gateway": {"name": "kill-gateway", "kind": "stop_task", "target": "gateway"}},
      "experiments": {"kill_gateway": {"id": "EXP..."}}, # the state machine's $.experiments: started ones
      "started_at": <epoch s | ISO-8601>,               # the run's start ($$.Execution.StartTime)
      "ended_at": <epoch s | ISO-8601>                  # the end of observation ($$.State.EnteredTime)
    }

``faults`` and ``experiments`` are keyed by the fault's state key (see
:func:`infra.fault_experiments.state_key`); an experiment entry may carry more (the state machine keeps
the last polled ``state`` there), only ``id`` is read. A fault without an experiment was not started
(a guardrail tripped before it). Everything is validated before any AWS call: a bad field raises
:class:`resgate.contract.errors.ConfigError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdas.common.aws import event_time
from lambdas.common.event import RunEvent
from resgate.contract.errors import ConfigError

DEFAULT_FAULT_KIND = "stop_task"
# ECS cluster and service names (or ARNs); FIS experiment ids.
_ECS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:/_.-]{0,1023}$")
_EXPERIMENT_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


@dataclass(frozen=True)
class FaultRef:
    """A started fault: its config ``name`` (the timeline's ``fault_id``), ``kind``, ``target`` (the
    gate config's service name) and the FIS ``experiment_id``."""

    key: str
    name: str
    kind: str
    target: str
    experiment_id: str


@dataclass(frozen=True)
class TimelineInputs:
    """What the timeline reads: the cluster, the services, the started faults and the run window."""

    cluster: str
    services: dict[str, str]
    faults: tuple[FaultRef, ...]
    not_started: tuple[str, ...]
    started_at: float
    ended_at: float
    kinds: frozenset[str] = frozenset()
    """The kinds of every fault of the event, started or not."""

    @classmethod
    def from_event(cls, event: RunEvent) -> TimelineInputs:
        """Validate ``cluster, services, faults, experiments, started_at, ended_at`` (module docstring)."""
        cluster = _name(event.get("cluster"), "event.cluster")
        services = {
            _key(k, "event.services"): _name(v, f"event.services.{k}")
            for k, v in _mapping(event.get("services"), "event.services", allow_empty=True).items()
        }
        faults_in = _mapping(event.get("faults"), "event.faults", allow_empty=True)
        experiments_in = _mapping(event.get("experiments") or {}, "event.experiments", allow_empty=True)
        for key in experiments_in:
            if key not in faults_in:
                raise ConfigError(
                    f"names no fault of event.faults ({sorted(faults_in)})", where=f"event.experiments.{key}"
                )
        faults, not_started, kinds = [], [], set()
        for key, spec in faults_in.items():
            where = f"event.faults.{_key(key, 'event.faults')}"
            spec = _mapping(spec, where, allow_empty=True)
            name = _text(spec.get("name"), f"{where}.name")
            kind = _text(spec.get("kind", DEFAULT_FAULT_KIND), f"{where}.kind")
            kinds.add(kind)
            target = _text(spec.get("target"), f"{where}.target")
            if target not in services:
                raise ConfigError(
                    f"target {target!r} is not one of event.services ({sorted(services)})",
                    where=f"{where}.target",
                )
            experiment = experiments_in.get(key)
            if experiment is None:
                not_started.append(name)
                continue
            ewhere = f"event.experiments.{key}"
            experiment = _mapping(experiment, ewhere, allow_empty=True)
            eid = experiment.get("id")
            if not isinstance(eid, str) or not _EXPERIMENT_ID_RE.match(eid):
                raise ConfigError(f"must be an FIS experiment id, got {eid!r}", where=f"{ewhere}.id")
            faults.append(FaultRef(key=key, name=name, kind=kind, target=target, experiment_id=eid))
        started = event_time(event.get("started_at"), "event.started_at")
        ended = event_time(event.get("ended_at"), "event.ended_at")
        if ended <= started:
            raise ConfigError(f"must be after started_at ({started}), got {ended}", where="event.ended_at")
        return cls(
            cluster=cluster,
            services=services,
            faults=tuple(faults),
            not_started=tuple(not_started),
            started_at=started,
            ended_at=ended,
            kinds=frozenset(kinds),
        )


def _mapping(v: Any, where: str, *, allow_empty: bool = False) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"must be an object, got {type(v).__name__}", where=where)
    if not v and not allow_empty:
        raise ConfigError("must not be empty", where=where)
    return v


def _key(k: Any, where: str) -> str:
    if not isinstance(k, str) or not k:
        raise ConfigError(f"keys must be non-empty strings, got {k!r}", where=where)
    return k


def _text(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"must be a non-empty string, got {v!r}", where=where)
    return v


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _ECS_NAME_RE.match(v):
        raise ConfigError(f"must be an ECS name or ARN, got {v!r}", where=where)
    return v
