"""The FIS twin runs the data-path faults' experiments (issue 21): the automation's Lambda step through the
Lambda twin (a function error fails the action, as ``aws:invokeLambdaFunction`` fails its step), the MSK
broker reboot as the local ``kafka_broker_down`` and an RDS reboot as the local ``db_blip``, each through
the gate's fault runner. Built from small hand-made templates; no process is started."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from tests.rehearsal.support import fis_twin
from tests.rehearsal.support.fis_twin import FisTwin

DOC = "RedeliverDocument"
BROKER_DOC = "BrokerRebootDocument"


class Assembly:
    """The two methods of the rehearsal's assembly the FIS twin uses, over hand-made resources."""

    def __init__(self, resources: dict[str, Any]) -> None:
        self.resources = resources

    def of_type(self, rtype: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == rtype}

    def render(self, value: Any) -> Any:
        return value


class Kafka:
    controllable = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def set_broker_down(self, broker: int) -> None:
        self.calls.append(("down", broker))

    def set_broker_up(self, broker: int) -> None:
        self.calls.append(("up", broker))


class Target:
    supervisor = None
    pg = None

    def __init__(self) -> None:
        self.kafka = Kafka()


class Lambdas:
    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.invoked: list[tuple[str, str]] = []

    def invoke(self, FunctionName: str, Payload: str) -> dict[str, Any]:
        self.invoked.append((FunctionName, Payload))
        if self.error:
            body = {"errorType": "GateError", "errorMessage": self.error}
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": io.BytesIO(json.dumps(body).encode()),
            }
        return {"StatusCode": 200, "Payload": io.BytesIO(b'{"republished": 3}')}


def _template(action: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::FIS::ExperimentTemplate",
        "Properties": {"Targets": {}, "Actions": {"Fault": action}, "StopConditions": []},
    }


def _resources(action: dict[str, Any]) -> dict[str, Any]:
    return {
        "Tpl": _template(action),
        DOC: {
            "Type": "AWS::SSM::Document",
            "Properties": {
                "Content": {
                    "mainSteps": [
                        {
                            "name": "Redeliver",
                            "action": "aws:invokeLambdaFunction",
                            "inputs": {"FunctionName": "RedeliverFunction", "Payload": "{{ Payload }}"},
                        }
                    ]
                }
            },
        },
        BROKER_DOC: {
            "Type": "AWS::SSM::Document",
            "Properties": {
                "Content": {
                    "mainSteps": [
                        {
                            "name": "RebootBroker",
                            "action": "aws:executeAwsApi",
                            "inputs": {"Api": "RebootBroker", "BrokerIds": ["{{ BrokerId }}"]},
                        },
                        {"name": "WaitForActive", "action": "aws:waitForAwsResourceProperty", "inputs": {}},
                    ]
                }
            },
        },
    }


def _automation(doc: str, **params: str) -> dict[str, Any]:
    return {
        "ActionId": "aws:ssm:start-automation-execution",
        "Parameters": {
            "documentArn": f"arn:aws:ssm:us-east-1:123456789012:document/{doc}",
            "documentParameters": json.dumps({"AutomationAssumeRole": "arn:role", **params}),
            "maxDuration": "PT3M",
        },
    }


def _run(twin: FisTwin) -> dict[str, Any]:
    exp_id = twin.start_experiment(experimentTemplateId="Tpl")["experiment"]["id"]
    deadline = time.time() + 30
    while time.time() < deadline:
        exp = twin.get_experiment(id=exp_id)["experiment"]
        if exp["state"]["status"] in ("completed", "failed", "stopped"):
            return exp
        time.sleep(0.05)
    raise AssertionError("the experiment did not end")


def _twin(action: dict[str, Any], target: Target, lambdas: Lambdas | None = None) -> FisTwin:
    twin = FisTwin(
        Assembly(_resources(action)),  # type: ignore[arg-type]
        target=lambda: target,  # type: ignore[arg-type,return-value]
        live_dirs=list,
        log=lambda s: None,
    )
    twin.lambdas = lambdas
    return twin


def test_the_redeliver_automation_invokes_the_lambda_twin_with_the_faults_payload():
    payload = json.dumps({"fault": "redeliver", "topics": ["t"], "fraction": 0.1, "max_events": 5})
    lambdas = Lambdas()
    exp = _run(_twin(_automation(DOC, Payload=payload), Target(), lambdas))
    assert exp["state"]["status"] == "completed", exp["state"]
    assert lambdas.invoked == [("RedeliverFunction", payload)]


def test_a_redeliver_lambda_error_fails_the_action_and_the_experiment_with_its_message():
    lambdas = Lambdas(error="fault redeliver: no event of ['t'] was re-published")
    exp = _run(_twin(_automation(DOC, Payload="{}"), Target(), lambdas))
    assert exp["state"]["status"] == "failed"
    assert "no event of ['t'] was re-published" in exp["state"]["reason"]
    assert exp["actions"]["Fault"]["state"]["status"] == "failed"


def test_the_broker_automation_takes_the_local_broker_down_and_up_again_before_it_completes(monkeypatch):
    monkeypatch.setattr(fis_twin, "BROKER_REBOOT_S", 0.2)
    target = Target()
    exp = _run(_twin(_automation(BROKER_DOC, ClusterArn="arn:msk", BrokerId="2"), target))
    assert exp["state"]["status"] == "completed", exp["state"]
    assert target.kafka.calls == [("down", 2), ("up", 2)]


def test_an_rds_reboot_the_local_target_cannot_act_on_fails_the_action():
    """The local Postgres is external here (``pg`` is None): the db_blip is skipped, so the FIS action fails
    rather than completing on nothing."""
    exp = _run(_twin({"ActionId": "aws:rds:reboot-db-instances", "Parameters": {}}, Target()))
    assert exp["state"]["status"] == "failed"
    assert "db_blip was not injected" in exp["state"]["reason"]
