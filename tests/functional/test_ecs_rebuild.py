"""The replay Lambda's ECS rebuild runner against moto's ECS: what RunTask is asked for, and how a
stopped task is judged.

moto runs no container: its tasks stop at once with exit code 0 unless the fake cluster is told otherwise
(a container that exits 3, a task that never stops). So these tests check the request the runner sends
(task definition, the replay environment as the container's override, the stack's network) as moto
recorded it, and the runner's verdict on what ECS reports back; the replay checker's own handling of a
failed rebuild (``unknown`` with the reason) is checked through the replay handler.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecs.models import ecs_backends
from moto.moto_api import state_manager

from lambdas.replay.ecs_rebuild import EcsRebuildRunner, dsn_without_password
from lambdas.replay.handler import handler
from resgate.checks.replay import RebuildJob, RebuildSpec
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import GateError
from resgate.sections.kafka import KafkaSettings
from tests.functional import _replay_projection as projection
from tests.functional.support import REGION, load_event, produce_json, put_db_secret

CLUSTER = "trading"
TASK = {
    "task_definition": "pb-projector",
    "container": "projector",
    "command": ["python", "-m", "pb", "rebuild"],
}


@pytest.fixture
def ecs() -> dict[str, Any]:
    """A cluster, a Fargate task definition of the target's image, and the stack's subnet and group."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto's awsvpc tasks need it
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="db-clients", Description="x", VpcId=vpc)["GroupId"]
    client = boto3.client("ecs", region_name=REGION)
    client.create_cluster(clusterName=CLUSTER)
    client.register_task_definition(
        family="pb-projector",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "projector", "image": "example/paperbroker:1", "memory": 512}],
    )
    return {"client": client, "ec2": ec2, "subnet": subnet, "sg": sg}


@pytest.fixture
def exits_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``exits_with(code, reason)``: the fake cluster's containers exit with ``code``."""

    def make(code: int | None, reason: str = "Essential container in task exited") -> None:
        backend_class = type(ecs_backends[DEFAULT_ACCOUNT_ID][REGION])
        original = backend_class.run_task

        def run_task(self: Any, *args: Any, **kwargs: Any) -> Any:
            tasks = original(self, *args, **kwargs)
            for t in tasks:
                t.stopped_reason = reason
                for c in t.containers:
                    c.exitCode = code
            return tasks

        monkeypatch.setattr(backend_class, "run_task", run_task)

    yield make


def _job(**spec: Any) -> RebuildJob:
    return RebuildJob(
        RebuildSpec.from_dict({"ecs_task": {**TASK, **spec}, "timeout_s": 30}),
        "host=db.internal port=5432 user=gate password=s3cret dbname=trading",
        "resgate_replay_r1_ab12",
        {"pb.orders": {0: 12, 1: 9}},
        "b-1.msk.example:9098",
        KafkaSettings("SASL_SSL", "AWS_MSK_IAM", "us-east-1"),
    )


def _runner(ecs: dict[str, Any], **kw: Any) -> EcsRebuildRunner:
    return EcsRebuildRunner(
        ecs["client"], CLUSTER, (ecs["subnet"],), (ecs["sg"],), poll_s=0, sleep=lambda s: None, **kw
    )


def _only_task(ecs: dict[str, Any]) -> dict[str, Any]:
    arns = ecs["client"].list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"]
    arns += ecs["client"].list_tasks(cluster=CLUSTER)["taskArns"]
    assert len(set(arns)) == 1, arns
    return ecs["client"].describe_tasks(cluster=CLUSTER, tasks=arns[:1])["tasks"][0]


