"""Each S3/CloudWatch-backed check's evidence, built from the run's files the way the local runner builds it
from its in-memory run (``resgate.runner.assertions``), so both hand the checker the same evidence.

A required file that is absent raises :class:`~lambdas.common.evidence_s3.EvidenceMissing`; the handler
turns that into ``unknown``. Optional files (the ledger for SLO regression windows and recovery error
windows) are used when present, as locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from lambdas.common.cloudwatch import CloudWatchReader, CloudWatchSource
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import EvidenceMissing, LedgerView, S3Evidence
from resgate.checks import recovery, retryable, slo
from resgate.checks.result import CheckResult
from resgate.contract.errors import ConfigError

SLO_SOURCES = ("s3", "cloudwatch")


def _optional_ledger(store: S3Evidence) -> LedgerView | list[Any]:
    # The local runner passes an empty ledger when none was written; do the same.
    try:
        return store.ledger()
    except EvidenceMissing:
        return []


# ------------------------------------------------------------------------------------------ slo


@dataclass(frozen=True)
class SloSource:
    """Where the SLO figures come from: ``"s3"`` (Locust's stats) or ``"cloudwatch"`` (ALB metrics)."""

    kind: str = "s3"
    cloudwatch: CloudWatchSource | None = None
    duration_s: float | None = None

    @classmethod
    def from_event(cls, event: RunEvent) -> SloSource:
        """Validate ``source``, ``cloudwatch`` and ``duration_s`` of the event (before anything is read)."""
        kind = event.get("source") or "s3"
        if kind not in SLO_SOURCES:
            raise ConfigError(f"must be one of {list(SLO_SOURCES)}, got {kind!r}", where="event.source")
        cw = CloudWatchSource.from_dict(event.get("cloudwatch")) if kind == "cloudwatch" else None
        if kind != "cloudwatch" and event.get("cloudwatch") is not None:
            raise ConfigError("is only read when source is 'cloudwatch'", where="event.cloudwatch")
        return cls(kind=kind, cloudwatch=cw, duration_s=event.number("duration_s", positive=True))


def slo_evidence(
    source: SloSource,
    store: S3Evidence,
    thresholds: slo.SloThresholds,
    *,
    cloudwatch_client: Any = None,
    logger: Any = None,
) -> slo.SloEvidence:
    """The run's :class:`resgate.checks.slo.SloEvidence`.

    From S3: ``load_stats.jsonl`` (one Locust stats entry a line) with ``duration_s`` from the event (else
    derived from the stats); the ledger is read only in regression mode, the one place its per-window p95
    samples are used. From CloudWatch: see :mod:`lambdas.common.cloudwatch`.
    """
    if source.kind == "cloudwatch":
        assert source.cloudwatch is not None
        reader = CloudWatchReader(cloudwatch_client or boto3.client("cloudwatch"), logger)
        return reader.evidence(source.cloudwatch, with_samples=thresholds.regression is not None)
    stats = store.read_jsonl("load_stats")
    if not stats:
        raise EvidenceMissing(
            f"the load produced no statistics ({store.uri('load_stats')} is empty)",
            uri=store.uri("load_stats"),
        )
    records = _optional_ledger(store) if thresholds.regression is not None else None
    return slo.evidence_from_run(stats, duration_s=source.duration_s, records=records)


# ------------------------------------------------------------------------------------------ recovery


def recovery_evidence(store: S3Evidence, *, observed_until: float | None = None) -> recovery.RecoveryEvidence:
    """The run's :class:`resgate.checks.recovery.RecoveryEvidence` from ``faults.jsonl`` (fault timeline
    events only), ``health.jsonl`` (service observations only) and, when present, the ledger's error-ratio
    windows. Both timelines are required (an empty file is fine: it says nothing happened)."""
    faults = [e for e in store.read_jsonl("faults") if e.get("event") in recovery.FAULT_EVENTS]
    health = [e for e in store.read_jsonl("health") if "service" in e]
    return recovery.evidence_from_run(
        faults, health, records=_optional_ledger(store), observed_until=observed_until
    )


# ------------------------------------------------------------------------------------------ retryable


def retryable_evidence(store: S3Evidence) -> retryable.RetryableEvidence:
    """The run's :class:`resgate.checks.retryable.RetryableEvidence`: the ledger, streamed from S3."""
    # A re-iterable stream instead of a tuple, so a large ledger is never held whole in memory.
    return retryable.RetryableEvidence(records=store.ledger())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ integrity, replay


def not_quiesced(event: RunEvent, name: str) -> CheckResult | None:
    """``unknown`` when the event's ``quiesce`` says the system did not settle (``{"settled": false,
    "reason": …}``), as the local runner does: state compared before it settles proves nothing."""
    q = event.mapping("quiesce")
    if q is None:
        return None
    settled = q.get("settled")
    if not isinstance(settled, bool):
        raise ConfigError(f"must be true or false, got {settled!r}", where="event.quiesce.settled")
    if settled:
        return None
    return CheckResult.unknown(
        name,
        f"the system did not quiesce, so state cannot be compared: {q.get('reason') or 'no reason given'}",
    )
