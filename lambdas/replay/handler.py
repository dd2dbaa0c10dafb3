"""Lambda handler of the replay assertion: rebuild each read model from its topics and compare with the live.

Sources: the target database (RDS/Aurora, DSN from the Secrets Manager secret ``db_secret_arn``) and the
read models' topics (MSK, ``kafka_bootstrap``); no S3 evidence except an optional ``config.yaml``. The
event's ``config`` is the ``checks.replay`` section of the gate config; its rebuild ``callable`` must be
importable in the Lambda package, a ``command`` must exist in it. An optional ``quiesce`` field
(``{"settled": false, "reason": …}``) makes the result unknown, as locally. A topic truncated by retention
or a failed rebuild is judged ``unknown`` by the checker itself.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import errors_logged, publish
from lambdas.common.secrets import db_secret_arn, dsn_from_secret, kafka_bootstrap, redacted
from lambdas.common.sources import not_quiesced
from lambdas.common.thresholds import check_section
from resgate.checks import replay
from resgate.contract.errors import ConfigError

NAME = "replay"

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=settings.CORRELATION_ID_PATH)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run ``replay.measure`` then ``replay.check``; return ``CheckResult.to_dict()``."""
    with errors_logged(logger, NAME, metrics):
        run = RunEvent.from_event(event)
        store = S3Evidence.for_run(run)
        body, where = check_section(run, store, NAME, keys=(settings.EVENT_CONFIG, settings.EVENT_THRESHOLDS))
        config = replay.ReplayConfig.from_dict(body, where=where)
        bootstrap = kafka_bootstrap(run)
        if not bootstrap:
            raise ConfigError("is required to replay the topics", where="event.kafka_bootstrap")
        result = not_quiesced(run, NAME)
        if result is None:
            dsn = dsn_from_secret(db_secret_arn(run))
            logger.info("sources", extra={"dsn": redacted(dsn), "bootstrap": bootstrap})
            findings = replay.measure(dsn, config, bootstrap=bootstrap, run_id=run.run_id)
            result = replay.check(findings, config)
        return publish(result, event=run, store=store, logger=logger, metrics=metrics, tracer=tracer)
