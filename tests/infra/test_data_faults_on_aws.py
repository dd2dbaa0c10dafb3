"""The whole fault catalogue on AWS (issue 21): ``duplicate_delivery`` (the redeliver Lambda through an SSM
automation), ``db_blip`` (an RDS reboot or an Aurora failover), ``kafka_broker_down`` (an MSK broker reboot
through an SSM automation), ``leader_loss`` (the lease store's reboot), ``hang`` (a blackhole of the service's
port) and ``kafka_latency`` (latency on the clients' tasks towards the broker), each an FIS experiment at its
``at_s`` like the task and network faults. One stack of a gate config with all of them is synthesized for the
module (with cdk-nag) and read from its CloudFormation template; every fault kind of the schema is walked
once (mapped to its action, or refused naming the field: no silent skip); the config errors name the field.

The FIS role's permissions per action are the FIS actions reference's
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html), the ones AWS's managed
policies for those actions grant (AWSFaultInjectionSimulatorRDSAccess, AWSFaultInjectionSimulatorSSMAccess:
https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSFaultInjectionSimulatorSSMAccess.html).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from infra import fis_actions
from infra.data_faults import FaultResources
from infra.fault_automation import Automation
from infra.network_faults import NO_FIS_ACTION, REFUSED_ON_AWS, AwsFault, LoadStep, Skipped, plan_fault
from infra.settings import DeploymentSettings
from infra.state_machine.faults import RDS_ACTION_BOUND_S, experiment_wait_s
from resgate.config.model import FAULT_KINDS, AwsDatabase, Fault
from resgate.contract.errors import ConfigError
from tests.infra.support.aws_rules import fis_permission_errors
from tests.infra.support.cfn import render
from tests.infra.support.synth import synthesize
from tests.infra.support.validators import fis_template_errors

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/trading/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
CONFIG = f"""
gate: {{name: pb-data}}
target:
  environment: dev
  tags: {{app: paperbroker}}
  local:
    services:
      - {{name: gateway, command: [python3], expose: true, replicas: 2}}
      - {{name: projector, command: [python3]}}
  aws:
    cluster: pb-cluster
    services: {{gateway: pb-gateway, projector: pb-projector}}
    target_tags: {{app: paperbroker}}
    database: {{instance: pb-orders-db, force_failover: true}}
kafka:
  security_protocol: SASL_SSL
  sasl_mechanism: AWS_MSK_IAM
  region: us-east-1
  cluster_arn: {CLUSTER_ARN}
load: {{users: 5, duration_s: 120, baseline_s: 5}}
faults:
  - {{name: redeliver, kind: duplicate_delivery, topics: [pb.orders, pb.executions], fraction: 0.1,
     max_events: 200, at_s: 10}}
  - {{name: db-reboot, kind: db_blip, duration_s: 5, at_s: 30}}
  - {{name: broker-2-down, kind: kafka_broker_down, broker: 2, duration_s: 10, at_s: 50}}
  - {{name: freeze, kind: hang, target: projector, port: 8080, duration_s: 3, at_s: 70}}
  - {{name: lose-leader, kind: leader_loss, target: projector, port: 8080, duration_s: 2, at_s: 85}}
  - {{name: slow-broker, kind: kafka_latency, broker: 2, rtt_ms: 200, duration_s: 5, at_s: 100}}
checks: {{integrity: false, replay: false}}
"""
DB_ARN = "arn:aws:rds:us-east-1:123456789012:db:pb-orders-db"
BOOTSTRAP = ",".join(f"b-{i}.trading.a1b2c3.c2.kafka.us-east-1.amazonaws.com:9098" for i in (1, 2, 3))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(text)
    return p


def _settings(path: Path) -> DeploymentSettings:
    context = {c.CTX_GATE_CONFIG: str(path)}
    return DeploymentSettings.from_context(context.get, root=ROOT, env={})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The data-path gate's stack, synthesized once for the module."""
    tmp = tmp_path_factory.mktemp("data")
    path = _write(tmp, CONFIG)
    return synthesize(
        tmp / "cdk.out",
        {
            c.CTX_GATE_CONFIG: str(path),
            c.CTX_ACCOUNT: "123456789012",
            c.CTX_REGION: "us-east-1",
            c.CTX_KAFKA_BOOTSTRAP: BOOTSTRAP,
        },
    )


