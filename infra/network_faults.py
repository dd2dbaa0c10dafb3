"""How each fault kind of the gate config runs on AWS: its FIS template and the values the template takes,
the kinds FIS cannot run (refused at synth, naming the field and why), and the rule FIS puts on the
schedule.

The actions, their parameters and permissions are the AWS FIS Actions reference's
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html).

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
- ``hang``: FIS has no action that freezes a task's process without killing it (the FIS actions reference:
  ``aws:ecs:task-kill-process`` sends ``SIGTERM`` or ``SIGKILL``, which is a ``stop_task``), so a hang
  freezes the service's traffic instead: ``aws:ecs:task-network-blackhole-port`` on ``PERCENT(percent)`` of
  the service's tasks, ingress TCP on the fault's ``port`` (the port the service serves on, required on
  AWS: refused naming ``faults.<name>.port`` without it), for ``duration_s``. Nothing answers and nothing
  is killed; its egress (its database, its Kafka) goes on, which a SIGSTOP would freeze too.
- ``kafka_latency``: FIS has no latency action for MSK brokers, so the latency is added where the clients
  run: ``aws:ecs:task-network-latency`` on every task of the target (its target tags and cluster: every
  service of the target is a Kafka client here), ``delayMilliseconds`` = ``rtt_ms``, ``sources`` = the
  broker: the bootstrap host of MSK broker ``broker`` (``b-<broker>.…``), else every bootstrap host (a synth
  warning says so). The target's services must run on ECS (refused naming ``target.aws.services``
  otherwise) and the bootstrap must be known (``context.kafka_bootstrap``).
- ``duplicate_delivery``, ``db_blip``, ``kafka_broker_down``, ``leader_loss``: the data-path faults, planned
  by :func:`infra.data_faults.plan_data_fault` (SSM automation, RDS reboot or Aurora failover; a leader loss
  reboots or fails over the lease store, the target's database).
- ``leader_loss``, ``mode: partition``: ``aws:ecs:task-network-blackhole-port`` on ALL the target
  service's tasks, egress TCP on the lease store's port (the fault's ``lease_port``, default Postgres's
  5432), for ``duration_s`` (``task_network_blackhole_port.json``). FIS cannot pick the task that leads (its
  ``/health``), so every replica loses the store while its sessions stay open (a reboot would end them):
  the leader cannot renew and must pause, and after the heal a replica takes the expired lease with the
  next token, while a leader that trusts a lease it has not renewed (``unfenced_leader``) leads on through
  the cut (recovery: ``stale_heartbeat``) and, when a standby took the lease meanwhile, beside it
  (``split_brain``; tests/integration/test_matcher_lease.py, tests/rehearsal). A synth warning says every
  replica is cut, not the leader alone. It is a network action like the others: one at a time, and the
  target's task definitions must be ready for it (README, "What the target must provide").
- ``bandwidth``, ``connection_reset``, ``rate_limit_spike``: no FIS action can run them
  (:data:`REFUSED_ON_AWS` says why): refused at synth, a ConfigError naming ``faults.<name>.kind``,
  rather than skipped: a gate that silently ran fewer faults on AWS than in its config would pass more
  easily there.
- ``overload`` with ``factor``: no FIS action; a step of the Fargate load task's own load shape
  (:class:`LoadStep`): the state machine hands the run profile's steps to the task
  (``RESGATE_LOAD_SHAPE``), the task's Locust multiplies its users for ``duration_s``, and the timeline step
  reads the shape's fault rows from the load's uploaded ``load_shape.jsonl``. No stop condition can shorten
  it (there is no experiment): it ends after its ``duration_s``. With ``rps`` (an open-loop
  burst, a process beside the local load): refused at synth, a ConfigError naming ``faults.<name>.rps``.

``direction`` is not used on AWS: FIS acts on the task's traffic (egress, or ingress for a blackhole of
``clients``). A network fault holds for its ``duration_s`` (the action's ``duration``), then the experiment
watches its stop conditions through the observation window like every other.

FIS runs the three network actions (so ``hang`` and ``kafka_latency`` too) one at a time (the ECS agent
refuses a second network fault on a task while one runs): :func:`check_network_schedule` refuses a schedule in
which two network faults would hold at once, or closer than :data:`NETWORK_ACTION_GAP_S` (10 s: the ECS fault
endpoints take one request per 5 s per container and answer 409 to a conflicting fault, and FIS's SSM document
can run a few seconds past the action's duration), naming both faults.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.data_faults import DATA_FAULT_KINDS, FaultResources, leader_partition, plan_data_fault
from resgate.config.model import Fault
from resgate.contract.errors import ConfigError

NETWORK_ACTIONS = {
    "network_partition": "aws:ecs:task-network-blackhole-port",
    "network_latency": "aws:ecs:task-network-latency",
    "packet_loss": "aws:ecs:task-network-packet-loss",
    "hang": "aws:ecs:task-network-blackhole-port",
    "kafka_latency": "aws:ecs:task-network-latency",
}
TEMPLATE_FILES = {
    "stop_task": "stop_task.json",
    "network_partition": "task_network_blackhole_port.json",
    "network_latency": "task_network_latency.json",
    "packet_loss": "task_network_packet_loss.json",
    "zone_loss": "zone_loss.json",
    "hang": "task_network_blackhole_port.json",
    "kafka_latency": "task_network_latency.json",
}
# Kinds no FIS action can run: a config that has one is refused at synth (faults.<name>.kind), with why.
REFUSED_ON_AWS = {
    "bandwidth": "FIS has no bandwidth limit for ECS tasks (its ECS task network actions are blackhole-port, "
    "latency and packet-loss)",
    "connection_reset": "FIS has no action that resets an ECS task's connections (its network actions drop "
    "or delay packets)",
    "rate_limit_spike": "the gate has no edge mechanism on AWS: FIS cannot make the ALB answer 429s",
}
# Kinds skipped and reported at synth (none today: every kind runs on AWS or is refused).
NO_FIS_ACTION: dict[str, str] = {}
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
    (``service_tags``), the kind's own placeholder ``values`` and the template's ``description``;
    ``acts_on``: the ECS services whose tasks a network action runs in, when not only ``service``."""

    fault: Fault
    template_file: str
    service: str
    percent: int
    selection_mode: str
    service_tags: dict[str, str]
    values: dict[str, Any]
    description: str
    warnings: list[str] = field(default_factory=list)
    acts_on: tuple[str, ...] = ()

    @property
    def network(self) -> bool:
        return network_action(self.fault) is not None

    @property
    def task_services(self) -> tuple[str, ...]:
        """The ECS services whose tasks the fault's action runs in (``()`` for a data-path fault)."""
        if not self.network:
            return ()
        return self.acts_on or (self.service,)


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


