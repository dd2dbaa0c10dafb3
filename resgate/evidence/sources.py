"""Each checker's evidence, built from a run's store and the target's live sources: the one function the
local runner and the assertion Lambdas both call.

:func:`evidence_for` reads a run's files through the :class:`~resgate.evidence.store.RunStore` protocol (a
local folder or an S3 prefix) and, for integrity and replay, the target's database and topics named in
:class:`Sources`. :func:`run_check` parses the thresholds, builds the evidence and calls the checker; it
turns evidence that is missing (or malformed, for checkers that do not judge malformed input themselves)
into ``unknown`` with the reason, so a check never judges nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.result import CheckResult
from resgate.config.checks import parse_check_section
from resgate.config.kafka import KafkaSettings
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.evidence.store import RunStore, ledger, read_jsonl

CHECKS: tuple[str, ...] = ("slo", "recovery", "retryable", "integrity", "replay")
"""The checker modules, by their ``NAME``: ``resgate.checks.<name>``."""

# Ledger error ratios in 1 s windows: faults a few seconds apart must not see each other's errors.
# Checks that count unreadable ledger lines themselves (-> unknown) and raise ConfigError only for config.
_JUDGE_MALFORMED = frozenset({"integrity", "replay"})


@dataclass(frozen=True)
class Settled:
    """Whether the system settled after the load (the quiesce phase): state compared before it settles
    proves nothing."""

    settled: bool
    reason: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "quiesce") -> Settled:
        """``{"settled": bool, "reason"?: str}``; raises ConfigError naming ``where``."""
        settled = d.get("settled")
        if not isinstance(settled, bool):
            raise ConfigError(f"must be true or false, got {settled!r}", where=f"{where}.settled")
        return cls(settled=settled, reason=str(d.get("reason") or ""))


@dataclass(frozen=True)
class Sources:
    """Where a run's evidence lives besides its files: the target's database and brokers (integrity,
    replay), whether the system settled, and the figures the conductor knows (the load phase's length, the
    end of health observation).

    ``load_duration_s`` is the load's configured run time, the recovery check's estimate of the load's end
    (first request + it) when the run has no live lines. ``kafka`` is how every client reaches the brokers
    (default PLAINTEXT, the embedded ones; TLS or MSK IAM from the gate config's ``kafka:`` section);
    ``rebuild_runner`` runs replay rebuilds that name an ``ecs_task`` (the replay Lambda's ECS runner;
    None locally: see ``resgate.checks.replay.rebuild``)."""

    run_id: str
    dsn: str | None = None
    bootstrap: str | None = None
    settled: Settled | None = None
    duration_s: float | None = None
    observed_until: float | None = None
    load_duration_s: float | None = None
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    rebuild_runner: Callable[[Any], None] | None = None


def checker(name: str) -> Any:
    """The checker module ``resgate.checks.<name>``; ConfigError for an unknown name."""
    if name not in CHECKS:
        raise ConfigError(f"unknown check {name!r}; known: {list(CHECKS)}", where="checks")
    return importlib.import_module(f"resgate.checks.{name}")


def thresholds_for(name: str, body: Mapping[str, Any], where: str) -> Any:
    """The check's typed thresholds from its ``checks.<name>`` section (``enabled`` dropped)."""
    return parse_check_section(name, {k: v for k, v in body.items() if k != "enabled"}, where)


def _require_settled(name: str, sources: Sources) -> None:
    s = sources.settled
    if s is not None and not s.settled:
        raise EvidenceMissing(
            f"the system did not quiesce, so state cannot be compared: {s.reason or 'no reason given'}"
        )


def _require(value: str | None, what: str) -> str:
    if not value:
        raise ConfigError(f"is required to {what}", where="sources")
    return value


def evidence_for(name: str, store: RunStore, thresholds: Any, sources: Sources) -> Any:
    """The evidence the checker ``name`` judges, from ``store`` and ``sources``.

    - slo: ``load_stats.jsonl`` (required, non-empty), in regression mode the ledger's windows, the run's
      phases (:func:`resgate.evidence.phases.phases_from_store`) and the gate's golden profile.
    - recovery: ``faults.jsonl`` and ``health.jsonl`` (required; empty means nothing happened) and, when
      present, the ledger's requests, with the load's end from the load's live lines (``load_live.jsonl``,
      written by both conductors), else from ``sources.load_duration_s``; unknown when neither is there.
    - retryable: the ledger (required).
    - integrity: the ledger (required) against the database and topics; replay: the database and topics.
      Both raise EvidenceMissing when ``sources.settled`` says the system did not settle.
    """
    mod = checker(name)
    if name == "slo":
        stats = read_jsonl(store, "load_stats")
        if not stats:
            raise EvidenceMissing(f"the load produced no statistics ({store.uri('load_stats')} is empty)")
        from resgate.evidence.golden import read_golden
        from resgate.evidence.phases import phases_from_store

        inline = thresholds.regression is not None and thresholds.regression.baseline is not None
        records = ledger(store, required=False) if inline else None
        ev = mod.evidence_from_run(stats, duration_s=sources.duration_s, records=records)
        phases = phases_from_store(store, rto_s=thresholds.phases.rto_s, settle_s=thresholds.phases.settle_s)
        return dataclasses.replace(
            ev, phases=None if phases is None else tuple(phases), golden=read_golden(store)
        )
    if name == "recovery":
        faults = [e for e in read_jsonl(store, "faults") if e.get("event") in mod.FAULT_EVENTS]
        health = [e for e in read_jsonl(store, "health") if "service" in e]
        live = read_jsonl(store, "load_live") if store.exists("load_live") else []
        return mod.evidence_from_run(
            faults,
            health,
            records=ledger(store, required=False),
            observed_until=sources.observed_until,
            load_ended_ts=mod.load_end_from_live(live),
            load_duration_s=sources.load_duration_s,
        )
    if name == "retryable":
        return mod.RetryableEvidence(records=ledger(store))
    _require_settled(name, sources)
    dsn = _require(sources.dsn, f"{name}: read the target database")
    if name == "integrity":
        ledger(store)  # raises EvidenceMissing when absent
        source = store.local_path("ledger") or store.lines("ledger")
        bootstrap = sources.bootstrap
        if thresholds.topics and not bootstrap:
            raise ConfigError("topics are configured: give the Kafka bootstrap", where="sources.bootstrap")
        return mod.gather(
            dsn, thresholds, source, bootstrap=bootstrap, run_id=sources.run_id, kafka=sources.kafka
        )
    bootstrap = _require(sources.bootstrap, "replay the topics")
    return mod.gather(
        dsn,
        thresholds,
        bootstrap=bootstrap,
        run_id=sources.run_id,
        kafka=sources.kafka,
        runner=sources.rebuild_runner,
    )


def run_check(
    name: str,
    store: RunStore,
    thresholds: Any,
    sources: Sources,
    *,
    gather: Callable[[], Any] | None = None,
) -> CheckResult:
    """Build the evidence and judge it: ``checker(name).check(evidence, thresholds)``.

    The evidence is :func:`evidence_for` unless ``gather`` is given (a source only one conductor has, such
    as the SLO figures from CloudWatch on AWS). Missing evidence, and malformed evidence for checkers that
    do not judge it themselves, become ``unknown`` with the reason; any other exception propagates (the
    conductor fails closed on it).
    """
    mod = checker(name)
    try:
        evidence = gather() if gather is not None else evidence_for(name, store, thresholds, sources)
        return mod.check(evidence, thresholds)
    except EvidenceMissing as e:
        return CheckResult.unknown(name, str(e))
    except ConfigError as e:
        if name in _JUDGE_MALFORMED or (e.where or "").startswith("sources"):
            raise
        return CheckResult.unknown(name, f"malformed evidence: {e}")