def _templates(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for r in data["template"]["Resources"].values():
        if r["Type"] == "AWS::FIS::ExperimentTemplate":
            out[r["Properties"]["Tags"]["Name"].removeprefix("resgate-pb-data-")] = r["Properties"]
    return out


def _fault_action(props: dict[str, Any]) -> dict[str, Any]:
    (action,) = [a for a in props["Actions"].values() if a["ActionId"] != "aws:fis:wait"]
    return action


def _policies_of(data: dict[str, Any], role_fragment: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in data["template"]["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy" and any(role_fragment in str(x) for x in r["Properties"]["Roles"]):
            out += r["Properties"]["PolicyDocument"]["Statement"]
    return out


def _documents(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"]["Content"]
        for r in data["template"]["Resources"].values()
        if r["Type"] == "AWS::SSM::Document"
    ]


# ------------------------------------------------------------------------------------------ every kind
def _fault(kind: str) -> Fault:
    params: dict[str, Any] = {
        "duplicate_delivery": {"topics": ["t"], "fraction": 0.1, "max_events": 10},
        "db_blip": {"duration_s": 2.0},
        "kafka_broker_down": {"broker": 1, "duration_s": 2.0},
        "kafka_latency": {"broker": 1, "rtt_ms": 100, "duration_s": 2.0},
        "hang": {"percent": 50.0, "duration_s": 2.0, "port": 8080},
        "leader_loss": {"mode": "pause", "duration_s": 2.0, "observe_s": 10.0, "port": 8080},
        "stop_task": {"percent": 50.0},
        "zone_loss": {"zone": "a", "services": []},
        "rate_limit_spike": {"percent": 30.0, "duration_s": 5.0, "retry_after_s": 1},
        "overload": {"factor": 3.0, "duration_s": 5.0, "users": 60},
        "connection_reset": {
            "service": "gw",
            "dependency": "clients",
            "direction": "both",
            "duration_s": 0.0,
        },
        "bandwidth": {
            "service": "gw",
            "dependency": "clients",
            "direction": "both",
            "duration_s": 5,
            "kbps": 64,
        },
    }.get(
        kind,
        {
            "service": "gw",
            "dependency": "clients",
            "direction": "both",
            "duration_s": 5.0,
            "delay_ms": 100.0,
            "jitter_ms": 0.0,
            "percent": 10.0,
            "mode": "hang",
            "port": 8080,
        },
    )
    return Fault(name=f"f-{kind}", kind=kind, at_s=10, target="gw", params=params)


FULL = FaultResources(
    automations={
        k: Automation(
            arn=f"arn:aws:ssm:us-east-1:123456789012:document/{k}", role_arn="arn:role", max_duration_s=180
        )
        for k in ("duplicate_delivery", "kafka_broker_down")
    },
    database=AwsDatabase(cluster="pb-aurora"),
    database_arn="arn:aws:rds:us-east-1:123456789012:cluster:pb-aurora",
    kafka_cluster_arn=CLUSTER_ARN,
    kafka_bootstrap="b-1.trading.a1b2c3.c2.kafka.us-east-1.amazonaws.com:9098",
)
# Each kind the config schema knows, and the FIS action it runs as on AWS (the FIS actions reference:
# https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html).
ON_AWS = {
    "stop_task": "aws:ecs:stop-task",
    "zone_loss": "aws:ecs:stop-task",
    "hang": "aws:ecs:task-network-blackhole-port",
    "network_partition": "aws:ecs:task-network-blackhole-port",
    "network_latency": "aws:ecs:task-network-latency",
    "kafka_latency": "aws:ecs:task-network-latency",
    "packet_loss": "aws:ecs:task-network-packet-loss",
    "duplicate_delivery": "aws:ssm:start-automation-execution",
    "kafka_broker_down": "aws:ssm:start-automation-execution",
    "db_blip": "aws:rds:failover-db-cluster",
    "leader_loss": "aws:rds:failover-db-cluster",
}


def test_the_walk_knows_every_kind_of_the_config_schema_once():
    mapped, refused, skipped = set(ON_AWS), set(REFUSED_ON_AWS), set(NO_FIS_ACTION)
    load_steps = {"overload"}  # a step of the Fargate load's own shape, no FIS action
    assert mapped | refused | skipped | load_steps == set(FAULT_KINDS)
    sets = (mapped, refused, skipped, load_steps)
    assert sum(len(x) for x in sets) == len(set().union(*sets))  # each kind in exactly one


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_kind_runs_as_its_fis_action_on_aws_or_is_refused_naming_the_field(kind):
    """No silent skip (issue 21): each kind is an FIS template of its action, or a ConfigError naming
    ``faults.<name>.kind`` and why; an ``overload`` by ``factor`` is a step of the Fargate load's shape."""
    fault = _fault(kind)

    def plan() -> AwsFault | LoadStep | Skipped:
        return plan_fault(
            fault,
            ecs_services={"gw": "pb-gw"},
            region="us-east-1",
            service_tag=c.ECS_TAG_SERVICE,
            resources=FULL,
        )

    if kind in REFUSED_ON_AWS:
        with pytest.raises(ConfigError) as e:
            plan()
        assert e.value.where == f"faults.f-{kind}.kind"
        assert REFUSED_ON_AWS[kind] in str(e.value)
        return
    if kind == "overload":  # a step of the load task's shape, no FIS experiment
        p = plan()
        assert isinstance(p, LoadStep) and p.fault.params["factor"] == 3.0
        return
    if kind in NO_FIS_ACTION:
        p = plan()
        assert isinstance(p, Skipped) and p.reason == NO_FIS_ACTION[kind]
        return
    p = plan()
    assert isinstance(p, AwsFault), p
    template = json.loads((ROOT / c.FIS_TEMPLATE_DIR / p.template_file).read_text())
    actions = {a["actionId"] for a in template["actions"].values()} - {"aws:fis:wait"}
    assert actions == {ON_AWS[kind]}


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("db_blip", "target.aws.database"),
        ("leader_loss", "target.aws.database"),
        ("kafka_broker_down", "kafka.cluster_arn"),
        ("kafka_latency", "context.kafka_bootstrap"),
    ],
)
def test_a_kind_whose_aws_resource_the_deployment_lacks_is_refused_naming_that_field(kind, where):
    with pytest.raises(ConfigError) as e:
        plan_fault(
            _fault(kind),
            ecs_services={"gw": "pb-gw"},
            region="us-east-1",
            service_tag=c.ECS_TAG_SERVICE,
            resources=FaultResources(automations=FULL.automations),
        )
    assert e.value.where == where


def test_a_leader_loss_without_its_lease_store_says_why_fis_cannot_pause_the_leader(tmp_path):
    """AWS FIS Actions reference: ``aws:ecs:task-kill-process`` sends SIGTERM or SIGKILL (no pause) and no
    action selects a task by what it answers; the lease store's reboot is the AWS way to lose the lease."""
    text = CONFIG.replace("    database: {instance: pb-orders-db, force_failover: true}\n", "").replace(
        "  - {name: db-reboot, kind: db_blip, duration_s: 5, at_s: 30}\n", ""
    )
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, text))
    assert e.value.where == "target.aws.database"
    assert "lose-leader" in str(e.value) and "lease store" in str(e.value)
    assert "aws:ecs:task-kill-process" in str(e.value) and "or mode: partition" in str(e.value)


