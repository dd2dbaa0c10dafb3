"""The streaming check on AWS: a config that enables it gets the streaming Lambda (the registry's handler,
``lambdas/streaming``) in its own security group, reading the trades topic and the run's files only, and a
``Check streaming`` branch in the state machine's assertions with the config's section; a config that
does not gets neither. The load task runs the subscribers from the config's ``load.env``, and its image
carries the WebSocket client they need.

Least privilege (IAM user guide, "Apply least-privilege permissions"; Amazon MSK developer guide,
"Semantics of the IAM authorization policy actions and resources", kafka-actions.html: ``Connect`` on the
cluster, ``DescribeTopic`` and ``ReadData`` on the topic ARN ``…:topic/<cluster>/<uuid>/<topic>``): the
role may get and put objects only under the gate's evidence prefix (a run's prefix, ``dt=<date>/
run_id=<id>``, is chosen per execution, so no static policy can name it), list only that prefix, and read
only its trades topic; it has no database secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

import app as cdk_app
from infra import constants as c
from tests.infra.support.validators import definition_of, role_statements, states

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / c.DEFAULT_GATE_CONFIG).read_text()
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/trading/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
IAM = (
    "kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: AWS_MSK_IAM\n  region: us-east-1\n"
    f"  cluster_arn: {CLUSTER_ARN}\n"
)
STREAMING = DEFAULT.replace(
    "  users: 20\n", "  users: 20\n  env: {RESGATE_STREAM_SUBSCRIBERS: '3'}\n", 1
).replace("\nchecks:\n", "\nchecks:\n  streaming: {rto_s: 20, topic: md.trades}\n", 1)


@pytest.fixture(scope="module")
def streaming_stack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("streaming")
    path = folder / "gate.yaml"
    path.write_text(STREAMING + IAM)
    app = cdk.App(
        outdir=str(folder / "out"), context={c.CTX_SKIP_BUNDLING: "true", c.CTX_GATE_CONFIG: str(path)}
    )
    stack = cdk_app.build(app)
    return stack, app.synth().get_stack_by_name(stack.stack_name).template


def _one(template: dict[str, Any], rtype: str, key_part: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, r) for k, r in template["Resources"].items() if r["Type"] == rtype and key_part in k]
    return found


def test_a_config_that_enables_streaming_gets_its_lambda_in_its_own_security_group_with_the_brokers(
    streaming_stack,
):
    stack, template = streaming_stack
    _, fn = _one(template, "AWS::Lambda::Function", "StreamingFunction")
    props = fn["Properties"]
    assert props["Handler"] == "lambdas.streaming.handler.handler"
    env = props["Environment"]["Variables"]
    assert env[c.ENV_KAFKA_BOOTSTRAP] and env["KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM"
    assert c.ENV_DB_SECRET_ARN not in env  # it never reads the database
    sg_id, _ = _one(template, "AWS::EC2::SecurityGroup", "StreamClients")
    assert props["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [sg_id, "GroupId"]}]
    assert template["Outputs"]["StreamClientsSecurityGroup"]["Value"] == {"Fn::GetAtt": [sg_id, "GroupId"]}
    assert "streaming" in stack.functions.check_functions
    assert stack.unreviewed_findings == []


def test_the_streaming_role_reads_only_the_gates_evidence_and_its_trades_topic(streaming_stack):
    _, template = streaming_stack
    role_id, _ = _one(template, "AWS::IAM::Role", "StreamingRole")
    by_action: dict[str, list[Any]] = {}
    for st in role_statements(template, role_id):
        assert st["Effect"] == "Allow"
        for action in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
            by_action.setdefault(action, []).append(st)
    eni = {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"}
    eni |= {"ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
    assert set(by_action) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        *eni,
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:ReadData",
    }
    for action in ("s3:GetObject", "s3:PutObject"):
        (st,) = by_action[action]
        assert json.dumps(st["Resource"]).endswith('"/evidence/gate=paperbroker/*"]]}')
    (listing,) = by_action["s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["evidence/gate=paperbroker/*"]}}
    (connect,) = by_action["kafka-cluster:Connect"]
    assert connect["Resource"] == CLUSTER_ARN
    (read,) = by_action["kafka-cluster:ReadData"]
    assert read["Resource"] == CLUSTER_ARN.replace(":cluster/", ":topic/") + "/md.trades"


def test_the_state_machine_runs_the_streaming_check_with_its_section_among_the_assertions(streaming_stack):
    _, template = streaming_stack
    found = dict(states(definition_of(template)))
    check = found["Check streaming"]
    payload = check["Parameters"]["Payload"]
    assert payload["thresholds"] == {"rto_s": 20, "topic": "md.trades"}
    assert "StreamingFunction" in json.dumps(check["Parameters"]["FunctionName"])
    assert check["Catch"][0]["Next"] == "Check streaming errored"  # its error is the verdict's unknown
    (parallel,) = [
        s for s in found.values() if s["Type"] == "Parallel" and "Check streaming" in json.dumps(s)
    ]
    assert {b["StartAt"] for b in parallel["Branches"]} >= {"Check streaming", "Check integrity"}


def test_the_load_task_runs_the_configs_subscribers(streaming_stack):
    _, template = streaming_stack
    _, task = _one(template, "AWS::ECS::TaskDefinition", "Load")
    (container,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["RESGATE_STREAM_SUBSCRIBERS"] == "3"


def test_a_config_without_streaming_deploys_no_streaming_lambda(synth):
    assert not [k for k in synth.template_json["Resources"] if "Streaming" in k or "StreamClients" in k]
    assert "streaming" not in synth.stack.functions.check_functions


def test_the_load_image_installs_the_websocket_client_the_subscribers_use_at_its_pinned_version():
    dockerfile = (ROOT / "loadgen" / "Dockerfile").read_text()
    (pin,) = re.findall(r"^websocket-client==\S+$", (ROOT / "constraints.txt").read_text(), re.M)
    assert f'"{pin}"' in dockerfile
    assert re.search(r'python -c "import [^"]*\bwebsocket\b', dockerfile)  # the build imports it, as they do
