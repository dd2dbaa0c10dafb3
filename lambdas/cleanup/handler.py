"""Lambda handler of the abort cleanup: stop a run's load task and FIS experiments, release its target's
lock and leave its trace (an ERROR verdict, the notice, the OpsItem when configured).

An EventBridge rule invokes it when an execution of the gate's state machine ends ABORTED (StopExecution)
or TIMED_OUT, which skip the state machine's own cleanup branch, and FAILED (harmless: the branch has
already stopped everything, and stopping again is a no-op). See :mod:`lambdas.cleanup.inputs` for the
event, :mod:`lambdas.cleanup.stops` for what is stopped and :mod:`lambdas.cleanup.trace` for the lock and
the trace. Returns ``{run_id, status, stopped_tasks, stopped_experiments, already_stopped, other_runs,
failures, lock, verdict, notified}``; when any step failed it raises a ``GateError`` after trying all of
them (EventBridge's asynchronous invocation retries).
"""

from __future__ import annotations

from typing import Any

from lambdas.cleanup.inputs import AbortedRun, GateResources
from lambdas.cleanup.stops import clean_up
from lambdas.common.aws import client
from lambdas.common.handler import Tools, lambda_handler

NAME = "cleanup"


def _cleanup(event: dict[str, Any], tools: Tools) -> dict[str, Any]:
    run, resources = AbortedRun.from_event(event), GateResources.from_env()
    clients = {name: client(name) for name in ("ecs", "fis", "dynamodb", "sns")}
    return clean_up(run, resources, tools, **clients)


handler = lambda_handler(NAME, _cleanup, correlation_id_path="detail.name")
