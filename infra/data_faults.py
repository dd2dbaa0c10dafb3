"""How the data-path faults of the gate config run on AWS (issue 21): each one an FIS experiment like the
task and network faults (:mod:`infra.network_faults`), so it fires at its ``at_s`` with the guardrail stop
conditions and its timeline.

- ``duplicate_delivery``: ``aws:ssm:start-automation-execution`` of the gate's redeliver automation
  (:mod:`infra.fault_automation`), which invokes the redeliver Lambda with the fault's topics, fraction and
  ``max_events`` (``fis_templates/ssm_automation.json``).
- ``db_blip``: where ``target.aws.database`` names an RDS DB ``instance``, ``aws:rds:reboot-db-instances``
  on it (``forceFailover`` = its ``force_failover``; ``rds_reboot_db_instance.json``); where it names an
  Aurora ``cluster``, ``aws:rds:failover-db-cluster`` (``rds_failover_db_cluster.json``). The target is the
  database's ARN, so FIS acts on that database only. The outage lasts as long as the reboot or failover
  (``duration_s`` is the local gate's; a synth warning says so). Without ``target.aws.database``: a
  ConfigError naming that field.
- ``kafka_broker_down``: ``aws:ssm:start-automation-execution`` of the broker-reboot automation on the MSK
  cluster ``kafka.cluster_arn`` (broker ``broker``); ``duration_s`` is the local gate's, as above.
- ``leader_loss``: FIS cannot pick a task by what its ``/health`` says (the leader) nor pause a process, so
  on AWS the leader loses its lease by losing the lease store: where the lease store is the target's
  database (``target.aws.database``, as paperbroker's matcher lease is), the same reboot or failover as
  ``db_blip``. Every replica is cut off the store at once: the leader cannot renew (it must stop acting as
  leader when its lease runs out) and, once the database is back, a replica takes the lease with a new
  fencing token. Without ``target.aws.database``: a ConfigError naming that field. ``duration_s`` as the
  local pause is the local gate's: a synth warning says the outage lasts the reboot. A ``leader_loss``
  with ``mode: partition`` is no data-path fault on AWS: it is the blackhole of the lease store's port on
  every task of the target (:mod:`infra.network_faults`), the sessions kept open. The load task watches
  the handover (:mod:`loadgen.leader_watch`, on the fault's health ``port``) until ``duration_s`` +
  ``observe_s`` after the fault.

The two RDS actions' targets are the database's ARN under the keys the FIS actions reference gives them
(``DBInstances``, resource type ``aws:rds:db``; ``Clusters``, ``aws:rds:cluster``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.fault_automation import Automation, redeliver_payload
from resgate.config.model import AwsDatabase, Fault
from resgate.contract.errors import ConfigError
from resgate.sections.kafka import KafkaSettings

DATA_FAULT_KINDS = ("duplicate_delivery", "db_blip", "kafka_broker_down", "leader_loss")
# The kinds that act on the target's database (target.aws.database).
DATABASE_FAULT_KINDS = ("db_blip", "leader_loss")
TEMPLATE_FILES = {
    "automation": "ssm_automation.json",
    "instance": "rds_reboot_db_instance.json",
    "cluster": "rds_failover_db_cluster.json",
}


@dataclass(frozen=True)
class FaultResources:
    """What the data-path faults act on: the automation documents ({kind: :class:`Automation`}), the
    target's database (``target.aws.database``) and its ARN, the MSK cluster's ARN (``kafka.cluster_arn``);
    and the bootstrap brokers (``kafka_bootstrap``), the sources of a ``kafka_latency``."""

    automations: Mapping[str, Automation] = field(default_factory=dict)
    database: AwsDatabase | None = None
    database_arn: str | None = None
    kafka_cluster_arn: str | None = None
    kafka_bootstrap: str | None = None


@dataclass(frozen=True)
class DataFaultPlan:
    """The template file, its kind-specific ``values``, the description and synth warnings of one fault."""

    template_file: str
    values: dict[str, Any]
    description: str
    warnings: list[str]


def check_data_faults(faults: Sequence[Fault], *, database: AwsDatabase | None, kafka: KafkaSettings) -> None:
    """Refuse, when the deployment settings are read (before any construct), a data-path fault whose
    target the config does not name: ``db_blip`` or ``leader_loss`` without ``target.aws.database``,
    ``kafka_broker_down`` without ``kafka.cluster_arn``. The ConfigError names that field and the fault."""
    for f in faults:
        if f.kind in DATABASE_FAULT_KINDS and database is None and not leader_partition(f):
            raise ConfigError(_no_database(f), where="target.aws.database")
        if f.kind == "kafka_broker_down" and not kafka.cluster_arn:
            raise ConfigError(_NO_MSK.format(name=f.name), where="kafka.cluster_arn")


_NO_DATABASE = (
    "fault {name} (db_blip) reboots or fails over the target's database on AWS: give "
    "target.aws.database: {{instance: <RDS DB instance id>}} (aws:rds:reboot-db-instances) or "
    "{{cluster: <Aurora DB cluster id>}} (aws:rds:failover-db-cluster)"
)
_NO_LEASE_STORE = (
    "fault {name} (leader_loss) cannot run on AWS without its lease store: FIS cannot find the leader from "
    "/health nor pause a process (aws:ecs:task-kill-process only sends SIGTERM or SIGKILL), so on AWS the "
    "leader loses its lease by a reboot or failover of the lease store, the target's database; give "
    "target.aws.database: {{instance: <RDS DB instance id>}} or {{cluster: <Aurora DB cluster id>}} (the "
    "database the service's lease lives in), or mode: partition (every task of the service cut from the "
    "lease store's port, aws:ecs:task-network-blackhole-port: no database needed)"
)


def leader_partition(fault: Fault) -> bool:
    """A ``leader_loss`` with ``mode: partition``: on AWS a blackhole of the lease store's port on every task
    of the target (:mod:`infra.network_faults`), not the store's reboot, so it needs no database."""
    return fault.kind == "leader_loss" and fault.params.get("mode") == "partition"


