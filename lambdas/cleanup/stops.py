"""Stop what a run left running: its load task (ECS) and its FIS experiments; then :mod:`.trace`.

- **Load**: the RUNNING tasks of the load cluster started by the state machine (``startedBy`` =
  :data:`lambdas.common.settings.LOAD_STARTED_BY`), described with their tags; a task is the run's when its
  ``ResGateRunId`` tag is the run id (or, for a task without tags, its evidence URI override names
  ``run_id=<run id>/``). Each is stopped with ``ecs:StopTask``.
- **Faults**: every experiment of the gate's templates (``fis:ListExperiments`` per template) that is
  pending, initiating or running and is this run's (``ResGateRunId`` tag) or carries no run tag, is
  stopped with ``fis:StopExperiment``. An active experiment tagged with *another* run id is left alone and
  reported: it belongs to a concurrent execution, whose own cleanup owns it.

Stopping something that has already stopped is not an error (ECS accepts it; FIS refuses it with one of
:data:`ALREADY_STOPPED_CODES`, recorded as ``already_stopped``). Every other failure is collected and the
caller raises one :class:`resgate.contract.errors.GateError` after every stop was attempted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.cleanup.inputs import AbortedRun, GateResources
from lambdas.cleanup.trace import leave_trace
from lambdas.common import settings
from lambdas.common.aws import call, chunks, error_code, pages
from resgate.contract.env import ENV_EVIDENCE_S3_URI
from resgate.contract.errors import GateError

ACTIVE_EXPERIMENT_STATUSES = ("pending", "initiating", "running")
ALREADY_STOPPED_CODES = frozenset({"ValidationException", "ResourceNotFoundException", "ConflictException"})
DESCRIBE_TASKS_MAX = 100


@dataclass
class CleanupReport:
    """What was stopped (ids), what had already stopped, what belongs to another run, what failed."""

    stopped_tasks: list[str] = field(default_factory=list)
    stopped_experiments: list[str] = field(default_factory=list)
    already_stopped: list[str] = field(default_factory=list)
    other_runs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "stopped_tasks": self.stopped_tasks,
            "stopped_experiments": self.stopped_experiments,
            "already_stopped": self.already_stopped,
            "other_runs": self.other_runs,
            "failures": self.failures,
        }


def _tags(task: Mapping[str, Any]) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value")) for t in task.get("tags") or []}


def is_runs_task(task: Mapping[str, Any], run_id: str) -> bool:
    """True when the load task belongs to ``run_id`` (its run tag, else its evidence URI override)."""
    tags = _tags(task)
    if settings.RUN_ID_TAG in tags:
        return tags[settings.RUN_ID_TAG] == run_id
    for c in (task.get("overrides") or {}).get("containerOverrides") or []:
        for env in c.get("environment") or []:
            if env.get("name") == ENV_EVIDENCE_S3_URI and str(env.get("value", "")).endswith(
                f"/run_id={run_id}/"
            ):
                return True
    return False


def runs_load_tasks(ecs: Any, cluster: str, run_id: str) -> list[str]:
    """The ARNs of the run's RUNNING load tasks in ``cluster``."""
    arns: list[str] = []
    for page in pages(
        f"list the load tasks of {cluster}",
        ecs,
        "list_tasks",
        cluster=cluster,
        startedBy=settings.LOAD_STARTED_BY,
        desiredStatus="RUNNING",
    ):
        arns += page.get("taskArns") or []
    out: list[str] = []
    for part in chunks(arns, DESCRIBE_TASKS_MAX):
        resp = call(
            f"describe the load tasks of {cluster}",
            ecs.describe_tasks,
            cluster=cluster,
            tasks=list(part),
            include=["TAGS"],
        )
        out += [t["taskArn"] for t in resp.get("tasks") or [] if is_runs_task(t, run_id)]
    return out


def stop_load(ecs: Any, cluster: str, run_id: str, reason: str, report: CleanupReport) -> None:
    """Stop the run's load tasks; failures go to ``report.failures``."""
    try:
        arns = runs_load_tasks(ecs, cluster, run_id)
    except GateError as e:
        report.failures.append(str(e))
        return
    for arn in arns:
        try:
            ecs.stop_task(cluster=cluster, task=arn, reason=reason[:255])
        except (ClientError, BotoCoreError) as e:
            report.failures.append(f"could not stop load task {arn}: {e}")
        else:
            report.stopped_tasks.append(arn)


def stop_experiments(fis: Any, template_ids: Sequence[str], run_id: str, report: CleanupReport) -> None:
    """Stop the active experiments of the templates that are the run's (or untagged); see module doc."""
    for template_id in template_ids:
        try:
            experiments = [
                e
                for page in pages(
                    f"list the experiments of template {template_id}",
                    fis,
                    "list_experiments",
                    experimentTemplateId=template_id,
                )
                for e in page.get("experiments") or []
            ]
        except GateError as e:
            report.failures.append(str(e))
            continue
        for e in experiments:
            if (e.get("state") or {}).get("status") not in ACTIVE_EXPERIMENT_STATUSES:
                continue
            owner = (e.get("tags") or {}).get(settings.RUN_ID_TAG)
            if owner not in (None, run_id):
                report.other_runs.append(e["id"])
                continue
            try:
                fis.stop_experiment(id=e["id"])
            except (ClientError, BotoCoreError) as err:
                if error_code(err) in ALREADY_STOPPED_CODES:
                    report.already_stopped.append(e["id"])
                else:
                    report.failures.append(f"could not stop FIS experiment {e['id']}: {err}")
            else:
                report.stopped_experiments.append(e["id"])


def clean_up(
    run: AbortedRun, resources: GateResources, tools: Any, *, ecs: Any, fis: Any, dynamodb: Any, sns: Any
) -> dict[str, Any]:
    """Stop the aborted run's load task and its FIS experiments, then release the target's lock and leave
    the run's trace (:func:`lambdas.cleanup.trace.leave_trace`); return ``{run_id, status, stopped_tasks,
    stopped_experiments, already_stopped, other_runs, failures, lock, verdict, notified}``. Raises GateError
    after trying every step when any of them failed."""
    report = CleanupReport()
    reason = f"ResilienceGate: execution {run.run_id} {run.status}, cleaning up"
    stop_load(ecs, resources.load_cluster, run.run_id, reason, report)
    stop_experiments(fis, resources.template_ids, run.run_id, report)
    traced, failures = leave_trace(run, resources, tools, dynamodb=dynamodb, sns=sns)
    report.failures += failures
    out = {"run_id": run.run_id, "status": run.status, **report.as_dict(), **traced}
    metrics = tools.metrics
    metrics.add_metric(name="CleanupStoppedTasks", unit=MetricUnit.Count, value=len(report.stopped_tasks))
    metrics.add_metric(
        name="CleanupStoppedExperiments", unit=MetricUnit.Count, value=len(report.stopped_experiments)
    )
    tools.tracer.put_annotation(key="run_id", value=run.run_id)
    if report.other_runs:
        tools.logger.warning(
            "active experiments of another run left alone", extra={"experiments": report.other_runs}
        )
    if report.failures:
        tools.logger.error("cleanup incomplete", extra=out)
        raise GateError(f"cleanup of {run.run_id} incomplete: {'; '.join(report.failures)}")
    tools.logger.info("cleanup done", extra=out)
    return out
