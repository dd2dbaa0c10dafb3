"""Preflight of the quiesce step's consumer groups against the ones the target's services say they use.

Quiesce waits until every group in ``quiesce.consumer_groups`` has zero lag (:mod:`resgate.evidence.quiesce`).
A name that nobody commits to never drains (its committed offsets stay at 0), so the run waits the whole
``timeout_s`` and integrity and replay then fail closed as unknown; a group of the target that the list
leaves out is not waited for, so the checks may judge state that has not settled. Both are easy to get
wrong when the names depend on the target's settings: paperbroker's matcher with ``PB_SYMBOL_GROUPS=N``
(N > 1) commits each symbol group's progress to ``paperbroker-matcher.<group>`` instead of
``paperbroker-matcher``.

So a service may name on its ``/health`` JSON the consumer groups it commits to and the topics each reads:
``consumer_groups: {group: [topic, ...]}`` (``{}`` for a service that consumes nothing; paperbroker's
services all do). After the local target has started and before the load, :func:`preflight_consumer_groups`
reads them from every running replica and :func:`quiesce_group_errors` judges the list against them, a
ConfigError naming the field of each problem (all of them at once):

- a service names groups and the list holds only some of them (``quiesce.consumer_groups``: which ones
  are missing). A service none of whose groups is listed is left alone (its lag is not waited for, a
  choice some gates make, e.g. for a projector a fault kills);
- a listed group's ``topics`` lack a topic its service reads in that group
  (``quiesce.consumer_groups[i].topics``);
- a listed group that no replica names, when every service of the target answered with its groups, so
  that the target's whole set is known (``quiesce.consumer_groups[i].group``). A target whose services
  do not name their groups is not judged (nothing changes for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resgate.config.model import ConsumerGroup, GateConfig
from resgate.contract.errors import ConfigError, ConfigErrors
from resgate.runner.leader import probe

FIGURE = "consumer_groups"
"""The /health field that names a service's consumer groups: ``{group: [topic, ...]}``."""

Advertised = Mapping[str, Mapping[str, Sequence[str]] | None]
"""``{service: {group: topics} or None}``: what each service's replicas named (None: no replica named any,
or none answered)."""


def advertised_groups(body: Mapping[str, Any] | None) -> dict[str, list[str]] | None:
    """The ``{group: [topic, ...]}`` a /health body names, or None when it names none (no body, no
    ``consumer_groups`` field, or one not shaped that way)."""
    raw = (body or {}).get(FIGURE)
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, list[str]] = {}
    for group, topics in raw.items():
        if not isinstance(group, str) or not isinstance(topics, list):
            return None
        out[group] = [str(t) for t in topics]
    return out


def _owners(advertised: Advertised) -> dict[str, tuple[str, list[str]]]:
    """``{group: (service, topics)}`` over every service that named its groups."""
    return {g: (svc, list(t)) for svc, groups in advertised.items() for g, t in (groups or {}).items()}


def _named(advertised: Advertised) -> str:
    """``matcher: a, b; projector: c`` (services that named none left out)."""
    parts = [
        f"{svc}: {', '.join(sorted(gs)) or '(none)'}" for svc, gs in advertised.items() if gs is not None
    ]
    return "; ".join(parts)


def quiesce_group_errors(listed: Sequence[ConsumerGroup], advertised: Advertised) -> list[ConfigError]:
    """The problems of the quiesce list ``listed`` against the groups the services named (see the module),
    each a ConfigError naming its field, in the order: missing groups of a partly listed service, missing
    topics, unused names. Empty when the list is right (or nothing was named)."""
    owners = _owners(advertised)
    names = {cg.group for cg in listed}
    errors: list[ConfigError] = []
    for svc, groups in advertised.items():
        own = sorted(groups or {})
        missing = [g for g in own if g not in names]
        if missing and len(missing) < len(own):
            errors.append(
                ConfigError(
                    f"service {svc!r} commits to consumer groups {', '.join(own)} (its /health names"
                    f" them); quiesce waits only for some: add {', '.join(missing)}",
                    where="quiesce.consumer_groups",
                )
            )
    for i, cg in enumerate(listed):
        if cg.group not in owners:
            continue
        svc, topics = owners[cg.group]
        lacking = [t for t in topics if t not in cg.topics]
        if lacking:
            errors.append(
                ConfigError(
                    f"service {svc!r} reads {', '.join(lacking)} in consumer group {cg.group!r}; list"
                    " every topic the group reads, or its lag there is not waited for",
                    where=f"quiesce.consumer_groups[{i}].topics",
                )
            )
    complete = bool(advertised) and all(groups is not None for groups in advertised.values())
    for i, cg in enumerate(listed):
        if complete and cg.group not in owners:
            errors.append(
                ConfigError(
                    f"no service of the target commits to consumer group {cg.group!r}, so its lag never"
                    f" reaches 0 and quiesce would wait its whole timeout; the services name theirs on"
                    f" /health: {_named(advertised)}",
                    where=f"quiesce.consumer_groups[{i}].group",
                )
            )
    return errors


def advertised_by(sup: Any, services: Sequence[str]) -> dict[str, dict[str, list[str]] | None]:
    """``{service: {group: topics} or None}`` from the /health of every running replica of each service:
    the union of what its replicas named, None when none of them named any."""
    out: dict[str, dict[str, list[str]] | None] = {}
    for svc in services:
        named: dict[str, list[str]] | None = None
        for r in sup.replicas(svc):
            if r.pid is None or r.port is None:
                continue
            groups = advertised_groups(probe(r.port, timeout_s=2.0))
            if groups is not None:
                named = {**(named or {}), **groups}
        out[svc] = named
    return out


def preflight_consumer_groups(cfg: GateConfig, sup: Any) -> None:
    """Raise the :func:`quiesce_group_errors` problems of the config's quiesce list against what the local
    target's running replicas name on /health (see the module): the one ConfigError, or a ConfigErrors
    with each; nothing when the list is right."""
    advertised = advertised_by(sup, [s.name for s in cfg.target.services])
    errors = quiesce_group_errors(cfg.quiesce.consumer_groups, advertised)
    if len(errors) > 1:
        raise ConfigErrors(errors)
    for error in errors:
        raise error
