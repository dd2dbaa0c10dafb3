"""Lambda handler of the quiesce step: :func:`lambdas.quiesce.settle.quiesce` waits (bounded) until the
target's services are healthy and its data drained, with the same function as ``resgate run``."""

from __future__ import annotations

from typing import Any

from lambdas.common.aws import client
from lambdas.common.event import RunEvent
from lambdas.common.handler import Tools, lambda_handler
from lambdas.quiesce.settle import quiesce

NAME = "quiesce"


def _quiesce(event: dict[str, Any], tools: Tools) -> dict[str, Any]:
    out = quiesce(RunEvent.from_event(event), ecs=client("ecs")).to_dict()
    tools.logger.info("quiesce", extra=out)
    return out


handler = lambda_handler(NAME, _quiesce)