@pytest.mark.parametrize(
    ("fault", "where"),
    [
        (
            "{name: thin, kind: bandwidth, between: [gateway, clients], kbps: 64, duration_s: 5, at_s: 110}",
            "faults.thin.kind",
        ),
        (
            "{name: resets, kind: connection_reset, between: [gateway, clients], at_s: 110}",
            "faults.resets.kind",
        ),
        (
            "{name: throttle, kind: rate_limit_spike, percent: 30, duration_s: 5, at_s: 110}",
            "faults.throttle.kind",
        ),
        ("{name: stall, kind: hang, target: gateway, duration_s: 3, at_s: 110}", "faults.stall.port"),
    ],
)
def test_the_deployment_refuses_a_fault_aws_cannot_run_before_any_construct(tmp_path, fault, where):
    text = CONFIG.replace("checks: {integrity: false", f"  - {fault}\nchecks: {{integrity: false")
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, text))
    assert e.value.where == where


def test_a_db_blip_without_a_database_is_refused_naming_target_aws_database(tmp_path):
    with pytest.raises(ConfigError) as e:
        _settings(
            _write(
                tmp_path, CONFIG.replace("    database: {instance: pb-orders-db, force_failover: true}\n", "")
            )
        )
    assert e.value.where == "target.aws.database"
    assert "db-reboot" in str(e.value) and "aws:rds:reboot-db-instances" in str(e.value)


