"""The assertion Lambdas' sources, read from the run event: what :class:`resgate.evidence.sources.Sources`
holds on AWS (the target's database from a Secrets Manager secret, the MSK brokers and how to reach
them: TLS, MSK IAM; the quiesce outcome, the load's length). Replay's ECS rebuild runner is added by
:mod:`lambdas.replay.sources`, the SLO's CloudWatch source by :mod:`lambdas.slo.sources`.

Every field is validated before anything is read, raising ConfigError naming ``event.<field>``.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.secrets import db_secret_arn, dsn_from_secret, kafka_bootstrap, redacted
from resgate.contract.errors import ConfigError
from resgate.evidence.sources import Settled, Sources
from resgate.sections.kafka import KafkaSettings


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
