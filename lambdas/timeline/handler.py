"""Lambda handler of the timeline step: write the run's ``faults.jsonl`` and ``health.jsonl`` from AWS.

The state machine calls it after the load and the quiesce wait, before the checks: the recovery check reads
these two files. Faults come from the run's FIS experiments (:mod:`lambdas.timeline.faults`), health from
the target services' ECS tasks and service events (:mod:`lambdas.timeline.health`). The event is the run
fields of :mod:`lambdas` plus :class:`lambdas.timeline.inputs.TimelineInputs`; the output
``{faults_uri, health_uri, fault_events, health_events, observed_until, active_faults, not_started}`` goes
to ``$.timeline`` (``observed_until`` is handed to the recovery check).

An invalid event raises :class:`resgate.contract.errors.ConfigError`; any AWS failure a
:class:`resgate.contract.errors.GateError` (the state machine retries it, then cleans up and fails the run).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.aws import client
from lambdas.common.event import RunEvent
from lambdas.common.evidence_s3 import S3Evidence
from lambdas.common.results import errors_logged
from lambdas.timeline.faults import fault_rows
from lambdas.timeline.health import service_health
from lambdas.timeline.inputs import TimelineInputs

NAME = "timeline"

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=settings.CORRELATION_ID_PATH)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Read FIS and ECS, write ``faults.jsonl`` and ``health.jsonl`` to the run prefix, return the summary."""
    with errors_logged(logger, NAME, metrics):
        run = RunEvent.from_event(event)
        inputs = TimelineInputs.from_event(run)
        store = S3Evidence.for_run(run)
        faults, active = fault_rows(client("fis"), inputs.faults, now=time.time())
        if active:
            logger.warning("experiments have not ended yet", extra={"faults": active})
        health, failures = service_health(
            client("ecs"), inputs.cluster, inputs.services, start=inputs.started_at, end=inputs.ended_at
        )
        if failures:
            logger.warning("ECS could not describe some listed tasks", extra={"failures": failures[:10]})
        uris = {
            "faults_uri": store.put_jsonl("faults", faults),
            "health_uri": store.put_jsonl("health", health),
        }
        metrics.add_dimension(name="gate", value=run.gate)
        metrics.add_metric(name="TimelineFaultEvents", unit=MetricUnit.Count, value=len(faults))
        metrics.add_metric(name="TimelineHealthEvents", unit=MetricUnit.Count, value=len(health))
        tracer.put_annotation(key="run_id", value=run.run_id)
        out = {
            **uris,
            "fault_events": len(faults),
            "health_events": len(health),
            "observed_until": inputs.ended_at,
            "active_faults": active,
            "not_started": list(inputs.not_started),
        }
        logger.info("timeline written", extra=out)
        return out
