"""The synthesised gate state machine executed branch by branch in moto, every task mocked.

The definition is the one in the template (tokens rendered to fake ARNs), run with every wait set to 0
through the execution input, so each execution takes well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from infra import constants as c
from tests.infra.support.cfn import ACCOUNT, REGION, render
from tests.infra.support.sfn_mock import (
    MockedRun,
    Response,
    Return,
    Throw,
    entered_in,
    mocked_responses,
    wait_for_end,
)

pytestmark = pytest.mark.infra

# moto's own parse at every execution, which the shim replaces with a copy of one parse.
_MOTO_ENTRYPOINT = ExecutionWorker._get_evaluation_entrypoint

# The faults FIS runs, in at_s order: the stop_task ones and the duplicate delivery (an SSM automation).
FAULTS = ("kill-gateway", "redeliver-events", "kill-projector", "kill-matcher")


def fault_starts(calls: Sequence[str]) -> list[str]:
    """The ``Start <fault>`` calls, in order."""
    return [c for c in calls if c.removeprefix("Start ") in FAULTS]


CHECKS = ("slo", "recovery", "retryable", "integrity", "replay")


def lambda_result(payload: Any) -> Return:
    return Return({"StatusCode": 200, "Payload": payload})


def check_result(name: str, valid: Any = True) -> Return:
    return lambda_result({"name": name, "valid": valid, "counts": {}, "examples": []})


def verdict(passed: bool, reason: str = "") -> Return:
    return lambda_result(
        {
            "passed": passed,
            "result": "PASS" if passed else "FAIL",
            "reason": reason,
            "failed_checks": [] if passed else ["integrity"],
            "unknown_checks": [],
            "evidence_uri": "s3://evidence/gate=paperbroker/dt=2026-01-01/run_id=r/",
        }
    )


def task_status(status: str, exit_code: int | None = None) -> Return:
    task: dict[str, Any] = {
        "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/load/t1",
        "LastStatus": status,
    }
    if exit_code is not None:
        task["Containers"] = [{"Name": "loadgen", "ExitCode": exit_code}]
    return Return({"Tasks": [task], "Failures": []})


def experiment_status(*statuses: str) -> list[Response]:
    return [Return({"Experiment": {"State": {"Status": s, "Reason": f"experiment {s}"}}}) for s in statuses]


def happy_path(**overrides: Sequence[Response]) -> dict[str, Sequence[Response]]:
    """Mocked responses of a run in which everything works and the verdict passes."""
    responses: dict[str, Sequence[Response]] = {
        "Describe target services": [Return({"Services": [{}, {}, {}], "Failures": []})],
        "Write gate config": [Return({})],
        "Start load task": [
            Return({"Tasks": [{"TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/load/t1"}]})
        ],
        "Describe load task": [task_status("PROVISIONING"), task_status("RUNNING")],
        "Describe finished load task": [task_status("RUNNING"), task_status("STOPPED", exit_code=0)],
        "Quiesce": [
            lambda_result({"settled": True, "healthy": True, "waited_s": 1.0, "lag": {}, "reason": ""})
        ],
        "Write timeline": [
            lambda_result(
                {
                    "faults_uri": "s3://evidence/faults.jsonl",
                    "health_uri": "s3://evidence/health.jsonl",
                    "fault_events": 6,
                    "health_events": 12,
                    "observed_until": 1767269400.0,
                    "active_faults": [],
                    "not_started": [],
                }
            )
        ],
        "Verdict": [verdict(True)],
        "Notify failed": [Return({"MessageId": "m1"})],
        "Stop load task": [Return({})],
        "Record error verdict": [verdict(False, "error")],
        "Notify error": [Return({"MessageId": "m2"})],
    }
    for f in FAULTS:
        responses[f"Start {f}"] = [Return({"Experiment": {"Id": f"EXP-{f}"}})]
        responses[f"Recheck {f}"] = experiment_status("running")  # before the next fault starts
        responses[f"Get {f}"] = experiment_status("running", "completed")
        responses[f"Stop experiment {f}"] = [Return({})]
    for name in CHECKS:
        responses[f"Check {name}"] = [check_result(name)]
    responses.update(overrides)
    return responses


@dataclass
class Execution:
    status: str
    error: str | None
    cause: str | None
    output: Any
    calls: list[str]
    entered: list[str]
    history: list[dict[str, Any]]

    def parameters(self, state: str) -> dict[str, Any]:
        """The parameters the task state ``state`` was scheduled with (its first call). The branches of
        a Parallel interleave in the history, so the task is found by its link to the state's entry."""
        entered_id = None
        for e in self.history:
            d = e.get("stateEnteredEventDetails")
            if d and d["name"] == state:
                entered_id = e["id"]
                break
        assert entered_id is not None, f"{state} was never entered"
        for e in self.history:
            d = e.get("taskScheduledEventDetails")
            if d and e.get("previousEventId") == entered_id:
                return json.loads(d["parameters"])
        raise AssertionError(f"{state} scheduled no task")


