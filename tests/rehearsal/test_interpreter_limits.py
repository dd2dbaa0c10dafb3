"""The rehearsal's interpreter enforces Step Functions' state data limit as AWS does: a state whose output
exceeds 256 KiB fails the execution with ``States.DataLimitExceeded``, which a Catch (or Retry) of
``States.ALL`` does not handle (AWS Step Functions developer guide, "Step Functions service quotas":
256 KiB of state input/output; "Error handling in Step Functions": States.ALL does not match
States.DataLimitExceeded or States.Runtime). moto's own interpreter hands a Task's oversized result to the
Task's Catch of States.ALL; the rehearsal's twin does not (``interpreter.UNCATCHABLE``). A state's own
output over the limit (the gate's Assertions Parallel) already fails past its Catch in moto."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.core.config import default_user_config

from tests.infra.support.sfn_mock import wait_for_end
from tests.rehearsal.support.interpreter import twins_bound

LIMIT = 256 * 1024


def _definition(payload_bytes: int, branches: int) -> str:
    """A Parallel of ``branches`` branches, each a Pass that outputs ``payload_bytes`` of data; a Catch of
    States.ALL on the Parallel."""
    branch = {
        "StartAt": "Big",
        "States": {"Big": {"Type": "Pass", "Result": {"blob": "x" * payload_bytes}, "End": True}},
    }
    return json.dumps(
        {
            "StartAt": "Assertions",
            "States": {
                "Assertions": {
                    "Type": "Parallel",
                    "Branches": [branch] * branches,
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                    "ResultPath": "$.results",
                    "End": True,
                },
                "Caught": {"Type": "Succeed"},
            },
        }
    )


@pytest.fixture(autouse=True)
def _quiet_moto() -> Iterator[None]:
    # moto logs a failing state with its whole parse tree (here: 256 KiB of "x").
    logger = logging.getLogger("moto")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def _run(payload_bytes: int, branches: int = 1) -> dict[str, object]:
    with (
        mock_aws(),
        mock.patch.dict(default_user_config["stepfunctions"], {"execute_state_machine": True}),
        twins_bound({}),
    ):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="limits",
            definition=_definition(payload_bytes, branches),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        end = wait_for_end(sfn, execution, timeout_s=60)
        history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        end["entered"] = [
            e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
        ]
        return end


def test_a_state_over_256_kib_fails_the_execution_past_a_catch_of_states_all():
    end = _run(LIMIT + 1024)
    assert end["status"] == "FAILED", end
    assert "Caught" not in end["entered"], end["entered"]
    # moto re-raises a branch's States.* error out of a Parallel as States.Runtime ("Custom Error Names
    # MUST NOT begin with the prefix 'States.'"); AWS names it States.DataLimitExceeded. Either way no
    # Catch of States.ALL applies, and the execution fails.
    assert end.get("error") in ("States.DataLimitExceeded", "States.Runtime"), end


def test_a_parallel_whose_branches_fit_but_whose_output_does_not_fails_past_its_catch():
    """The shape of the gate's Assertions: every branch's result under the limit, together over it."""
    end = _run(LIMIT // 3, branches=4)
    assert end["status"] == "FAILED", end
    assert "Caught" not in end["entered"], end["entered"]
    assert end.get("error") == "States.DataLimitExceeded", end


class _BigLambda:
    """A ``lambda:invoke`` twin whose function returns ``size`` bytes of data."""

    def __init__(self, size: int) -> None:
        self.size = size

    def invoke(self, **_: object) -> dict[str, object]:
        body = json.dumps({"blob": "x" * self.size}).encode()
        return {"StatusCode": 200, "Payload": io.BytesIO(body)}


def _run_task(size: int) -> dict[str, object]:
    definition = {
        "StartAt": "Check slo",
        "States": {
            "Check slo": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:slo",
                    "Payload": {},
                },
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Check slo errored"}],
                "End": True,
            },
            "Check slo errored": {"Type": "Succeed"},
        },
    }
    with (
        mock_aws(),
        mock.patch.dict(default_user_config["stepfunctions"], {"execute_state_machine": True}),
        twins_bound({"lambda": _BigLambda(size)}),
    ):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="task", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        end = wait_for_end(sfn, execution, timeout_s=60)
        history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        end["entered"] = [
            e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
        ]
        return end


def test_a_task_result_over_the_limit_is_not_caught_by_states_all():
    """moto's interpreter hands a Task's oversized result to its Catch of States.ALL; AWS does not."""
    end = _run_task(LIMIT)
    assert end["status"] == "FAILED", end
    assert "Check slo errored" not in end["entered"], end["entered"]
    assert end.get("error") == "States.DataLimitExceeded", end
    assert _run_task(1000)["status"] == "SUCCEEDED"


def test_a_state_under_the_limit_goes_on_as_usual():
    end = _run(LIMIT - 1024)
    assert end["status"] == "SUCCEEDED", end
    assert "Caught" not in end["entered"]
