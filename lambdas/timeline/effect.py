"""Proof that an FIS experiment's fault took effect on AWS, in the local runner's vocabulary.

The timeline writes one ``effect`` row per experiment once its fault action has ended, ``detail:
{observed: bool, evidence: str}``: the row a local run's fault runner writes (:mod:`resgate.runner.faults`),
judged by the same recovery checker (a fault whose effect was not observed is **unknown**: "fault X had no
observed effect: ..."). What the timeline observes (issue 22, item 4), measured by :func:`gather` and
judged by :func:`judge`:

- every fault action must have **completed** (``failed``/``cancelled``: not observed, with FIS's reason;
  the templates resolve targets with ``emptyTargetResolutionMode: fail``, so an action that found nothing
  fails);
- an action that names targets (``actions.<name>.targets``, e.g. ``{"Tasks": "Tasks"}``) must have
  **resolved at least one** resource for each (``fis:ListExperimentResolvedTargets``,
  https://docs.aws.amazon.com/fis/latest/APIReference/API_ListExperimentResolvedTargets.html): an action
  that completed on nothing acted on nothing. That is all a network action
  (``aws:ecs:task-network-*``) is judged on: its completed state and a resolved task;
- ``aws:ecs:stop-task`` is judged on **the stopped tasks themselves** (``ecs:DescribeTasks`` of the resolved
  task ARNs): a task counts as stopped by the fault when ECS recorded a stop requested through the API
  (``stopCode: UserInitiated``: FIS's action calls ``ecs:StopTask``, the permission the FIS actions reference
  lists for it) that began within the action's window (its ``startTime`` to its ``endTime``, give or take
  :data:`WINDOW_SLACK_S` for the two services' clocks). ``stoppedReason`` is the StopTask caller's free text
  (ECS API reference, StopTask: "the message appears in subsequent DescribeTasks"); FIS's wording is not
  documented, so it is quoted as evidence, never matched. A task that stopped on its own before the action
  (a target already gone: replaced by a deployment or crashed between resolution and the action; ECS answers
  a StopTask on a stopped task without error, so the action still completes), one that stopped for another
  reason (``EssentialContainerExited``, ``ServiceSchedulerInitiated``), one still running and one ECS no
  longer describes were not stopped by the fault. With ``selectionMode: ALL`` every resolved task must have
  been stopped by it; with ``COUNT(n)``/``PERCENT(n)`` at least one (whether FIS lists the resolved targets
  before or after the selection is not documented).

Resolved targets' ``targetInformation`` is a string map whose keys are not documented per resource type;
the task ARNs are the values of the form ``arn:…:ecs:…:task/…``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lambdas.common.aws import epoch, pages
from lambdas.timeline.health import TaskSpan, describe_tasks, task_id

STOP_TASK_ACTION = "aws:ecs:stop-task"
NOT_A_FAULT_ACTIONS = frozenset({"aws:fis:wait"})
FAILED_ACTION_STATUSES = frozenset({"failed", "cancelled"})
STOPPED_BY_API = "UserInitiated"
WINDOW_SLACK_S = 5.0
"""How far outside the action's window a task's stop may begin and still count (clock skew between FIS and
ECS); a target that was gone before the action stopped long before it."""
_TASK_ARN = re.compile(r"^arn:[\w-]+:ecs:[\w-]+:\d+:task/\S+$")


@dataclass(frozen=True)
class Observation:
    """What AWS says of an experiment's targets: ``resolved`` (target name → the ``targetInformation`` of
    each resolved target), ``tasks`` (the resolved tasks ECS described) and ``missing`` (resolved task
    ARNs ECS did not describe). Empty: nothing was resolved (or nothing was asked)."""

    resolved: Mapping[str, Sequence[Mapping[str, str]]] = field(default_factory=dict)
    tasks: Sequence[TaskSpan] = ()
    missing: Sequence[str] = ()


def fault_action(experiment: Mapping[str, Any]) -> dict[str, Any] | None:
    """The experiment's fault action (its first action that is not an ``aws:fis:wait``), or None."""
    for a in (experiment.get("actions") or {}).values():
        action_id = str((a or {}).get("actionId") or "")
        if action_id and action_id not in NOT_A_FAULT_ACTIONS:
            return a
    return None


def task_arns(infos: Sequence[Mapping[str, str]]) -> list[str]:
    """The task ARNs among resolved targets' ``targetInformation`` values, in order, once each."""
    found = [str(v) for info in infos for v in info.values() if _TASK_ARN.match(str(v))]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------- measure


