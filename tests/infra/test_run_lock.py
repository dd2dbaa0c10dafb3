"""One run per target at a time: the synthesized state machine's lock, executed in moto against moto's
DynamoDB (the lock's tasks are not mocked, every other task is), and the lock's table and grants.

Two executions share one moto state machine and one lock table, as two runs of a deployed gate would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra import constants as c
from tests.infra.support.cfn import ACCOUNT, REGION, render
from tests.infra.support.sfn_mock import (
    Hold,
    Response,
    Throw,
    create_dynamodb_tables,
    entered_in,
    mocked_responses,
    wait_for_end,
)
from tests.infra.test_state_machine import Execution, happy_path, verdict

pytestmark = pytest.mark.infra

KEY = "paperbroker/paperbroker"  # the placeholder target cluster is the gate's name


class Gate:
    """One moto state machine; executions started and awaited separately, and the lock table."""

    def __init__(self, sfn: Any, arn: str, shim: Any, table: str, zero_waits: dict[str, int]) -> None:
        self.sfn, self.arn, self.shim, self.table = sfn, arn, shim, table
        self.zero_waits = zero_waits
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)

    def start(self, name: str, responses: Mapping[str, Sequence[Response]], **waits: int) -> str:
        self.shim.register(name, responses)
        body = {"waits": {**self.zero_waits, **waits}}
        return self.sfn.start_execution(stateMachineArn=self.arn, name=name, input=json.dumps(body))[
            "executionArn"
        ]

    def finish(self, name: str, execution_arn: str) -> Execution:
        d = wait_for_end(self.sfn, execution_arn)
        history = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return Execution(
            status=d["status"],
            error=d.get("error"),
            cause=d.get("cause"),
            output=json.loads(d["output"]) if d.get("output") else None,
            calls=list(self.shim.runs[name].calls),
            entered=entered_in(history),
            history=history,
        )

    def run(self, name: str, responses: Mapping[str, Sequence[Response]], **waits: int) -> Execution:
        return self.finish(name, self.start(name, responses, **waits))

    def holder(self) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(TableName=self.table, Key={"target": {"S": KEY}}).get("Item")
        return {k: next(iter(v.values())) for k, v in item.items()} if item else None

    def put_holder(self, run_id: str, *, expires_at: float) -> None:
        self.dynamodb.put_item(
            TableName=self.table,
            Item={
                "target": {"S": KEY},
                "run_id": {"S": run_id},
                "execution": {"S": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:gate:{run_id}"},
                "since": {"S": "2026-01-01T10:00:00.000Z"},
                "expires_at": {"N": str(int(expires_at))},
            },
        )


@pytest.fixture(scope="module")
def definition(synth) -> str:
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    return render(machine["Properties"]["DefinitionString"], synth.template_json["Resources"])


@pytest.fixture(scope="module")
def gate(synth, definition: str) -> Iterator[Gate]:
    zero_waits = {k: 0 for k in synth.stack.gate_machine.default_waits}
    (table,) = synth.resources("AWS::DynamoDB::Table")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), mocked_responses() as shim:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="gate", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/gate"
        )["stateMachineArn"]
        create_dynamodb_tables(definition, region=REGION)
        yield Gate(sfn, arn, shim, table, zero_waits)


@pytest.fixture(autouse=True)
def free_target(gate: Gate) -> Iterator[None]:
    assert gate.holder() is None, "a previous test left the target locked"
    yield
    gate.dynamodb.delete_item(TableName=gate.table, Key={"target": {"S": KEY}})


def test_a_second_run_waits_for_a_busy_target_then_fails_naming_the_holder_who_is_left_alone(gate):
    # The holder takes the lock, then is held at "Start load task" until the second run has ended: the
    # second run's attempts all fall inside the holder's run however long they take on a loaded machine.
    release = threading.Event()
    start_load = happy_path()["Start load task"][0]
    holder_arn = gate.start("holder", happy_path(**{"Start load task": [Hold(release, then=start_load)]}))
    deadline = time.monotonic() + 10
    while gate.holder() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    held = gate.holder()
    assert held is not None and held["run_id"] == "holder" and held["execution"] == holder_arn
    assert held["since"].endswith("Z") and int(held["expires_at"]) > time.time() + c.STATE_MACHINE_TIMEOUT_S

    try:
        busy = gate.run("second", happy_path(), lock_wait_s=1, poll_s=1)
    finally:
        release.set()
    holder = gate.finish("holder", holder_arn)

    assert busy.status == "FAILED" and busy.error == "GateRunFailed"
    assert busy.cause.startswith(
        f"TargetBusy: target busy: {KEY} is held by run holder (execution {holder_arn})"
    )
    assert f"since {held['since']}; waited 1 s" in busy.cause
    assert busy.entered.count("Acquire lock") >= 2 and "Wait for lock" in busy.entered
    # Nothing of the holder's is stopped: the busy run started nothing, so its cleanup names nothing.
    assert busy.calls == ["Record error verdict", "Notify error"]
    assert busy.parameters("Record error verdict")["Payload"]["error"]["Error"] == "TargetBusy"
    assert holder.status == "SUCCEEDED", (holder.error, holder.cause)
    assert "Stop load task" not in holder.calls and "Cleanup" not in holder.entered
    assert gate.holder() is None  # released by the holder's verdict phase, not by the busy run


@pytest.mark.parametrize(
    ("name", "responses", "status", "release"),
    [
        ("lock-pass", happy_path(), "SUCCEEDED", "Release lock"),
        ("lock-fail", happy_path(Verdict=[verdict(False, "failed: integrity")]), "FAILED", "Release lock"),
        (
            "lock-error",
            happy_path(**{"Start kill-projector": [Throw("Fis.ServiceQuotaExceededException", "quota")]}),
            "FAILED",
            "Release lock after error",
        ),
    ],
)
def test_the_lock_is_released_on_every_ending_of_the_state_machine(gate, name, responses, status, release):
    ex = gate.run(name, responses)

    assert ex.status == status, (ex.error, ex.cause)
    assert "Acquire lock" in ex.entered and release in ex.entered
    assert gate.holder() is None
    assert gate.run(f"{name}-next", happy_path()).status == "SUCCEEDED"  # the target is free again


def test_an_expired_lease_is_taken_over(gate):
    gate.put_holder("lost-run", expires_at=time.time() - 60)

    ex = gate.run("after-lost", happy_path())

    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert ex.entered.count("Acquire lock") == 1 and "Wait for lock" not in ex.entered
    assert gate.holder() is None


def test_a_live_lease_of_another_run_is_neither_taken_nor_released(gate):
    gate.put_holder("pipeline-run", expires_at=time.time() + 3600)

    ex = gate.run("nightly-run", happy_path())  # lock_wait_s 0: one try

    assert ex.status == "FAILED" and ex.cause.startswith("TargetBusy")
    assert "held by run pipeline-run" in ex.cause
    assert "Release lock after error" in ex.entered
    assert gate.holder()["run_id"] == "pipeline-run"


def test_the_lock_is_taken_after_the_waits_are_valid_and_before_the_target_is_described(definition):
    states = json.loads(definition)["States"]
    assert states["Use whole seconds"]["Next"] == "Lock lease"
    assert states["Acquire lock"]["Next"] == "Describe target services"
    put = states["Acquire lock"]["Parameters"]
    assert put["ConditionExpression"] == "attribute_not_exists(#key) OR #expires < :now OR #holder = :me"
    assert put["Item"]["target"] == {"S": KEY}
    assert (
        states["Verdict"]["Next"] == "Link dashboard" and states["Link dashboard"]["Next"] == "Release lock"
    )
    assert states["Release lock"]["Parameters"]["ConditionExpression"] == "#holder = :me"


def test_the_lock_table_and_who_may_touch_it(synth):
    (table,) = synth.resources("AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "target", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    grants: dict[str, list[str]] = {}
    for policy in synth.resources("AWS::IAM::Policy").values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.startswith("dynamodb:") for a in actions):
                role = policy["Properties"]["Roles"][0]["Ref"]
                grants.setdefault(role, []).extend(actions)
                assert st["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [KEY]}}
                assert "Fn::GetAtt" in st["Resource"]
    by_kind = {
        ("StateMachine" if "StateMachine" in r else "Cleanup" if "Cleanup" in r else r): a
        for r, a in grants.items()
    }
    assert by_kind == {
        "StateMachine": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem"],
        "Cleanup": ["dynamodb:DeleteItem"],
    }
