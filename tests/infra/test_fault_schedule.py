"""Issue 9, defect 4: the faults fire at the load's start + their configured ``at_s``, whatever the faults
before them do. The synthesized definition is executed in moto with the config's own offsets (baseline
5 s, faults at 10/25/30 s, load 45 s) and a load task that started in the past, so every wait is already
due; the times the definition computed are read from the execution history."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from tests.infra import test_state_machine as sm
from tests.infra.support.sfn_mock import Return

# The executions run on test_state_machine's fixtures: the synthesized definition in moto.
definition, zero_waits, run_gate = sm.definition, sm.zero_waits, sm.run_gate
FAULTS, experiment_status, happy_path = sm.FAULTS, sm.experiment_status, sm.happy_path

pytestmark = pytest.mark.infra

STARTED_AT = "2026-01-01T10:00:00Z"
KEYS = {f: f.replace("-", "_") for f in FAULTS}
CONFIGURED_AT_S = {"kill-gateway": 10, "redeliver-events": 20, "kill-projector": 25, "kill-matcher": 30}


def started_task(status: str, started_at: str | None = STARTED_AT) -> Return:
    task: dict[str, Any] = {
        "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/load/t1",
        "LastStatus": status,
    }
    if started_at is not None:
        task["StartedAt"] = started_at
    return Return({"Tasks": [task], "Failures": []})


def config_waits(synth, **overrides: int) -> dict[str, int]:
    """The gate config's defaults, with no delay between polls and no quiesce (they really sleep)."""
    return {
        **synth.stack.gate_machine.default_waits,
        "poll_s": 0,
        "start_poll_s": 0,
        "quiesce_s": 0,
        **overrides,
    }


def entered(ex, name: str) -> list[dict[str, Any]]:
    """The inputs with which the state ``name`` was entered, in order."""
    return [
        json.loads(e["stateEnteredEventDetails"]["input"])
        for e in ex.history
        if e.get("stateEnteredEventDetails", {}).get("name") == name
    ]


def at(offset_s: int) -> str:
    t = datetime.datetime.fromisoformat(STARTED_AT.replace("Z", "+00:00")) + datetime.timedelta(
        seconds=offset_s
    )
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_each_fault_waits_until_the_load_start_plus_its_configured_at_s(run_gate, synth):
    # kill-gateway's experiment is polled three times before it completes; that must not move the others.
    responses = happy_path(
        **{
            "Describe load task": [started_task("PROVISIONING", None), started_task("RUNNING")],
            "Get kill-gateway": experiment_status("running", "running", "running", "completed"),
        }
    )
    ex = run_gate("schedule-config", responses, execution_input={"waits": config_waits(synth)})
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    for fault in FAULTS:
        (state,) = entered(ex, f"Before {fault}")
        assert state["schedule"]["faults"][KEYS[fault]] == at(CONFIGURED_AT_S[fault]), fault
    schedule = entered(ex, "Wait for load end")[0]["schedule"]
    assert schedule["load_start"] == STARTED_AT
    assert schedule["baseline_end"] == at(5) and schedule["load_end"] == at(45)
    # In at_s order, each started as soon as its time came: no fault waits for another's experiment.
    starts = [ex.calls.index(f"Start {f}") for f in FAULTS]
    assert starts == sorted(starts)
    assert max(starts) < ex.calls.index("Get kill-gateway")
    assert ex.calls.count("Get kill-gateway") == 4


def test_a_fault_scheduled_after_the_end_of_the_load_is_skipped_and_reported(run_gate, synth):
    responses = happy_path(**{"Describe load task": [started_task("RUNNING")]})
    waits = config_waits(synth, load_s=28)  # kill-matcher at 30 s would come after the load
    ex = run_gate("schedule-after-load", responses, execution_input={"waits": waits})
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert "Start kill-matcher" not in ex.calls and "Start kill-projector" in ex.calls
    skipped = entered(ex, "Wait for load end")[0]["schedule"]["skipped"]
    assert skipped == {
        "kill_matcher": {
            "fault": "kill-matcher",
            "at": at(30),
            "load_end": at(28),
            "reason": "scheduled after the end of the load",
        }
    }
    # No experiment: the timeline Lambda reports it as not started.
    assert set(ex.parameters("Write timeline")["Payload"]["experiments"]) == {
        "kill_gateway",
        "redeliver_events",
        "kill_projector",
    }


def test_the_load_start_is_the_state_entry_when_the_task_reports_no_start_time(run_gate, synth):
    responses = happy_path(**{"Describe load task": [started_task("RUNNING", None)]})
    ex = run_gate("schedule-no-started-at", responses)
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    (state,) = entered(ex, "Baseline")
    schedule = state["schedule"]
    assert schedule["load_start"].startswith(state["run"]["dt"]) and schedule["load_start"].endswith("Z")
    assert set(schedule["faults"].values()) == {schedule["load_start"]}  # zero offsets in this run


def test_the_load_start_is_polled_every_2_s_so_an_early_fault_is_not_late_by_a_whole_poll(synth):
    # The schedule counts from the task's StartedAt, but a fault already due when the start is first seen
    # fires only then: at the 15 s poll interval, kill-gateway (at_s 10) would fire 5 s late.
    from infra import constants as c
    from tests.infra.support.validators import definition_of

    states = definition_of(synth.template_json)["States"]
    assert states["Wait for load task"]["SecondsPath"] == "$.waits.start_poll_s"
    waits = synth.stack.gate_machine.default_waits
    assert waits["start_poll_s"] == c.START_POLL_S == 2 and waits["poll_s"] == 15
    assert c.START_POLL_S * c.MAX_POLLS_TASK_START >= 600  # a Fargate start may take minutes (image pull)
