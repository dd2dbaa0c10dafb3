"""Lambda handler of the retryable assertion: did every failed request fail in a way a client can act on?

Evidence: the client ledger ``ledger.jsonl`` in the run's S3 prefix, streamed line by line.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import decide, errors_logged, publish
from lambdas.common.sources import retryable_evidence
from lambdas.common.thresholds import check_section
from resgate.checks import retryable

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=settings.CORRELATION_ID_PATH)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run ``resgate.checks.retryable.check`` on the run's ledger; return ``CheckResult.to_dict()``."""
    with errors_logged(logger, retryable.NAME, metrics):
        run = RunEvent.from_event(event)
        store = S3Evidence.for_run(run)
        body, where = check_section(run, store, retryable.NAME)
        thresholds = retryable.RetryableThresholds.from_dict(body, where=where)
        result = decide(
            retryable.NAME, lambda: retryable.check(retryable_evidence(store), thresholds), logger
        )
        return publish(result, event=run, store=store, logger=logger, metrics=metrics, tracer=tracer)
