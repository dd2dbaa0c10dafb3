"""Parsing of the gate config's ``faults[]`` entries: each kind's fields, validated against the target's
services, the load's window and the embedded infrastructure, naming the field and line on error."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resgate.config.model import (
    FAULT_KINDS,
    MAX_LOAD_USERS,
    NETWORK_DEPENDENCIES,
    NETWORK_FAULT_KINDS,
    Fault,
    Infra,
    Load,
    Target,
)
from resgate.contract.shape import MAX_FACTOR as SHAPE_MAX_FACTOR
from resgate.contract.shape import ShapeStep, surge_users
from resgate.sections.fields import Section


def fault_target(sec: Section, target: Target, required: bool) -> str | None:
    """The service a fault acts on (process faults) or whose recovery it is judged by (the others,
    defaulting to the exposed service)."""
    if not required and not sec.has("target"):
        exposed = next((s.name for s in target.services if s.expose), None)
        return exposed or (target.services[0].name if target.services else None)
    name = sec.str("target")
    if target.services and target.service(name) is None:
        raise sec.error("target", f"no service named {name!r}; services: {[s.name for s in target.services]}")
    return name


def parse_fault(sec: Section, index: int, target: Target, load: Load, infra: Infra) -> Fault:
    kind = sec.str("kind")
    if kind not in FAULT_KINDS:
        raise sec.error("kind", f"unknown fault kind {kind!r}; known: {list(FAULT_KINDS)}")
    name = sec.str("name", f"{kind}-{index + 1}")
    at_s = float(sec.num("at_s", min=0))
    if at_s < load.baseline_s:
        raise sec.error(
            "at_s", f"must be at or after the baseline window (load.baseline_s = {load.baseline_s})"
        )
    if at_s >= load.duration_s:
        raise sec.error("at_s", f"must be before the end of the load (load.duration_s = {load.duration_s})")
    params: dict[str, Any] = {}
    if kind in NETWORK_FAULT_KINDS or kind in ("rate_limit_spike", "zone_loss"):
        tgt = _parse_network_fault(sec, kind, target, params)
        sec.done()
        return Fault(name=name, kind=kind, at_s=at_s, target=tgt, params=params)
    if kind == "overload":
        tgt = _parse_overload(sec, target, load, at_s, params)
        sec.done()
        return Fault(name=name, kind=kind, at_s=at_s, target=tgt, params=params)
    tgt = fault_target(sec, target, kind in ("stop_task", "hang", "leader_loss"))
    if kind == "leader_loss":
        # pause: SIGSTOP the replica that leads now (found from its /health) for duration_s; it cannot
        # renew its lease, a standby must take over, and on its resume it must not lead again unbidden.
        # partition: hold every byte between that replica and Postgres (its lease store) for duration_s,
        # through a proxy of its own; it runs on and must notice, and its stalled writes land after the heal
        params["mode"] = sec.str("mode", "pause", choices=LEADER_LOSS_MODES)
        if params["mode"] == "partition":
            _check_lease_path(sec, target, tgt)
        params["duration_s"] = float(sec.num("duration_s", min=0.5))
        params["observe_s"] = float(sec.num("observe_s", 10.0, min=1, max=120))
        # On AWS (infra.network_faults.refusal): the load task samples the target's tasks' leader figure
        # at their private addresses, on this port (the health port) and path; the local gate ignores them.
        if sec.has("port"):
            params["port"] = sec.num("port", min=1, max=65535, integer=True)
        # On AWS a partition drops this TCP port (the lease store's) on every task of the target (FIS
        # aws:ecs:task-network-blackhole-port, egress; infra.network_faults); default Postgres's 5432.
        if sec.has("lease_port"):
            if params["mode"] != "partition":
                raise sec.error("lease_port", "only mode: partition cuts the lease store's port")
            params["lease_port"] = sec.num("lease_port", min=1, max=65535, integer=True)
        if sec.has("health_path"):
            path = sec.str("health_path")
            if not path.startswith("/"):
                raise sec.error("health_path", f"must be a path starting with '/', got {path!r}")
            params["health_path"] = path
    if kind in ("stop_task", "hang"):
        params["percent"] = float(sec.num("percent", 50.0, min=0, max=100))
    if kind in ("hang", "db_blip", "kafka_broker_down", "kafka_latency"):
        params["duration_s"] = float(sec.num("duration_s", min=0))
    if kind == "hang" and sec.has("port"):  # on AWS: the port FIS freezes (infra.network_faults)
        params["port"] = sec.num("port", min=1, max=65535, integer=True)
    if kind in ("kafka_broker_down", "kafka_latency"):
        params["broker"] = sec.num("broker", 1, min=1, max=infra.kafka_brokers, integer=True)
    if kind == "kafka_latency":
        params["rtt_ms"] = sec.num("rtt_ms", min=0, max=60_000, integer=True)
    if kind == "duplicate_delivery":
        topics = sec.str_list("topics")
        if not topics:
            raise sec.error("topics", "must name at least one topic")
        params["topics"] = topics
        params["fraction"] = float(sec.num("fraction", 0.05, min=0, max=1))
        params["max_events"] = sec.num("max_events", 500, min=1, integer=True)
    sec.done()
    return Fault(name=name, kind=kind, at_s=at_s, target=tgt, params=params)


LEADER_LOSS_MODES = ("pause", "partition")


def _check_lease_path(sec: Section, target: Target, service: str | None) -> None:
    """A ``partition`` cuts a replica's own path to Postgres: the target must be a local service that
    reaches its lease store through ``${pg.dsn}`` (the placeholder the gate can route through a proxy)."""
    svc = target.service(service) if service else None
    if svc is None:
        raise sec.error("mode", "a partition from the lease store needs a local service as its target")
    if not any("${pg.dsn}" in part for part in (*svc.command, *svc.env.values())):
        raise sec.error(
            "mode",
            f"a partition from the lease store needs {service!r} to reach Postgres through ${{pg.dsn}}"
            " (in its command or env), the address the gate routes through a proxy per replica",
        )


def _parse_network_fault(sec: Section, kind: str, target: Target, params: dict[str, Any]) -> str | None:
    """Fill ``params`` for a network, edge or zone fault; returns the service its recovery is judged by."""
    exposed = next((s.name for s in target.services if s.expose), None)
    if kind == "zone_loss":
        params["zone"] = sec.str("zone")
        tgt = fault_target(sec, target, False) if sec.has("target") else None
        zoned = [s for s in target.services if params["zone"] in s.zones and (tgt is None or s.name == tgt)]
        if target.services and not zoned:
            raise sec.error("zone", f"no service has zone {params['zone']!r} (set zones: [...] on a service)")
        params["services"] = [s.name for s in zoned]
        return tgt or exposed or (zoned[0].name if zoned else None)
    if kind == "rate_limit_spike":
        if target.services and exposed is None:
            raise sec.error("kind", "a rate-limit spike needs an exposed service (the edge answers the 429s)")
        params["percent"] = float(sec.num("percent", 50.0, min=1, max=100))
        params["duration_s"] = float(sec.num("duration_s", min=0.1))
        params["retry_after_s"] = sec.num("retry_after_s", 1, min=1, max=60, integer=True)
        return exposed
    between = sec.str_list("between", [exposed or "", "clients"])
    if len(between) != 2 or between[1] not in NETWORK_DEPENDENCIES:
        raise sec.error("between", f"must be [service, one of {list(NETWORK_DEPENDENCIES)}], got {between!r}")
    service, dependency = between
    if target.services and target.service(service) is None:
        raise sec.error(
            "between", f"no service named {service!r}; services: {[s.name for s in target.services]}"
        )
    if dependency == "clients" and target.services and service != exposed:
        raise sec.error("between", f"only the exposed service ({exposed!r}) has clients on this machine")
    params["service"], params["dependency"] = service, dependency
    params["direction"] = sec.str("direction", "both", choices=("both", "upstream", "downstream"))
    if kind == "connection_reset":
        params["duration_s"] = float(sec.num("duration_s", 0.0, min=0))
        return service
    params["duration_s"] = float(sec.num("duration_s", min=0.1))
    if kind == "network_partition":
        params["mode"] = sec.str("mode", "hang", choices=("hang", "refuse"))
        if sec.has("port"):  # on AWS: the port FIS's blackhole drops (infra.network_faults)
            params["port"] = sec.num("port", min=1, max=65535, integer=True)
    elif kind == "network_latency":
        params["delay_ms"] = float(sec.num("delay_ms", min=100, max=5000))
        params["jitter_ms"] = float(sec.num("jitter_ms", 0.0, min=0, max=params["delay_ms"]))
    elif kind == "packet_loss":
        params["percent"] = float(sec.num("percent", min=5, max=50))
    elif kind == "bandwidth":
        params["kbps"] = float(sec.num("kbps", min=1, max=10_000_000))
    if kind in ("network_latency", "packet_loss") and sec.has("sources"):
        params["sources"] = _aws_sources(sec)
    return service


OVERLOAD_MAX_RPS = 5000
OVERLOAD_MAX_IN_FLIGHT = 1000
"""The machine's budget for a burst: sockets open at once (each an fd on both sides of 127.0.0.1)."""
OVERLOAD_END_MARGIN_S = 3.0
"""A burst and its last deadline end this long before the load does, so its recovery is observed."""
OVERLOAD_FORMS = ("rps", "factor")


