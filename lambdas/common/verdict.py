"""The verdict step on AWS: read the check results of the Parallel state, merge them, write the evidence.

The merge is :func:`resgate.checks.compose.verdict` (false > unknown > true; unknown fails unless told
otherwise; no results never pass), and the run's closing files are written by
:func:`resgate.evidence.run_files.write_run_files` — the same functions a local run uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.opsitem import open_ops_item
from lambdas.common.results import from_payload, full_result
from resgate.checks.compose import verdict
from resgate.checks.result import CheckResult
from resgate.contract.errors import ConfigError
from resgate.evidence.run_files import write_run_files
from resgate.evidence.store import RunStore
from resgate.evidence.verdict import verdict_record


@dataclass(frozen=True)
class VerdictInputs:
    """The verdict event's own fields (see :mod:`lambdas`)."""

    results: tuple[Any, ...]
    expected: tuple[str, ...]
    unknown_is_failure: bool
    started_at: float | None
    guardrail_tripped: str | None
    error: str | None
    execution_arn: str | None
    dashboard: str | None = None

    @classmethod
    def from_event(cls, event: RunEvent) -> VerdictInputs:
        """Validate ``results``, ``checks``, ``unknown_is_failure``, ``started_at``, ``guardrail_tripped``,
        ``error``, ``execution_arn`` (the state machine's ``$$.Execution.Id``: the OpsItem links it),
        ``dashboard`` (the run's dashboard URL: report.md links it)."""
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
        arn = event.get("execution_arn")
        if arn is not None and not (isinstance(arn, str) and arn.startswith("arn:")):
            raise ConfigError(f"must be an execution ARN, got {arn!r}", where="event.execution_arn")
        dashboard = event.get("dashboard")
        if dashboard is not None and not (isinstance(dashboard, str) and dashboard.startswith("https://")):
            raise ConfigError(f"must be an https URL, got {dashboard!r}", where="event.dashboard")
        return cls(
            dashboard=dashboard,
            results=tuple(results),
            expected=tuple(expected),
            unknown_is_failure=event.flag(
                "unknown_is_failure", settings.ENV_UNKNOWN_IS_FAILURE, default=True
            ),
            started_at=event.number("started_at"),
            guardrail_tripped=texts["guardrail_tripped"],
            error=texts["error"],
            execution_arn=arn,
        )


def collect_results(inputs: VerdictInputs, store: RunStore | None = None) -> list[CheckResult]:
    """The branch outputs as CheckResults (a summary replaced by its full result from ``store``, see
    :func:`lambdas.common.results.full_result`), plus an ``unknown`` one for each expected check that sent
    none."""
    results = [from_payload(full_result(entry, store), i) for i, entry in enumerate(inputs.results)]
    seen = {r.name for r in results}
    for name in inputs.expected:
        if name not in seen:
            results.append(CheckResult.unknown(name, "no result was received from this check"))
    return results


def close_run(run: RunEvent, tools: Any, *, now: float) -> dict[str, Any]:
    """Merge the results with :func:`resgate.checks.compose.verdict`, write the run's closing files with
    :func:`resgate.evidence.run_files.write_run_files` (``verdict.json`` last), emit ``GatePassed``,
    ``ChecksFailed``, ``ChecksUnknown``, open the OpsItem of a FAIL or ERROR run when configured
    (:func:`lambdas.common.opsitem.open_ops_item`); return ``{passed, result, reason, failed_checks,
    unknown_checks, evidence_uri}``."""
    inputs = VerdictInputs.from_event(run)
    store = run.store()
    results = collect_results(inputs, store)
    v = verdict(results, unknown_is_failure=inputs.unknown_is_failure)
    record = verdict_record(
        run.run,
        v,
        error=inputs.error,
        started_at=inputs.started_at,
        ended_at=now,
        guardrail_tripped=inputs.guardrail_tripped,
    )
    duration = max(0.0, now - inputs.started_at) if inputs.started_at is not None else 0.0
    write_run_files(
        store,
        results=results,
        record=record,
        unknown_is_failure=inputs.unknown_is_failure,
        duration_s=duration,
        links={"dashboard": inputs.dashboard} if inputs.dashboard else None,
    )
    tools.metrics.add_dimension(name="gate", value=run.gate)
    tools.metrics.add_metric(name="GatePassed", unit=MetricUnit.Count, value=int(record["passed"]))
    tools.metrics.add_metric(name="ChecksFailed", unit=MetricUnit.Count, value=len(v.failed))
    tools.metrics.add_metric(name="ChecksUnknown", unit=MetricUnit.Count, value=len(v.unknown))
    tools.tracer.put_annotation(key="run_id", value=run.run_id)
    tools.tracer.put_annotation(key="result", value=record["result"])
    tools.logger.info(f"verdict: {record['result']}", extra={"verdict": record})
    open_ops_item(
        record,
        tools,
        bucket=run.bucket,
        run_prefix=f"{run.prefix}/{run.run.prefix}".strip("/"),
        execution_arn=inputs.execution_arn,
    )
    keys = ("passed", "result", "reason", "failed_checks", "unknown_checks")
    return {**{k: record[k] for k in keys}, "evidence_uri": store.uri()}
