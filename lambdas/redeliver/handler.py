"""Lambda handler of the ``duplicate_delivery`` fault on AWS: re-publish a fraction of the configured topics'
events with :func:`resgate.redelivery.redeliver`, the very function the local fault runner calls.

FIS starts it at the fault's time through the gate's SSM automation document
(:mod:`infra.fault_automation`: ``aws:ssm:start-automation-execution`` → ``aws:invokeLambdaFunction``), whose
payload is ``{"fault": name, "topics": [...], "fraction": f, "max_events": n}``. The brokers and how to reach
them (TLS, MSK IAM) come from the same environment as the checks' (``KAFKA_BOOTSTRAP``,
``KAFKA_SECURITY_PROTOCOL``, …). A redelivery that re-published nothing did not take effect: the handler
raises, so the automation step, and with it the FIS action, fails and the timeline's ``effect`` row says
``observed: false`` with the reason (a fault that silently did nothing would pass idempotency unproven).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from lambdas.common import settings
from lambdas.common.handler import Tools, lambda_handler
from resgate.contract.errors import ConfigError, GateError
from resgate.sections.kafka import KafkaSettings

NAME = "redeliver"

Redeliver = Callable[..., dict[str, Any]]


def redelivery_request(event: Any) -> tuple[str, list[str], float, int]:
    """``(fault, topics, fraction, max_events)`` from the automation's payload; ConfigError names the
    field (``event.<field>``) before anything is read."""
    if not isinstance(event, Mapping):
        raise ConfigError(f"must be a JSON object, got {type(event).__name__}", where="event")
    fault = event.get("fault")
    if not isinstance(fault, str) or not fault:
        raise ConfigError("must name the fault", where="event.fault")
    topics = event.get("topics")
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) and t for t in topics):
        raise ConfigError(f"must be a non-empty list of topic names, got {topics!r}", where="event.topics")
    fraction = event.get("fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ConfigError(f"must be a number in (0, 1], got {fraction!r}", where="event.fraction")
    max_events = event.get("max_events")
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
        raise ConfigError(f"must be a whole number >= 1, got {max_events!r}", where="event.max_events")
    return fault, list(topics), float(fraction), max_events


def redeliver_event(
    event: Any, *, environ: Mapping[str, str] = os.environ, redeliver: Redeliver | None = None
) -> dict[str, Any]:
    """Validate the payload and the Kafka settings, re-publish, return ``{"fault", "republished",
    "per_topic"}``. Raises GateError when nothing was re-published (the fault did not take effect)."""
    fault, topics, fraction, max_events = redelivery_request(event)
    bootstrap = environ.get(settings.ENV_KAFKA_BOOTSTRAP, "").strip()
    if not bootstrap:
        raise ConfigError("is required to re-publish events", where=settings.ENV_KAFKA_BOOTSTRAP)
    kafka = KafkaSettings.resolve(
        None,
        environ,
        settings.KAFKA_ENV,
        where="environment",
        default_region=environ.get(settings.ENV_AWS_REGION),
    )
    if redeliver is None:
        from resgate.redelivery import redeliver  # aiokafka: only this function's bundle has it

    result = redeliver(bootstrap, topics, fraction, max_events, kafka)
    republished = int(result.get("republished") or 0)
    if republished <= 0:
        raise GateError(
            f"fault {fault}: no event of {topics} was re-published ({result.get('note') or 'empty topics'}): "
            "the duplicate delivery did not take effect"
        )
    return {"fault": fault, "republished": republished, "per_topic": dict(result.get("per_topic") or {})}


def _redeliver(event: dict[str, Any], tools: Tools) -> dict[str, Any]:
    out = redeliver_event(event)
    tools.logger.info("redelivered", extra=out)
    return out


handler = lambda_handler(NAME, _redeliver)
