"""Each checker's evidence builder: one named function per checker, in one table.

A builder takes ``(store, thresholds, sources)`` — the run's files behind the
:class:`~resgate.evidence.store.RunStore` protocol, the check's typed thresholds and the target's live sources
(:class:`~resgate.evidence.sources.Sources`) — and returns what that checker's ``check`` judges. It raises
``EvidenceMissing`` when the evidence is not there (the check becomes ``unknown``) and ``ConfigError`` naming
``sources`` when a source it needs was not given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from resgate.checks import backpressure, integrity, recovery, replay, retryable, slo, streaming
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.evidence.store import RunStore, incomplete_parts, ledger, read_jsonl

if TYPE_CHECKING:
    from resgate.evidence.sources import Sources

Builder = Callable[[RunStore, Any, "Sources"], Any]


def slo_evidence(store: RunStore, thresholds: slo.SloThresholds, sources: Sources) -> slo.SloEvidence:
    """``load_stats.jsonl`` (required, non-empty; with ``latency_from: intended`` the endpoint figures come
    from the ledger instead, :func:`resgate.checks.slo.stats_from_ledger`), in regression mode against an
    inline baseline the ledger's windows, the run's phases (:func:`resgate.evidence.phases.phases_from_store`)
    and the gate's golden profile."""
    from resgate.evidence.golden import read_golden
    from resgate.evidence.phases import phases_from_store

    stats = read_jsonl(store, "load_stats")
    if not stats:
        raise EvidenceMissing(f"the load produced no statistics ({store.uri('load_stats')} is empty)")
    if thresholds.latency_from == "intended":
        # Locust times each request from its send: the figures come from the ledger's intended starts
        stats = slo.stats_from_ledger(ledger(store), latency_from="intended")
    inline = thresholds.regression is not None and thresholds.regression.baseline is not None
    records = ledger(store, required=False) if inline else None
    ev = slo.evidence_from_run(stats, duration_s=sources.duration_s, records=records)
    phases = phases_from_store(
        store,
        rto_s=thresholds.phases.rto_s,
        settle_s=thresholds.phases.settle_s,
        latency_from=thresholds.latency_from,
    )
    return dataclasses.replace(
        ev, phases=None if phases is None else tuple(phases), golden=read_golden(store)
    )


def recovery_evidence(store: RunStore, thresholds: Any, sources: Sources) -> recovery.RecoveryEvidence:
    """``faults.jsonl`` (its ``leader_samples`` lines too) and ``health.jsonl`` (required; empty means nothing
    happened) and, when present, the
    ledger's requests, with the load's end from the load's live lines (``load_live.jsonl``, written by both
    conductors), else from ``sources.load_duration_s``; unknown when neither is there."""
    timeline = read_jsonl(store, "faults")
    faults = [e for e in timeline if e.get("event") in recovery.FAULT_EVENTS]
    leaders = [e for e in timeline if e.get("event") == "leader_samples"]
    health = [e for e in read_jsonl(store, "health") if "service" in e]
    live = read_jsonl(store, "load_live") if store.exists("load_live") else []
    return recovery.evidence_from_run(
        faults,
        health,
        records=ledger(store, required=False),
        observed_until=sources.observed_until,
        load_ended_ts=recovery.load_end_from_live(live),
        load_duration_s=sources.load_duration_s,
        leaders=leaders,
    )


def retryable_evidence(store: RunStore, thresholds: Any, sources: Sources) -> retryable.RetryableEvidence:
    """The ledger (required)."""
    return retryable.RetryableEvidence(records=ledger(store))


def backpressure_evidence(
    store: RunStore, thresholds: Any, sources: Sources
) -> backpressure.BackpressureEvidence:
    """``faults.jsonl`` (its ``overload`` faults; absent: no burst) and the ledger (required)."""
    faults = read_jsonl(store, "faults") if store.exists("faults") else []
    return backpressure.evidence_from_run(faults, ledger(store))


def _require_settled(sources: Sources) -> None:
    s = sources.settled
    if s is not None and not s.settled:
        raise EvidenceMissing(
            f"the system did not quiesce, so state cannot be compared: {s.reason or 'no reason given'}"
        )


