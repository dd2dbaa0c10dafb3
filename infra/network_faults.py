"""How each fault kind of the gate config runs on AWS: its FIS template and the values the template takes,
the kinds FIS cannot run (skipped and reported at synth), and the rule FIS puts on the schedule.

- ``stop_task``: ``aws:ecs:stop-task`` on ``PERCENT(percent)`` of the service's tasks (``stop_task.json``).
- ``network_partition``, ``mode: hang``: ``aws:ecs:task-network-blackhole-port`` on all of the service's
  tasks (``task_network_blackhole_port.json``): it drops the packets of one TCP port, the dependency's
  (egress: ``postgres`` 5432, ``kafka`` 9094, or the fault's ``port``) or, for ``clients``, the service's
  own ``port`` (ingress). Dropped packets are a hang: nothing answers.
- ``network_partition``, ``mode: refuse``: no FIS equivalent (FIS only drops packets, it cannot answer
  with a reset): refused at synth, a ConfigError naming ``faults.<name>.mode``, rather than run as a hang,
  which the checks would judge differently.
- ``network_latency``: ``aws:ecs:task-network-latency``, ``delayMilliseconds`` = ``delay_ms``,
  ``jitterMilliseconds`` = ``jitter_ms``, ``sources`` = the fault's ``sources`` (default ``0.0.0.0/0``:
  all the task's traffic; a synth warning says so when the fault names a dependency).
- ``packet_loss``: ``aws:ecs:task-network-packet-loss``, ``lossPercent`` = ``percent``, ``sources`` as above.
- ``zone_loss``: ``aws:ecs:stop-task`` on ``ALL`` the target's tasks (its ``target`` service's, when the
  fault names one) with the filter ``AvailabilityZone`` = the zone (``zone_loss.json``; FIS filter paths are
  PascalCase element by element, whatever the Describe output's casing); ``zone`` is an AZ name, or a
  letter appended to the stack's region (``a`` → ``<region>a``).
- ``bandwidth``, ``connection_reset``: no FIS action for ECS tasks: skipped and reported at synth.
- ``rate_limit_spike``: the gate config gives no edge mechanism on AWS (FIS cannot make an ALB answer
  429s): skipped and reported at synth.
- ``duplicate_delivery``, ``db_blip``, ``kafka_broker_down``: the data-path faults, planned by
  :func:`infra.data_faults.plan_data_fault` (SSM automation, RDS reboot or Aurora failover).
- ``hang``: no FIS action freezes a task's process (``aws:ecs:task-kill-process`` sends SIGKILL or SIGTERM,
  a ``stop_task``; SIGSTOP is not among its signals): skipped and reported; a ``network_partition`` of
  ``[service, clients]`` in ``mode: hang`` is the AWS way to make a service stop answering.
- ``overload`` with ``factor``: no FIS action; a step of the Fargate load task's own load shape
  (:class:`LoadStep`): the state machine hands the run profile's steps to the task
  (``RESGATE_LOAD_SHAPE``), the task's Locust multiplies its users for ``duration_s``, and the timeline step
  reads the shape's fault rows from the load's uploaded ``load_shape.jsonl``. No stop condition can shorten
  it (there is no experiment): it ends after its ``duration_s``. With ``rps`` (an open-loop
  burst, a process beside the local load): refused at synth, a ConfigError naming ``faults.<name>.rps``.
- ``kafka_latency``: FIS has no latency action for MSK brokers (the ECS network actions act on the
  clients' tasks: a ``network_latency`` ``between: [service, kafka]``): skipped and reported.

``direction`` is not used on AWS: FIS acts on the task's traffic (egress, or ingress for a blackhole of
``clients``). A network fault holds for its ``duration_s`` (the action's ``duration``), then the experiment
watches its stop conditions through the observation window like every other.

FIS runs the three network actions one at a time (the ECS agent refuses a second network fault on a task
while one runs): :func:`check_network_schedule` refuses a schedule in which two network faults would hold at
once, or closer than :data:`NETWORK_ACTION_GAP_S` (10 s: the ECS fault endpoints take one request per 5 s
per container and answer 409 to a conflicting fault, and FIS's SSM document can run a few seconds past the
action's duration), naming both faults.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.data_faults import DATA_FAULT_KINDS, FaultResources, plan_data_fault
from resgate.config.model import Fault
from resgate.contract.errors import ConfigError

NETWORK_ACTIONS = {
    "network_partition": "aws:ecs:task-network-blackhole-port",
    "network_latency": "aws:ecs:task-network-latency",
    "packet_loss": "aws:ecs:task-network-packet-loss",
}
TEMPLATE_FILES = {
    "stop_task": "stop_task.json",
    "network_partition": "task_network_blackhole_port.json",
    "network_latency": "task_network_latency.json",
    "packet_loss": "task_network_packet_loss.json",
    "zone_loss": "zone_loss.json",
}
NO_FIS_ACTION = {
    "bandwidth": "FIS has no bandwidth limit for ECS tasks",
    "connection_reset": "FIS has no action that resets an ECS task's connections",
    "rate_limit_spike": "the gate has no edge mechanism on AWS: FIS cannot make the ALB answer 429s",
    "hang": "no FIS action freezes a task's process (aws:ecs:task-kill-process signals SIGKILL or SIGTERM); "
    "use a network_partition between [service, clients] in mode hang on AWS",
    "kafka_latency": "FIS has no latency action for MSK brokers; use a network_latency between "
    "[service, kafka] (the ECS network action on the clients' tasks) on AWS",
    "leader_loss": "FIS cannot pick a task by what its /health says (the leader) nor pause a process "
    "(aws:ecs:task-kill-process only signals); it runs in the local gate only",
}
# The dependency ports a blackhole drops by default (the fault's ``port`` overrides): Postgres, MSK over TLS.
DEPENDENCY_PORTS = {"postgres": 5432, "kafka": 9094}
# The ECS fault-injection endpoints take one request per 5 s per container and answer 409 to a fault that
# conflicts with a running one; FIS's SSM documents can run a few seconds past the action's duration (FIS
# user guide, "Use the AWS FIS aws:ecs:task actions"). A network fault starts at least both after the
# previous one's end.
ECS_FAULT_ENDPOINT_INTERVAL_S = 5.0
SSM_DOCUMENT_OVERRUN_S = 5.0
NETWORK_ACTION_GAP_S = ECS_FAULT_ENDPOINT_INTERVAL_S + SSM_DOCUMENT_OVERRUN_S
ALL_TRAFFIC = "0.0.0.0/0"
_AZ_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")
_AZ_LETTER = re.compile(r"^[a-z]$")


@dataclass(frozen=True)
class AwsFault:
    """One fault as an FIS experiment: ``template_file`` in ``fis_templates/``, the ECS ``service`` whose
    recovery is judged, the ``selection_mode``, the ECS managed tags added to the target tags
    (``service_tags``), the kind's own placeholder ``values`` and the template's ``description``."""

    fault: Fault
    template_file: str
    service: str
    percent: int
    selection_mode: str
    service_tags: dict[str, str]
    values: dict[str, Any]
    description: str
    warnings: list[str] = field(default_factory=list)

    @property
    def network(self) -> bool:
        return self.fault.kind in NETWORK_ACTIONS


@dataclass(frozen=True)
class LoadStep:
    """A fault the load task runs itself, not FIS: an ``overload`` by ``factor``, a step of the load's shape
    (:mod:`resgate.contract.shape`; the state machine hands it to the task through its profile)."""

    fault: Fault
    description: str


OVERLOAD_RPS_ON_AWS = (
    "an open-loop burst (rps) is a process beside the local load, and on AWS the Fargate load task is the "
    "only client: give the overload a factor (the load task's users multiplied through its shape) instead"
)


@dataclass(frozen=True)
class Skipped:
    """A fault with no AWS implementation, and why."""

    fault: Fault
    reason: str


def _where(fault: Fault, key: str) -> str:
    return f"faults.{fault.name}.{key}"


def hold_duration(seconds: float, *, where: str = "duration") -> str:
    """``seconds`` rounded up to whole seconds, as FIS writes durations: ``PT5S``, ``PT1M30S``."""
    total = max(1, int(-(-float(seconds) // 1)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    out = "PT" + "".join(f"{v}{u}" for v, u in ((h, "H"), (m, "M"), (s, "S")) if v)
    if out == "PT":
        raise ConfigError(f"must be at least one second, got {seconds!r}", where=where)
    return out


def availability_zone(zone: str, region: str, *, where: str) -> str:
    """The AZ name of a ``zone_loss`` zone: an AZ name as given, or one letter appended to ``region``."""
    if _AZ_NAME.match(zone):
        return zone
    if _AZ_LETTER.match(zone):
        return f"{region}{zone}"
    raise ConfigError(
        f"on AWS a zone is an availability zone name (us-east-1a) or its letter (a), got {zone!r}",
        where=where,
    )


def plan_fault(
    fault: Fault,
    *,
    ecs_services: Mapping[str, str],
    region: str,
    service_tag: str,
    resources: FaultResources | None = None,
) -> AwsFault | LoadStep | Skipped:
    """How ``fault`` runs on AWS (an :class:`AwsFault`; a :class:`LoadStep` for an ``overload`` by
    ``factor``, which the load task runs), or why it cannot (a :class:`Skipped`). Raises
    :class:`ConfigError` naming the field for a fault AWS would run differently than configured (``mode:
    refuse``) or cannot target (no service, no port, no database). ``service_tag`` is the ECS managed tag of
    the service name (``aws:ecs:serviceName``); ``resources`` what the data-path faults act on."""
    kind = fault.kind
    if kind in NO_FIS_ACTION:
        return Skipped(fault, NO_FIS_ACTION[kind])
    if kind == "overload":
        if "factor" not in fault.params:
            raise ConfigError(OVERLOAD_RPS_ON_AWS, where=_where(fault, "rps"))
        p = fault.params
        return LoadStep(
            fault,
            f"{fault.name}: the load task's users x {p['factor']:g} ({p['users']}) from at_s {fault.at_s:g} "
            f"for {p['duration_s']:g} s (its load shape)",
        )
    if kind in DATA_FAULT_KINDS:
        plan = plan_data_fault(fault, resources or FaultResources(), max_duration=hold_duration)
        # The service whose recovery is judged (the exposed one by default); the fault does not act on it.
        service = ecs_services.get(fault.target or "", fault.target or "")
        return AwsFault(
            fault=fault,
            template_file=plan.template_file,
            service=service,
            percent=100,
            selection_mode="ALL",
            service_tags={},
            values=plan.values,
            description=plan.description,
            warnings=plan.warnings,
        )
    if kind not in TEMPLATE_FILES:
        return Skipped(fault, "it has no AWS implementation: it runs in the local gate only")

    def ecs(name: str | None) -> str:
        service = ecs_services.get(name or "", name or "")
        if not service:
            raise ConfigError(f"a {kind} fault needs a target service", where=_where(fault, "target"))
        return service

    p = fault.params
    if kind == "stop_task":
        percent = round(float(p.get("percent", 50)))
        if not 1 <= percent <= 100:
            raise ConfigError(
                f"FIS selects PERCENT(1..100) of the tasks, got {p.get('percent')!r}",
                where=_where(fault, "percent"),
            )
        service = ecs(fault.target)
        return AwsFault(
            fault=fault,
            template_file=TEMPLATE_FILES[kind],
            service=service,
            percent=percent,
            selection_mode=f"PERCENT({percent})",
            service_tags={service_tag: service},
            values={"PERCENT": percent},
            description=f"{fault.name} stops {percent}% of {service} tasks",
        )
    if kind == "zone_loss":
        az = availability_zone(str(p["zone"]), region, where=_where(fault, "zone"))
        # Without a target the zone loses every task of the target (the target tags); with one, its tasks.
        only = fault.target if fault.target and p.get("services") == [fault.target] else None
        service = ecs(fault.target)
        return AwsFault(
            fault=fault,
            template_file=TEMPLATE_FILES[kind],
            service=service,
            percent=100,
            selection_mode="ALL",
            service_tags={service_tag: service} if only else {},
            values={"AVAILABILITY_ZONE": az},
            description=f"{fault.name} stops every {'task of ' + service if only else 'target task'} in {az}",
        )
    return _plan_network(fault, ecs(p.get("service")), service_tag)


def _plan_network(fault: Fault, service: str, service_tag: str) -> AwsFault:
    p = fault.params
    hold = float(p["duration_s"])
    values: dict[str, Any] = {"DURATION": hold_duration(hold, where=_where(fault, "duration_s"))}
    dependency = p["dependency"]
    warnings: list[str] = []
    if fault.kind == "network_partition":
        if p.get("mode", "hang") != "hang":
            raise ConfigError(
                f"mode {p.get('mode')!r} has no FIS equivalent: aws:ecs:task-network-blackhole-port drops "
                "packets (mode: hang); use mode: hang on AWS, or run this fault in the local gate only",
                where=_where(fault, "mode"),
            )
        port = p.get("port", DEPENDENCY_PORTS.get(dependency))
        if port is None:
            raise ConfigError(
                f"a partition from its {dependency} needs the port {service} serves them on (FIS drops the "
                "packets of one port)",
                where=_where(fault, "port"),
            )
        values["PORT"] = str(port)
        values["TRAFFIC_TYPE"] = "ingress" if dependency == "clients" else "egress"
        what = f"drops {values['TRAFFIC_TYPE']} TCP port {port} of {service} ({dependency})"
    else:
        sources = p.get("sources")
        if not sources and dependency != "clients":
            warnings.append(
                f"fault {fault.name} ({fault.kind}) acts on all of {service}'s traffic on AWS, not only its "
                f"{dependency}: give sources: [<{dependency} addresses>] to narrow it"
            )
        values["SOURCES"] = ",".join(sources) if sources else ALL_TRAFFIC
        if fault.kind == "network_latency":
            values["DELAY_MS"] = str(round(float(p["delay_ms"])))
            values["JITTER_MS"] = str(round(float(p.get("jitter_ms", 0))))
            what = f"delays {service}'s traffic by {values['DELAY_MS']} ms"
        else:
            values["LOSS_PERCENT"] = str(round(float(p["percent"])))
            what = f"drops {values['LOSS_PERCENT']}% of {service}'s packets"
    return AwsFault(
        fault=fault,
        template_file=TEMPLATE_FILES[fault.kind],
        service=service,
        percent=100,
        selection_mode="ALL",
        service_tags={service_tag: service},
        values=values,
        description=f"{fault.name} {what} for {hold:g} s",
        warnings=warnings,
    )


def network_window(fault: Fault) -> tuple[float, float] | None:
    """``(start, end)`` seconds from the load's start while a network fault FIS runs holds; else None."""
    if fault.kind not in NETWORK_ACTIONS:
        return None
    return fault.at_s, fault.at_s + float(fault.params.get("duration_s", 0))


