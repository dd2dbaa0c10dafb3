"""Where the slo Lambda reads its figures: Locust's ``load_stats.jsonl`` in the run's prefix, as
locally, or, with ``"source": "cloudwatch"`` in the event, the ALB's CloudWatch metrics
(:mod:`lambdas.slo.cloudwatch`), which only AWS has. Every field is validated before anything is read,
raising ConfigError naming ``event.<field>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from lambdas.common.event import RunEvent
from lambdas.slo.cloudwatch import CloudWatchReader, CloudWatchSource
from resgate.contract.errors import ConfigError

SLO_SOURCES = ("s3", "cloudwatch")


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


def slo_gather(
    event: RunEvent, thresholds: Any, logger: Logger | None = None, *, client: Any = None
) -> Callable[[], Any] | None:
    """With ``"source": "cloudwatch"``, a callable that reads the SLO evidence from the ALB's metrics (see
    :mod:`lambdas.slo.cloudwatch`); else None (Locust's ``load_stats.jsonl``, as locally)."""
    source = SloSource.from_event(event)
    if source.kind != "cloudwatch":
        return None
    cw = source.cloudwatch
    assert cw is not None

    def gather() -> Any:
        reader = CloudWatchReader(client or boto3.client("cloudwatch"), logger)
        return reader.evidence(cw, with_samples=thresholds.regression is not None)

    return gather
