"""Lambda handler of the abort cleanup: stop a run's load task and FIS experiments.

An EventBridge rule invokes it when an execution of the gate's state machine ends ABORTED (StopExecution)
or TIMED_OUT, which skip the state machine's own cleanup branch, and FAILED (harmless: the branch has
already stopped everything, and stopping again is a no-op). See :mod:`lambdas.cleanup.inputs` for the
event and :mod:`lambdas.cleanup.stops` for what is stopped. Returns ``{run_id, status, stopped_tasks,
stopped_experiments, already_stopped, other_runs, failures}``; when any stop failed it raises a
``GateError`` after trying all of them (EventBridge's asynchronous invocation retries).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.cleanup.inputs import AbortedRun, GateResources
from lambdas.cleanup.stops import CleanupReport, stop_experiments, stop_load
from lambdas.common import settings
from lambdas.common.aws import client
from lambdas.common.results import errors_logged
from resgate.contract.errors import GateError

NAME = "cleanup"

logger = Logger()
metrics = Metrics(namespace=settings.METRICS_NAMESPACE)
tracer = Tracer()


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path="detail.name")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Stop the aborted run's load task and experiments; return what was done."""
    with errors_logged(logger, NAME, metrics):
        run = AbortedRun.from_event(event)
        resources = GateResources.from_env()
        report = CleanupReport()
        reason = f"ResilienceGate: execution {run.run_id} {run.status}, cleaning up"
        stop_load(client("ecs"), resources.load_cluster, run.run_id, reason, report)
        stop_experiments(client("fis"), resources.template_ids, run.run_id, report)
        out = {"run_id": run.run_id, "status": run.status, **report.as_dict()}
        metrics.add_metric(name="CleanupStoppedTasks", unit=MetricUnit.Count, value=len(report.stopped_tasks))
        metrics.add_metric(
            name="CleanupStoppedExperiments", unit=MetricUnit.Count, value=len(report.stopped_experiments)
        )
        tracer.put_annotation(key="run_id", value=run.run_id)
        if report.other_runs:
            logger.warning(
                "active experiments of another run left alone", extra={"experiments": report.other_runs}
            )
        if report.failures:
            logger.error("cleanup incomplete", extra=out)
            raise GateError(f"cleanup of {run.run_id} incomplete: {'; '.join(report.failures)}")
        logger.info("cleanup done", extra=out)
        return out
