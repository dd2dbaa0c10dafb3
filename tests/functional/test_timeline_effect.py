"""The timeline Lambda's proof of effect on AWS (issue 22, item 4): an FIS experiment's fault counts as having
acted only when its action completed on resolved targets and, for a stop-task, when the resolved tasks
themselves were stopped by it; otherwise the ``effect`` row says ``observed: false`` and the recovery check
(the same one that judges a local run) is unknown.

The judgments are pure (:func:`lambdas.timeline.effect.judge` over hand-made GetExperiment and DescribeTasks
shapes); one test drives the handler through botocore's Stubber with the real API shapes
(ListExperimentResolvedTargets: https://docs.aws.amazon.com/fis/latest/APIReference/API_ListExperimentResolvedTargets.html;
DescribeTasks' ``stopCode``/``stoppedReason``/``stoppingAt``:
https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html).
"""

from __future__ import annotations

from typing import Any

import pytest

import lambdas.timeline.handler as timeline
from lambdas.recovery.handler import handler as recovery_handler
from lambdas.timeline.effect import WINDOW_SLACK_S, Observation, judge, task_arns
from lambdas.timeline.faults import experiment_rows
from lambdas.timeline.health import TaskSpan
from lambdas.timeline.inputs import FaultRef
from resgate.checks import recovery
from tests.functional.support import load_event
from tests.functional.test_timeline_handler import (
    BEFORE,
    EXPERIMENT,
    NO_ERROR_RATIO,
    T0,
    at,
    experiment,
    jsonl,
    network_experiment,
    service,
    stubbed,  # noqa: F401 (the fixture)
    task,
    task_arn,
)

REF = FaultRef(key="kill", name="kill-gateway", kind="stop_task", target="gateway", experiment_id=EXPERIMENT)
# The fixture's stop-task action ran from +100 to +101.


def seen(
    *tasks: dict[str, Any], resolved: list[str] | None = None, missing: tuple[str, ...] = ()
) -> Observation:
    """What gather() would return: the stop-task's target ``Tasks`` resolved ``resolved`` (default: the
    given tasks), those ECS described."""
    arns = resolved if resolved is not None else [t["taskArn"] for t in tasks]
    return Observation(
        resolved={"Tasks": [{"arn": a} for a in arns]},
        tasks=[TaskSpan.from_task(t) for t in tasks],
        missing=missing,
    )


def effect_of(e: dict[str, Any], observation: Observation) -> dict[str, Any]:
    row = judge(e, observation, now=T0 + 300)
    assert row is not None
    return row["detail"]


def stopped_by_api(tid: str, at_s: float, reason: str = "Task stopped by FIS") -> dict[str, Any]:
    return task(tid, -300, stopping=at_s, stopped=at_s + 30, reason=reason)


def test_a_stop_task_whose_resolved_task_stopped_within_its_window_took_effect():
    detail = effect_of(experiment(), seen(stopped_by_api("bbbb2222", 101)))
    assert detail["observed"] is True
    assert detail["evidence"] == (
        "FIS action aws:ecs:stop-task stopped 1 of its 1 resolved task(s) within its window: "
        "bbbb2222 (UserInitiated: Task stopped by FIS)"
    )


@pytest.mark.parametrize(
    ("stop_at", "observed"),
    [
        (100 - WINDOW_SLACK_S, True),  # the window's start, less the clocks' slack
        (100 - WINDOW_SLACK_S - 0.01, False),
        (101 + WINDOW_SLACK_S, True),  # its end, plus the slack
        (101 + WINDOW_SLACK_S + 0.01, False),
    ],
)
def test_a_stop_counts_only_within_the_actions_window_give_or_take_the_clock_slack(stop_at, observed):
    assert effect_of(experiment(), seen(stopped_by_api("bbbb2222", stop_at)))["observed"] is observed