def network_action(fault: Fault) -> str | None:
    """The FIS ECS network action ``fault`` runs as on AWS (:data:`NETWORK_ACTIONS`; a leader loss's
    partition: the blackhole of its lease store's port), None when it runs none."""
    if leader_partition(fault):
        return NETWORK_ACTIONS["network_partition"]
    return NETWORK_ACTIONS.get(fault.kind)


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
    :class:`ConfigError` naming the field for a kind no FIS action runs (:func:`refusal`), a fault AWS would
    run differently than configured (``mode: refuse``) or cannot target (no service, no port, no database,
    no bootstrap brokers). ``service_tag`` is the ECS managed tag of the service name
    (``aws:ecs:serviceName``); ``resources`` what the data-path faults and ``kafka_latency`` act on."""
    kind = fault.kind
    refused = refusal(fault)
    if refused is not None:
        raise refused
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
    if leader_partition(fault):
        return _plan_leader_partition(fault, ecs_services, service_tag)
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
    if kind not in TEMPLATE_FILES:  # a kind added to the schema without its AWS form: refused, never skipped
        raise ConfigError(
            f"fault {fault.name} ({kind}) has no AWS implementation in infra.network_faults; run it in the "
            "local gate only",
            where=_where(fault, "kind"),
        )

    def ecs(name: str | None) -> str:
        service = ecs_services.get(name or "", name or "")
        if not service:
            raise ConfigError(f"a {kind} fault needs a target service", where=_where(fault, "target"))
        return service

    p = fault.params
    if kind == "stop_task":
        percent = _percent_of_tasks(fault)
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
    if kind == "hang":
        return _plan_hang(fault, ecs(fault.target), service_tag)
    if kind == "kafka_latency":
        return _plan_kafka_latency(fault, ecs(fault.target), ecs_services, resources or FaultResources())
    return _plan_network(fault, ecs(p.get("service")), service_tag)


LEADER_HEALTH_PATH = "/health"
"""A ``leader_loss``'s health path on AWS when the fault gives no ``health_path``."""


