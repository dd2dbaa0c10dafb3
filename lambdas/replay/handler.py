"""Lambda handler of the replay assertion: rebuild each read model from its topics and compare with the live.

Sources: the target database (``db_secret_arn``) and the read models' topics (``kafka_bootstrap``, reached
as the ``kafka`` settings say). A rebuild that names an ``ecs_task`` runs the target's own code in its own
image as an ECS task (:mod:`lambdas.replay.ecs_rebuild`); the Lambda waits for it and compares. The
event's ``config`` is the ``checks.replay`` section; ``quiesce: {"settled": false}`` makes the result
unknown, as locally; a topic truncated by retention or a failed rebuild is judged unknown by the checker.
"""

from __future__ import annotations

from lambdas.common import settings
from lambdas.common.handler import check_handler
from lambdas.replay.sources import replay_sources

handler = check_handler("replay", config_keys=settings.CONFIG_KEYS, sources=replay_sources)
