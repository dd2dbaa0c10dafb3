"""The fault timeline of a run on AWS, from the state of its FIS experiments (``fis:GetExperiment``).

Per started fault, rows in the recovery checker's format ``{ts, fault_id, kind, target, event, detail,
experiment_id, status}`` (``fault_id`` is the fault's config name, as in a local run):

- ``injecting`` at the experiment's ``startTime`` (FIS resolves the targets, then runs the actions): the
  moment that separates this fault from the previous one, as a local injection's start does;
- ``injected`` at the earliest ``startTime`` of the experiment's actions (when ``aws:ecs:stop-task`` ran),
  else the experiment's ``startTime``; none when the experiment never started. A network action
  (``aws:ecs:task-network-*``) holds its fault for a while, as a local partition does: its row's detail is
  ``{"experiment": id, "duration_s": …}`` — the action's ``endTime - startTime`` once it has ended, else
  its ``duration`` parameter (ISO 8601), else the time it has been running (it is held at least until
  now: a running partition judged as an instantaneous fault would be judged while it still acts). The
  outages of a ``db_blip`` or a ``leader_loss`` (``aws:rds:*``: the reboot or failover) and a
  ``kafka_broker_down`` (its
  automation: the broker's reboot until the cluster is back) are held alike, from the action's start to
  its end;
- for a network action that has ended, ``lifting`` at its start plus its ``duration`` parameter (when
  given) and ``ended`` at its ``endTime`` (the fault lifted; the experiment goes on with its observation
  window, whose end is not the fault's), so recovery counts from the moment the fault was lifted;
- ``effect`` (proof that the fault acted, as a local run records it) once the fault's action has ended:
  observed on its resolved targets and, for a stop-task, on the stopped tasks themselves
  (:mod:`lambdas.timeline.effect`);
- ``ended`` at ``endTime`` when the experiment ``completed`` (for an instantaneous fault);
- ``aborted`` at ``endTime`` (else now) when it was ``stopped`` (by a stop condition, i.e. a tripped
  guardrail, or by a user), ``failed`` or ``cancelled``, with ``state.reason`` as detail;
- nothing more while it is still pending/initiating/running/stopping (logged by the handler).

The shapes are GetExperiment's (``experiment.startTime``, ``actions.<name>.{actionId, parameters,
startTime, endTime}``: https://docs.aws.amazon.com/fis/latest/APIReference/API_ExperimentAction.html).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lambdas.common.aws import call, epoch
from lambdas.timeline.effect import Observation, gather, judge
from lambdas.timeline.inputs import FaultRef

ENDED_STATUSES = frozenset({"completed"})
HELD_ACTION_PREFIX = "aws:ecs:task-network-"
ABORTED_STATUSES = frozenset({"stopped", "failed", "cancelled"})


def experiment_rows(
    fault: FaultRef, experiment: dict[str, Any], *, now: float, observation: Observation | None = None
) -> list[dict[str, Any]]:
    """The timeline rows of one experiment (``GetExperiment``'s ``experiment``), in time order; its
    ``effect`` judged by :func:`lambdas.timeline.effect.judge` on ``observation`` (what
    :func:`lambdas.timeline.effect.gather` saw of its targets; none: nothing resolved)."""
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
    started = epoch(experiment.get("startTime"))
    injected = min(action_starts) if action_starts else started
    rows: list[dict[str, Any]] = []
    held = _held_action(actions, fault.kind)
    lift: tuple[float | None, float | None] = (None, None)
    if injected is not None:
        detail: str | dict[str, Any] = f"FIS experiment {fault.experiment_id}"
        if held is not None:
            held_s, lift = held_window(held, now=now)
            if held_s is not None:
                detail = {"experiment": fault.experiment_id, "duration_s": held_s}
        if started is not None and started <= injected:
            rows.append({"ts": started, **base, "event": "injecting", "detail": detail})
        rows.append({"ts": injected, **base, "event": "injected", "detail": detail})
    effect = judge(experiment, observation or Observation(), now=now)
    if effect is not None and injected is not None:
        rows.append({**effect, **base, "event": "effect"})
    lifting, lifted = lift
    if lifting is not None:
        rows.append({"ts": lifting, **base, "event": "lifting", "detail": "the network action's duration"})
    if lifted is not None:
        what = (
            "network action"
            if str(held.get("actionId") if held else "").startswith(HELD_ACTION_PREFIX)
            else "outage"
        )
        rows.append({"ts": lifted, **base, "event": "ended", "detail": f"the {what} ended"})
    end = epoch(experiment.get("endTime"))
    if status in ENDED_STATUSES and lifted is None:
        rows.append({"ts": end if end is not None else now, **base, "event": "ended", "detail": reason})
    elif status in ABORTED_STATUSES:
        error = state.get("error") or {}
        detail = f"{status}: {reason}" if reason else status
        if error.get("code"):
            detail += f" ({error['code']})"
        rows.append({"ts": end if end is not None else now, **base, "event": "aborted", "detail": detail})
    return sorted(rows, key=lambda r: r["ts"])


# The data-path faults whose FIS action lasts as long as their outage (issue 21). A leader loss is the same
# reboot or failover of the lease store (infra/data_faults.py): judged from its end, not from its start
# (the database still down then), or recovery saw the outage itself as errors not back.
_DATABASE_OUTAGE = ("aws:rds:reboot-db-instances", "aws:rds:failover-db-cluster")
HELD_KIND_ACTIONS = {
    "db_blip": _DATABASE_OUTAGE,
    "leader_loss": _DATABASE_OUTAGE,
    "kafka_broker_down": ("aws:ssm:start-automation-execution",),
}


def _held_action(actions: Sequence[dict[str, Any]], kind: str = "") -> dict[str, Any] | None:
    """The experiment's network action (``aws:ecs:task-network-*``), which holds its fault for a while, or
    the action of a data-path outage (:data:`HELD_KIND_ACTIONS`)."""
    held = HELD_KIND_ACTIONS.get(kind, ())
    return next(
        (
            a
            for a in actions
            if str(a.get("actionId") or "").startswith(HELD_ACTION_PREFIX) or a.get("actionId") in held
        ),
        None,
    )


def held_window(
    action: dict[str, Any], *, now: float
) -> tuple[float | None, tuple[float | None, float | None]]:
    """``(held_s, (lifting_ts, lifted_ts))`` of a network action: how long it held its fault (its
    ``endTime - startTime``; still running: its ``duration`` parameter, else until ``now``), when its lift
    started (start + ``duration``, when given and before its end) and when it ended (None while running).
    ``held_s`` is None when the action never started."""
    start, end = epoch(action.get("startTime")), epoch(action.get("endTime"))
    if start is None:
        return None, (None, None)
    planned = iso_duration_s((action.get("parameters") or {}).get("duration"))
    if end is not None and end > start:
        lifting = start + planned if planned is not None and start + planned <= end else None
        return end - start, (lifting, end)
    return (planned if planned is not None else max(now - start, 0.0) or None), (None, None)


_ISO_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def iso_duration_s(v: Any) -> float | None:
    """An FIS action's ``duration`` parameter (ISO 8601, ``PT30S``, ``PT5M``, ``PT1H30M``) in seconds;
    None when absent or not of that form."""
    m = _ISO_DURATION.match(v) if isinstance(v, str) else None
    if m is None or not any(m.groups()):
        return None
    h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + sec or None


def fault_rows(
    fis: Any, ecs: Any, cluster: str, faults: Sequence[FaultRef], *, now: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """``(rows, still_active)``: every started fault's rows (time order) and the faults whose experiment has
    not ended yet; each experiment's effect observed on its resolved targets (in ECS ``cluster``, the
    target's). Any FIS or ECS failure raises :class:`resgate.contract.errors.GateError`."""
    rows: list[dict[str, Any]] = []
    active: list[str] = []
    for fault in faults:
        out = call(
            f"get FIS experiment {fault.experiment_id} ({fault.name})",
            fis.get_experiment,
            id=fault.experiment_id,
        )
        experiment = out.get("experiment") or {}
        observation = gather(fis, ecs, cluster, experiment)
        of_fault = experiment_rows(fault, experiment, now=now, observation=observation)
        status = str((experiment.get("state") or {}).get("status") or "unknown")
        if status not in ENDED_STATUSES | ABORTED_STATUSES:
            active.append(fault.name)
        rows += of_fault
    rows.sort(key=lambda r: r["ts"])
    return rows, active
