"""A run's phases from its store: the one function both conductors call (the SLO check's evidence, and
``write_run_files`` for the ``phases`` table when the SLO result does not carry them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resgate.checks.result import CheckResult
from resgate.checks.slo.phases import DEFAULT_SETTLE_S, PhaseFigures, run_phases
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.evidence.store import RunStore, ledger, read_jsonl


def phases_from_store(
    store: RunStore,
    *,
    rto_s: float | None = None,
    settle_s: float | None = None,
    latency_from: str = "sent",
) -> list[PhaseFigures] | None:
    """The run's phases (:func:`resgate.checks.slo.phases.run_phases`) from ``faults.jsonl``,
    ``health.jsonl`` (each optional: a run without faults is all steady) and the ledger; ``None`` when the
    run has no ledger."""
    if not store.exists("ledger"):
        return None
    records = ledger(store)
    faults = read_jsonl(store, "faults") if store.exists("faults") else []
    health = read_jsonl(store, "health") if store.exists("health") else []
    return run_phases(
        faults,
        health,
        records,
        rto_s=DEFAULT_RTO_SECONDS if rto_s is None else rto_s,
        settle_s=DEFAULT_SETTLE_S if settle_s is None else settle_s,
        latency_from=latency_from,
    )


def phase_rows(store: RunStore, results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """The ``phases`` table's rows: those the SLO result carries (as judged), else computed from the store
    with the default windows; ``[]`` when the run has no readable ledger."""
    for r in results:
        rows = r.details.get("phases") if r.name == "slo" and isinstance(r.details, Mapping) else None
        if isinstance(rows, list):
            return [dict(row) for row in rows]
    try:
        phases = phases_from_store(store)
    except (ConfigError, EvidenceMissing):
        return []
    return [p.to_row() for p in phases or ()]
