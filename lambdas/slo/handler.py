"""Lambda handler of the SLO assertion: latency percentiles, error ratio and throughput of the load phase.

Evidence: Locust's ``load_stats.jsonl`` in the run's S3 prefix, or the ALB's CloudWatch metrics when the
event says ``"source": "cloudwatch"`` (see :mod:`lambdas` for the event and
:mod:`lambdas.common.cloudwatch` for how those figures become the checker's evidence).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import decide, errors_logged, publish
from lambdas.common.sources import SloSource, slo_evidence
from lambdas.common.thresholds import check_section
from resgate.checks import slo

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=settings.CORRELATION_ID_PATH)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run ``resgate.checks.slo.check`` on the run's evidence; return ``CheckResult.to_dict()``."""
    with errors_logged(logger, slo.NAME, metrics):
        run = RunEvent.from_event(event)
        store = S3Evidence.for_run(run)
        source = SloSource.from_event(run)
        body, where = check_section(run, store, slo.NAME)
        thresholds = slo.SloThresholds.from_dict(body, where=where)
        result = decide(
            slo.NAME,
            lambda: slo.check(slo_evidence(source, store, thresholds, logger=logger), thresholds),
            logger,
        )
        return publish(result, event=run, store=store, logger=logger, metrics=metrics, tracer=tracer)