def test_a_target_already_gone_before_the_action_is_no_effect_and_recovery_is_unknown():
    """FIS resolved task b at the experiment's start; a deployment replaced it at +60, before the action
    (+100). ECS answers a StopTask on a stopped task without error, so the action completed, on nothing."""
    gone = task("bbbb2222", -300, stopping=60, stopped=62, reason="Scaling activity initiated by deployment")
    gone["stopCode"] = "ServiceSchedulerInitiated"
    rows = experiment_rows(REF, experiment(), now=T0 + 300, observation=seen(gone))
    (effect,) = [r for r in rows if r["event"] == "effect"]
    assert effect["detail"]["observed"] is False
    assert (
        "bbbb2222 stopped by ServiceSchedulerInitiated (Scaling activity initiated by deployment)"
        in (effect["detail"]["evidence"])
    )
    health = [{"ts": T0 + t, "service": "gateway", "healthy": True} for t in (90, 110)]
    r = recovery.check(
        recovery.evidence_from_run(rows, health),
        recovery.RecoveryThresholds(error_ratio_tolerance=None, min_throughput_ratio=None),
    )
    assert r.valid == "unknown" and "fault kill-gateway had no observed effect" in r.error


@pytest.mark.parametrize(
    ("t", "why"),
    [
        (stopped_by_api("bbbb2222", 80), "had already stopped 20 s before the action"),
        (stopped_by_api("bbbb2222", 140), "stopped 39 s after the action"),
        (task("bbbb2222", -300), "is still running"),
    ],
    ids=["stopped-before", "stopped-after", "still-running"],
)
def test_a_resolved_task_not_stopped_in_the_window_is_named_with_why(t, why):
    detail = effect_of(experiment(), seen(t))
    assert detail["observed"] is False and f"bbbb2222 {why}" in detail["evidence"], detail


def test_a_resolved_task_ecs_no_longer_describes_is_not_an_effect():
    detail = effect_of(experiment(), seen(resolved=[task_arn("bbbb2222")], missing=(task_arn("bbbb2222"),)))
    assert detail == {
        "observed": False,
        "evidence": "FIS action aws:ecs:stop-task stopped 0 of its 1 resolved task(s) within its window: "
        "bbbb2222 was not described by ECS (gone)",
    }


def test_with_selection_all_every_resolved_task_must_stop_with_a_count_or_percent_one_is_enough():
    a_runs, b_stops = task("aaaa1111", -300), stopped_by_api("bbbb2222", 101)
    assert effect_of(experiment(), seen(a_runs, b_stops))["observed"] is False
    percent = experiment()
    percent["targets"]["Tasks"]["selectionMode"] = "PERCENT(50)"
    assert effect_of(percent, seen(a_runs, b_stops))["observed"] is True
    assert effect_of(percent, seen(a_runs, task("bbbb2222", -300)))["observed"] is False


def test_a_completed_action_whose_target_resolved_nothing_has_no_observed_effect():
    detail = effect_of(experiment(), Observation(resolved={"Tasks": []}))
    assert detail == {
        "observed": False,
        "evidence": "FIS action aws:ecs:stop-task completed but target Tasks resolved no resource",
    }


def test_a_network_action_took_effect_when_it_completed_on_a_resolved_task_and_not_on_none():
    e = network_experiment(action_end=130, duration="PT28S")
    e["actions"]["Latency"]["targets"] = {"Tasks": "Tasks"}
    on_one = effect_of(e, Observation(resolved={"Tasks": [{"arn": task_arn("aaaa1111")}]}))
    assert on_one == {
        "observed": True,
        "evidence": "FIS action aws:ecs:task-network-latency completed on 1 resolved target(s) of Tasks",
    }
    assert effect_of(e, Observation())["observed"] is False


def test_only_task_arns_among_the_resolved_targets_information_are_read():
    infos = [
        {"arn": task_arn("aaaa1111"), "name": "aaaa1111"},
        {"taskArn": task_arn("aaaa1111")},
        {"arn": "arn:aws:ecs:us-east-1:123456789012:cluster/pb-cluster"},
    ]
    assert task_arns(infos) == [task_arn("aaaa1111")]


def test_an_action_not_ended_has_no_effect_row_yet():
    e = experiment("running", "Experiment is running.")
    e["actions"]["StopTasks"]["state"] = {"status": "running", "reason": ""}
    assert judge(e, Observation(), now=T0 + 300) is None


