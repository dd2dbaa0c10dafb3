"""The cleanup branch: every error of a run ends here, after the load and the faults are stopped.

Entered with ``$.error = {Error, Cause}`` (a Catch, or a :meth:`CleanupBranch.fail` for errors a Choice
detects): stop the load task if it was started (and, for a distributed load, each worker task
started), stop every experiment started so far (each stop ignores "already stopped"; only what
*this* run started is named, so a run that gave up on a busy target stops nothing of the holder's),
release the target's lock if this run holds it (:func:`infra.state_machine.lock.release_state`),
record an ERROR verdict, notify, and fail with ``GateRunFailed`` and a cause that names the original
error. Recording and notifying are best effort: their own errors do not hide the original. As
locally, cleanup runs on every exit path; a StopExecution or a timeout skips the state machine's
Catches, which is why :mod:`infra.abort_cleanup` exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn

from infra.fault_experiments import ExperimentSpec
from infra.state_machine.lock import LockSpec, release_state
from infra.state_machine.steps import Steps, dashboard_link, verdict_fields

CatchingState = sfn.CustomState | sfn.TaskStateBase | sfn.Parallel
WORKERS_PATH = "$.load_workers"
"""A distributed load's worker tasks' ARNs, in start order (``w1`` first; :mod:`infra.state_machine.load`):
what the cleanup and the load's end stop."""


