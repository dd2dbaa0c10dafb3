"""Lambda handler of the verdict: merge the check results, write the run's verdict evidence, say pass/fail.

The state machine's Choice state branches on ``passed`` of the output
``{passed, result, reason, failed_checks, unknown_checks, evidence_uri}``.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import errors_logged
from lambdas.common.verdict import VerdictInputs, collect_results, verdict_record, write_evidence
from resgate.checks.compose import verdict

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=settings.CORRELATION_ID_PATH)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Merge with ``compose.verdict``; write verdict.json, checks.jsonl, report.md and junit.xml to S3."""
    with errors_logged(logger, "verdict", metrics):
        run = RunEvent.from_event(event)
        inputs = VerdictInputs.from_event(run)
        store = S3Evidence.for_run(run)
        results = collect_results(inputs)
        v = verdict(results, unknown_is_failure=inputs.unknown_is_failure)
        record = verdict_record(run, v, inputs, now=time.time())
        write_evidence(store, run, results, record, inputs)
        metrics.add_dimension(name="gate", value=run.gate)
        metrics.add_metric(name="GatePassed", unit=MetricUnit.Count, value=int(record["passed"]))
        metrics.add_metric(name="ChecksFailed", unit=MetricUnit.Count, value=len(v.failed))
        metrics.add_metric(name="ChecksUnknown", unit=MetricUnit.Count, value=len(v.unknown))
        tracer.put_annotation(key="run_id", value=run.run_id)
        tracer.put_annotation(key="result", value=record["result"])
        logger.info(f"verdict: {record['result']}", extra={"verdict": record})
        return {
            "passed": record["passed"],
            "result": record["result"],
            "reason": record["reason"],
            "failed_checks": record["failed_checks"],
            "unknown_checks": record["unknown_checks"],
            "evidence_uri": store.uri(),
        }