def _parse_overload(
    sec: Section, target: Target, load: Load, at_s: float, params: dict[str, Any]
) -> str | None:
    """``overload``, in one of two forms (exactly one of ``rps`` and ``factor``):

    - ``rps``: an open-loop burst of ``rps`` order requests for ``duration_s`` against the exposed service
      (:mod:`resgate.local.burst`, a process beside the load), each with a ``timeout_s`` deadline, at most
      ``max_in_flight`` at once (the machine's budget); it must end, deadline included, before the load does;
    - ``factor``: the load's own users multiplied by ``factor`` for ``duration_s`` through the load's shape
      (:mod:`resgate.contract.shape`; ``spawn_rate``: how fast the extra users start, default all within a
      second); users × factor must stay within the users budget (:data:`MAX_LOAD_USERS`), and the window
      must end before the load does."""
    exposed = next((s.name for s in target.services if s.expose), None)
    if target.services and exposed is None:
        raise sec.error("kind", "an overload needs an exposed service (the burst's clients call it)")
    given = [k for k in OVERLOAD_FORMS if sec.has(k)]
    if len(given) != 1:
        key = given[-1] if given else "rps"
        raise sec.error(
            key,
            "an overload takes exactly one of rps (an open-loop burst beside the load) and factor (the "
            f"load's users multiplied), got {given or 'neither'}",
        )
    params["duration_s"] = float(sec.num("duration_s", min=0.5, max=120))
    if given == ["factor"]:
        params["factor"] = float(sec.num("factor", min=1.1, max=SHAPE_MAX_FACTOR))
        users = surge_users(load.users, params["factor"])
        if users > MAX_LOAD_USERS:
            raise sec.error(
                "factor",
                f"load.users ({load.users}) x factor ({params['factor']:g}) = {users} users exceeds the "
                f"users budget ({MAX_LOAD_USERS})",
            )
        params["users"] = users
        if sec.has("spawn_rate"):
            params["spawn_rate"] = float(sec.num("spawn_rate", min=0.1, max=MAX_LOAD_USERS))
        end = at_s + params["duration_s"] + OVERLOAD_END_MARGIN_S
        if end > load.duration_s:
            raise sec.error(
                "duration_s",
                f"the surge (at_s {at_s:g} + duration_s + {OVERLOAD_END_MARGIN_S:g} s) must end by the "
                f"load's end (load.duration_s = {load.duration_s:g}), got {end:g}",
            )
        return exposed
    params["rps"] = float(sec.num("rps", min=1, max=OVERLOAD_MAX_RPS))
    params["timeout_s"] = float(sec.num("timeout_s", 3.0, min=0.1, max=60))
    params["max_in_flight"] = sec.num("max_in_flight", 400, min=1, max=OVERLOAD_MAX_IN_FLIGHT, integer=True)
    end = at_s + params["duration_s"] + params["timeout_s"] + OVERLOAD_END_MARGIN_S
    if end > load.duration_s:
        raise sec.error(
            "duration_s",
            f"the burst (at_s {at_s:g} + duration_s + timeout_s + {OVERLOAD_END_MARGIN_S:g} s) must end by "
            f"the load's end (load.duration_s = {load.duration_s:g}), got {end:g}",
        )
    return exposed


def shape_steps(faults: Iterable[Fault]) -> list[ShapeStep]:
    """The load shape's steps: one per ``overload`` fault in its ``factor`` form, in schedule order."""
    return [
        ShapeStep(
            name=f.name,
            at_s=f.at_s,
            duration_s=f.params["duration_s"],
            factor=f.params["factor"],
            target=f.target or "",
            spawn_rate=f.params.get("spawn_rate"),
        )
        for f in sorted(faults, key=lambda f: f.at_s)
        if f.kind == "overload" and "factor" in f.params
    ]


def _aws_sources(sec: Section) -> list[str]:
    """``sources``: on AWS, the addresses FIS limits latency or loss to (IPv4 addresses, CIDR blocks,
    domain names, ``DYNAMODB`` or ``S3``); the local fault proxies ignore it."""
    sources = sec.str_list("sources")
    bad = [s for s in sources if not s or "," in s or " " in s]
    if not sources or bad:
        raise sec.error(
            "sources", f"must be a non-empty list of addresses without ',' or spaces, got {sources!r}"
        )
    return sources
