"""The assertion Lambdas' sources, read from the run event: what :class:`resgate.evidence.sources.Sources`
holds on AWS (the target's database from a Secrets Manager secret, the MSK brokers, the quiesce outcome,
the load's length), and the SLO's CloudWatch source, which only AWS has.

Every field is validated before anything is read, raising ConfigError naming ``event.<field>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from lambdas.common.cloudwatch import CloudWatchReader, CloudWatchSource
from lambdas.common.event import RunEvent
from lambdas.common.secrets import db_secret_arn, dsn_from_secret, kafka_bootstrap, redacted
from resgate.contract.errors import ConfigError
from resgate.evidence.sources import Settled, Sources

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


def database_sources(
    event: RunEvent, thresholds: Any, logger: Logger | None = None, *, topics_required: bool | None = None
) -> Sources:
    """:func:`event_sources` plus the target database (``db_secret_arn``) and brokers (``kafka_bootstrap``).

    The brokers are required when the check reads topics: always with ``topics_required``, else when the
    thresholds name ``topics`` (integrity). The secret is read only when the system settled: unsettled
    state is never compared.
    """
    bootstrap = kafka_bootstrap(event)
    if topics_required is None:
        topics_required = bool(thresholds.topics)
    if topics_required and not bootstrap:
        raise ConfigError("is required to read the topics", where="event.kafka_bootstrap")
    base = event_sources(event)
    if base.settled is not None and not base.settled.settled:
        return base
    dsn = dsn_from_secret(db_secret_arn(event))
    if logger is not None:
        logger.info("sources", extra={"dsn": redacted(dsn), "bootstrap": bootstrap})
    return Sources(
        run_id=base.run_id,
        dsn=dsn,
        bootstrap=bootstrap,
        settled=base.settled,
        duration_s=base.duration_s,
        observed_until=base.observed_until,
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


def replay_sources(event: RunEvent, thresholds: Any, logger: Logger | None = None) -> Sources:
    """:func:`database_sources` for replay, which always reads its read models' topics."""
    return database_sources(event, thresholds, logger, topics_required=True)


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