def test_a_broker_reboot_without_an_msk_cluster_is_refused_naming_kafka_cluster_arn(tmp_path):
    text = CONFIG[: CONFIG.index("kafka:\n")] + CONFIG[CONFIG.index("load:") :]
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, text))
    assert e.value.where == "kafka.cluster_arn"
    assert "broker-2-down" in str(e.value)


@pytest.mark.parametrize(
    ("database", "where"),
    [
        ("{instance: a, cluster: b}", "target.aws.database.instance"),
        ("{}", "target.aws.database.instance"),
        ("{cluster: 9bad}", "target.aws.database.cluster"),
        ("{cluster: pb, force_failover: true}", "target.aws.database.force_failover"),
    ],
)
def test_a_database_that_is_not_exactly_one_rds_identifier_is_refused_naming_the_field(
    tmp_path, database, where
):
    text = CONFIG.replace("{instance: pb-orders-db, force_failover: true}", database)
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, text))
    assert e.value.where.startswith(f"{where} ("), e.value.where


# ------------------------------------------------------------------------------------------ the stack
def test_the_data_gate_synthesizes_without_unreviewed_findings(data):
    assert data["error"] is None, data["error"]


def test_each_fault_is_an_fis_template_of_its_action_and_none_is_skipped(data):
    templates = _templates(data)
    assert set(templates) == {
        "redeliver",
        "db-reboot",
        "broker-2-down",
        "freeze",
        "lose-leader",
        "slow-broker",
    }
    assert _fault_action(templates["redeliver"])["ActionId"] == "aws:ssm:start-automation-execution"
    assert _fault_action(templates["broker-2-down"])["ActionId"] == "aws:ssm:start-automation-execution"
    for name in ("db-reboot", "lose-leader"):
        reboot = _fault_action(templates[name])
        assert reboot["ActionId"] == "aws:rds:reboot-db-instances"
        assert reboot["Parameters"] == {"forceFailover": "true"}
        assert reboot["Targets"] == {"DBInstances": "Database"}
        assert templates[name]["Targets"]["Database"]["ResourceType"] == "aws:rds:db"
    assert data["stack"].faults.skipped == []


