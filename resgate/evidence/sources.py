"""Each checker's evidence, built from a run's store and the target's live sources: the one function the
local runner and the assertion Lambdas both call.

:func:`evidence_for` reads a run's files through the :class:`~resgate.evidence.store.RunStore` protocol (a
local folder or an S3 prefix) and, for integrity and replay, the target's database and topics named in
:class:`Sources`, with each checker's builder (:mod:`resgate.evidence.builders`). :func:`run_check` builds
the evidence and calls the checker; it turns evidence that is missing (or malformed, for checkers that do
not judge malformed input themselves) into ``unknown`` with the reason, so a check never judges nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.registry import checker, judged_with
from resgate.checks.result import CheckResult
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.evidence.builders import BUILDERS
from resgate.evidence.store import RunStore
from resgate.sections.kafka import KafkaSettings

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


def evidence_for(name: str, store: RunStore, thresholds: Any, sources: Sources) -> Any:
    """The evidence the checker ``name`` judges, from ``store`` and ``sources``: its builder in
    :data:`resgate.evidence.builders.BUILDERS` (see each builder for what it reads and requires)."""
    checker(name)  # ConfigError for an unknown name
    return BUILDERS[name](store, thresholds, sources)


def run_check(
    name: str,
    store: RunStore,
    thresholds: Any,
    sources: Sources,
    *,
    gather: Callable[[], Any] | None = None,
) -> CheckResult:
    """Build the evidence and judge it: ``checker(name).check(evidence, judged_with(name, thresholds))``.

    The evidence is :func:`evidence_for` unless ``gather`` is given (a source only one conductor has, such
    as the SLO figures from CloudWatch on AWS). Missing evidence, and malformed evidence for checkers that
    do not judge it themselves, become ``unknown`` with the reason; any other exception propagates (the
    conductor fails closed on it).
    """
    mod = checker(name)
    t0 = time.monotonic()
    try:
        evidence = gather() if gather is not None else evidence_for(name, store, thresholds, sources)
        result = mod.check(evidence, judged_with(name, thresholds))
    except EvidenceMissing as e:
        result = CheckResult.unknown(name, str(e))
    except ConfigError as e:
        if name in _JUDGE_MALFORMED or (e.where or "").startswith("sources"):
            raise
        result = CheckResult.unknown(name, f"malformed evidence: {e}")
    result.duration_s = round(time.monotonic() - t0, 3)
    return result
