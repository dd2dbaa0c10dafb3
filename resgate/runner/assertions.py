"""The assertion phase of a local run: build each checker's evidence from the run, call the checkers.

The checkers are the same pure functions the assertion Lambdas call; only the evidence sources differ
(files and the local Postgres/Kafka here, S3/RDS/MSK on AWS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resgate.checks import recovery, retryable, slo
from resgate.checks.compose import run_checks
from resgate.checks.ledger import load_ledger
from resgate.checks.result import CheckResult
from resgate.config.checks import parse_check_section
from resgate.config.schema import GateConfig
from resgate.runner.quiesce import QuiesceResult

RECOVERY_FAULT_EVENTS = ("injected", "detected", "recovered", "aborted", "ended")


@dataclass
class AssertionInputs:
    """Everything a local run hands to the assertion phase."""

    cfg: GateConfig
    dsn: str
    bootstrap: str
    ledger: Path | None
    locust_stats: list[dict[str, Any]] | None
    load_window: tuple[float, float]
    fault_events: list[dict[str, Any]]
    health_events: list[dict[str, Any]]
    quiesce: QuiesceResult | None
    run_id: str


def _thresholds(cfg: GateConfig, name: str) -> Any:
    body = {k: v for k, v in cfg.checks.get(name, {}).items() if k != "enabled"}
    return parse_check_section(name, body, f"checks.{name}")


def build_checks(inp: AssertionInputs) -> dict[str, Callable[[], CheckResult]]:
    """One zero-argument callable per enabled check; each measures then judges."""
    cfg = inp.cfg
    records_cache: list[Any] = []

    def records() -> list[Any]:
        if not records_cache and inp.ledger is not None and inp.ledger.exists():
            records_cache.extend(load_ledger(inp.ledger))
        return records_cache

    def run_slo() -> CheckResult:
        if not inp.locust_stats:
            return CheckResult.unknown("slo", "the load produced no statistics")
        ev = slo.evidence_from_run(
            inp.locust_stats, duration_s=inp.load_window[1] - inp.load_window[0], records=records()
        )
        return slo.check(ev, _thresholds(cfg, "slo"))

    def run_recovery() -> CheckResult:
        faults = [e for e in inp.fault_events if e.get("event") in RECOVERY_FAULT_EVENTS]
        health = [e for e in inp.health_events if "service" in e]
        # 1 s error windows: faults a few seconds apart must not see each other's errors.
        ev = recovery.evidence_from_run(faults, health, records=records(), window_s=1.0, observed_until=None)
        return recovery.check(ev, _thresholds(cfg, "recovery"))

    def run_retryable() -> CheckResult:
        if inp.ledger is None or not inp.ledger.exists():
            return CheckResult.unknown("retryable", "no client ledger was written")
        ev = retryable.RetryableEvidence(records=tuple(records()))
        return retryable.check(ev, _thresholds(cfg, "retryable"))

    def not_quiet(name: str) -> CheckResult | None:
        q = inp.quiesce
        if q is not None and not q.settled:
            return CheckResult.unknown(
                name, f"the system did not quiesce, so state cannot be compared: {q.reason}"
            )
        return None

    def run_integrity() -> CheckResult:
        from resgate.checks import integrity

        if (early := not_quiet("integrity")) is not None:
            return early
        if inp.ledger is None or not inp.ledger.exists():
            return CheckResult.unknown("integrity", "no client ledger was written")
        icfg = _thresholds(cfg, "integrity")
        findings = integrity.measure(inp.dsn, icfg, inp.ledger, bootstrap=inp.bootstrap, run_id=inp.run_id)
        return integrity.check(findings, icfg)

    def run_replay() -> CheckResult:
        from resgate.checks import replay

        if (early := not_quiet("replay")) is not None:
            return early
        rcfg = _thresholds(cfg, "replay")
        findings = replay.measure(inp.dsn, rcfg, bootstrap=inp.bootstrap, run_id=inp.run_id)
        return replay.check(findings, rcfg)

    table = {
        "slo": run_slo,
        "recovery": run_recovery,
        "retryable": run_retryable,
        "integrity": run_integrity,
        "replay": run_replay,
    }
    return {name: table[name] for name in cfg.enabled_checks()}


def run_assertions(inp: AssertionInputs, *, say: Callable[[str], None] = print) -> list[CheckResult]:
    """Run every enabled check (an exception becomes "unknown" with the error) and return the results."""
    checks = build_checks(inp)
    results = run_checks(checks)
    for r in results:
        say(f"{r.name}: {r.valid}" + (f" ({r.error})" if r.error else ""))
    return results
