"""Lambda handler of the integrity assertion: the client ledger against the orders/trades tables and topics.

Evidence: ``ledger.jsonl`` streamed from the run's S3 prefix into the target database (RDS/Aurora, DSN from
the Secrets Manager secret ``db_secret_arn``) and the configured topics (MSK, ``kafka_bootstrap``). The
event's ``config`` is the ``checks.integrity`` section of the gate config. An optional ``quiesce`` field
(``{"settled": false, "reason": …}``) makes the result unknown, as locally.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import decide, errors_logged, publish
from lambdas.common.secrets import db_secret_arn, dsn_from_secret, kafka_bootstrap, redacted
from lambdas.common.sources import not_quiesced
from lambdas.common.thresholds import check_section
from resgate.checks import integrity
from resgate.contract.errors import ConfigError

NAME = "integrity"

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=settings.CORRELATION_ID_PATH)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run ``integrity.measure`` then ``integrity.check``; return ``CheckResult.to_dict()``."""
    with errors_logged(logger, NAME, metrics):
        run = RunEvent.from_event(event)
        store = S3Evidence.for_run(run)
        body, where = check_section(run, store, NAME, keys=(settings.EVENT_CONFIG, settings.EVENT_THRESHOLDS))
        config = integrity.IntegrityConfig.from_dict(body, where=where)
        bootstrap = kafka_bootstrap(run)
        if config.topics and not bootstrap:
            raise ConfigError(
                "topics are configured: give the Kafka bootstrap", where="event.kafka_bootstrap"
            )
        result = not_quiesced(run, NAME)
        if result is None:
            dsn = dsn_from_secret(db_secret_arn(run))
            logger.info("sources", extra={"dsn": redacted(dsn), "bootstrap": bootstrap})
            result = decide(
                NAME,
                lambda: integrity.check(
                    integrity.measure(
                        dsn, config, store.lines("ledger"), bootstrap=bootstrap, run_id=run.run_id
                    ),
                    config,
                ),
                logger,
                malformed_is_unknown=False,  # it counts unreadable ledger lines itself (-> unknown)
            )
        return publish(result, event=run, store=store, logger=logger, metrics=metrics, tracer=tracer)
