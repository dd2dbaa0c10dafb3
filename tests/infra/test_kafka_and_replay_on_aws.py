"""The stack's Kafka settings (TLS, MSK IAM) and replay's rebuild task: what synth refuses, what the
integrity/replay Lambdas are told in their environment and what their roles may do."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

import app as cdk_app
from infra import constants as c
from infra.settings import DeploymentSettings
from resgate.contract.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / c.DEFAULT_GATE_CONFIG).read_text()
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/trading/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
IAM = (
    "kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: AWS_MSK_IAM\n  region: us-east-1\n"
    f"  cluster_arn: {CLUSTER_ARN}\n"
)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(text)
    return p


def _settings(path: Path, **ctx: str) -> DeploymentSettings:
    context = {c.CTX_GATE_CONFIG: str(path), **ctx}
    return DeploymentSettings.from_context(context.get, root=ROOT, env={})


def _callable_only(text: str) -> str:
    start = text.index("    rebuild:\n")
    end = text.index("    read_models:", start)
    return text[:start] + '    rebuild: {callable: "paperbroker.projections:rebuild"}\n' + text[end:]


def test_synth_refuses_a_replay_rebuild_the_lambda_cannot_import(tmp_path):
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, _callable_only(DEFAULT)))
    assert e.value.where == "checks.replay.read_models[0].rebuild"
    assert "paperbroker.projections:rebuild cannot run in the replay Lambda" in str(e.value)
    assert "ecs_task" in str(e.value)


def test_synth_refuses_a_rebuild_task_that_leaves_the_lambda_no_time_to_compare(tmp_path):
    text = DEFAULT.replace("      ecs_task:", "      timeout_s: 850\n      ecs_task:")
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, text))
    assert e.value.where == "checks.replay.read_models[0].rebuild.timeout_s"


def _without(text: str, key: str) -> str:
    out = re.sub(rf",\s*{key}: \"[^\"]+\"", "", text, count=1)
    assert out != text, key
    return out


@pytest.mark.parametrize("key", ["execution_role_arn", "task_role_arn"])
def test_synth_refuses_a_rebuild_task_that_does_not_name_its_task_definitions_roles(tmp_path, key):
    """ECS RunTask needs iam:PassRole for the task role and the execution role already in the task
    definition, not only for overrides (Amazon ECS developer guide, "Amazon ECS task execution IAM role" and
    "Amazon ECS task IAM role": the user that runs the task must be allowed iam:PassRole on them); the
    default config named neither, so replay's RunTask was AccessDenied on AWS and every run FAILed."""
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, _without(DEFAULT, key)))
    assert e.value.where == f"checks.replay.read_models[0].rebuild.ecs_task.{key}"
    assert "iam:PassRole" in str(e.value)


def test_the_replay_lambda_may_pass_exactly_the_rebuild_task_definitions_two_roles(synth):
    (passes,) = [
        st
        for st in _statements(synth)
        if st["Action"] == "iam:PassRole" and "paperbroker-projector" in str(st)
    ]
    assert sorted(passes["Resource"]) == [
        "arn:aws:iam::123456789012:role/paperbroker-projector-execution",
        "arn:aws:iam::123456789012:role/paperbroker-projector-task",
    ]
    assert passes["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_synth_refuses_msk_iam_without_the_cluster_arn(tmp_path):
    text = DEFAULT + "kafka: {security_protocol: SASL_SSL, sasl_mechanism: AWS_MSK_IAM, region: us-east-1}\n"
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, text))
    assert e.value.where == "kafka.cluster_arn"


def test_synth_refuses_an_msk_bootstrap_on_another_protocols_port(tmp_path):
    broker = "b-1.trading.abc123.c2.kafka.us-east-1.amazonaws.com:9094"
    with pytest.raises(ConfigError, match="MSK serves SASL_SSL on port 9098") as e:
        _settings(_write(tmp_path, DEFAULT + IAM), kafka_bootstrap=broker)
    assert e.value.where == "context.kafka_bootstrap"


def test_the_default_stack_runs_the_projector_image_for_replay(synth):
    s = synth.stack.functions
    env = _env(synth, "Replay")
    assert env["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert env["REPLAY_CLUSTER"] == "paperbroker"
    assert env["REPLAY_SUBNETS"] and env["REPLAY_SECURITY_GROUPS"]
    assert "REPLAY_CLUSTER" not in _env(synth, "Integrity")
    assert s.kafka_port == 9092
    run = [
        st
        for st in _statements(synth)
        if st["Action"] == "ecs:RunTask"
        and "task-definition/paperbroker-projector:*" in json.dumps(st["Resource"])
    ]
    assert len(run) == 1
    assert "ecs:cluster" in run[0]["Condition"]["ArnEquals"]
    assert not [st for st in _statements(synth) if "kafka-cluster:Connect" in _as_list(st["Action"])]


def test_msk_iam_lets_integrity_and_replay_connect_to_the_one_cluster_and_read_their_topics(tmp_path):
    path = _write(tmp_path, DEFAULT + IAM)
    app = cdk.App(
        outdir=str(tmp_path / "out"), context={c.CTX_SKIP_BUNDLING: "true", c.CTX_GATE_CONFIG: str(path)}
    )
    stack = cdk_app.build(app)
    template = app.synth().get_stack_by_name(stack.stack_name).template
    statements = []
    for res in template["Resources"].values():
        if res["Type"] == "AWS::IAM::Policy":
            statements += res["Properties"]["PolicyDocument"]["Statement"]
    connect = [s for s in statements if s["Action"] == "kafka-cluster:Connect"]
    read = [s for s in statements if s["Action"] == ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]]
    # integrity, replay and the quiesce step (the consumer groups' lag)
    assert len(connect) == 3 and all(s["Resource"] == CLUSTER_ARN for s in connect)
    topic = CLUSTER_ARN.replace(":cluster/", ":topic/")
    assert len(read) == 3
    groups = [s for s in statements if s["Action"] == "kafka-cluster:DescribeGroup"]
    group = CLUSTER_ARN.replace(":cluster/", ":group/")
    assert [sorted(s["Resource"]) for s in groups] == [
        [f"{group}/paperbroker-matcher", f"{group}/paperbroker-projector"]
    ]
    assert all(sorted(s["Resource"]) == [f"{topic}/pb.executions", f"{topic}/pb.orders"] for s in read)
    assert stack.functions.kafka_port == 9098
    env = next(
        r["Properties"]["Environment"]["Variables"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and "ReplayFunction" in k
    )
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM"
    assert env["KAFKA_REGION"] == "us-east-1"
    assert stack.unreviewed_findings == []


def _env(synth: Any, name: str) -> dict[str, Any]:
    fns = synth.resources("AWS::Lambda::Function")
    return next(r["Properties"]["Environment"]["Variables"] for k, r in fns.items() if f"{name}Function" in k)


def _statements(synth: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in synth.template_json["Resources"].values():
        if res["Type"] == "AWS::IAM::Policy":
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]