class CleanupBranch:
    """Builds the branch; ``entry`` is its first state (``Cleanup``). Phases route errors here with
    :meth:`catch` (a state's every error) and :meth:`fail` (an error a Choice detects)."""

    def __init__(
        self,
        *,
        steps: Steps,
        gate: str,
        topic: sns.ITopic,
        verdict_function: lambda_.IFunction,
        check_names: Sequence[str],
        unknown_is_failure: bool,
        load_cluster_arn: str,
        experiments: Sequence[ExperimentSpec],
        lock: LockSpec,
        dashboard_url_format: str | None = None,
        load_workers: int = 0,
    ) -> None:
        self._steps = steps
        self._dashboard = dashboard_url_format
        self.entry = steps.pass_(
            "Cleanup", comment="Every error path: stop the load and the faults, then fail"
        )
        record = self._record_and_report(
            steps,
            gate=gate,
            topic=topic,
            verdict_function=verdict_function,
            check_names=check_names,
            unknown_is_failure=unknown_is_failure,
            dashboard_url_format=dashboard_url_format,
        )
        release = release_state(steps, "Release lock after error", lock)
        release.add_catch(record, errors=["States.ALL"], result_path="$.lock_release_error")
        release.next(record)
        stop_experiments = self._stop_experiments(steps, experiments, then=release)
        self.entry.next(self._stop_load(steps, gate, load_cluster_arn, load_workers, then=stop_experiments))

    def catch(self, state: CatchingState) -> None:
        """Route every error of ``state`` into the branch, as ``$.error``."""
        state.add_catch(self.entry, errors=["States.ALL"], result_path="$.error")

    def fail(self, name: str, error: str, cause: str) -> sfn.Pass:
        """A Pass that sets ``$.error`` = ``{Error: error, Cause: cause}`` and enters the branch."""
        p = self._steps.pass_(
            name, result=sfn.Result.from_object({"Error": error, "Cause": cause}), result_path="$.error"
        )
        p.next(self.entry)
        return p

    @staticmethod
    def _record_and_report(
        steps: Steps,
        *,
        gate: str,
        topic: sns.ITopic,
        verdict_function: lambda_.IFunction,
        check_names: Sequence[str],
        unknown_is_failure: bool,
        dashboard_url_format: str | None,
    ) -> sfn.IChainable:
        """Record error verdict → Notify error (with the dashboard's URL on the run's window) → Describe
        failure → Gate run failed; returns the first."""
        dashboard = {"dashboard.$": dashboard_link(dashboard_url_format)} if dashboard_url_format else {}
        # One error name for every failed run; the cause names the original error (a Fail's ErrorPath may
        # not resolve to a States.* name).
        run_failed = steps.fail("Gate run failed", error="GateRunFailed", cause_path="$.failure.cause")
        describe_failure = steps.pass_(
            "Describe failure",
            parameters={"cause.$": "States.Format('{}: {}', $.error.Error, $.error.Cause)"},
            result_path="$.failure",
        )
        describe_failure.next(run_failed)
        notify_error = steps.sns_publish(
            "Notify error",
            topic,
            {"gate": gate, "run_id.$": "$.run.run_id", "result": "ERROR", "error.$": "$.error", **dashboard},
            subject=f"ResilienceGate {gate}: the gate could not run",
        )
        notify_error.add_catch(describe_failure, errors=["States.ALL"], result_path="$.notify_error")
        notify_error.next(describe_failure)
        record_error = steps.lambda_invoke(
            "Record error verdict",
            verdict_function,
            {
                **verdict_fields(),
                "results": [],
                "checks": list(check_names),
                "unknown_is_failure": unknown_is_failure,
                "guardrail_tripped.$": "$.guardrail_tripped",
                "error.$": "$.error",
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        record_error.add_catch(notify_error, errors=["States.ALL"], result_path="$.record_error")
        record_error.next(notify_error)
        return record_error

    @staticmethod
    def _stop_experiments(
        steps: Steps, experiments: Sequence[ExperimentSpec], *, then: sfn.IChainable
    ) -> sfn.IChainable:
        """Per experiment, in order: started? → stop it (a refusal is fine); returns the first state."""
        next_stop = then
        for spec in reversed(list(experiments)):
            stop = steps.sdk(
                f"Stop experiment {spec.name}",
                "fis",
                "stopExperiment",
                {"Id.$": f"$.experiments.{spec.key}.id"},
                ResultPath="$.last_call",
            )
            # Stopping an experiment that already ended is refused: that is fine here.
            stop.add_catch(next_stop, errors=["States.ALL"], result_path=f"$.cleanup_errors.{spec.key}")
            stop.next(next_stop)
            started = steps.choice(f"Experiment {spec.name} started?")
            started.when(sfn.Condition.is_present(f"$.experiments.{spec.key}.id"), stop)
            started.otherwise(next_stop)
            next_stop = started
        return next_stop

    @staticmethod
    def _stop_load(
        steps: Steps, gate: str, load_cluster_arn: str, workers: int, *, then: sfn.IChainable
    ) -> sfn.Choice:
        """Load task started? → Stop load task (an error is recorded, not raised) → each worker task started
        (:func:`stop_workers`, a distributed load) → ``then``."""
        reason = f"ResilienceGate {gate}: run failed, cleaning up"
        if workers:
            then = stop_workers(steps, " after error", load_cluster_arn, workers, then=then, reason=reason)
        stop_load = steps.sdk(
            "Stop load task",
            "ecs",
            "stopTask",
            {
                "Cluster": load_cluster_arn,
                "Task.$": "$.load.task.TaskArn",
                "Reason": reason,
            },
            ResultPath="$.last_call",
        )
        stop_load.add_catch(then, errors=["States.ALL"], result_path="$.cleanup_errors.load")
        stop_load.next(then)
        load_started = steps.choice("Load task started?")
        load_started.when(sfn.Condition.is_present("$.load.task.TaskArn"), stop_load).otherwise(then)
        return load_started


def stop_workers(
    steps: Steps, label: str, cluster_arn: str, workers: int, *, then: sfn.IChainable, reason: str = ""
) -> sfn.IChainable:
    """For each of at most ``workers`` worker tasks in ``$.load_workers``: started? → ``ecs:StopTask`` (an
    error is recorded in ``$.cleanup_errors``, never raised: the task may have ended) → the next; then
    ``then``. ``label`` keeps the state names of two such chains apart. Returns the first state."""
    next_state = then
    for i in range(workers, 0, -1):
        node = f"w{i}"
        stop = steps.sdk(
            f"Stop load worker {node}{label}",
            "ecs",
            "stopTask",
            {
                "Cluster": cluster_arn,
                "Task.$": f"{WORKERS_PATH}[{i - 1}]",
                "Reason": reason or "ResilienceGate: the load is over",
            },
            ResultPath="$.last_call",
        )
        stop.add_catch(next_state, errors=["States.ALL"], result_path=f"$.cleanup_errors.load_{node}")
        stop.next(next_state)
        started = steps.choice(f"Load worker {node} to stop{label}?")
        started.when(sfn.Condition.is_present(f"{WORKERS_PATH}[{i - 1}]"), stop).otherwise(next_state)
        next_state = started
    return next_state