def test_the_handler_writes_no_effect_for_a_stop_task_on_a_gone_task_and_recovery_is_unknown(
    evidence,
    lambda_context,
    stubbed,  # noqa: F811 (the fixture)
):
    """End to end through the Lambdas: FIS resolved task b, which had exited on its own at +60 (its
    replacement c healthy at +75); the stop-task action at +100 stopped nothing."""
    gone = task("bbbb2222", -300, stopping=60, stopped=61, reason="Essential container in task exited")
    gone["stopCode"] = "EssentialContainerExited"
    tasks = [task("aaaa1111", -300), gone, task("cccc3333", 65)]
    stubbed.fleet(tasks, service([-290, 75]), experiments=[experiment()])
    out = timeline.handler(load_event("timeline"), lambda_context)
    event = load_event("recovery", thresholds=NO_ERROR_RATIO, observed_until=out["observed_until"])
    result = recovery_handler(event, lambda_context)

    (effect,) = [f for f in jsonl(evidence, "faults.jsonl") if f["event"] == "effect"]
    assert effect["ts"] == pytest.approx(at(101).timestamp())
    assert effect["detail"]["observed"] is False
    assert result["valid"] == "unknown", result
    assert "fault kill-gateway had no observed effect" in result["error"]
    assert "bbbb2222 stopped by EssentialContainerExited" in result["error"]


def test_the_handler_sees_the_good_stop_task_take_effect(evidence, lambda_context, stubbed):  # noqa: F811
    stubbed.fleet([*BEFORE, task("cccc3333", 110)], service([-290, 120]), experiments=[experiment()])
    timeline.handler(load_event("timeline"), lambda_context)
    (effect,) = [f for f in jsonl(evidence, "faults.jsonl") if f["event"] == "effect"]
    assert effect["detail"]["observed"] is True and "bbbb2222 (UserInitiated" in effect["detail"]["evidence"]


@pytest.mark.parametrize(
    ("status", "reason", "evidence"),
    [
        ("failed", "Target resolution returned empty set.", "failed: Target resolution returned empty set."),
        ("cancelled", "", "cancelled: cancelled"),
    ],
)
def test_a_failed_or_cancelled_action_has_no_observed_effect_with_fiss_reason(status, reason, evidence):
    e = experiment(status, "Experiment failed.")
    e["actions"]["StopTasks"]["state"] = {"status": status, "reason": reason}
    assert effect_of(e, seen(stopped_by_api("bbbb2222", 101))) == {
        "observed": False,
        "evidence": f"FIS action aws:ecs:stop-task {evidence}",
    }


def test_an_action_without_targets_took_effect_when_it_completed():
    """An SSM automation names no target: its completion is its effect (its own steps fail otherwise)."""
    e = experiment()
    e["actions"] = {
        "Redeliver": {
            "actionId": "aws:ssm:start-automation-execution",
            "state": {"status": "completed", "reason": ""},
            "startTime": at(100),
            "endTime": at(104),
        }
    }
    assert effect_of(e, Observation()) == {
        "observed": True,
        "evidence": "FIS action aws:ssm:start-automation-execution completed",
    }


def test_an_experiment_with_only_a_wait_has_no_fault_action_and_no_effect_row():
    e = experiment()
    e["actions"] = {
        "Blank": {"actionId": "", "state": {"status": "completed"}},
        "Observe": {"actionId": "aws:fis:wait", "state": {"status": "completed"}, "endTime": at(190)},
    }
    assert judge(e, Observation(), now=T0 + 300) is None


def test_the_first_target_that_resolved_nothing_is_named():
    e = experiment()
    e["actions"]["StopTasks"]["targets"] = {"Tasks": "Tasks", "Clusters": "Clusters"}
    detail = effect_of(e, Observation(resolved={"Tasks": [], "Clusters": []}))
    assert detail["evidence"] == (
        "FIS action aws:ecs:stop-task completed but target Tasks resolved no resource"
    )


def test_resolved_targets_without_a_task_arn_cannot_prove_a_stop():
    detail = effect_of(experiment(), Observation(resolved={"Tasks": [{"name": "bbbb2222"}]}))
    assert detail == {
        "observed": False,
        "evidence": "FIS action aws:ecs:stop-task completed but named no resolved task ARN to observe",
    }
