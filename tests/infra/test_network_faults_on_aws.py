"""Network faults on AWS (issue 11, item 4): the same kinds as the local gate, from the same config, as FIS
experiment templates. One stack of a network gate config is synthesized for the module (with cdk-nag) and
everything is read from its CloudFormation template: each network fault is an ``aws:ecs:task-network-*``
template (the zone loss an AZ-filtered ``aws:ecs:stop-task``) that botocore's ``CreateExperimentTemplate``
validation accepts and that has the guardrail alarms as stop conditions; kinds FIS cannot run are skipped
and reported; the FIS role reaches only the target cluster's SSM managed instances; and the preflight
checks the target's task definitions before anything starts."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from moto import mock_aws

import app as cdk_app
from infra import constants as c
from infra.fis_actions import ACTION_PERMISSIONS
from infra.network_faults import NETWORK_ACTIONS
from infra.state_machine.faults import experiment_wait_s, watch_seconds
from resgate.contract.errors import ConfigError
from tests.infra.support.aws_rules import fis_filter_path_errors, fis_permission_errors, role_statements
from tests.infra.support.cfn import ACCOUNT, REGION, render
from tests.infra.support.sfn_mock import Return, Throw, mocked_responses, wait_for_end
from tests.infra.support.synth import synthesize
from tests.infra.support.validators import (
    definition_of,
    fis_template_errors,
    tasks_without_throttling_retry,
)
from tests.rehearsal.support.iam_eval import evaluate

pytestmark = pytest.mark.infra

CONFIG = """
gate: {name: pb-net}
target:
  environment: dev
  tags: {app: paperbroker}
  local:
    services:
      - {name: gateway, command: [python3], expose: true, replicas: 2, zones: [a, b]}
      - {name: matcher, command: [python3], zones: [a, b]}
  aws:
    cluster: pb-cluster
    services: {gateway: pb-gateway, matcher: pb-matcher}
    target_tags: {app: paperbroker}
load: {users: 5, duration_s: 200, baseline_s: 5}
faults:
  - {name: cut-db, kind: network_partition, between: [gateway, postgres], duration_s: 10, at_s: 6}
  - {name: slow-clients, kind: network_latency, between: [gateway, clients], delay_ms: 300, jitter_ms: 50,
     duration_s: 10, at_s: 26}
  - {name: lossy-kafka, kind: packet_loss, between: [matcher, kafka], percent: 10, duration_s: 10, at_s: 46,
     sources: [b-1.msk.example.internal, b-2.msk.example.internal]}
  - {name: kill-matcher, kind: stop_task, target: matcher, percent: 50, at_s: 50}
  - {name: lose-a, kind: zone_loss, zone: a, at_s: 100}
checks: {integrity: false, replay: false}
profiles:
  nightly:
    load: {duration_s: 200}
    faults: [cut-db, slow-clients]
"""
NETWORK = {"cut-db": "network_partition", "slow-clients": "network_latency", "lossy-kafka": "packet_loss"}
REFUSED = {
    "thin-pipe": "{name: thin-pipe, kind: bandwidth, between: [gateway, clients], kbps: 64, duration_s: 5, "
    "at_s: 70}",
    "resets": "{name: resets, kind: connection_reset, between: [gateway, clients], at_s: 80}",
    "throttle": "{name: throttle, kind: rate_limit_spike, percent: 30, duration_s: 5, at_s: 90}",
}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The network gate's stack, synthesized once for the module: stack, template, validation report."""
    tmp = tmp_path_factory.mktemp("net")
    path = Path(tmp) / "gate.yaml"
    path.write_text(CONFIG)
    return synthesize(tmp / "cdk.out", {c.CTX_GATE_CONFIG: str(path)})


