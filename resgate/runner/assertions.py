"""The assertion phase of a local run: every enabled check through :func:`resgate.evidence.sources.run_check`,
the same function the assertion Lambdas call, over the run folder the earlier phases wrote.

Only the places differ: the run's files are a local folder here (an S3 prefix on AWS) and the target's
database and brokers are the local Postgres and Kafka.
"""

from __future__ import annotations

from collections.abc import Callable

from resgate.checks.compose import run_checks
from resgate.checks.result import CheckResult
from resgate.config.schema import GateConfig
from resgate.evidence.sources import Sources, run_check
from resgate.evidence.store import RunStore


def build_checks(cfg: GateConfig, store: RunStore, sources: Sources) -> dict[str, Callable[[], CheckResult]]:
    """One zero-argument callable per enabled check, in the config's order."""

    def one(name: str) -> Callable[[], CheckResult]:
        def call() -> CheckResult:
            return run_check(name, store, cfg.thresholds_of(name), sources)

        return call

    return {name: one(name) for name in cfg.enabled_checks()}


def run_assertions(
    cfg: GateConfig, store: RunStore, sources: Sources, *, say: Callable[[str], None] = print
) -> list[CheckResult]:
    """Run every enabled check (an exception becomes "unknown" with the error) and return the results."""
    results = run_checks(build_checks(cfg, store, sources))
    for r in results:
        say(f"{r.name}: {r.valid}" + (f" ({r.error})" if r.error else ""))
    return results