def _require(value: str | None, what: str) -> str:
    if not value:
        raise ConfigError(f"is required to {what}", where="sources")
    return value


def integrity_evidence(store: RunStore, thresholds: integrity.IntegrityConfig, sources: Sources) -> Any:
    """The ledger (required) against the database and topics (:func:`resgate.checks.integrity.gather`);
    EvidenceMissing when ``sources.settled`` says the system did not settle."""
    _require_settled(sources)
    dsn = _require(sources.dsn, "integrity: read the target database")
    ledger(store)  # raises EvidenceMissing when absent
    source = store.local_path("ledger") or store.lines("ledger")
    bootstrap = sources.bootstrap
    if thresholds.topics and not bootstrap:
        raise ConfigError("topics are configured: give the Kafka bootstrap", where="sources.bootstrap")
    return integrity.gather(
        dsn, thresholds, source, bootstrap=bootstrap, run_id=sources.run_id, kafka=sources.kafka
    )


def replay_evidence(store: RunStore, thresholds: replay.ReplayConfig, sources: Sources) -> Any:
    """The read models rebuilt from the topics and compared with the live tables
    (:func:`resgate.checks.replay.gather`); EvidenceMissing when the system did not settle."""
    _require_settled(sources)
    dsn = _require(sources.dsn, "replay: read the target database")
    bootstrap = _require(sources.bootstrap, "replay the topics")
    return replay.gather(
        dsn,
        thresholds,
        bootstrap=bootstrap,
        run_id=sources.run_id,
        kafka=sources.kafka,
        runner=sources.rebuild_runner,
    )


def streaming_evidence(
    store: RunStore, thresholds: streaming.StreamingThresholds, sources: Sources
) -> streaming.StreamingEvidence:
    """The stream ledger ``stream.jsonl`` (required: EvidenceMissing without it; a distributed load's is
    the merge of one part per worker, EvidenceMissing when a worker's part is missing or incomplete:
    :func:`~resgate.evidence.store.incomplete_parts`), the fault timeline and
    the trades published on ``thresholds.topic`` (:func:`resgate.checks.streaming.gather`; the
    Kafka bootstrap is required). Lines of the stream ledger that do not parse are counted (a truncated
    ledger: the check is unknown); a topic truncated by retention is EvidenceMissing."""
    import json

    broken = incomplete_parts(store, "stream")
    if broken:
        names = ", ".join(
            f"{row.get('node')} ({row.get('stream_reason') or row.get('reason')})" for row in broken
        )
        raise EvidenceMissing(
            f"the stream ledger is partial: the stream part of load worker {names} is missing or incomplete",
            uri=store.uri("load_nodes"),
        )
    if not store.exists("stream"):
        raise EvidenceMissing(
            f"no stream ledger ({store.uri('stream')}): no market-data subscriber ran"
            " (load.env RESGATE_STREAM_SUBSCRIBERS)"
        )
    records: list[dict[str, Any]] = []
    bad = 0
    for line in store.lines("stream"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict) and "event" in rec and "client_id" in rec:
            records.append(rec)
        else:
            bad += 1
    faults = read_jsonl(store, "faults") if store.exists("faults") else []
    bootstrap = _require(sources.bootstrap, "streaming: read the trades topic")
    published, truncated = streaming.gather(bootstrap, thresholds, kafka=sources.kafka)
    if truncated:
        raise EvidenceMissing(f"the trades topic no longer holds its whole history: {truncated}")
    return streaming.StreamingEvidence(
        records=tuple(records), published=published, faults=tuple(faults), bad_lines=bad
    )


BUILDERS: Mapping[str, Builder] = {
    slo.NAME: slo_evidence,
    recovery.NAME: recovery_evidence,
    retryable.NAME: retryable_evidence,
    integrity.NAME: integrity_evidence,
    replay.NAME: replay_evidence,
    streaming.NAME: streaming_evidence,
    backpressure.NAME: backpressure_evidence,
}
"""Each checker's evidence builder, by the checker's ``NAME`` (the keys of
``resgate.checks.registry.CHECKERS``)."""
