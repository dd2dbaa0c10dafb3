"""The assertion Lambdas' sources, read from the run event: what :class:`resgate.evidence.sources.Sources`
holds on AWS (the target's database from a Secrets Manager secret, the MSK brokers and how to reach
them: TLS, MSK IAM; the quiesce outcome, the load's length, replay's ECS rebuild runner), and the SLO's
CloudWatch source, which only AWS has.

Every field is validated before anything is read, raising ConfigError naming ``event.<field>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from lambdas.common import settings
from lambdas.common.cloudwatch import CloudWatchReader, CloudWatchSource
from lambdas.common.event import RunEvent
from lambdas.common.secrets import db_secret_arn, dsn_from_secret, kafka_bootstrap, redacted
from resgate.contract.errors import ConfigError
from resgate.evidence.sources import Settled, Sources
from resgate.sections.kafka import KafkaSettings

SLO_SOURCES = ("s3", "cloudwatch")


def event_sources(event: RunEvent, thresholds: Any = None, logger: Logger | None = None) -> Sources:
    """The run's id and the event's ``duration_s`` (the load phase's length), ``observed_until`` (the end of
    health observation) and ``quiesce`` (``{"settled": false, "reason": …}``)."""
    q = event.mapping("quiesce")
    return Sources(
        run_id=event.run_id,
        settled=Settled.from_dict(q, where="event.quiesce") if q is not None else None,
        duration_s=event.number("duration_s", positive=True),
        observed_until=event.number("observed_until"),
    )


def kafka_settings(event: RunEvent) -> KafkaSettings:
    """How to reach the brokers: per field the event's ``kafka`` object, else the environment
    (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_MECHANISM``, ``KAFKA_REGION``, ``KAFKA_CA_FILE``), else
    PLAINTEXT; IAM tokens default to the Lambda's own region. ConfigError names the field or variable."""
    return KafkaSettings.resolve(
        event.get(settings.EVENT_KAFKA),
        os.environ,
        settings.KAFKA_ENV,
        where=f"event.{settings.EVENT_KAFKA}",
        default_region=os.environ.get(settings.ENV_AWS_REGION),
    )


def database_sources(
    event: RunEvent, thresholds: Any, logger: Logger | None = None, *, topics_required: bool | None = None
) -> Sources:
    """:func:`event_sources` plus the target database (``db_secret_arn``) and brokers (``kafka_bootstrap``).

    The brokers are required when the check reads topics: always with ``topics_required``, else when the
    thresholds name ``topics`` (integrity). The secret is read only when the system settled: unsettled
    state is never compared.
    """
    bootstrap = kafka_bootstrap(event)
    kafka = kafka_settings(event)
    if topics_required is None:
        topics_required = bool(thresholds.topics)
    if topics_required and not bootstrap:
        raise ConfigError("is required to read the topics", where="event.kafka_bootstrap")
    base = event_sources(event)
    if base.settled is not None and not base.settled.settled:
        return base
    dsn = dsn_from_secret(db_secret_arn(event))
    if logger is not None:
        logger.info("sources", extra={"dsn": redacted(dsn), "bootstrap": bootstrap, "kafka": kafka.to_dict()})
    return Sources(
        run_id=base.run_id,
        dsn=dsn,
        bootstrap=bootstrap,
        settled=base.settled,
        duration_s=base.duration_s,
        observed_until=base.observed_until,
        kafka=kafka,
    )


@dataclass(frozen=True)
class SloSource:
    """Where the SLO figures come from: ``"s3"`` (Locust's stats) or ``"cloudwatch"`` (ALB metrics)."""

    kind: str = "s3"
    cloudwatch: CloudWatchSource | None = None

    @classmethod
    def from_event(cls, event: RunEvent) -> SloSource:
        """Validate ``source`` and ``cloudwatch`` of the event (before anything is read)."""
        kind = event.get("source") or "s3"
        if kind not in SLO_SOURCES:
            raise ConfigError(f"must be one of {list(SLO_SOURCES)}, got {kind!r}", where="event.source")
        cw = CloudWatchSource.from_dict(event.get("cloudwatch")) if kind == "cloudwatch" else None
        if kind != "cloudwatch" and event.get("cloudwatch") is not None:
            raise ConfigError("is only read when source is 'cloudwatch'", where="event.cloudwatch")
        return cls(kind=kind, cloudwatch=cw)


def replay_sources(
    event: RunEvent, thresholds: Any, logger: Logger | None = None, *, ecs_client: Any = None
) -> Sources:
    """:func:`database_sources` for replay, which always reads its read models' topics, plus the ECS
    runner (:class:`~lambdas.common.ecs_rebuild.EcsRebuildRunner`, from the environment the stack sets)
    when a read model's rebuild names an ``ecs_task``: the target's own code runs in its own image."""
    base = database_sources(event, thresholds, logger, topics_required=True)
    if not any(m.rebuild.ecs_task is not None for m in thresholds.read_models):
        return base
    from lambdas.common.ecs_rebuild import EcsRebuildRunner  # replay's bundle only (psycopg)

    runner = EcsRebuildRunner.from_env(ecs_client if ecs_client is not None else boto3.client("ecs"))
    return replace(base, rebuild_runner=runner)


def slo_gather(
    event: RunEvent, thresholds: Any, logger: Logger | None = None, *, client: Any = None
) -> Callable[[], Any] | None:
    """With ``"source": "cloudwatch"``, a callable that reads the SLO evidence from the ALB's metrics (see
    :mod:`lambdas.common.cloudwatch`); else None (Locust's ``load_stats.jsonl``, as locally)."""
    source = SloSource.from_event(event)
    if source.kind != "cloudwatch":
        return None
    cw = source.cloudwatch
    assert cw is not None

    def gather() -> Any:
        reader = CloudWatchReader(client or boto3.client("cloudwatch"), logger)
        return reader.evidence(cw, with_samples=thresholds.regression is not None)

    return gather