def _no_database(fault: Fault) -> str:
    return (_NO_LEASE_STORE if fault.kind == "leader_loss" else _NO_DATABASE).format(name=fault.name)


_NO_MSK = (
    "fault {name} (kafka_broker_down) reboots an MSK broker on AWS (aws:ssm:start-automation-execution → "
    "kafka:RebootBroker): give kafka.cluster_arn, the MSK cluster's ARN, or run this fault in the local "
    "gate only"
)


def _automation(fault: Fault, resources: FaultResources) -> Automation:
    doc = resources.automations.get(fault.kind)
    if doc is None:
        raise ConfigError(
            f"fault {fault.name} ({fault.kind}) runs through the gate's SSM automation on AWS, which this "
            "stack was built without (infra.fault_automation.FaultAutomation)",
            where=f"faults.{fault.name}.kind",
        )
    return doc


def _held_locally(fault: Fault, what: str, also: Sequence[str] = ()) -> list[str]:
    held = fault.params.get("duration_s")
    if not held:
        return []
    others = "".join(f" and {k}" for k in also)
    verb = "are" if also else "is"
    return [
        f"fault {fault.name} ({fault.kind}): duration_s ({held:g} s){others} {verb} the local gate's; on AWS "
        f"the outage lasts as long as {what}"
    ]


def plan_data_fault(fault: Fault, resources: FaultResources, *, max_duration: Any) -> DataFaultPlan:
    """The FIS template of a data-path fault (module docstring). ``max_duration(seconds)`` turns a bound into
    FIS's ISO-8601 duration. Raises ConfigError naming the field the kind needs when the config lacks it."""
    if fault.kind == "duplicate_delivery":
        doc = _automation(fault, resources)
        topics = ", ".join(fault.params["topics"])
        return DataFaultPlan(
            template_file=TEMPLATE_FILES["automation"],
            values={
                "DOCUMENT_ARN": doc.arn,
                "DOCUMENT_PARAMETERS": doc.parameters(Payload=redeliver_payload(fault)),
                "MAX_DURATION": max_duration(doc.max_duration_s),
            },
            description=f"{fault.name} re-publishes up to {fault.params['max_events']} events of {topics}",
            warnings=[],
        )
    if fault.kind == "kafka_broker_down":
        if not resources.kafka_cluster_arn:
            raise ConfigError(_NO_MSK.format(name=fault.name), where="kafka.cluster_arn")
        doc = _automation(fault, resources)
        broker = str(fault.params["broker"])
        return DataFaultPlan(
            template_file=TEMPLATE_FILES["automation"],
            values={
                "DOCUMENT_ARN": doc.arn,
                "DOCUMENT_PARAMETERS": doc.parameters(
                    ClusterArn=resources.kafka_cluster_arn, BrokerId=broker
                ),
                "MAX_DURATION": max_duration(doc.max_duration_s),
            },
            description=f"{fault.name} reboots MSK broker {broker}",
            warnings=_held_locally(fault, "the broker's reboot"),
        )
    if fault.kind in DATABASE_FAULT_KINDS:
        return _plan_database_fault(fault, resources)
    raise ValueError(f"{fault.kind} is not a data-path fault kind: {DATA_FAULT_KINDS}")


def _plan_database_fault(fault: Fault, resources: FaultResources) -> DataFaultPlan:
    """A ``db_blip`` or ``leader_loss``: the reboot of ``target.aws.database``'s instance or the failover of
    its cluster (module docstring)."""
    db = resources.database
    if db is None or not resources.database_arn:
        raise ConfigError(_no_database(fault), where="target.aws.database")
    leader = fault.kind == "leader_loss"
    what = f" (the lease store of {fault.target}: its leader loses the lease)" if leader else ""
    # observe_s is AWS's too: the load task samples the leader figures until duration_s + observe_s after
    # the fault (loadgen.leader_watch); duration_s bounds that window, the reboot the outage.
    local: list[str] = []
    if db.instance:
        return DataFaultPlan(
            template_file=TEMPLATE_FILES["instance"],
            values={
                "DATABASE_ARN": resources.database_arn,
                "FORCE_FAILOVER": "true" if db.force_failover else "false",
            },
            description=f"{fault.name} reboots DB instance {db.instance}"
            + (" through a Multi-AZ failover" if db.force_failover else "")
            + what,
            warnings=_held_locally(fault, "the instance's reboot", local),
        )
    return DataFaultPlan(
        template_file=TEMPLATE_FILES["cluster"],
        values={"DATABASE_ARN": resources.database_arn},
        description=f"{fault.name} fails Aurora cluster {db.cluster} over{what}",
        warnings=_held_locally(fault, "the cluster's failover", local),
    )


def database_arn(database: AwsDatabase | None, *, format_arn: Any) -> str | None:
    """The ARN of ``target.aws.database`` (``…:rds:<region>:<account>:db:<id>`` or ``…:cluster:<id>``),
    built by ``format_arn(resource, name)`` (the stack's); None without a database."""
    if database is None:
        return None
    if database.instance:
        return str(format_arn("db", database.instance))
    return str(format_arn("cluster", database.cluster))
