"""Issue 27, item 1: a distributed load on Fargate. With ``load.workers`` the state machine starts the load
task as the Locust master, reads its private IPv4 address from ``ecs:DescribeTasks`` once it is RUNNING
(``Containers[].NetworkInterfaces[].PrivateIpv4Address``: the ECS API Reference's *NetworkInterface*, "the
elastic network interface for tasks that use the awsvpc network mode"), starts the run profile's workers
``w1``..``wN`` with it (one ``ecs:RunTask`` each: RunTask's ``overrides`` apply to every task of a call,
and each worker needs its own node name), waits until all are RUNNING and counts the load's start from
the last one; every worker is stopped at the load's end and on the cleanup path. The security group
admits the Locust port from the load tasks only. One stack of a small distributed config is synthesized
for the module and its definition executed in moto, every task mocked (the Step Functions AWS SDK
integration, *Call other AWS services*: ``arn:aws:states:::aws-sdk:ecs:runTask`` takes RunTask's
parameters in PascalCase)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra import constants as c
from tests.infra import test_state_machine as sm
from tests.infra.support.cfn import ACCOUNT, REGION, render
from tests.infra.support.sfn_mock import Return, mocked_responses, wait_for_end
from tests.infra.support.synth import synthesize
from tests.infra.support.validators import definition_of, sdk_task_parameter_errors

pytestmark = pytest.mark.infra

CONFIG = """
gate: {name: pb-dist}
target:
  environment: dev
  tags: {app: paperbroker}
  local:
    services:
      - {name: gateway, command: [python3], expose: true}
  aws:
    cluster: pb-cluster
    services: {gateway: pb-gateway}
load: {users: 8, duration_s: 30, baseline_s: 2, workers: 2}
faults:
  - {name: kill-gateway, kind: stop_task, target: gateway, at_s: 10}
checks: {integrity: false, replay: false}
profiles:
  solo:
    load: {workers: 0}
"""
MASTER = "arn:aws:ecs:us-east-1:123456789012:task/load/master"
WORKERS = [f"arn:aws:ecs:us-east-1:123456789012:task/load/w{i}" for i in (1, 2)]
MASTER_IP = "10.0.1.23"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The distributed gate's stack, synthesized once (with cdk-nag): stack, template, synth error."""
    tmp = tmp_path_factory.mktemp("dist")
    path = Path(tmp) / "gate.yaml"
    path.write_text(CONFIG)
    return synthesize(tmp / "cdk.out", {c.CTX_GATE_CONFIG: str(path)})


def test_the_distributed_stack_passes_cdk_nag_with_no_new_finding(dist):
    assert dist["error"] is None


def of_type(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def test_workers_reach_the_masters_locust_port_from_the_load_tasks_and_nothing_else_comes_in(dist):
    template = dist["template"]
    (sg_id,) = [k for k, v in of_type(template, "AWS::EC2::SecurityGroup").items() if "Locust" in str(v)]
    ingress = [
        v["Properties"]
        for v in of_type(template, "AWS::EC2::SecurityGroupIngress").values()
        if v["Properties"]["GroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}
    ]
    inline = of_type(template, "AWS::EC2::SecurityGroup")[sg_id]["Properties"].get("SecurityGroupIngress", [])
    assert inline == []
    (rule,) = ingress
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5557, 5557)
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [sg_id, "GroupId"]}


