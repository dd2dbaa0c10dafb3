"""Issue 10, item 1: the execution input names a profile (``{"profile": "nightly"}``) and the synthesized
definition runs it: the load task's users, spawn rate and duration are the profile's (container
environment overrides in RunTask), the fault schedule uses its ``at_s`` and load duration, an unknown
profile is an ERROR verdict naming the known ones before anything starts, and the nightly rule passes
``nightly``. The definition is executed in moto on test_state_machine's fixtures, with a load task that
started in the past so every wait is already due."""

from __future__ import annotations

import json

import jsonata
import pytest

from infra.state_machine.profiles import selection_expression
from tests.infra import test_fault_schedule as fs
from tests.infra import test_state_machine as sm

definition, zero_waits, run_gate = sm.definition, sm.zero_waits, sm.run_gate

pytestmark = pytest.mark.infra

NIGHTLY_AT_S = {"kill-gateway": 20, "redeliver-events": 35, "kill-projector": 50, "kill-matcher": 65}


def load_environment(ex) -> dict[str, str]:
    (override,) = ex.parameters("Start load task")["Overrides"]["ContainerOverrides"]
    return {e["Name"]: e["Value"] for e in override["Environment"]}


def run_profile(run_gate, synth, name: str, execution_input: dict) -> sm.Execution:
    responses = sm.happy_path(
        **{
            "Describe load task": [fs.started_task("RUNNING")],
            "Describe finished load task": [fs.started_task("STOPPED")],
        }
    )
    responses["Describe finished load task"] = [sm.task_status("STOPPED", exit_code=0)]
    waits = {"poll_s": 0, "start_poll_s": 0, "quiesce_s": 0}
    return run_gate(name, responses, execution_input={**execution_input, "waits": waits})


def test_the_nightly_profile_runs_heavier_load_than_the_pipeline_run(run_gate, synth):
    nightly = run_profile(run_gate, synth, "profile-nightly", {"profile": "nightly"})
    pipeline = run_profile(run_gate, synth, "profile-none", {})
    assert nightly.status == "SUCCEEDED", (nightly.error, nightly.cause)
    assert pipeline.status == "SUCCEEDED", (pipeline.error, pipeline.cause)
    heavy, plain = load_environment(nightly), load_environment(pipeline)
    assert (heavy["RESGATE_USERS"], heavy["RESGATE_SPAWN_RATE"], heavy["RESGATE_DURATION_S"]) == (
        "60",
        "30",
        "90",
    )
    assert (plain["RESGATE_USERS"], plain["RESGATE_SPAWN_RATE"], plain["RESGATE_DURATION_S"]) == (
        "20",
        "20",
        "45",
    )
    assert heavy["RESGATE_EVIDENCE_S3_URI"].endswith("/run_id=profile-nightly/")
    assert nightly.parameters("Check slo")["Payload"]["duration_s"] == 90
    assert pipeline.parameters("Check slo")["Payload"]["duration_s"] == 45


def test_the_fault_schedule_uses_the_profiles_at_s_and_load_duration(run_gate, synth):
    ex = run_profile(run_gate, synth, "profile-schedule", {"profile": "nightly"})
    (schedule,) = [s["schedule"] for s in fs.entered(ex, "Baseline")]
    assert schedule["load_end"] == fs.at(90)
    assert schedule["faults"] == {fs.KEYS[f]: fs.at(s) for f, s in NIGHTLY_AT_S.items()}
    assert sm.fault_starts(ex.calls) == [f"Start {f}" for f in sm.FAULTS]


def test_the_pipeline_profile_is_the_configs_own_load_and_faults(run_gate, synth):
    ex = run_profile(run_gate, synth, "profile-pipeline", {"profile": "pipeline"})
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert load_environment(ex)["RESGATE_USERS"] == "20"
    (schedule,) = [s["schedule"] for s in fs.entered(ex, "Baseline")]
    assert schedule["faults"] == {fs.KEYS[f]: fs.at(s) for f, s in fs.CONFIGURED_AT_S.items()}


def test_an_unknown_profile_is_an_error_verdict_naming_the_known_ones_before_anything_starts(run_gate):
    ex = run_gate("profile-unknown", sm.happy_path(), execution_input={"profile": "weekly"})
    assert ex.status == "FAILED" and ex.error == "GateRunFailed"
    assert ex.cause.startswith("InvalidInput") and "nightly, pipeline" in ex.cause
    assert "Acquire lock" not in ex.entered and "Start load task" not in ex.calls
    assert ex.calls[-2:] == ["Record error verdict", "Notify error"]
    assert ex.parameters("Record error verdict")["Payload"]["error"]["Error"] == "InvalidInput"


def test_input_waits_still_override_the_profiles_defaults(run_gate, synth, zero_waits):
    ex = run_gate(
        "profile-zero-waits", sm.happy_path(), execution_input={"profile": "nightly", "waits": zero_waits}
    )
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert load_environment(ex)["RESGATE_USERS"] == "60"


def test_a_fault_the_profile_leaves_out_is_moved_past_the_end_of_the_load():
    class Spec:
        def __init__(self, key: str) -> None:
            self.key, self.name = key, key.replace("_", "-")

    expr = selection_expression([Spec("kill_gateway"), Spec("kill_matcher")])
    data = {
        "schedule": {
            "load_end": "2026-01-01T10:00:45Z",
            "faults": {"kill_gateway": "2026-01-01T10:00:10Z", "kill_matcher": "2026-01-01T10:00:30Z"},
        },
        "profile": {"faults": {"kill_gateway": True, "kill_matcher": False}},
    }
    body = expr.removeprefix("{%").removesuffix("%}").replace("$states.input", "$$")
    out = json.loads(json.dumps(jsonata.Jsonata(body).evaluate(data)))
    assert out["schedule"]["faults"] == {
        "kill_gateway": "2026-01-01T10:00:10Z",
        "kill_matcher": "2026-01-01T10:00:46Z",
    }


def test_the_nightly_rule_starts_the_nightly_profile(synth):
    (rule,) = [
        r for r in synth.resources("AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]
    ]
    (target,) = rule["Properties"]["Targets"]
    assert json.loads(target["Input"]) == {"profile": "nightly"}
    assert synth.stack.nightly.input == {"profile": "nightly"}