def check_network_schedule(faults: Sequence[Fault], *, where: str = "faults") -> None:
    """Refuse two network faults that FIS would have to run at once: each must start at least
    :data:`NETWORK_ACTION_GAP_S` after the previous one ends. The error names both faults; ``where``
    says which schedule (the config's faults, a profile's)."""
    held = sorted(
        ((w, f) for f in faults if f.kind in NETWORK_ACTIONS and (w := network_window(f)) is not None),
        key=lambda x: x[0],
    )
    for (prev_w, prev), (w, f) in itertools.pairwise(held):
        if w[0] < prev_w[1] + NETWORK_ACTION_GAP_S:
            raise ConfigError(
                f"network faults {prev.name} ({prev_w[0]:g}-{prev_w[1]:g} s) and {f.name} (from {w[0]:g} s) "
                f"would overlap on AWS: FIS runs one network action at a time, the ECS fault endpoints "
                f"take one request per {ECS_FAULT_ENDPOINT_INTERVAL_S:g} s per container (409 on a "
                f"conflicting fault) and the SSM document can run {SSM_DOCUMENT_OVERRUN_S:g} s past its "
                f"duration; start {f.name} at least {NETWORK_ACTION_GAP_S:g} s after {prev.name} ends "
                f"(at_s >= {prev_w[1] + NETWORK_ACTION_GAP_S:g})",
                where=f"{where}.{f.name}.at_s",
            )