def _templates(net: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{fault name: the FIS template's Properties}, by the template's Name tag."""
    out = {}
    for r in net["template"]["Resources"].values():
        if r["Type"] == "AWS::FIS::ExperimentTemplate":
            name = r["Properties"]["Tags"]["Name"].removeprefix("resgate-pb-net-")
            out[name] = r["Properties"]
    return out


def _fault_action(props: dict[str, Any]) -> dict[str, Any]:
    (action,) = [a for a in props["Actions"].values() if a["ActionId"] != "aws:fis:wait"]
    return action


def _statements(net: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in net["template"]["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy":
            out += r["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_each_network_fault_is_a_template_of_its_fis_network_action(net):
    templates = _templates(net)
    assert set(templates) == {*NETWORK, "kill-matcher", "lose-a"}
    for name, kind in NETWORK.items():
        props = templates[name]
        action = _fault_action(props)
        assert action["ActionId"] == NETWORK_ACTIONS[kind]
        assert action["Parameters"]["useEcsFaultInjectionEndpoints"] == "true"
        assert action["Parameters"]["duration"] == "PT10S"
        (target,) = props["Targets"].values()
        assert target["ResourceType"] == "aws:ecs:task" and target["SelectionMode"] == "ALL"
        service = "pb-matcher" if name == "lossy-kafka" else "pb-gateway"
        assert target["ResourceTags"] == {
            "app": "paperbroker",
            c.ECS_TAG_CLUSTER: "pb-cluster",
            c.ECS_TAG_SERVICE: service,
        }
        wait = props["Actions"]["ObserveRecovery"]
        assert wait["ActionId"] == "aws:fis:wait" and wait["StartAfter"] == [
            k for k, a in props["Actions"].items() if a is action
        ]


def test_the_network_actions_carry_the_configs_parameters(net):
    templates = _templates(net)
    cut = _fault_action(templates["cut-db"])["Parameters"]
    assert (cut["port"], cut["protocol"], cut["trafficType"]) == ("5432", "tcp", "egress")
    slow = _fault_action(templates["slow-clients"])["Parameters"]
    assert (slow["delayMilliseconds"], slow["jitterMilliseconds"], slow["sources"]) == (
        "300",
        "50",
        "0.0.0.0/0",
    )
    lossy = _fault_action(templates["lossy-kafka"])["Parameters"]
    assert lossy["lossPercent"] == "10"
    assert lossy["sources"] == "b-1.msk.example.internal,b-2.msk.example.internal"


def test_every_fis_template_passes_botocores_validation_and_has_stop_conditions(net):
    assert fis_template_errors(net["template"]) == []
    alarms = {k for k, r in net["template"]["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms
    for name, props in _templates(net).items():
        conditions = props["StopConditions"]
        assert {s["Source"] for s in conditions} == {"aws:cloudwatch:alarm"}, name
        assert {s["Value"]["Fn::GetAtt"][0] for s in conditions} == alarms, name


def test_zone_loss_stops_every_target_task_in_one_availability_zone(net):
    props = _templates(net)["lose-a"]
    assert _fault_action(props)["ActionId"] == "aws:ecs:stop-task"
    (target,) = props["Targets"].values()
    assert target["SelectionMode"] == "ALL"
    region_a = {"Fn::Join": ["", [{"Ref": "AWS::Region"}, "a"]]}
    assert target["Filters"] == [{"Path": "AvailabilityZone", "Values": [region_a]}]
    assert target["ResourceTags"] == {"app": "paperbroker", c.ECS_TAG_CLUSTER: "pb-cluster"}


def test_no_fault_of_the_network_gate_is_skipped_on_aws(net):
    assert net["stack"].faults.skipped == []
    assert set(_templates(net)) == {*NETWORK, "kill-matcher", "lose-a"}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_kinds_without_an_fis_action_are_refused_at_synth_naming_the_fault_and_why(tmp_path, name):
    """No silent skip (issue 21): FIS's ECS task network actions (AWS FIS Actions reference,
    https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html) are blackhole-port, latency
    and packet-loss; a bandwidth limit, a connection reset or an edge 429 has no FIS action, so the
    deployment is refused rather than run with fewer faults than its config."""
    path = tmp_path / "gate.yaml"
    path.write_text(CONFIG.replace("checks: {integrity", f"  - {REFUSED[name]}\nchecks: {{integrity"))
    app = cdk.App(context={c.CTX_SKIP_BUNDLING: "true", c.CTX_GATE_CONFIG: str(path)})
    with pytest.raises(ConfigError) as e:
        cdk_app.build(app)
    assert e.value.where == f"faults.{name}.kind"
    assert f"fault {name} (" in str(e.value) and "cannot run on AWS" in str(e.value)


def test_the_fis_role_sends_fis_documents_only_to_the_target_clusters_managed_instances(net):
    sends = [s for s in _statements(net) if s["Action"] == "ssm:SendCommand"]
    assert len(sends) == 2
    to_instances = next(s for s in sends if "Condition" in s)
    assert "managed-instance/*" in json.dumps(to_instances["Resource"])
    (tag_condition,) = to_instances["Condition"]["StringLike"].items()
    assert tag_condition[0] == "ssm:resourceTag/ECS_TASK_ARN"
    assert "task/pb-cluster/*" in json.dumps(tag_condition[1])
    documents = next(s for s in sends if "Condition" not in s)
    assert json.dumps(documents["Resource"]).endswith(':document/AWSFIS-*"]]}')
    follow = [
        s
        for s in _statements(net)
        if {"ssm:ListCommands", "ssm:CancelCommand"} <= set(_as_list(s["Action"])) and s["Resource"] == "*"
    ]
    assert len(follow) == 1


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def test_every_fis_filter_path_of_the_network_stack_is_pascal_case(net):
    """FIS user guide, "Targets for AWS FIS", Resource filters: each element of a filter path is PascalCase
    (``AvailabilityZone``, not ``availabilityZone``), whatever the Describe output's casing."""
    assert fis_filter_path_errors(net["template"]) == []


def test_a_camel_case_filter_path_is_named_by_the_rule():
    template = {
        "Resources": {
            "T": {
                "Type": "AWS::FIS::ExperimentTemplate",
                "Properties": {
                    "Targets": {"Tasks": {"Filters": [{"Path": "availabilityZone", "Values": []}]}}
                },
            }
        }
    }
    (error,) = fis_filter_path_errors(template)
    assert "T target Tasks" in error and "'availabilityZone'" in error


def test_every_fis_action_has_the_permissions_the_fis_actions_reference_lists_on_its_role(net):
    """AWS FIS user guide, "AWS FIS Actions reference"
    (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html), each action's
    Permissions: ``aws:ecs:stop-task``: ``ecs:DescribeTasks``, ``ecs:ListTasks``, ``ecs:StopTask``,
    ``tag:GetResources``; ``aws:ecs:task-network-latency`` / ``-packet-loss``: ``ecs:DescribeTasks``,
    ``ecs:DescribeContainerInstances``, ``ec2:DescribeInstances``, ``ec2:DescribeSubnets``,
    ``ssm:SendCommand``, ``ssm:ListCommands``, ``ssm:CancelCommand``; ``aws:ecs:task-network-blackhole-port``:
    ``ecs:DescribeTasks``, ``ssm:SendCommand``, ``ssm:ListCommands``, ``ssm:CancelCommand`` only (the table
    gave it the latency row's three describes before, which the reference does not list for it)."""
    assert ACTION_PERMISSIONS["aws:ecs:task-network-latency"] == (
        "ecs:DescribeTasks",
        "ecs:DescribeContainerInstances",
        "ec2:DescribeInstances",
        "ec2:DescribeSubnets",
        "ssm:SendCommand",
        "ssm:ListCommands",
        "ssm:CancelCommand",
    )
    assert (
        ACTION_PERMISSIONS["aws:ecs:task-network-packet-loss"]
        == ACTION_PERMISSIONS["aws:ecs:task-network-latency"]
    )
    assert ACTION_PERMISSIONS["aws:ecs:task-network-blackhole-port"] == (
        "ecs:DescribeTasks",
        "ssm:SendCommand",
        "ssm:ListCommands",
        "ssm:CancelCommand",
    )
    assert set(ACTION_PERMISSIONS["aws:ecs:stop-task"]) == {
        "ecs:DescribeTasks",
        "ecs:ListTasks",
        "ecs:StopTask",
        "tag:GetResources",
    }
    used = {a["ActionId"] for p in _templates(net).values() for a in p["Actions"].values()}
    assert used == {*NETWORK_ACTIONS.values(), "aws:ecs:stop-task", "aws:fis:wait"}
    assert fis_permission_errors(net["template"]) == []


def test_the_fis_role_may_list_the_target_clusters_tasks_with_no_container_instance_to_scope_to(net):
    """FIS lists a Fargate cluster's tasks with no container instance: AWS's own FIS managed policy grants
    ``ecs:ListTasks`` on ``*`` (AWS managed policy reference, "AWSFaultInjectionSimulatorECSAccess",
    https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSFaultInjectionSimulatorECSAccess.html,
    statement ``ListTasks``), as does aws-samples/fis-template-library
    (``ecs-fargate-az-impairment/ecs-fargate-az-impairment-fis-role-iam-policy.json``). The role had it
    only on the cluster's container-instance ARNs, which such a request does not name."""
    template = net["template"]
    role_id = next(
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role" and "FaultsRole" in k
    )
    statements = render(role_statements(template, role_id), template["Resources"])
    context = {"ecs:cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/pb-cluster"}
    assert evaluate(statements, "ecs:ListTasks", "*", context).allowed
    # ... of the target cluster only (ListTasks takes the ecs:cluster condition key).
    other = {"ecs:cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/other"}
    assert not evaluate(statements, "ecs:ListTasks", "*", other).allowed
    # Still only what the table lists: the role may not stop an untagged task of the cluster by it.
    untagged = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/pb-cluster/0123456789abcdef0"
    assert not evaluate(statements, "ecs:StopTask", untagged, context).allowed


def test_the_rule_names_the_action_permission_and_role_of_a_grant_removed(net):
    template = copy.deepcopy(net["template"])
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy":
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                if "ec2:DescribeSubnets" in _as_list(st["Action"]):
                    st["Action"] = [a for a in _as_list(st["Action"]) if a != "ec2:DescribeSubnets"]
    errors = fis_permission_errors(template)
    assert errors and all(
        "needs ec2:DescribeSubnets on * (context {}) from role FaultsRole" in e for e in errors
    )
    # Only the latency and packet-loss templates need it (the blackhole's row does not list it).
    assert {e.split(":")[0] for e in errors} == {
        k
        for k, p in _templates_by_id(template).items()
        if any("ec2:DescribeSubnets" in ACTION_PERMISSIONS[a["ActionId"]] for a in p["Actions"].values())
    }
    assert len({e.split(":")[0] for e in errors}) == 2


def test_the_rule_evaluates_the_resource_and_the_condition_keys_not_only_the_action(net):
    """A StopTask grant whose tag condition names another value allows the action on nothing FIS stops:
    the rule evaluates ``aws:ResourceTag/*`` and ``ecs:cluster`` as IAM does."""
    template = copy.deepcopy(net["template"])
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy":
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                if st["Action"] == "ecs:StopTask":
                    st["Condition"]["StringEquals"]["aws:ResourceTag/app"] = "someone-else"
    errors = fis_permission_errors(template)
    assert errors and all(
        "needs ecs:StopTask on arn:aws:ecs:us-east-1:123456789012:task/pb-cluster/" in e for e in errors
    )
    assert all("'aws:ResourceTag/app': 'paperbroker'" in e for e in errors)


def _templates_by_id(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        k: r["Properties"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::FIS::ExperimentTemplate"
    }


def test_the_fis_templates_depend_on_the_dashboard_they_name(net):
    """The templates name the gate's dashboard by a literal ARN (the experiment reports' data source): without
    a DependsOn, CloudFormation may create a template before the dashboard on the first deploy."""
    dashboard = next(
        k for k, r in net["template"]["Resources"].items() if r["Type"] == "AWS::CloudWatch::Dashboard"
    )
    for k, r in net["template"]["Resources"].items():
        if r["Type"] == "AWS::FIS::ExperimentTemplate":
            assert dashboard in r.get("DependsOn", []), k


def test_the_stack_passes_cdk_nag_with_only_reviewed_findings(net):
    assert net["error"] is None, net["error"]
    assert net["stack"].unreviewed_findings == []


def test_preflight_checks_fault_injection_on_the_network_services_before_the_run_starts(net):
    states = definition_of(net["template"])["States"]
    check = states["Check fault injection"]
    assert check["Next"] == "Fault injection ready?"
    payload = check["Parameters"]["Payload"]
    assert payload == {"cluster": "pb-cluster", "services": ["pb-gateway", "pb-matcher"]}
    assert states["Target found?"]["Choices"][0]["Next"] == "Check fault injection"
    ready = states["Fault injection ready?"]
    assert ready["Choices"][0]["Next"] == "Write gate config"
    not_ready = states[ready["Default"]]
    assert not_ready["Parameters"]["Error"] == "FaultInjectionNotReady"
    assert not_ready["Next"] == "Cleanup"
    assert [c["Next"] for c in check["Catch"]] == ["Cleanup"]


def test_the_preflight_lambda_may_describe_only_the_network_services_and_task_definitions(net):
    stack = net["stack"]
    role = stack.resolve(stack.faults.preflight_role.node.default_child.logical_id)
    mine = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in net["template"]["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and r["Properties"]["Roles"] == [{"Ref": role}]
    ]
    (statements,) = mine
    actions = {json.dumps(s["Action"]): s for s in statements}
    described = actions['"ecs:DescribeServices"']["Resource"]
    assert [json.dumps(r).split("service/")[1][:30] for r in described] == [
        'pb-cluster/pb-gateway"]]}',
        'pb-cluster/pb-matcher"]]}',
    ]
    assert actions['"ecs:DescribeTaskDefinition"']["Resource"] == "*"


def test_every_task_of_the_network_stacks_definition_retries_throttling(net):
    # cfn-lint is left to test_validators (the default stack): the same constructs, 10 s more here.
    assert tasks_without_throttling_retry(definition_of(net["template"])) == []


@pytest.fixture(scope="module")
def run(net: dict[str, Any]) -> Iterator[Any]:
    """``run(name, responses) -> {status, error, cause, calls, scheduled}``: the network stack's definition
    executed in moto (support/sfn_mock.py, one state machine for the module), tasks answered by
    ``responses``; ``scheduled`` holds each task's parameters."""
    resources = net["template"]["Resources"]
    (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    definition = render(machine["Properties"]["DefinitionString"], resources)
    waits = {k: 0 for k in net["stack"].gate_machine.default_waits}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), mocked_responses() as shim:
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name="gate", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/gate"
        )["stateMachineArn"]

        def execute(name: str, responses: dict[str, list[Any]]) -> dict[str, Any]:
            mocked = shim.register(name, responses)
            body = json.dumps({"waits": waits})
            started = client.start_execution(stateMachineArn=arn, name=name, input=body)
            d = wait_for_end(client, started["executionArn"])
            history = client.get_execution_history(executionArn=started["executionArn"], maxResults=1000)
            events = history["events"]
            entered = {
                e["id"]: e["stateEnteredEventDetails"]["name"]
                for e in events
                if "stateEnteredEventDetails" in e
            }
            scheduled = {
                entered[e["previousEventId"]]: json.loads(e["taskScheduledEventDetails"]["parameters"])
                for e in events
                if "taskScheduledEventDetails" in e and e.get("previousEventId") in entered
            }
            return {
                "status": d["status"],
                "error": d.get("error"),
                "cause": d.get("cause"),
                "calls": mocked.calls,
                "scheduled": scheduled,
            }

        yield execute


def _lambda(payload: Any) -> Return:
    return Return({"StatusCode": 200, "Payload": payload})


def _preflight_responses(check: Return) -> dict[str, list[Any]]:
    error_verdict = {
        "passed": False,
        "result": "ERROR",
        "reason": "error",
        "failed_checks": [],
        "unknown_checks": [],
        "evidence_uri": "s3://evidence/",
    }
    return {
        "Describe target services": [Return({"Services": [{}, {}], "Failures": []})],
        "Check fault injection": [check],
        "Write gate config": [Return({})],
        "Start load task": [Throw("Ecs.ServerException", "stop here")],
        "Record error verdict": [_lambda(error_verdict)],
        "Notify error": [Return({"MessageId": "m"})],
    }


def test_a_target_without_fis_task_setup_ends_the_run_before_anything_starts_naming_what_to_add(run):
    message = (
        "the network faults need FIS's ECS task setup on cluster pb-cluster; pb-gateway: add pidMode: task"
    )
    ex = run(
        "net-not-ready",
        _preflight_responses(
            _lambda({"ready": False, "missing": {"pb-gateway": ["pidMode: task"]}, "message": message})
        ),
    )
    assert ex["status"] == "FAILED" and ex["error"] == "GateRunFailed"
    assert "FaultInjectionNotReady" in ex["cause"] and "pidMode: task" in ex["cause"]
    assert "Write gate config" not in ex["calls"] and "Start load task" not in ex["calls"]
    recorded = ex["scheduled"]["Record error verdict"]["Payload"]["error"]
    assert recorded == {"Error": "FaultInjectionNotReady", "Cause": message}


def test_a_target_with_fis_task_setup_goes_on_to_the_run(run):
    ready = _lambda({"ready": True, "missing": {}, "message": "fault injection is set up on every service"})
    ex = run("net-ready", _preflight_responses(ready))
    assert ex["calls"][:3] == ["Describe target services", "Check fault injection", "Write gate config"]
    assert ex["scheduled"]["Check fault injection"]["Payload"] == {
        "cluster": "pb-cluster",
        "services": ["pb-gateway", "pb-matcher"],
    }


def _experiments(config_text: str) -> None:
    """Build the gate's FaultExperiments for ``config_text`` in a bare stack (no synth)."""
    from aws_cdk import aws_s3 as s3

    from infra.fault_experiments import FaultExperiments
    from resgate.config.schema import load_config_text

    cfg = load_config_text(config_text, "gate.yaml")
    stack = cdk.Stack(cdk.App(), "Bare")
    FaultExperiments(
        stack,
        "Faults",
        gate=cfg.name,
        template_dir=Path(cdk_app.ROOT) / c.FIS_TEMPLATE_DIR,
        faults=cfg.faults,
        target_cluster="pb-cluster",
        ecs_services={"gateway": "pb-gateway", "matcher": "pb-matcher"},
        target_tags={"app": "paperbroker"},
        stop_condition_alarms=[],
        report_bucket=s3.Bucket(stack, "Reports"),
        report_dashboard_arn="arn:aws:cloudwatch::123456789012:dashboard/d",
        observation_window_s=60,
        profile_faults={n: p.faults for n, p in cfg.profiles.items()},
    )


def test_a_profile_that_moves_network_faults_into_each_other_is_refused_at_synth():
    overlapping = CONFIG.replace(
        "faults: [cut-db, slow-clients]", "faults: [cut-db, {name: slow-clients, at_s: 12}]"
    )
    with pytest.raises(ConfigError) as e:
        _experiments(overlapping)
    assert e.value.where == "profiles.nightly.faults.slow-clients.at_s"
    assert "cut-db" in str(e.value) and "slow-clients" in str(e.value)


def test_a_refusing_partition_is_refused_at_synth_naming_its_mode():
    refusing = CONFIG.replace(
        "between: [gateway, postgres], duration_s: 10",
        "between: [gateway, postgres], mode: refuse, duration_s: 10",
    )
    with pytest.raises(ConfigError) as e:
        _experiments(refusing)
    assert e.value.where == "faults.cut-db.mode"


def test_the_experiment_watch_lasts_a_network_faults_hold_and_its_observation_window(net):
    """A 10-s partition, then the one-minute observation window: the watch budget covers both, so a long
    partition is not cut off as a fault timeout while it still holds."""
    specs = {s.name: s for s in net["stack"].faults.experiments}
    window = net["stack"].faults.observation_window_s
    assert experiment_wait_s(specs["cut-db"]) == 10 + window
    assert experiment_wait_s(specs["kill-matcher"]) == window  # stop-task holds nothing
    assert watch_seconds(list(specs.values())) == 10 + window + c.EXPERIMENT_WATCH_MARGIN_S
