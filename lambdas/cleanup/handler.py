"""Lambda handler of the abort cleanup, invoked by EventBridge when an execution ends ABORTED, TIMED_OUT or
FAILED: :func:`lambdas.cleanup.stops.clean_up` stops the run's load and experiments, releases its lock and
leaves its trace."""

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