def gather(fis: Any, ecs: Any, cluster: str, experiment: Mapping[str, Any]) -> Observation:
    """Ask FIS for the resolved targets of the experiment's completed fault action (every page) and, for a
    stop-task, ECS for those tasks (``cluster``: the target cluster). Nothing is asked for an action that has
    not completed or names no target. Failures raise :class:`resgate.contract.errors.GateError`."""
    action = fault_action(experiment)
    if action is None or str((action.get("state") or {}).get("status")) != "completed":
        return Observation()
    resolved: dict[str, list[dict[str, str]]] = {}
    for target in dict.fromkeys((action.get("targets") or {}).values()):
        resolved[target] = [
            dict(r.get("targetInformation") or {})
            for page in pages(
                f"list the resolved targets {target} of FIS experiment {experiment.get('id')}",
                fis,
                "list_experiment_resolved_targets",
                experimentId=experiment.get("id"),
                targetName=target,
            )
            for r in page.get("resolvedTargets") or []
        ]
    if action.get("actionId") != STOP_TASK_ACTION:
        return Observation(resolved=resolved)
    arns = task_arns([i for infos in resolved.values() for i in infos])
    tasks, _ = describe_tasks(ecs, cluster, arns) if arns else ([], [])
    described = {t.arn for t in tasks}
    return Observation(resolved=resolved, tasks=tasks, missing=[a for a in arns if a not in described])


# ------------------------------------------------------------------------------------------ judge


def judge(experiment: Mapping[str, Any], observation: Observation, *, now: float) -> dict[str, Any] | None:
    """``{ts, detail: {observed, evidence}}`` of the experiment's fault action once it has ended (``ts``: its
    ``endTime``, else ``now``), judged as the module says; None while it has not ended."""
    action = fault_action(experiment)
    if action is None:
        return None
    action_id = str(action["actionId"])
    state = action.get("state") or {}
    status = str(state.get("status") or "")
    end = epoch(action.get("endTime"))
    ts = end if end is not None else now
    if status in FAILED_ACTION_STATUSES:
        return _row(ts, False, f"FIS action {action_id} {status}: {state.get('reason') or status}")
    if status != "completed":
        return None
    targets = list(dict.fromkeys((action.get("targets") or {}).values()))
    empty = [t for t in targets if not observation.resolved.get(t)]
    if empty:
        return _row(ts, False, f"FIS action {action_id} completed but target {empty[0]} resolved no resource")
    if action_id != STOP_TASK_ACTION:
        if not targets:
            return _row(ts, True, f"FIS action {action_id} completed")
        n = sum(len(observation.resolved[t]) for t in targets)
        return _row(
            ts, True, f"FIS action {action_id} completed on {n} resolved target(s) of {', '.join(targets)}"
        )
    return _row(ts, *_stopped_tasks(experiment, action, targets, observation, now=now))


def _stopped_tasks(
    experiment: Mapping[str, Any],
    action: Mapping[str, Any],
    targets: Sequence[str],
    observation: Observation,
    *,
    now: float,
) -> tuple[bool, str]:
    """``(observed, evidence)`` of a completed stop-task from the resolved tasks ECS described."""
    arns = task_arns([i for t in targets for i in observation.resolved.get(t) or []])
    if not targets or not arns:
        return False, f"FIS action {STOP_TASK_ACTION} completed but named no resolved task ARN to observe"
    start = epoch(action.get("startTime"))
    end = epoch(action.get("endTime"))
    lo = (start if start is not None else now) - WINDOW_SLACK_S
    hi = (end if end is not None else now) + WINDOW_SLACK_S
    by_arn = {t.arn: t for t in observation.tasks}
    stopped: list[str] = []
    not_stopped: list[str] = []
    for arn in arns:
        task = by_arn.get(arn)
        why = _not_stopped_by_fault(task, lo, hi)
        if why is None:
            assert task is not None
            stopped.append(f"{task.replica} ({task.stop_code}: {task.reason or 'no reason given'})")
        else:
            not_stopped.append(f"{task_id(arn)} {why}")
    modes = {
        str(((experiment.get("targets") or {}).get(t) or {}).get("selectionMode") or "ALL") for t in targets
    }
    needed = len(arns) if modes == {"ALL"} else 1
    seen = f"stopped {len(stopped)} of its {len(arns)} resolved task(s) within its window"
    detail = "; ".join(([", ".join(stopped)] if stopped else []) + not_stopped)
    return len(stopped) >= needed, f"FIS action {STOP_TASK_ACTION} {seen}: {detail}"


def _not_stopped_by_fault(task: TaskSpan | None, lo: float, hi: float) -> str | None:
    """Why ``task`` was not stopped by the action whose window is ``[lo, hi]``, or None when it was."""
    if task is None:
        return "was not described by ECS (gone)"
    if task.left is None:
        return "is still running"
    if task.stop_code != STOPPED_BY_API:
        return f"stopped by {task.stop_code or 'ECS'} ({task.reason or 'no reason given'}), not by StopTask"
    if task.left < lo:
        return (
            f"had already stopped {lo + WINDOW_SLACK_S - task.left:.0f} s before the action ({task.reason})"
        )
    if task.left > hi:
        return f"stopped {task.left - hi + WINDOW_SLACK_S:.0f} s after the action ({task.reason})"
    return None


def _row(ts: float, observed: bool, evidence: str) -> dict[str, Any]:
    return {"ts": ts, "detail": {"observed": observed, "evidence": evidence}}
