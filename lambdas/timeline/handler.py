"""Lambda handler of the timeline step: :func:`lambdas.timeline.write.write_timeline` writes the run's
``faults.jsonl`` (from its FIS experiments) and ``health.jsonl`` (from the target's ECS tasks)."""

from __future__ import annotations

from typing import Any

from lambdas.common.aws import client
from lambdas.common.event import RunEvent
from lambdas.common.handler import Tools, lambda_handler
from lambdas.timeline.write import write_timeline

NAME = "timeline"


def _timeline(event: dict[str, Any], tools: Tools) -> dict[str, Any]:
    return write_timeline(RunEvent.from_event(event), tools, fis=client("fis"), ecs=client("ecs"))


handler = lambda_handler(NAME, _timeline)