def test_the_load_task_role_may_read_the_gates_evidence_for_the_workers_parts_and_nothing_more(dist):
    template = dist["template"]
    (task_def,) = of_type(template, "AWS::ECS::TaskDefinition").values()
    role_id = task_def["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        st
        for p in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = sorted(
        a for st in statements for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    )
    assert actions == ["cloudwatch:PutMetricData", "s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    (get,) = [st for st in statements if st["Action"] == "s3:GetObject"]
    assert "evidence/gate=pb-dist/*" in json.dumps(get["Resource"])
    # A worker's part not uploaded yet is a 404 to the polling master, not a 403 (Amazon S3 API reference,
    # "GetObject": a missing key is 403 without s3:ListBucket): the gate's prefix only.
    (listing,) = [st for st in statements if st["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["evidence/gate=pb-dist/*"]}}


def test_the_state_machine_runs_only_the_load_task_definition_in_the_load_cluster_and_passes_only_its_roles(
    dist,
):
    template = dist["template"]
    (machine_id,) = of_type(template, "AWS::StepFunctions::StateMachine")
    role_id = template["Resources"][machine_id]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        st
        for p in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (task_def_id,) = of_type(template, "AWS::ECS::TaskDefinition")
    (run,) = [st for st in statements if st["Action"] == "ecs:RunTask"]
    assert run["Resource"] == {"Ref": task_def_id} and "ecs:cluster" in json.dumps(run["Condition"])
    (pass_role,) = [st for st in statements if st["Action"] == "iam:PassRole"]
    assert len(pass_role["Resource"]) == 2  # the load task's task role and execution role
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_every_worker_state_passes_botocores_validation_of_its_ecs_call(dist):
    problems = sdk_task_parameter_errors(definition_of(dist["template"]))
    assert problems == []
    names = set(definition_of(dist["template"])["States"])
    assert {"Start load worker w1", "Start load worker w2", "Describe load workers"} <= names
    assert {"Stop load worker w2", "Stop load worker w2 after error"} <= names


def worker_status(*statuses: str, started: tuple[str, ...] = ()) -> Return:
    tasks = []
    for i, status in enumerate(statuses):
        task: dict[str, Any] = {"TaskArn": WORKERS[i], "LastStatus": status}
        if i < len(started):
            task["StartedAt"] = started[i]
        tasks.append(task)
    return Return({"Tasks": tasks, "Failures": []})


def master_status(status: str, exit_code: int | None = None) -> Return:
    task: dict[str, Any] = {"TaskArn": MASTER, "LastStatus": status, "StartedAt": "2026-01-01T10:00:00Z"}
    task["Containers"] = [{"Name": "loadgen", "NetworkInterfaces": [{"PrivateIpv4Address": MASTER_IP}]}]
    if exit_code is not None:
        task["Containers"][0]["ExitCode"] = exit_code
    return Return({"Tasks": [task], "Failures": []})


def responses(**overrides: Any) -> dict[str, Any]:
    r = sm.happy_path()
    for f in sm.FAULTS:
        for prefix in ("Start", "Recheck", "Get", "Stop experiment"):
            r.pop(f"{prefix} {f}", None)
    r.pop("Check integrity"), r.pop("Check replay")
    r["Start kill-gateway"] = [Return({"Experiment": {"Id": "EXP-kill"}})]
    r["Get kill-gateway"] = sm.experiment_status("completed")
    r["Stop experiment kill-gateway"] = [Return({})]
    r["Start load task"] = [Return({"Tasks": [{"TaskArn": MASTER}]})]
    r["Describe load task"] = [master_status("PROVISIONING"), master_status("RUNNING")]
    r["Describe finished load task"] = [master_status("STOPPED", exit_code=0)]
    for i, arn in enumerate(WORKERS, start=1):
        r[f"Start load worker w{i}"] = [Return({"Tasks": [{"TaskArn": arn}]})]
        r[f"Stop load worker w{i}"] = [Return({})]
        r[f"Stop load worker w{i} after error"] = [Return({})]
    r["Describe load workers"] = [
        worker_status("PROVISIONING", "RUNNING", started=("", "2026-01-01T10:00:40Z")),
        worker_status("RUNNING", "RUNNING", started=("2026-01-01T10:00:45Z", "2026-01-01T10:00:40Z")),
    ]
    r.update(overrides)
    return r


@pytest.fixture(scope="module")
def run_dist(dist) -> Iterator[Any]:
    """``run(name, responses, profile=None) -> sm.Execution`` on the distributed stack's definition."""
    resources = dist["template"]["Resources"]
    (machine,) = of_type(dist["template"], "AWS::StepFunctions::StateMachine").values()
    definition = render(machine["Properties"]["DefinitionString"], resources)
    waits = {k: 0 for k in dist["stack"].gate_machine.default_waits}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), mocked_responses() as shim:
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name="gate", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/gate"
        )["stateMachineArn"]

        def run(name: str, mocked: dict[str, Any], profile: str | None = None) -> sm.Execution:
            calls = shim.register(name, mocked)
            body: dict[str, Any] = {"waits": waits, **({"profile": profile} if profile else {})}
            started = client.start_execution(stateMachineArn=arn, name=name, input=json.dumps(body))
            d = wait_for_end(client, started["executionArn"])
            history = client.get_execution_history(executionArn=started["executionArn"], maxResults=1000)
            return sm.Execution(
                status=d["status"],
                error=d.get("error"),
                cause=d.get("cause"),
                output=json.loads(d["output"]) if d.get("output") else None,
                calls=list(calls.calls),
                entered=[
                    e["stateEnteredEventDetails"]["name"]
                    for e in history["events"]
                    if "stateEnteredEventDetails" in e
                ],
                history=history["events"],
            )

        yield run


def environment(ex: sm.Execution, state: str) -> dict[str, str]:
    (override,) = ex.parameters(state)["Overrides"]["ContainerOverrides"]
    return {e["Name"]: e["Value"] for e in override["Environment"]}


def test_the_master_starts_first_then_each_worker_with_its_address_and_the_load_counts_from_the_last(
    run_dist,
):
    ex = run_dist("dist-pass", responses())
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    starts = [x for x in ex.calls if x.startswith("Start load")]
    assert starts == ["Start load task", "Start load worker w1", "Start load worker w2"]
    master = environment(ex, "Start load task")
    assert (master["RESGATE_LOAD_ROLE"], master["RESGATE_LOAD_WORKERS"], master["RESGATE_LOAD_NODE"]) == (
        "master",
        "2",
        "master",
    )
    for node in ("w1", "w2"):
        worker = environment(ex, f"Start load worker {node}")
        assert (worker["RESGATE_LOAD_ROLE"], worker["RESGATE_LOAD_NODE"]) == ("worker", node)
        assert worker["RESGATE_MASTER_HOST"] == MASTER_IP
        assert worker["RESGATE_EVIDENCE_S3_URI"] == master["RESGATE_EVIDENCE_S3_URI"]
        params = ex.parameters(f"Start load worker {node}")
        assert params["StartedBy"] == c.LOADGEN_STARTED_BY and params["Count"] == 1
        assert params["Tags"] == [{"Key": c.EXPERIMENT_TAG_RUN_ID, "Value": "dist-pass"}]
    tokens = {ex.parameters(s)["ClientToken"] for s in starts}
    assert len(tokens) == 3 and all(len(t) == 64 for t in tokens)  # one idempotent token per task
    # the first poll saw w1 still provisioning: the load's start is the last worker's (10:00:45)
    assert ex.calls.count("Describe load workers") == 2
    fault = next(e for e in ex.history if e.get("stateEnteredEventDetails", {}).get("name") == "Baseline")
    schedule = json.loads(fault["stateEnteredEventDetails"]["input"])["schedule"]
    assert schedule["load_start"] == "2026-01-01T10:00:45Z"
    # at the load's end, after the master exited 0, each worker is stopped before Quiesce
    assert ex.calls.index("Stop load worker w2") < ex.calls.index("Quiesce")
    assert "Stop load worker w1" in ex.calls and "Cleanup" not in ex.entered


def test_a_worker_that_stops_before_the_faults_enters_cleanup_which_stops_the_master_and_every_worker(
    run_dist,
):
    ex = run_dist(
        "dist-worker-died",
        responses(
            **{
                "Describe load workers": [
                    worker_status("RUNNING", "STOPPED", started=("2026-01-01T10:00:45Z",) * 2)
                ]
            }
        ),
    )
    assert ex.status == "FAILED" and "LoadWorkerStopped" in (ex.cause or ""), (ex.error, ex.cause)
    stops = [x for x in ex.calls if x.startswith("Stop load")]
    assert stops == ["Stop load task", "Stop load worker w1 after error", "Stop load worker w2 after error"]
    assert ex.parameters("Stop load worker w2 after error")["Task"] == WORKERS[1]
    assert not any(x.startswith("Start kill") for x in ex.calls)


def test_a_master_that_fails_after_one_worker_started_stops_only_the_worker_that_exists(run_dist):
    ex = run_dist("dist-second-refused", responses(**{"Start load worker w2": [Return({"Tasks": []})]}))
    assert ex.status == "FAILED" and "LoadTaskNotCreated" in (ex.cause or "")
    stops = [x for x in ex.calls if x.startswith("Stop load")]
    assert stops == ["Stop load task", "Stop load worker w1 after error"]


def test_a_profile_with_no_workers_runs_the_master_alone(run_dist):
    ex = run_dist("dist-solo", responses(), profile="solo")
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert not any(x.startswith("Start load worker") or x == "Describe load workers" for x in ex.calls)
    assert environment(ex, "Start load task")["RESGATE_LOAD_WORKERS"] == "0"
    assert not any(x.startswith("Stop load worker") for x in ex.calls)


def test_a_running_master_without_a_private_address_enters_cleanup_before_any_worker_starts(run_dist):
    no_address = Return({"Tasks": [{"TaskArn": MASTER, "LastStatus": "RUNNING", "Containers": [{}]}]})
    ex = run_dist("dist-no-address", responses(**{"Describe load task": [no_address]}))
    assert ex.status == "FAILED" and "LoadMasterAddressUnknown" in (ex.cause or "")
    assert not any(x.startswith("Start load worker") for x in ex.calls)
    assert [x for x in ex.calls if x.startswith("Stop load")] == ["Stop load task"]
