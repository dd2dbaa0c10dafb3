"""The fault timeline of a run on AWS, from the state of its FIS experiments (``fis:GetExperiment``).

Per started fault, rows in the recovery checker's format ``{ts, fault_id, kind, target, event, detail,
experiment_id, status}`` (``fault_id`` is the fault's config name, as in a local run):

- ``injected`` at the earliest ``startTime`` of the experiment's actions (when ``aws:ecs:stop-task`` ran),
  else the experiment's ``startTime``; none when the experiment never started. A network action
  (``aws:ecs:task-network-*``) holds its fault for a while, as a local partition does: its row's detail is
  ``{"experiment": id, "duration_s": endTime - startTime}`` once the action has ended, so recovery counts
  from the moment the fault was lifted, not from the end of the observation window that follows it;
- ``ended`` at ``endTime`` when the experiment ``completed``;
- ``aborted`` at ``endTime`` (else now) when it was ``stopped`` (by a stop condition, i.e. a tripped
  guardrail, or by a user), ``failed`` or ``cancelled``, with ``state.reason`` as detail;
- nothing more while it is still pending/initiating/running/stopping (logged by the handler).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lambdas.common.aws import call, epoch
from lambdas.timeline.inputs import FaultRef

ENDED_STATUSES = frozenset({"completed"})
HELD_ACTION_PREFIX = "aws:ecs:task-network-"
ABORTED_STATUSES = frozenset({"stopped", "failed", "cancelled"})


def experiment_rows(fault: FaultRef, experiment: dict[str, Any], *, now: float) -> list[dict[str, Any]]:
    """The timeline rows of one experiment (``GetExperiment``'s ``experiment``), in time order."""
    state = experiment.get("state") or {}
    status = str(state.get("status") or "unknown")
    reason = state.get("reason") or ""
    base = {
        "fault_id": fault.name,
        "kind": fault.kind,
        "target": fault.target,
        "experiment_id": fault.experiment_id,
        "status": status,
    }
    actions = [a or {} for a in (experiment.get("actions") or {}).values()]
    action_starts = [t for a in actions if (t := epoch(a.get("startTime"))) is not None]
    injected = min(action_starts) if action_starts else epoch(experiment.get("startTime"))
    rows: list[dict[str, Any]] = []
    if injected is not None:
        detail: str | dict[str, Any] = f"FIS experiment {fault.experiment_id}"
        held = held_seconds(actions)
        if held is not None:
            detail = {"experiment": fault.experiment_id, "duration_s": held}
        rows.append({"ts": injected, **base, "event": "injected", "detail": detail})
    end = epoch(experiment.get("endTime"))
    if status in ENDED_STATUSES:
        rows.append({"ts": end if end is not None else now, **base, "event": "ended", "detail": reason})
    elif status in ABORTED_STATUSES:
        error = state.get("error") or {}
        detail = f"{status}: {reason}" if reason else status
        if error.get("code"):
            detail += f" ({error['code']})"
        rows.append({"ts": end if end is not None else now, **base, "event": "aborted", "detail": detail})
    return rows


def held_seconds(actions: Sequence[dict[str, Any]]) -> float | None:
    """How long the experiment's network action held its fault (its ``endTime - startTime``); None when it
    has none, or it has not ended."""
    for a in actions:
        if str(a.get("actionId") or "").startswith(HELD_ACTION_PREFIX):
            start, end = epoch(a.get("startTime")), epoch(a.get("endTime"))
            if start is not None and end is not None and end > start:
                return end - start
    return None


def fault_rows(fis: Any, faults: Sequence[FaultRef], *, now: float) -> tuple[list[dict[str, Any]], list[str]]:
    """``(rows, still_active)``: every started fault's rows (time order) and the faults whose experiment has
    not ended yet. Any FIS failure raises :class:`resgate.contract.errors.GateError`."""
    rows: list[dict[str, Any]] = []
    active: list[str] = []
    for fault in faults:
        out = call(
            f"get FIS experiment {fault.experiment_id} ({fault.name})",
            fis.get_experiment,
            id=fault.experiment_id,
        )
        experiment = out.get("experiment") or {}
        of_fault = experiment_rows(fault, experiment, now=now)
        if not any(r["event"] in ("ended", "aborted") for r in of_fault):
            active.append(fault.name)
        rows += of_fault
    rows.sort(key=lambda r: r["ts"])
    return rows, active