@pytest.fixture(scope="module")
def definition(synth) -> str:
    resources = synth.template_json["Resources"]
    (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    return render(machine["Properties"]["DefinitionString"], resources)


@pytest.fixture(scope="module")
def zero_waits(synth) -> dict[str, int]:
    return {k: 0 for k in synth.stack.gate_machine.default_waits}


@pytest.fixture(scope="module")
def run_gate(definition: str, zero_waits: dict[str, int]) -> Iterator[Any]:
    """``run(name, responses, execution_input=None) -> Execution``; one moto state machine per module
    (parsing the definition is the slow part), one execution per test, each with its own name."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), mocked_responses() as shim:
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name="gate", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/gate"
        )["stateMachineArn"]

        def run(
            name: str,
            responses: Mapping[str, Sequence[Response]],
            *,
            execution_input: dict[str, Any] | None = None,
        ) -> Execution:
            mocked: MockedRun = shim.register(name, responses)
            body = {"waits": zero_waits} if execution_input is None else execution_input
            started = client.start_execution(stateMachineArn=arn, name=name, input=json.dumps(body))
            d = wait_for_end(client, started["executionArn"])
            history = client.get_execution_history(executionArn=started["executionArn"], maxResults=1000)[
                "events"
            ]
            return Execution(
                status=d["status"],
                error=d.get("error"),
                cause=d.get("cause"),
                output=json.loads(d["output"]) if d.get("output") else None,
                calls=list(mocked.calls),
                entered=entered_in(history),
                history=history,
            )

        yield run


def test_a_passing_verdict_succeeds_after_load_faults_and_checks(run_gate):
    ex = run_gate("run-pass", happy_path())
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert ex.output["passed"] is True
    assert ex.calls.index("Start load task") < ex.calls.index("Start kill-gateway")
    assert fault_starts(ex.calls) == [f"Start {f}" for f in FAULTS]
    assert {f"Check {n}" for n in CHECKS} <= set(ex.calls)
    assert ex.calls[-1] == "Verdict"
    assert "Cleanup" not in ex.entered and "Notify failed" not in ex.calls


def test_the_run_id_and_date_come_from_the_execution(run_gate):
    ex = run_gate("run-ids", happy_path())
    params = ex.parameters("Check slo")["Payload"]
    assert params["run_id"] == "run-ids" and params["gate"] == "paperbroker"
    assert len(params["dt"]) == 10 and params["dt"][4] == "-"
    assert params["thresholds"]["p95_ms"] == 500
    load = ex.parameters("Start load task")
    (override,) = load["Overrides"]["ContainerOverrides"]
    uri = override["Environment"][0]["Value"]
    assert uri.startswith("s3://") and uri.endswith(
        f"/evidence/gate=paperbroker/dt={params['dt']}/run_id=run-ids/"
    )


def test_a_failing_verdict_notifies_and_fails_the_execution(run_gate):
    ex = run_gate("run-fail", happy_path(Verdict=[verdict(False, "failed: integrity")]))
    assert ex.status == "FAILED"
    assert ex.error == "GateFailed" and ex.cause == "failed: integrity"
    assert ex.calls[-2:] == ["Verdict", "Notify failed"]
    assert "Stop load task" not in ex.calls  # the load had ended by itself


def test_a_task_that_throws_enters_cleanup_which_stops_the_load_and_the_started_experiments(run_gate):
    ex = run_gate(
        "run-error",
        happy_path(
            **{"Start kill-projector": [Throw("Fis.ServiceQuotaExceededException", "too many experiments")]}
        ),
    )
    assert ex.status == "FAILED"
    assert ex.error == "GateRunFailed"
    assert ex.cause.startswith("Fis.ServiceQuotaExceededException")
    assert "Stop load task" in ex.calls
    assert "Stop experiment kill-gateway" in ex.calls
    assert "Stop experiment kill-projector" not in ex.calls and "Stop experiment kill-matcher" not in ex.calls
    assert "Start kill-matcher" not in ex.calls
    assert ex.calls[-2:] == ["Record error verdict", "Notify error"]
    stop = ex.parameters("Stop load task")
    assert stop["Task"] == "arn:aws:ecs:us-east-1:123456789012:task/load/t1"
    assert ex.parameters("Stop experiment kill-gateway") == {"Id": "EXP-kill-gateway"}
    recorded = ex.parameters("Record error verdict")["Payload"]
    assert recorded["error"]["Error"] == "Fis.ServiceQuotaExceededException" and recorded["results"] == []


def test_cleanup_goes_on_when_stopping_an_experiment_that_already_ended_is_refused(run_gate):
    ex = run_gate(
        "run-error-2",
        happy_path(
            **{
                "Describe finished load task": [Throw("Ecs.ServerException", "ecs is down")],
                "Stop experiment kill-gateway": [
                    Throw("Fis.ValidationException", "experiment already completed")
                ],
            }
        ),
    )
    assert ex.status == "FAILED" and ex.cause.startswith("Ecs.ServerException")
    stops = [call for call in ex.calls if call.startswith("Stop ")]
    assert stops == ["Stop load task", *(f"Stop experiment {f}" for f in FAULTS)]
    assert ex.calls[-2:] == ["Record error verdict", "Notify error"]


def test_a_tripped_guardrail_skips_the_remaining_faults_and_the_verdict_is_told(run_gate):
    # The alarms stopped kill-gateway's experiment (during its observation window) before kill-projector's
    # time: the state machine sees it stopped just before it would start kill-projector.
    ex = run_gate("run-guardrail", happy_path(**{"Recheck kill-gateway": experiment_status("stopped")}))
    assert "Start kill-gateway" in ex.calls
    assert "Start kill-projector" not in ex.calls and "Start kill-matcher" not in ex.calls
    assert ex.status == "SUCCEEDED"  # the verdict mock passes; the verdict Lambda decides
    tripped = ex.parameters("Verdict")["Payload"]["guardrail_tripped"]
    assert tripped["fault"] == "kill-gateway" and tripped["experiment_state"]["Status"] == "stopped"
    assert not any(call.startswith("Get kill") for call in ex.calls)  # the rest need no watching


def test_a_guardrail_tripped_after_the_last_fault_is_seen_while_watching_the_experiments(run_gate):
    ex = run_gate(
        "run-guardrail-late", happy_path(**{"Get kill-projector": experiment_status("running", "stopped")})
    )
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert fault_starts(ex.calls) == [f"Start {f}" for f in FAULTS]
    tripped = ex.parameters("Verdict")["Payload"]["guardrail_tripped"]
    assert tripped["fault"] == "kill-projector" and tripped["experiment_state"]["Status"] == "stopped"
    assert "Get kill-matcher" not in ex.calls


def test_a_check_that_throws_reaches_the_verdict_as_name_error_and_cause(run_gate):
    ex = run_gate(
        "run-check-error", happy_path(**{"Check integrity": [Throw("ConfigError", "bad thresholds")]})
    )
    results = ex.parameters("Verdict")["Payload"]["results"]
    assert {"name": "integrity", "Error": "ConfigError", "Cause": "bad thresholds"} in results
    assert sorted(r["name"] for r in results) == sorted(CHECKS)
    assert "Cleanup" not in ex.entered


def test_a_failed_fault_injection_is_a_run_error(run_gate):
    ex = run_gate(
        "run-fault-failed", happy_path(**{"Get kill-matcher": experiment_status("running", "failed")})
    )
    assert ex.status == "FAILED" and ex.cause.startswith("FaultFailed")
    assert {"Stop load task", "Stop experiment kill-matcher"} <= set(ex.calls)


def test_a_load_task_that_exits_with_an_error_fails_the_run_after_cleanup(run_gate):
    ex = run_gate("run-load-exit", happy_path(**{"Describe finished load task": [task_status("STOPPED", 2)]}))
    assert ex.status == "FAILED" and ex.cause.startswith("LoadFailed")
    assert "Check slo" not in ex.calls and "Stop load task" in ex.calls


def test_polling_a_load_task_that_never_starts_is_bounded(run_gate):
    ex = run_gate("run-stuck", happy_path(**{"Describe load task": [task_status("PROVISIONING")]}))
    assert ex.status == "FAILED" and ex.cause.startswith("LoadTaskStartTimeout")
    assert ex.calls.count("Describe load task") == c.MAX_POLLS_TASK_START + 1
    assert "Stop load task" in ex.calls and "Start kill-gateway" not in ex.calls


def test_a_negative_wait_is_an_error_verdict_before_anything_is_started(run_gate, zero_waits):
    ex = run_gate("run-invalid", happy_path(), execution_input={"waits": {**zero_waits, "poll_s": -1}})
    assert ex.status == "FAILED" and ex.error == "GateRunFailed" and ex.cause.startswith("InvalidInput")
    assert ex.calls == ["Record error verdict", "Notify error"]


def test_a_fractional_wait_is_an_error_verdict_not_a_runtime_failure(run_gate, zero_waits):
    # On AWS a Wait with SecondsPath 2.5 fails with States.Runtime, which no Catch handles.
    ex = run_gate(
        "run-fractional", happy_path(), execution_input={"waits": {**zero_waits, "baseline_s": 2.5}}
    )
    assert ex.status == "FAILED" and ex.error == "GateRunFailed", (ex.error, ex.cause)
    assert ex.cause.startswith("InvalidInput")
    assert "Cleanup" in ex.entered and ex.calls == ["Record error verdict", "Notify error"]
    assert ex.parameters("Record error verdict")["Payload"]["error"]["Error"] == "InvalidInput"


def test_whole_waits_given_as_floats_are_used_as_integers(run_gate, zero_waits):
    ex = run_gate("run-float-waits", happy_path(), execution_input={"waits": {**zero_waits, "poll_s": 0.0}})
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)


def test_throttled_sdk_and_lambda_calls_are_retried_and_the_run_reaches_its_verdict(run_gate):
    # One throttling error in an SDK task and one in a Lambda task (the shim answers each call of a state
    # in turn); each Retry waits at most 1 s (IntervalSeconds 1, full jitter) before the second call.
    responses = happy_path()
    ex = run_gate(
        "run-throttled",
        {
            **responses,
            "Describe target services": [
                Throw("Ecs.ThrottlingException", "Rate exceeded"),
                *responses["Describe target services"],
            ],
            "Verdict": [Throw("Lambda.TooManyRequestsException", "Rate exceeded"), *responses["Verdict"]],
        },
    )
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert ex.calls.count("Describe target services") == 2
    assert ex.calls[-2:] == ["Verdict", "Verdict"]


def test_a_missing_target_service_stops_the_run_before_the_load(run_gate):
    missing = Return({"Services": [], "Failures": [{"Arn": "x", "Reason": "MISSING"}]})
    ex = run_gate("run-no-target", happy_path(**{"Describe target services": [missing]}))
    assert ex.status == "FAILED" and ex.cause.startswith("TargetNotFound")
    assert "Start load task" not in ex.calls and "Stop load task" not in ex.calls


def test_the_timeline_is_written_after_the_load_and_before_the_checks(run_gate):
    ex = run_gate("run-timeline", happy_path())
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    first_check = min(ex.calls.index(f"Check {n}") for n in CHECKS)
    assert ex.calls.index("Describe finished load task") < ex.calls.index("Write timeline") < first_check
    payload = ex.parameters("Write timeline")["Payload"]
    assert payload["run_id"] == "run-timeline" and payload["gate"] == "paperbroker"
    assert payload["cluster"] == "paperbroker"  # the placeholder target cluster: the gate name
    assert payload["services"] == {"gateway": "gateway", "projector": "projector", "matcher": "matcher"}
    assert payload["faults"]["kill_gateway"] == {
        "name": "kill-gateway",
        "kind": "stop_task",
        "target": "gateway",
    }
    assert payload["experiments"]["kill_gateway"]["id"] == "EXP-kill-gateway"
    assert set(payload["experiments"]) == {
        "kill_gateway",
        "redeliver_events",
        "kill_projector",
        "kill_matcher",
    }
    assert payload["started_at"].startswith(payload["dt"]) and payload["ended_at"] >= payload["started_at"]
    recovery = ex.parameters("Check recovery")["Payload"]
    assert recovery["observed_until"] == 1767269400.0


def test_a_timeline_that_fails_enters_cleanup_and_no_check_runs(run_gate):
    ex = run_gate(
        "run-timeline-error",
        happy_path(**{"Write timeline": [Throw("ConfigError", "event.cluster: must be an ECS name")]}),
    )
    assert ex.status == "FAILED" and ex.cause.startswith("ConfigError")
    assert not any(call.startswith("Check ") for call in ex.calls)
    assert ex.calls[-2:] == ["Record error verdict", "Notify error"]


def test_the_load_task_carries_what_the_abort_cleanup_finds_it_by(definition):
    # From the definition: moto's ecs:runTask integration drops StartedBy and Tags from the history.
    params = json.loads(definition)["States"]["Start load task"]["Parameters"]
    assert params["StartedBy"] == "resgate"
    assert params["Tags"] == [{"Key": "ResGateRunId", "Value.$": "$.run.run_id"}]


def _steps(ex: Execution) -> list[tuple[str, str]]:
    """The execution's events as ``(type, state or task)``, sorted: its control flow (states entered and
    left, tasks scheduled, retried and failed), without what differs between two executions of one run
    (ids, times, tokens derived from the execution's name); a Parallel's branches interleave in any
    order."""
    out = []
    for e in ex.history:
        details = next((v for k, v in e.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        what = details.get("name") or details.get("resource") or details.get("error") or ""
        out.append((str(e["type"]), f"{what} {details.get('resourceType', '')}".strip()))
    return sorted(out)


def test_an_execution_of_the_cached_parse_is_the_execution_of_a_fresh_parse(run_gate):
    """The shim evaluates a deep copy of one parse per definition (``sfn_mock.program``) instead of
    moto's parse at every execution. Two executions of a run with retries (the evaluation state a parse
    could keep between executions) on copies, and one on moto's own parse, have the same events."""
    responses = happy_path()
    throttled = {
        **responses,
        "Describe target services": [
            Throw("Ecs.ThrottlingException", "Rate exceeded"),
            *responses["Describe target services"],
        ],
    }
    first = run_gate("parse-copy-1", throttled)
    second = run_gate("parse-copy-2", throttled)
    with mock.patch.object(ExecutionWorker, "_get_evaluation_entrypoint", _MOTO_ENTRYPOINT):
        fresh = run_gate("parse-fresh", throttled)
    assert fresh.status == "SUCCEEDED" and fresh.calls.count("Describe target services") == 2
    for ex in (first, second):
        assert (ex.status, ex.calls.count("Describe target services")) == (fresh.status, 2)
        assert sorted(ex.calls) == sorted(fresh.calls)
        assert _steps(ex) == _steps(fresh)
