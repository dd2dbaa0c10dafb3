"""The replay Lambda's sources: the target database and the read models' topics, always, plus the ECS
rebuild runner (:mod:`lambdas.replay.ecs_rebuild`) when a read model's rebuild names an ``ecs_task``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from lambdas.common.event import RunEvent
from lambdas.common.sources import database_sources
from resgate.evidence.sources import Sources


def replay_sources(
    event: RunEvent, thresholds: Any, logger: Logger | None = None, *, ecs_client: Any = None
) -> Sources:
    """:func:`database_sources` for replay, which always reads its read models' topics, plus the ECS
    runner (:class:`~lambdas.replay.ecs_rebuild.EcsRebuildRunner`, from the environment the stack sets)
    when a read model's rebuild names an ``ecs_task``: the target's own code runs in its own image."""
    base = database_sources(event, thresholds, logger, topics_required=True)
    if not any(m.rebuild.ecs_task is not None for m in thresholds.read_models):
        return base
    from lambdas.replay.ecs_rebuild import EcsRebuildRunner  # replay's bundle only (psycopg)

    runner = EcsRebuildRunner.from_env(ecs_client if ecs_client is not None else boto3.client("ecs"))
    return replace(base, rebuild_runner=runner)