def test_the_hang_freezes_the_projectors_port_on_half_its_tasks_for_its_duration(data):
    props = _templates(data)["freeze"]
    action = _fault_action(props)
    assert action["ActionId"] == "aws:ecs:task-network-blackhole-port"
    assert action["Parameters"] == {
        "duration": "PT3S",
        "port": "8080",
        "protocol": "tcp",
        "trafficType": "ingress",
        "useEcsFaultInjectionEndpoints": "true",
    }
    (target,) = props["Targets"].values()
    assert target["SelectionMode"] == "PERCENT(50)"
    assert target["ResourceTags"][c.ECS_TAG_SERVICE] == "pb-projector"


def test_the_kafka_latency_delays_every_target_tasks_traffic_to_broker_2(data):
    props = _templates(data)["slow-broker"]
    action = _fault_action(props)
    assert action["ActionId"] == "aws:ecs:task-network-latency"
    assert action["Parameters"]["delayMilliseconds"] == "200"
    assert action["Parameters"]["sources"] == "b-2.trading.a1b2c3.c2.kafka.us-east-1.amazonaws.com"
    (target,) = props["Targets"].values()
    assert target["ResourceTags"] == {"app": "paperbroker", c.ECS_TAG_CLUSTER: "pb-cluster"}
    # Every client service's task definitions are checked for FIS's network actions before a run.
    assert data["stack"].faults.network_services == ["pb-gateway", "pb-projector"]


def test_the_leader_loss_warns_that_its_pause_is_the_local_gates_and_its_observation_is_not(data):
    # observe_s is the load task's leader watch's too (loadgen.leader_watch): only the held pause is local.
    warnings = [str(m.data) for m in data["stack"].faults.node.metadata if m.type == "aws:cdk:warning"]
    (warning,) = [w for w in warnings if w.startswith("fault lose-leader (leader_loss)")]
    assert "duration_s (2 s) is the local gate's" in warning and "observe_s" not in warning


def test_every_data_fault_template_has_the_guardrails_and_an_observation_window(data):
    for props in _templates(data).values():
        assert props["StopConditions"] and all(
            s["Source"] == "aws:cloudwatch:alarm" for s in props["StopConditions"]
        )
        assert props["Actions"]["ObserveRecovery"]["StartAfter"] == [
            name for name, a in props["Actions"].items() if a["ActionId"] != "aws:fis:wait"
        ]


def test_the_data_fault_templates_pass_botocores_create_experiment_template_validation(data):
    assert fis_template_errors(data["template"]) == []


def test_the_fis_role_has_each_data_actions_documented_permissions_on_the_gates_resources_only(data):
    """Each permission the FIS actions reference lists for ``aws:rds:reboot-db-instances`` and
    ``aws:ssm:start-automation-execution`` is allowed for the requests FIS makes (the named, target-tagged
    database; the gate's documents; the automation role passed to SSM)."""
    assert fis_permission_errors(data["template"], database_tags={"app": "paperbroker"}) == []


def test_the_fis_role_may_not_reboot_the_database_once_it_lost_the_gates_tag_nor_another_database(data):
    errors = fis_permission_errors(data["template"], database_tags={"app": "someone-else"})
    assert any("rds:RebootDBInstance" in e for e in errors)
    (reboot,) = [s for s in _policies_of(data, "FaultsRole") if "rds:RebootDBInstance" in str(s["Action"])]
    assert render(reboot["Resource"], data["template"]["Resources"]) == DB_ARN
    assert reboot["Condition"] == {"StringEquals": {"aws:ResourceTag/app": "paperbroker"}}


