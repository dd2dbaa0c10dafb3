"""The verdict step on AWS: read the check results of the Parallel state, merge them, write the evidence.

The merge is :func:`resgate.checks.compose.verdict` (false > unknown > true; unknown fails unless told
otherwise; no results never pass), the report is :func:`resgate.runner.report.report_markdown` and the
JUnit file :func:`resgate.evidence.junit.junit_xml` — the same functions a local run uses — and
``verdict.json`` has the keys of the local runner's verdict (``resgate.runner.gate``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import from_payload, jsonable
from resgate.checks.compose import Verdict
from resgate.checks.result import CheckResult
from resgate.contract.errors import ConfigError
from resgate.evidence.junit import junit_xml
from resgate.evidence.verdict import verdict_record as build_verdict_record
from resgate.runner.report import report_markdown

# Counts of these checks shown as the report's key figures (the local run takes them from Locust).
_FIGURES = {
    "slo": (
        "requests",
        "failures",
        "error_ratio",
        "throughput_rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "duration_s",
    ),
    "recovery": ("faults", "max_time_to_healthy_s"),
}


@dataclass(frozen=True)
class VerdictInputs:
    """The verdict event's own fields (see :mod:`lambdas`)."""

    results: tuple[Any, ...]
    expected: tuple[str, ...]
    unknown_is_failure: bool
    started_at: float | None
    guardrail_tripped: str | None
    error: str | None

    @classmethod
    def from_event(cls, event: RunEvent) -> VerdictInputs:
        """Validate ``results``, ``checks``, ``unknown_is_failure``, ``started_at``, ``guardrail_tripped``,
        ``error``."""
        results = event.get("results")
        if results is None:
            results = []
        if not isinstance(results, list):
            raise ConfigError(
                f"must be a list of check results, got {type(results).__name__}", where="event.results"
            )
        expected = event.get("checks") or []
        if not isinstance(expected, list) or not all(isinstance(n, str) and n for n in expected):
            raise ConfigError(f"must be a list of check names, got {expected!r}", where="event.checks")
        texts = {}
        for key in ("guardrail_tripped", "error"):
            v = event.get(key)
            if v is not None and not isinstance(v, str):
                v = json.dumps(v, default=str)
            texts[key] = v or None
        return cls(
            results=tuple(results),
            expected=tuple(expected),
            unknown_is_failure=event.flag(
                "unknown_is_failure", settings.ENV_UNKNOWN_IS_FAILURE, default=True
            ),
            started_at=event.number("started_at"),
            guardrail_tripped=texts["guardrail_tripped"],
            error=texts["error"],
        )


def collect_results(inputs: VerdictInputs) -> list[CheckResult]:
    """The branch outputs as CheckResults, plus an ``unknown`` one for each expected check that sent none."""
    results = [from_payload(entry, i) for i, entry in enumerate(inputs.results)]
    seen = {r.name for r in results}
    for name in inputs.expected:
        if name not in seen:
            results.append(CheckResult.unknown(name, "no result was received from this check"))
    return results


def verdict_record(event: RunEvent, v: Verdict, inputs: VerdictInputs, *, now: float) -> dict[str, Any]:
    """``verdict.json``: ``{gate, run_id, dt, result: PASS|FAIL|ERROR, passed, exit_code, reason,
    failed_checks, unknown_checks, started_at, ended_at, guardrail_tripped}`` as a local run writes it."""
    return build_verdict_record(
        event.run,
        v,
        error=inputs.error,
        started_at=inputs.started_at,
        ended_at=now,
        guardrail_tripped=inputs.guardrail_tripped,
    )


def key_figures(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The report's key figures, ``<check>.<count>``, from the SLO and recovery results' counts."""
    out: dict[str, Any] = {}
    for r in results:
        for key in _FIGURES.get(r.name, ()):
            if r.counts.get(key) is not None:
                out[f"{r.name}.{key}"] = r.counts[key]
    return out


def write_evidence(
    store: S3Evidence,
    event: RunEvent,
    results: list[CheckResult],
    record: dict[str, Any],
    inputs: VerdictInputs,
) -> dict[str, str]:
    """Write ``checks.jsonl``, ``report.md``, ``junit.xml`` and, last, ``verdict.json`` (one line) to the run
    prefix; return ``{file logical name: uri}``. ``faults.jsonl``, when present, is listed in the report."""
    faults = store.read_jsonl("faults") if store.exists("faults") else []
    duration = max(0.0, record["ended_at"] - inputs.started_at) if inputs.started_at is not None else 0.0
    uris = {"checks": store.put_jsonl("checks", (jsonable(r.to_dict()) for r in results))}
    uris["report"] = store.put_text(
        "report",
        report_markdown(
            gate=event.gate,
            run_id=event.run_id,
            verdict=record,
            results=results,
            figures=key_figures(results),
            faults=[f for f in faults if "fault_id" in f and "event" in f and "kind" in f],
            plot=None,
        ),
    )
    uris["junit"] = store.put_text(
        "junit",
        junit_xml(
            event.gate,
            event.run_id,
            results,
            unknown_is_failure=inputs.unknown_is_failure,
            duration_s=duration,
        ),
    )
    # Written last: a verdict.json in the prefix means the rest of the run's evidence is there too.
    uris["verdicts"] = store.put_text("verdicts", json.dumps(jsonable(record), separators=(",", ":")) + "\n")
    return uris