def refusal(fault: Fault) -> ConfigError | None:
    """The ConfigError that refuses ``fault`` on AWS whatever the deployment (a kind no FIS action runs, a
    hang with no port to freeze), naming the field and why; None when AWS can run it."""
    if fault.kind in REFUSED_ON_AWS:
        return ConfigError(
            f"fault {fault.name} ({fault.kind}) cannot run on AWS: {REFUSED_ON_AWS[fault.kind]}; run it in "
            "the local gate only (a config without it for AWS)",
            where=_where(fault, "kind"),
        )
    if fault.kind == "hang" and fault.params.get("port") is None:
        return ConfigError(
            f"fault {fault.name} (hang) freezes {fault.target}'s traffic on AWS: FIS cannot freeze a process "
            "(aws:ecs:task-kill-process only sends SIGTERM or SIGKILL), so it drops the packets of the port "
            f"{fault.target} serves on (aws:ecs:task-network-blackhole-port, ingress); give port: <it>",
            where=_where(fault, "port"),
        )
    if fault.kind == "leader_loss" and fault.params.get("port") is None:
        return ConfigError(
            f"fault {fault.name} (leader_loss) is watched on AWS by the load task, which samples the leader "
            f"figure of every {fault.target} task at its private address around the lease store's reboot; "
            f"give port: <{fault.target}'s health port> (and health_path: <path>, default "
            f"{LEADER_HEALTH_PATH})",
            where=_where(fault, "port"),
        )
    return None


def check_refused(faults: Sequence[Fault]) -> None:
    """Raise the first fault's :func:`refusal` (read with the deployment settings, before any construct)."""
    for f in faults:
        refused = refusal(f)
        if refused is not None:
            raise refused


def _percent_of_tasks(fault: Fault) -> int:
    percent = round(float(fault.params.get("percent", 50)))
    if not 1 <= percent <= 100:
        raise ConfigError(
            f"FIS selects PERCENT(1..100) of the tasks, got {fault.params.get('percent')!r}",
            where=_where(fault, "percent"),
        )
    return percent


def _plan_hang(fault: Fault, service: str, service_tag: str) -> AwsFault:
    p = fault.params
    percent = _percent_of_tasks(fault)
    hold = float(p["duration_s"])
    port = int(p["port"])
    return AwsFault(
        fault=fault,
        template_file=TEMPLATE_FILES["hang"],
        service=service,
        percent=percent,
        selection_mode=f"PERCENT({percent})",
        service_tags={service_tag: service},
        values={
            "DURATION": hold_duration(hold, where=_where(fault, "duration_s")),
            "PORT": str(port),
            "TRAFFIC_TYPE": "ingress",
        },
        description=f"{fault.name} freezes the traffic to TCP port {port} of {percent}% of {service} tasks "
        f"for {hold:g} s",
    )


