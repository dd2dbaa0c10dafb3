"""Replay's rebuild config: the ECS task kind (the target's own image on AWS) beside the local kinds, and
which one runs where."""

from __future__ import annotations

import json

import pytest

from resgate.checks.replay import EcsTaskSpec, RebuildJob, RebuildSpec
from resgate.checks.replay.rebuild import run_rebuild
from resgate.contract.errors import ConfigError
from resgate.sections.kafka import KafkaSettings

TASK = {
    "task_definition": "pb-projector",
    "container": "projector",
    "command": ["python", "-m", "x", "rebuild"],
}


def test_an_ecs_task_rebuild_is_read_with_every_field():
    spec = RebuildSpec.from_dict(
        {
            "ecs_task": {
                **TASK,
                "cluster": "trading",
                "launch_type": "EC2",
                "task_role_arn": "arn:aws:iam::123456789012:role/pb-task",
                "execution_role_arn": "arn:aws:iam::123456789012:role/pb-exec",
            },
            "timeout_s": 300,
        }
    )
    assert spec.ecs_task == EcsTaskSpec(
        "pb-projector",
        "projector",
        "trading",
        ("python", "-m", "x", "rebuild"),
        "EC2",
        "arn:aws:iam::123456789012:role/pb-task",
        "arn:aws:iam::123456789012:role/pb-exec",
    )
    assert not spec.local and spec.timeout_s == 300


def test_a_callable_and_an_ecs_task_may_be_given_together():
    spec = RebuildSpec.from_dict({"callable": "pkg.mod:fn", "ecs_task": TASK})
    assert spec.local and spec.ecs_task is not None


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ({}, "replay.rebuild", "give callable"),
        ({"callable": "a:b", "command": ["x"]}, "replay.rebuild", "not both"),
        ({"ecs_task": {"container": "c"}}, "replay.rebuild.ecs_task.task_definition", "is required"),
        (
            {"ecs_task": {**TASK, "task_definition": "a b"}},
            "replay.rebuild.ecs_task.task_definition",
            "family",
        ),
        ({"ecs_task": {**TASK, "container": ""}}, "replay.rebuild.ecs_task.container", "non-empty"),
        ({"ecs_task": {**TASK, "cluster": "a/b"}}, "replay.rebuild.ecs_task.cluster", "cluster name"),
        ({"ecs_task": {**TASK, "command": "python x"}}, "replay.rebuild.ecs_task.command", "list"),
        ({"ecs_task": {**TASK, "launch_type": "LAMBDA"}}, "replay.rebuild.ecs_task.launch_type", "one of"),
        (
            {"ecs_task": {**TASK, "task_role_arn": "pb-task"}},
            "replay.rebuild.ecs_task.task_role_arn",
            "role ARN",
        ),
        ({"ecs_task": {**TASK, "image": "x"}}, "replay.rebuild.ecs_task", "unknown keys"),
    ],
)
def test_a_bad_rebuild_names_its_field(body, where, message):
    with pytest.raises(ConfigError) as e:
        RebuildSpec.from_dict(body)
    assert e.value.where == where
    assert message in str(e.value)


def test_the_rebuild_environment_carries_the_schema_the_offsets_and_the_kafka_settings():
    job = RebuildJob(
        RebuildSpec.from_dict({"ecs_task": TASK, "env": {"EXTRA": "1"}}),
        "host=db user=u password=p",
        "shadow_1",
        {"pb.orders": {0: 5, 1: 7}},
        "b-1:9098",
        KafkaSettings("SASL_SSL", "AWS_MSK_IAM", "eu-west-1"),
    )
    env = job.env()
    assert env["RESGATE_REPLAY_SCHEMA"] == "shadow_1"
    assert json.loads(env["RESGATE_REPLAY_END_OFFSETS"]) == {"pb.orders": {"0": 5, "1": 7}}
    assert env["RESGATE_KAFKA_BOOTSTRAP"] == "b-1:9098"
    assert env["RESGATE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["RESGATE_KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM"
    assert env["RESGATE_KAFKA_REGION"] == "eu-west-1"
    assert env["EXTRA"] == "1"


def test_an_injected_runner_runs_the_ecs_task_even_when_a_local_callable_is_given():
    spec = RebuildSpec.from_dict({"callable": "pkg.mod:fn", "ecs_task": TASK})
    job = RebuildJob(spec, "dsn", "s", {}, "b:1")
    seen: list[RebuildJob] = []
    run_rebuild(job, None, seen.append)
    assert seen == [job]


def test_an_ecs_task_without_a_command_cannot_run_locally():
    spec = RebuildSpec.from_dict({"ecs_task": {"task_definition": "td", "container": "c"}})
    with pytest.raises(ConfigError) as e:
        run_rebuild(RebuildJob(spec, "dsn", "s", {}, "b:1"), None, None)
    assert e.value.where == "replay.rebuild.ecs_task.command"