def test_the_runner_starts_the_named_task_with_the_replay_environment_in_the_stacks_network(ecs):
    _runner(ecs)(_job())

    task = _only_task(ecs)
    assert task["taskDefinitionArn"].endswith(":task-definition/pb-projector:1")
    assert task["launchType"] == "FARGATE" and task["startedBy"] == "resgate-replay"
    (override,) = task["overrides"]["containerOverrides"]
    assert override["name"] == "projector"
    assert override["command"] == ["python", "-m", "pb", "rebuild"]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert env["RESGATE_REPLAY_SCHEMA"] == "resgate_replay_r1_ab12"
    assert env["RESGATE_REPLAY_END_OFFSETS"] == '{"pb.orders": {"0": 12, "1": 9}}'
    assert env["RESGATE_KAFKA_BOOTSTRAP"] == "b-1.msk.example:9098"
    assert env["RESGATE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["RESGATE_KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM"
    assert env["RESGATE_KAFKA_REGION"] == "us-east-1"
    # no secret travels in RunTask's request: the task definition supplies the password
    assert "s3cret" not in str(task) and "password" not in env["RESGATE_REPLAY_DSN"]
    assert psycopg.conninfo.conninfo_to_dict(env["RESGATE_REPLAY_DSN"])["host"] == "db.internal"
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert details["subnetId"] == ecs["subnet"]
    eni = ecs["ec2"].describe_network_interfaces(NetworkInterfaceIds=[details["networkInterfaceId"]])
    assert [g["GroupId"] for g in eni["NetworkInterfaces"][0]["Groups"]] == [ecs["sg"]]


def test_the_request_follows_the_spec_cluster_and_launch_type():
    runner = EcsRebuildRunner(None, "default-cluster", ("subnet-1",), ())
    req = runner.request(_job(cluster="other", launch_type="EC2", command=None))
    assert req["cluster"] == "other" and req["launchType"] == "EC2"
    assert req["tags"] == [{"key": "ResGateReplay", "value": "rebuild"}]  # the only tasks it may stop
    assert "command" not in req["overrides"]["containerOverrides"][0]
    assert req["networkConfiguration"] == {
        "awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}
    }


def test_a_task_whose_container_exited_non_zero_fails_the_rebuild_with_the_reason(ecs, exits_with):
    exits_with(3)
    with pytest.raises(GateError) as e:
        _runner(ecs)(_job())
    msg = str(e.value)
    assert "container 'projector' exited with 3" in msg
    assert "stoppedReason: Essential container in task exited" in msg


def test_a_task_that_stopped_before_its_container_ran_fails_the_rebuild(ecs, exits_with):
    exits_with(None, "CannotPullContainerError: pull access denied")
    with pytest.raises(
        GateError, match=r"stopped before container 'projector' exited.*CannotPullContainerError"
    ):
        _runner(ecs)(_job())


def test_a_rebuild_task_that_outlives_its_timeout_is_stopped(ecs):
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**6})
    now = [0.0]

    def tick(s: float) -> None:
        now[0] += 10.0

    try:
        runner = EcsRebuildRunner(
            ecs["client"],
            CLUSTER,
            (ecs["subnet"],),
            (ecs["sg"],),
            poll_s=10,
            sleep=tick,
            clock=lambda: now[0],
        )
        with pytest.raises(GateError, match="did not finish within 30s"):
            runner(_job())
    finally:
        state_manager.unset_transition("ecs::task")
    task = _only_task(ecs)
    assert task["lastStatus"] == "STOPPED" and "did not finish within 30s" in task["stoppedReason"]


def test_the_dsn_loses_only_its_password():
    out = psycopg.conninfo.conninfo_to_dict(dsn_without_password("host=h user=u password=p dbname=d"))
    assert out == {"host": "h", "user": "u", "dbname": "d"}


@pytest.mark.integration
def test_the_replay_handler_reports_unknown_with_the_reason_when_the_rebuild_task_fails(
    ecs, exits_with, pg_dsn, kafka_bootstrap, new_topic, evidence, lambda_context, monkeypatch
):
    topic = new_topic(partitions=2)
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "type": "OrderAccepted",
            "order_id": "o-1",
            "client_id": "c",
            "qty": 1,
        }
    ]
    asyncio.run(produce_json(kafka_bootstrap, topic, [(0, e) for e in events]))
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        projection.create_table(c, "public")
        projection.apply(c, "public", events)
    monkeypatch.setenv("REPLAY_CLUSTER", CLUSTER)
    monkeypatch.setenv("REPLAY_SUBNETS", ecs["subnet"])
    monkeypatch.setenv("REPLAY_SECURITY_GROUPS", ecs["sg"])
    # moto's task reaches STOPPED after a few DescribeTasks: the handler's runner asks again at once
    # instead of every 5 s (its polling and timeout are the tests above, on a fake clock).
    from_env = EcsRebuildRunner.from_env
    monkeypatch.setattr(
        EcsRebuildRunner,
        "from_env",
        lambda client, env=None, **kw: from_env(client, env, **{"poll_s": 0, "sleep": lambda s: None, **kw}),
    )
    exits_with(2)
    config = {
        "read_models": [{"name": "orders_rm", "table": "public.orders_rm", "key_columns": ["order_id"]}],
        "topics": [topic],
        # on AWS the ECS task runs, not the callable (which the Lambda's bundle could not import)
        "rebuild": {
            "callable": "paperbroker_not_bundled.projections:rebuild",
            "ecs_task": TASK,
            "timeout_s": 60,
        },
    }
    event = load_event(
        "replay", config=config, db_secret_arn=put_db_secret(pg_dsn), kafka_bootstrap=kafka_bootstrap
    )

    out = handler(event, lambda_context)

    assert out["valid"] == UNKNOWN, out
    assert "container 'projector' exited with 2" in out["error"], out["error"]