def _plan_leader_partition(fault: Fault, ecs_services: Mapping[str, str], service_tag: str) -> AwsFault:
    """A leader loss's partition on AWS (module docstring): every task of the target cut from the lease
    store's port, egress, for ``duration_s``."""
    p = fault.params
    service = ecs_services.get(fault.target or "", fault.target or "")
    if not service:
        raise ConfigError(
            f"fault {fault.name} (leader_loss) cuts the tasks of its target from the lease store on AWS: "
            "it needs a target service",
            where=_where(fault, "target"),
        )
    hold = float(p["duration_s"])
    port = int(p.get("lease_port", DEPENDENCY_PORTS["postgres"]))
    return AwsFault(
        fault=fault,
        template_file=TEMPLATE_FILES["network_partition"],
        service=service,
        percent=100,
        selection_mode="ALL",
        service_tags={service_tag: service},
        values={
            "DURATION": hold_duration(hold, where=_where(fault, "duration_s")),
            "PORT": str(port),
            "TRAFFIC_TYPE": "egress",
        },
        description=f"{fault.name} drops egress TCP port {port} (the lease store) of every {service} task "
        f"for {hold:g} s",
        warnings=[
            f"fault {fault.name} (leader_loss) mode partition cuts every {service} task from the lease store "
            f"on AWS (aws:ecs:task-network-blackhole-port, egress TCP port {port}), not the leader alone: "
            "FIS cannot pick the task that leads"
        ],
    )


def broker_hosts(bootstrap: str, broker: int) -> tuple[list[str], bool]:
    """``(hosts, one)``: the bootstrap host of MSK broker ``broker`` (MSK names them ``b-<id>.…``) and True,
    else every host of the bootstrap list (ports dropped: FIS ``sources`` are addresses) and False."""
    hosts = [h.strip().rsplit(":", 1)[0] for h in bootstrap.split(",") if h.strip()]
    named = [h for h in hosts if h.startswith(f"b-{broker}.")]
    return (named, True) if named else (hosts, False)


def _plan_kafka_latency(
    fault: Fault, service: str, ecs_services: Mapping[str, str], resources: FaultResources
) -> AwsFault:
    p = fault.params
    clients = tuple(sorted(set(ecs_services.values())))
    if not clients:
        raise ConfigError(
            f"fault {fault.name} (kafka_latency) adds latency on AWS where the Kafka clients run, their ECS "
            "tasks (FIS has no latency action for MSK brokers): the target names no ECS service",
            where="target.aws.services",
        )
    if not resources.kafka_bootstrap:
        raise ConfigError(
            f"fault {fault.name} (kafka_latency) delays the clients' traffic to the brokers on AWS: the "
            "stack needs the bootstrap brokers (their addresses are the latency's sources)",
            where="context.kafka_bootstrap",
        )
    rtt = round(float(p["rtt_ms"]))
    if rtt < 1:
        raise ConfigError(
            f"aws:ecs:task-network-latency delays by at least 1 ms, got {p['rtt_ms']!r}",
            where=_where(fault, "rtt_ms"),
        )
    broker = int(p.get("broker", 1))
    hosts, one = broker_hosts(resources.kafka_bootstrap, broker)
    warnings = (
        []
        if one
        else [
            f"fault {fault.name} (kafka_latency) delays every bootstrap broker on AWS ({', '.join(hosts)}), "
            f"not only broker {broker}: no bootstrap host is named b-{broker}.…"
        ]
    )
    hold = float(p["duration_s"])
    return AwsFault(
        fault=fault,
        template_file=TEMPLATE_FILES["kafka_latency"],
        service=service,
        percent=100,
        selection_mode="ALL",
        # Every task of the target (its tags and cluster): each of its services is a Kafka client.
        service_tags={},
        values={
            "DURATION": hold_duration(hold, where=_where(fault, "duration_s")),
            "DELAY_MS": str(rtt),
            "JITTER_MS": "0",
            "SOURCES": ",".join(hosts),
        },
        description=f"{fault.name} delays the Kafka clients' traffic to "
        f"{f'broker {broker}' if one else 'the brokers'} by {rtt} ms for {hold:g} s",
        warnings=warnings,
        acts_on=clients,
    )


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
    if network_action(fault) is None:
        return None
    return fault.at_s, fault.at_s + float(fault.params.get("duration_s", 0))


def check_network_schedule(faults: Sequence[Fault], *, where: str = "faults") -> None:
    """Refuse two network faults that FIS would have to run at once: each must start at least
    :data:`NETWORK_ACTION_GAP_S` after the previous one ends. The error names both faults; ``where``
    says which schedule (the config's faults, a profile's)."""
    held = sorted(
        ((w, f) for f in faults if (w := network_window(f)) is not None),
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
