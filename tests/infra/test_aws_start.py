"""`resgate aws start --wait` follows a real execution of the synthesized state machine (moto, with the
integrations mocked as in test_state_machine), prints its phases and exits like `resgate run`."""

from __future__ import annotations

import io
import json
import re

import boto3
import pytest
from moto import mock_aws

from resgate.aws_cli import Clients, StackOutputs, start
from resgate.contract.layout import RunKey
from resgate.evidence.s3 import S3Store
from tests.infra.support.cfn import ACCOUNT, REGION
from tests.infra.support.sfn_mock import Throw, mocked_responses
from tests.infra.test_state_machine import definition, happy_path, verdict, zero_waits  # noqa: F401

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def aws(definition: str):  # noqa: F811
    """moto with the gate's state machine and evidence bucket: ``(clients, outputs, shim)``."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), mocked_responses() as shim:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="evidence-bucket")
        arn = sfn.create_state_machine(
            name="gate", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/gate"
        )["stateMachineArn"]
        outputs = StackOutputs(
            state_machine_arn=arn,
            bucket="evidence-bucket",
            database="resgate_paperbroker_evidence",
            workgroup="resgate-paperbroker",
            gate="paperbroker",
        )
        yield Clients(stepfunctions=sfn, s3=s3), outputs, shim


def _start(aws, zero_waits, name: str, responses) -> tuple[int, str]:  # noqa: F811
    clients, outputs, shim = aws
    shim.register(name, responses)
    out = io.StringIO()
    # Each poll reads the whole history, which moto serializes member by member while its interpreter
    # thread waits for the GIL: at 0.01 s the polls took most of each run's time. Every event is printed
    # whatever the interval (follow reads the history from where it stopped).
    code = start(
        clients, outputs, out=out, wait=True, run_id=name, extra_input={"waits": zero_waits}, poll_s=0.25
    )
    return code, out.getvalue()


def test_a_passing_execution_prints_the_phases_in_order_and_exits_0(aws, zero_waits):  # noqa: F811
    code, out = _start(aws, zero_waits, "aws-start-pass", happy_path())
    assert code == 0
    phases = re.findall(r"^\[\s*\d+s\] (\S+) ", out, re.MULTILINE)
    assert phases == ["preflight", "load", "faults", "quiesce", "assertions", "verdict"]
    assert "Start kill-gateway" in out  # each fault's start is shown
    assert "run aws-start-pass started" in out
    assert "VERDICT: PASS" in out
    assert "report:   s3://evidence-bucket/evidence/gate=paperbroker/dt=" in out


def test_a_failing_verdict_exits_1_and_prints_the_verdict_written_to_s3(aws, zero_waits):  # noqa: F811
    clients, outputs, _ = aws
    name = "aws-start-fail"
    # what the verdict Lambda writes (the mocked Lambda does not): the run's verdict.json, dt = start date
    from datetime import UTC, datetime

    key = RunKey(gate="paperbroker", date=datetime.now(UTC).strftime("%Y-%m-%d"), run_id=name)
    S3Store(outputs.bucket, "evidence", key, client=clients.s3).write_text(
        "verdicts", json.dumps({"result": "FAIL", "exit_code": 1, "reason": "failed: integrity"})
    )
    code, out = _start(aws, zero_waits, name, happy_path(Verdict=[verdict(False, "failed: integrity")]))
    assert code == 1
    assert "VERDICT: FAIL — failed: integrity" in out
    assert out.index(" verdict ") < out.index("VERDICT")


def test_a_failed_verdict_without_its_file_still_exits_1(aws, zero_waits):  # noqa: F811
    code, out = _start(aws, zero_waits, "aws-start-fail-2", happy_path(Verdict=[verdict(False, "x")]))
    assert code == 1
    assert "execution FAILED: GateFailed" in out


def test_an_execution_that_ends_in_cleanup_without_a_verdict_exits_2(aws, zero_waits):  # noqa: F811
    responses = happy_path(**{"Start load task": [Throw("ECS.AccessDeniedException", "no")]})
    code, out = _start(aws, zero_waits, "aws-start-error", responses)
    assert code == 2
    assert " cleanup " in out
    assert "execution FAILED: GateRunFailed" in out