def test_the_fis_role_may_pass_only_the_automation_role_and_only_to_ssm(data):
    (passes,) = [s for s in _policies_of(data, "FaultsRole") if s["Action"] == "iam:PassRole"]
    assert passes["Condition"] == {"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}}
    assert "AutomationRole" in json.dumps(passes["Resource"])


def test_the_redeliver_lambda_may_read_and_write_only_the_faults_topics(data):
    statements = _policies_of(data, "RedeliverRole")
    (topics,) = [s for s in statements if "kafka-cluster:WriteData" in s["Action"]]
    assert sorted(topics["Resource"]) == [
        f"arn:aws:kafka:us-east-1:123456789012:topic/trading/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2/{t}"
        for t in ("pb.executions", "pb.orders")
    ]
    (cluster,) = [s for s in statements if "kafka-cluster:Connect" in s["Action"]]
    assert cluster["Resource"] == CLUSTER_ARN


def test_the_automation_role_may_invoke_the_redeliver_lambda_and_reboot_brokers_of_the_one_cluster(data):
    statements = _policies_of(data, "AutomationRole")
    (invoke,) = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    assert "RedeliverFunction" in json.dumps(invoke["Resource"])
    (reboot,) = [s for s in statements if "kafka:RebootBroker" in s["Action"]]
    assert reboot["Resource"] == CLUSTER_ARN


def test_the_redeliver_document_passes_the_faults_payload_to_the_lambda(data):
    (doc,) = [d for d in _documents(data) if d["mainSteps"][0]["action"] == "aws:invokeLambdaFunction"]
    assert doc["mainSteps"][0]["inputs"]["Payload"] == "{{ Payload }}"
    # The parameters hold a token (the automation role's ARN): read them rendered with the test ARNs.
    rendered = render(
        _fault_action(_templates(data)["redeliver"])["Parameters"], data["template"]["Resources"]
    )
    payload = json.loads(json.loads(rendered["documentParameters"])["Payload"])
    assert payload == {
        "fault": "redeliver",
        "topics": ["pb.orders", "pb.executions"],
        "fraction": 0.1,
        "max_events": 200,
    }


def test_the_broker_document_reboots_the_broker_and_waits_until_it_rebooted_and_is_back(data):
    (doc,) = [d for d in _documents(data) if d["mainSteps"][0]["action"] == "aws:executeAwsApi"]
    steps = doc["mainSteps"]
    assert [s["name"] for s in steps] == ["RebootBroker", "WaitForRebooting", "WaitForActive"]
    assert steps[0]["inputs"]["Api"] == "RebootBroker" and steps[0]["inputs"]["BrokerIds"] == [
        "{{ BrokerId }}"
    ]
    assert steps[1]["inputs"]["DesiredValues"] == ["REBOOTING_BROKER"]
    assert steps[2]["inputs"]["DesiredValues"] == ["ACTIVE"]
    rendered = render(
        _fault_action(_templates(data)["broker-2-down"])["Parameters"], data["template"]["Resources"]
    )
    params = json.loads(rendered["documentParameters"])
    assert params["ClusterArn"] == CLUSTER_ARN and params["BrokerId"] == "2"


def test_the_watch_allows_each_data_fault_its_bound(data):
    specs = {s.name: s for s in data["stack"].faults.experiments}
    window = data["stack"].faults.observation_window_s
    assert experiment_wait_s(specs["db-reboot"]) == RDS_ACTION_BOUND_S + window
    assert experiment_wait_s(specs["redeliver"]) == 180 + window


def test_the_permission_table_lists_the_data_actions_rows_from_the_fis_actions_reference():
    assert fis_actions.ACTION_PERMISSIONS["aws:rds:reboot-db-instances"] == (
        "rds:RebootDBInstance",
        "rds:DescribeDBInstances",
        "tag:GetResources",
    )
    assert fis_actions.ACTION_PERMISSIONS["aws:rds:failover-db-cluster"] == (
        "rds:FailoverDBCluster",
        "rds:DescribeDBClusters",
        "tag:GetResources",
    )
    assert set(fis_actions.ACTION_PERMISSIONS["aws:ssm:start-automation-execution"]) == {
        "ssm:GetAutomationExecution",
        "ssm:StartAutomationExecution",
        "ssm:StopAutomationExecution",
        "iam:PassRole",
    }
    # Without an ECS action no ECS target is resolved: no ECS permission is granted.
    assert fis_actions.permissions_for(["aws:rds:failover-db-cluster", "aws:fis:wait"]) == [
        "rds:FailoverDBCluster",
        "rds:DescribeDBClusters",
        "tag:GetResources",
    ]


@pytest.mark.parametrize(
    ("file", "action", "key", "resource_type"),
    [
        ("rds_reboot_db_instance.json", "aws:rds:reboot-db-instances", "DBInstances", "aws:rds:db"),
        ("rds_failover_db_cluster.json", "aws:rds:failover-db-cluster", "Clusters", "aws:rds:cluster"),
    ],
)
def test_each_rds_template_targets_its_database_under_the_key_and_type_fis_gives_the_action(
    file, action, key, resource_type
):
    """FIS ``list-actions`` (AWS CLI reference, fis list-actions example) names the targets
    ``aws:rds:reboot-db-instances`` → ``DBInstances`` of ``aws:rds:db`` and ``aws:rds:failover-db-cluster``
    → ``Clusters`` of ``aws:rds:cluster``; the AWS FIS Actions reference
    (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html) gives the same resource
    types."""
    template = json.loads((ROOT / c.FIS_TEMPLATE_DIR / file).read_text())
    (fault,) = [a for a in template["actions"].values() if a["actionId"] != "aws:fis:wait"]
    assert fault["actionId"] == action
    ((target_key, target_name),) = fault["targets"].items()
    assert target_key == key
    assert template["targets"][target_name]["resourceType"] == resource_type


def test_a_leader_loss_partition_is_the_lease_stores_blackhole_not_its_reboot_even_with_a_database():
    """With ``target.aws.database`` given, a ``mode: partition`` still runs as the blackhole of the lease
    store's port on every task (tests/infra/test_leader_partition_on_aws.py), its sessions kept open; only a
    ``pause`` is the store's reboot (a reboot ends every session, so it cannot catch an unfenced leader)."""
    fault = Fault(
        name="cut-leader",
        kind="leader_loss",
        at_s=5.0,
        target="matcher",
        params={"mode": "partition", "duration_s": 6.0, "observe_s": 4.0, "port": 8081},
    )
    resources = FaultResources(
        database=AwsDatabase(instance="pb-db"), database_arn="arn:aws:rds:us-east-1:111111111111:db:pb-db"
    )
    plan = plan_fault(fault, ecs_services={}, region="us-east-1", service_tag="t", resources=resources)
    assert isinstance(plan, AwsFault) and plan.template_file == "task_network_blackhole_port.json", plan
    paused = dataclasses.replace(fault, params={**fault.params, "mode": "pause"})
    plan = plan_fault(paused, ecs_services={}, region="us-east-1", service_tag="t", resources=resources)
    assert isinstance(plan, AwsFault) and plan.template_file == "rds_reboot_db_instance.json", plan
    assert "partition" not in " ".join(plan.warnings)


class _Synthesized:
    """The data stack's template as the FIS twin reads an assembly (resources, by type, rendered)."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.resources = template["Resources"]

    def of_type(self, rtype: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == rtype}

    def render(self, value: Any) -> Any:
        return render(value, self.resources)


class _OneProxiedPath:
    """A local target whose only proxied path is ``projector``'s clients path (the real fault proxy)."""

    supervisor = None
    pg = None
    kafka = None

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy

    def path(self, service: str, dependency: str) -> Any:
        return self.proxy.toxics if (service, dependency) == ("projector", "clients") else None

    def path_stats(self, service: str, dependency: str) -> dict[str, int] | None:
        return self.proxy.stats() if (service, dependency) == ("projector", "clients") else None


def _stack_twin(data: dict[str, Any], proxy: Any) -> tuple[Any, dict[str, str]]:
    """The FIS twin over the synthesized templates, the target's tasks one per service tagged as ECS and the
    stack tag them; ``{fault name: template logical id}``."""
    from tests.rehearsal.support.fis_twin import FisTwin

    tags = {"app": "paperbroker", c.ECS_TAG_CLUSTER: "pb-cluster"}
    tasks = [
        {
            "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/pb-cluster/{service}-1",
            "tags": [{"key": k, "value": v} for k, v in {**tags, c.ECS_TAG_SERVICE: f"pb-{service}"}.items()],
            "_service": f"pb-{service}",
            "_replica": f"{service}-1",
        }
        for service in ("gateway", "projector")
    ]
    twin = FisTwin(
        _Synthesized(data["template"]),  # type: ignore[arg-type]
        target=lambda: _OneProxiedPath(proxy),  # type: ignore[arg-type,return-value]
        live_dirs=list,
        services={"pb-gateway": "gateway", "pb-projector": "projector"},
        tasks=lambda: [dict(t) for t in tasks],
        wait_scale=0.01,
        log=lambda _: None,
    )
    ids = {
        r["Properties"]["Tags"]["Name"].removeprefix("resgate-pb-data-"): lid
        for lid, r in data["template"]["Resources"].items()
        if r["Type"] == "AWS::FIS::ExperimentTemplate"
    }
    return twin, ids


def _ended(twin: Any, exp_id: str, timeout_s: float = 30) -> dict[str, Any]:
    import time

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        exp = twin.get_experiment(id=exp_id)["experiment"]
        if exp["state"]["status"] in ("completed", "failed", "stopped"):
            return exp
        time.sleep(0.05)
    raise AssertionError(f"experiment {exp_id} did not end within {timeout_s} s")


def test_the_stacks_hang_template_freezes_the_services_port_for_its_duration_in_the_fis_twin(data):
    """The synthesized ``hang`` experiment (``aws:ecs:task-network-blackhole-port``, ingress on the service's
    port, FIS actions reference) run by the rehearsal's FIS twin: its target resolves to the projector's
    task by the stack's tags, the blackhole holds on the service's clients path for ``duration`` (3 s) and
    is lifted, and the experiment completes."""
    import socket

    from resgate.local.faultproxy import FaultProxy

    server = socket.create_server(("127.0.0.1", 0))
    proxy = FaultProxy(("127.0.0.1", server.getsockname()[1]), name="projector-clients")
    proxy.start()
    try:
        twin, ids = _stack_twin(data, proxy)
        exp_id = twin.start_experiment(experimentTemplateId=ids["freeze"])["experiment"]["id"]
        exp = _ended(twin, exp_id)
        twin.close()
    finally:
        proxy.stop()
        server.close()
    assert exp["state"]["status"] == "completed", exp["state"]
    (action,) = [a for a in exp["actions"].values() if a["actionId"] == "aws:ecs:task-network-blackhole-port"]
    assert action["parameters"]["trafficType"] == "ingress" and action["parameters"]["port"] == "8080"
    assert 3 <= action["endTime"] - action["startTime"] <= 4.5, action
    assert proxy.toxics.active() == []


def test_the_stacks_kafka_latency_template_is_refused_by_the_fis_twin_which_has_no_per_task_broker_path(data):
    """The synthesized ``kafka_latency`` experiment (``aws:ecs:task-network-latency`` on every target task,
    ``sources`` = broker 2's bootstrap host): the rehearsal cannot run it (locally the brokers' round trip is
    every service's, not one task's), and its FIS twin fails the experiment saying so rather than passing a
    fault it did not inject."""
    twin, ids = _stack_twin(data, proxy=None)
    exp_id = twin.start_experiment(experimentTemplateId=ids["slow-broker"])["experiment"]["id"]
    exp = _ended(twin, exp_id)
    twin.close()
    (action,) = [a for a in exp["actions"].values() if a["actionId"] == "aws:ecs:task-network-latency"]
    assert action["parameters"]["sources"] == BOOTSTRAP.split(",")[1].rsplit(":", 1)[0]
    assert exp["state"]["status"] == "failed", exp["state"]
    assert "no path of [] is proxied locally" in exp["state"]["reason"], exp["state"]
