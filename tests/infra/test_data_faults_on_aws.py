"""The data-path faults on AWS (issue 21): ``duplicate_delivery`` (the redeliver Lambda through an SSM
automation), ``db_blip`` (an RDS reboot or an Aurora failover) and ``kafka_broker_down`` (an MSK broker
reboot through an SSM automation), each an FIS experiment at its ``at_s`` like the task and network faults.
One stack of a gate config with all three is synthesized for the module (with cdk-nag) and read from its
CloudFormation template; every fault kind of the schema is walked once; the config errors name the field.

The FIS role's permissions per action are the FIS actions reference's
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html), the ones AWS's managed
policies for those actions grant (AWSFaultInjectionSimulatorRDSAccess, AWSFaultInjectionSimulatorSSMAccess:
https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSFaultInjectionSimulatorSSMAccess.html).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

import app as cdk_app
from infra import constants as c
from infra import fis_actions
from infra.data_faults import DATA_FAULT_KINDS, FaultResources
from infra.fault_automation import Automation
from infra.network_faults import NO_FIS_ACTION, TEMPLATE_FILES, AwsFault, LoadStep, Skipped, plan_fault
from infra.settings import DeploymentSettings
from infra.state_machine.faults import RDS_ACTION_BOUND_S, experiment_wait_s
from resgate.config.model import FAULT_KINDS, AwsDatabase, Fault
from resgate.contract.errors import ConfigError
from tests.infra.support.aws_rules import fis_permission_errors
from tests.infra.support.cfn import render
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
  - {{name: freeze, kind: hang, target: projector, duration_s: 3, at_s: 70}}
checks: {{integrity: false, replay: false}}
"""
DB_ARN = "arn:aws:rds:us-east-1:123456789012:db:pb-orders-db"


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
    app = cdk.App(
        outdir=str(tmp / "cdk.out"),
        context={
            c.CTX_SKIP_BUNDLING: "true",
            c.CTX_GATE_CONFIG: str(path),
            c.CTX_ACCOUNT: "123456789012",
            c.CTX_REGION: "us-east-1",
        },
    )
    stack = cdk_app.build(app)
    error = None
    try:
        app.synth()
    except RuntimeError as e:  # cdk-nag violations fail the synth; the report says which
        error = str(e)
    template = json.loads((tmp / "cdk.out" / f"{stack.artifact_id}.template.json").read_text())
    return {"stack": stack, "template": template, "error": error}


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
        "hang": {"percent": 50.0, "duration_s": 2.0},
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
)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_kind_is_an_fis_template_on_aws_or_skipped_with_its_reason(kind):
    plan = plan_fault(
        _fault(kind),
        ecs_services={"gw": "pb-gw"},
        region="us-east-1",
        service_tag=c.ECS_TAG_SERVICE,
        resources=FULL,
    )
    if kind in NO_FIS_ACTION:
        assert isinstance(plan, Skipped) and plan.reason == NO_FIS_ACTION[kind]
        return
    if kind == "overload":  # a step of the load task's shape, no FIS experiment
        assert isinstance(plan, LoadStep) and plan.fault.params["factor"] == 3.0
        return
    assert isinstance(plan, AwsFault), plan
    assert (ROOT / c.FIS_TEMPLATE_DIR / plan.template_file).is_file()
    assert kind in TEMPLATE_FILES or kind in DATA_FAULT_KINDS


def test_hang_and_kafka_latency_say_why_fis_cannot_run_them_and_what_to_use_instead():
    """The FIS actions reference: ``aws:ecs:task-kill-process`` sends SIGKILL or SIGTERM (it kills, which is
    ``stop_task``), no action freezes a process; no FIS action adds latency to an MSK broker."""
    assert "network_partition" in NO_FIS_ACTION["hang"] and "mode hang" in NO_FIS_ACTION["hang"]
    assert "network_latency" in NO_FIS_ACTION["kafka_latency"]


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


def test_each_data_fault_is_an_fis_template_of_its_action_and_hang_is_skipped(data):
    templates = _templates(data)
    assert set(templates) == {"redeliver", "db-reboot", "broker-2-down"}
    assert _fault_action(templates["redeliver"])["ActionId"] == "aws:ssm:start-automation-execution"
    assert _fault_action(templates["broker-2-down"])["ActionId"] == "aws:ssm:start-automation-execution"
    reboot = _fault_action(templates["db-reboot"])
    assert reboot["ActionId"] == "aws:rds:reboot-db-instances"
    assert reboot["Parameters"] == {"forceFailover": "true"}
    assert data["stack"].faults.skip_reasons == {"freeze": NO_FIS_ACTION["hang"]}


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
