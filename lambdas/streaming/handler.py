"""Lambda handler of the streaming assertion: the market-data subscribers' stream ledger against the
trades topic.

Evidence: ``stream.jsonl`` (uploaded by the load task beside the client ledger) and ``faults.jsonl`` from
the run's S3 prefix, and the trades topic (``kafka_bootstrap``, required; reached as the ``kafka``
settings say). No database is read. The event's ``thresholds`` are the ``checks.streaming`` section.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aws_lambda_powertools import Logger

from lambdas.common.event import RunEvent
from lambdas.common.handler import check_handler
from lambdas.common.secrets import kafka_bootstrap
from lambdas.common.sources import event_sources, kafka_settings
from resgate.contract.errors import ConfigError
from resgate.evidence.sources import Sources


def stream_sources(event: RunEvent, thresholds: Any, logger: Logger | None = None) -> Sources:
    """:func:`~lambdas.common.sources.event_sources` plus the brokers (``kafka_bootstrap``, required)."""
    bootstrap = kafka_bootstrap(event)
    if not bootstrap:
        raise ConfigError("is required to read the trades topic", where="event.kafka_bootstrap")
    return replace(event_sources(event), bootstrap=bootstrap, kafka=kafka_settings(event))


handler = check_handler("streaming", sources=stream_sources)
