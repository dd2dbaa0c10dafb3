"""Lambda handler of the recovery assertion: after each fault, healthy again within the RTO?

Evidence: ``faults.jsonl`` and ``health.jsonl`` in the run's S3 prefix (on AWS the state machine writes the
FIS experiment's state and the ECS task-health observations there, in the local runner's format), plus the
ledger's error-ratio windows when ``ledger.jsonl`` is present. Optional event field ``observed_until``
(epoch seconds): the end of observation.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import decide, errors_logged, publish
from lambdas.common.sources import recovery_evidence
from lambdas.common.thresholds import check_section
from resgate.checks import recovery

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=settings.CORRELATION_ID_PATH)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run ``resgate.checks.recovery.check`` on the run's evidence; return ``CheckResult.to_dict()``."""
    with errors_logged(logger, recovery.NAME, metrics):
        run = RunEvent.from_event(event)
        store = S3Evidence.for_run(run)
        observed_until = run.number("observed_until")
        body, where = check_section(run, store, recovery.NAME)
        thresholds = recovery.RecoveryThresholds.from_dict(body, where=where)
        result = decide(
            recovery.NAME,
            lambda: recovery.check(recovery_evidence(store, observed_until=observed_until), thresholds),
            logger,
        )
        return publish(result, event=run, store=store, logger=logger, metrics=metrics, tracer=tracer)
