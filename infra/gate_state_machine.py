"""The gate run on AWS: a Step Functions state machine that walks the same phases as ``resgate run``.

Validate → preflight (the target's ECS services exist) → copy the gate config to the run's evidence
prefix → start the Locust task (``ecs:runTask`` without ``.sync``, then poll until RUNNING) → baseline
wait → for each ``stop_task`` fault in ``at_s`` order: wait, ``fis:startExperiment``, poll until it ends
(an experiment *stopped* by its stop conditions is a tripped guardrail: the remaining faults are skipped,
as locally) → wait for the load to end (poll until the task STOPPED, exit code 0) → quiesce wait →
timeline Lambda (writes ``faults.jsonl`` from the FIS experiments and ``health.jsonl`` from the target
services' ECS tasks, the recovery check's evidence; its ``observed_until`` goes to the recovery check) →
Parallel of the check Lambdas (each branch catches its own error as ``{name, Error, Cause}``, which the
verdict counts as unknown) → verdict Lambda → Choice on ``passed``: Succeed, or SNS notice + Fail.

Every error (a task that throws, a loop that runs out of polls, a load task that died, a failed
experiment) goes to the **cleanup** branch: stop the load task and every experiment started so far (each
stop ignores "already stopped"), record an ERROR verdict, notify, Fail with the original error. Nothing in
the run escapes that branch except input validation, which fails before anything is started. A
StopExecution (ABORTED) or the state machine's timeout (TIMED_OUT) ends the execution without any Catch:
for those, :mod:`infra.abort_cleanup`'s EventBridge rule invokes the cleanup Lambda, which stops the load
task (tagged with the run id) and the gate's running experiments.

Execution input (every field optional)::

    {"waits": {"baseline_s": 5, "poll_s": 15, "quiesce_s": 75, "load_rest_s": 15,
               "before_<fault key>": <s>, ...}}

Defaults come from the gate config (``before_<key>`` is the delay since the previous fault; the fault key
is its name with non-alphanumerics as ``_``); tests pass 0 everywhere. The run id is the execution name
and ``dt`` the execution's start date, so the evidence lands in
``s3://<bucket>/evidence/gate=<gate>/dt=<date>/run_id=<execution name>/``.

SDK calls are ``CustomState`` tasks, so they carry no generated IAM policy: the stack grants exactly what
they need (with the cluster conditions). The Lambda and SNS tasks use the typed integrations, whose
generated policies are already scoped to the functions and the topic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import constants as c
from infra.fault_experiments import ExperimentSpec
from resgate.config.schema import GateConfig

WAIT_KEYS = ("baseline_s", "poll_s", "quiesce_s", "load_rest_s")


def default_waits(
    config: GateConfig, experiments: Sequence[ExperimentSpec], *, poll_s: int
) -> dict[str, int]:
    """The ``waits`` defaults from the gate config: baseline, poll interval, quiesce, the delay before
    each experiment (since the previous one, or since the end of the baseline) and what is left of the
    load after the last fault."""
    waits = {
        "baseline_s": math.ceil(config.load.baseline_s),
        "poll_s": poll_s,
        "quiesce_s": math.ceil(config.quiesce.timeout_s),
    }
    previous = config.load.baseline_s
    for spec in experiments:
        waits[f"before_{spec.key}"] = max(0, math.ceil(spec.at_s - previous))
        previous = spec.at_s
    waits["load_rest_s"] = max(0, math.ceil(config.load.duration_s - previous))
    return waits


def _sdk(service: str, action: str) -> str:
    return f"arn:{Aws.PARTITION}:states:::aws-sdk:{service}:{action}"


class GateStateMachine(Construct):
    """Attributes: ``state_machine``, ``log_group``, ``default_waits``, ``check_names`` (the enabled
    checks, the Parallel's branches), ``experiment_keys`` ({fault name: state key})."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: GateConfig,
        config_text: str,
        evidence_bucket_name: str,
        check_functions: Mapping[str, lambda_.IFunction],
        verdict_function: lambda_.IFunction,
        timeline_function: lambda_.IFunction,
        load_cluster_arn: str,
        load_task_definition_arn: str,
        load_container_name: str,
        load_subnet_ids: Sequence[str],
        load_security_group_id: str,
        load_duration_s: int,
        target_cluster: str,
        target_services: Sequence[str],
        experiments: Sequence[ExperimentSpec],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        gate = config.name
        self.check_names = [n for n in config.enabled_checks() if n in check_functions]
        self.experiment_keys = {s.name: s.key for s in experiments}
        self.default_waits = default_waits(config, experiments, poll_s=c.DEFAULT_POLL_S)
        wait_keys = list(self.default_waits)
        run_prefix = f"{c.EVIDENCE_PREFIX}/gate={gate}/dt={{}}/run_id={{}}/"
        max_load_end_polls = c.MAX_POLLS_LOAD_END + math.ceil(load_duration_s / c.DEFAULT_POLL_S)

        def pass_(name: str, **kw: Any) -> sfn.Pass:
            return sfn.Pass(self, name, **kw)

        def task(name: str, resource: str, parameters: dict[str, Any], **extra: Any) -> sfn.CustomState:
            state = {"Type": "Task", "Resource": resource, "Parameters": parameters, **extra}
            return sfn.CustomState(self, name, state_json=state)

        def sdk(
            name: str, service: str, action: str, parameters: dict[str, Any], **extra: Any
        ) -> sfn.CustomState:
            return task(name, _sdk(service, action), parameters, **extra)

        # ------------------------------------------------------------------------------ cleanup branch
        # Entered with $.error = {Error, Cause}; stops what was started, records and reports the error.
        cleanup = pass_("Cleanup", comment="Every error path: stop the load and the faults, then fail")
        # One error name for every failed run; the cause names the original error (a Fail's ErrorPath may
        # not resolve to a States.* name).
        run_failed = sfn.Fail(self, "Gate run failed", error="GateRunFailed", cause_path="$.failure.cause")
        describe_failure = pass_(
            "Describe failure",
            parameters={"cause.$": "States.Format('{}: {}', $.error.Error, $.error.Cause)"},
            result_path="$.failure",
        )
        describe_failure.next(run_failed)
        notify_error = tasks.SnsPublish(
            self,
            "Notify error",
            topic=topic,
            subject=f"ResilienceGate {gate}: the gate could not run"[:100],
            message=sfn.TaskInput.from_object(
                {"gate": gate, "run_id.$": "$.run.run_id", "result": "ERROR", "error.$": "$.error"}
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify_error.add_catch(describe_failure, errors=["States.ALL"], result_path="$.notify_error")
        notify_error.next(describe_failure)
        record_error = tasks.LambdaInvoke(
            self,
            "Record error verdict",
            lambda_function=verdict_function,
            payload=sfn.TaskInput.from_object(
                {
                    **self._run_fields(),
                    "results": [],
                    "checks": self.check_names,
                    "unknown_is_failure": config.unknown_is_failure,
                    "guardrail_tripped.$": "$.guardrail_tripped",
                    "error.$": "$.error",
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
            retry_on_service_exceptions=False,
        )
        record_error.add_catch(notify_error, errors=["States.ALL"], result_path="$.record_error")
        record_error.next(notify_error)

        next_stop: sfn.IChainable = record_error
        for spec in reversed(list(experiments)):
            stop = sdk(
                f"Stop experiment {spec.name}",
                "fis",
                "stopExperiment",
                {"Id.$": f"$.experiments.{spec.key}.id"},
                ResultPath="$.last_call",
            )
            # Stopping an experiment that already ended is refused: that is fine here.
            stop.add_catch(next_stop, errors=["States.ALL"], result_path=f"$.cleanup_errors.{spec.key}")
            stop.next(next_stop)
            started = sfn.Choice(self, f"Experiment {spec.name} started?")
            started.when(sfn.Condition.is_present(f"$.experiments.{spec.key}.id"), stop)
            started.otherwise(next_stop)
            next_stop = started
        stop_load = sdk(
            "Stop load task",
            "ecs",
            "stopTask",
            {
                "Cluster": load_cluster_arn,
                "Task.$": "$.load.task.TaskArn",
                "Reason": f"ResilienceGate {gate}: run failed, cleaning up",
            },
            ResultPath="$.last_call",
        )
        stop_load.add_catch(next_stop, errors=["States.ALL"], result_path="$.cleanup_errors.load")
        stop_load.next(next_stop)
        load_started = sfn.Choice(self, "Load task started?")
        load_started.when(sfn.Condition.is_present("$.load.task.TaskArn"), stop_load).otherwise(next_stop)
        cleanup.next(load_started)

        def on_error(state: sfn.CustomState | sfn.TaskStateBase | sfn.Parallel) -> None:
            state.add_catch(cleanup, errors=["States.ALL"], result_path="$.error")

        def fail_with(name: str, error: str, cause: str) -> sfn.Pass:
            """A Pass that sets $.error and enters the cleanup branch (for errors a Choice detects)."""
            p = pass_(
                name, result=sfn.Result.from_object({"Error": error, "Cause": cause}), result_path="$.error"
            )
            p.next(cleanup)
            return p

        # ------------------------------------------------------------------------------ input
        init = pass_(
            "Init",
            parameters={
                "run": {
                    "run_id.$": "$$.Execution.Name",
                    "gate": gate,
                    "dt.$": "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, 'T'), 0)",
                },
                "input.$": "$",
                "waits": self.default_waits,
                "load": {},
                "experiments": {},
                "guardrail_tripped": "",  # CDK drops a null; the verdict reads "" as none
            },
        )
        merge_waits = pass_(
            "Merge waits",
            parameters={
                "run.$": "$.run",
                "input.$": "$.input",
                "waits.$": "States.JsonMerge($.waits, $.input.waits, false)",
                "load.$": "$.load",
                "experiments.$": "$.experiments",
                "guardrail_tripped.$": "$.guardrail_tripped",
            },
        )
        locate = pass_(
            "Locate evidence",
            parameters={
                "evidence_uri.$": (
                    f"States.Format('s3://{evidence_bucket_name}/{run_prefix}', $.run.dt, $.run.run_id)"
                ),
                "config_key.$": f"States.Format('{run_prefix}config.yaml', $.run.dt, $.run.run_id)",
            },
            result_path="$.locations",
        )
        has_waits = sfn.Choice(self, "Waits given?")
        has_waits.when(sfn.Condition.is_present("$.input.waits"), merge_waits.next(locate)).otherwise(locate)
        valid = sfn.Condition.and_(
            *(
                sfn.Condition.and_(
                    sfn.Condition.is_numeric(f"$.waits.{k}"),
                    sfn.Condition.number_greater_than_equals(f"$.waits.{k}", 0),
                )
                for k in wait_keys
            )
        )
        invalid_input = sfn.Fail(
            self,
            "Invalid input",
            error="InvalidInput",
            cause=f"every waits.* must be a number >= 0 (keys: {', '.join(wait_keys)})",
        )
        validate = sfn.Choice(self, "Validate input")

        # ------------------------------------------------------------------------------ preflight
        describe_target = sdk(
            "Describe target services",
            "ecs",
            "describeServices",
            {"Cluster": target_cluster, "Services": list(target_services)},
            ResultSelector={"missing.$": "States.ArrayLength($.Failures)"},
            ResultPath="$.preflight",
        )
        on_error(describe_target)
        target_ok = sfn.Choice(self, "Target found?")
        write_config = sdk(
            "Write gate config",
            "s3",
            "putObject",
            {
                "Bucket": evidence_bucket_name,
                "Key.$": "$.locations.config_key",
                "Body": config_text,
                "ContentType": "application/yaml",
            },
            ResultPath="$.last_call",
        )
        on_error(write_config)
        target_ok.when(sfn.Condition.number_equals("$.preflight.missing", 0), write_config).otherwise(
            fail_with(
                "Target not found",
                "TargetNotFound",
                f"a service of {', '.join(target_services)} is missing from ECS cluster {target_cluster}",
            )
        )

        # ------------------------------------------------------------------------------ load
        # The optimized ecs:runTask integration without .sync: it returns once the task is created.
        start_load = task(
            "Start load task",
            f"arn:{Aws.PARTITION}:states:::ecs:runTask",
            {
                "Cluster": load_cluster_arn,
                "TaskDefinition": load_task_definition_arn,
                "LaunchType": "FARGATE",
                "Count": 1,
                "StartedBy": c.LOADGEN_STARTED_BY,
                "Tags": [{"Key": c.EXPERIMENT_TAG_RUN_ID, "Value.$": "$.run.run_id"}],
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": list(load_subnet_ids),
                        "SecurityGroups": [load_security_group_id],
                        "AssignPublicIp": "DISABLED",
                    }
                },
                "Overrides": {
                    "ContainerOverrides": [
                        {
                            "Name": load_container_name,
                            "Environment": [
                                {"Name": "RESGATE_EVIDENCE_S3_URI", "Value.$": "$.locations.evidence_uri"}
                            ],
                        }
                    ]
                },
            },
            ResultSelector={"tasks.$": "$.Tasks"},
            ResultPath="$.load_start",
        )
        on_error(start_load)
        write_config.next(start_load)
        # moto's JSONPath returns a list for a path that indexes in the middle ($.a[0].b); AWS a scalar.
        # Paths here end at the index ($.a[0]) or have none, which both evaluate alike.
        remember_load = pass_(
            "Remember load task", parameters={"task.$": "$.load_start.tasks[0]"}, result_path="$.load"
        )
        load_created = sfn.Choice(self, "Load task created?")
        start_load.next(load_created)
        load_created.when(sfn.Condition.is_present("$.load_start.tasks[0]"), remember_load).otherwise(
            fail_with(
                "Load task not created", "LoadTaskNotCreated", "ecs:RunTask returned no task (see Failures)"
            )
        )

        def describe_load(name: str) -> tuple[sfn.CustomState, sfn.Pass]:
            """DescribeTasks of the load task → $.load_status.task (a missing task enters cleanup)."""
            d = sdk(
                name,
                "ecs",
                "describeTasks",
                {"Cluster": load_cluster_arn, "Tasks.$": "States.Array($.load.task.TaskArn)"},
                ResultSelector={"tasks.$": "$.Tasks"},
                ResultPath="$.load_status",
            )
            on_error(d)
            found = sfn.Choice(self, f"{name}: found?")
            pick = pass_(
                f"{name}: pick", parameters={"task.$": "$.load_status.tasks[0]"}, result_path="$.load_status"
            )
            found.when(sfn.Condition.is_present("$.load_status.tasks[0]"), pick).otherwise(
                fail_with(f"{name}: lost", "LoadTaskLost", "ecs:DescribeTasks does not know the load task")
            )
            d.next(found)
            return d, pick

        def reset(name: str) -> sfn.Pass:
            return pass_(name, result=sfn.Result.from_object({"n": 0}), result_path="$.loop")

        def count(name: str) -> sfn.Pass:
            return pass_(name, parameters={"n.$": "States.MathAdd($.loop.n, 1)"}, result_path="$.loop")

        status_path = "$.load_status.task.LastStatus"
        reset_start = reset("Reset load start polls")
        wait_running = sfn.Wait(self, "Wait for load task", time=sfn.WaitTime.seconds_path("$.waits.poll_s"))
        describe_start, picked_start = describe_load("Describe load task")
        running = sfn.Choice(self, "Load running?")
        count_start = count("Count load start polls")
        baseline = sfn.Wait(self, "Baseline", time=sfn.WaitTime.seconds_path("$.waits.baseline_s"))
        remember_load.next(reset_start).next(wait_running).next(describe_start)
        picked_start.next(running)
        running.when(sfn.Condition.string_equals(status_path, "RUNNING"), baseline)
        running.when(
            sfn.Condition.string_equals(status_path, "STOPPED"),
            fail_with(
                "Load task stopped early", "LoadTaskStopped", "the load task stopped before the faults"
            ),
        )
        running.when(
            sfn.Condition.number_greater_than_equals("$.loop.n", c.MAX_POLLS_TASK_START),
            fail_with(
                "Load task start timed out", "LoadTaskStartTimeout", "the load task did not reach RUNNING"
            ),
        )
        running.otherwise(count_start)
        count_start.next(wait_running)

        # ------------------------------------------------------------------------------ faults
        load_end_wait = sfn.Wait(
            self, "Wait for load end", time=sfn.WaitTime.seconds_path("$.waits.load_rest_s")
        )
        previous: sfn.INextable = baseline
        for spec in experiments:
            k = spec.key
            before = sfn.Wait(
                self, f"Before {spec.name}", time=sfn.WaitTime.seconds_path(f"$.waits.before_{k}")
            )
            start = sdk(
                f"Start {spec.name}",
                "fis",
                "startExperiment",
                {
                    "ExperimentTemplateId": spec.template.ref,
                    "ClientToken.$": "States.UUID()",
                    "Tags": {c.EXPERIMENT_TAG_RUN_ID + ".$": "$.run.run_id", c.EXPERIMENT_TAG_GATE: gate},
                },
                ResultSelector={"id.$": "$.Experiment.Id"},
                ResultPath=f"$.experiments.{k}",
            )
            on_error(start)
            reset_k = reset(f"Reset {spec.name} polls")
            wait_k = sfn.Wait(self, f"Wait for {spec.name}", time=sfn.WaitTime.seconds_path("$.waits.poll_s"))
            get_k = sdk(
                f"Get {spec.name}",
                "fis",
                "getExperiment",
                {"Id.$": f"$.experiments.{k}.id"},
                ResultSelector={"status.$": "$.Experiment.State.Status", "raw.$": "$.Experiment.State"},
                ResultPath=f"$.experiments.{k}.state",
            )
            on_error(get_k)
            check_k = sfn.Choice(self, f"{spec.name} ended?")
            count_k = count(f"Count {spec.name} polls")
            status = f"$.experiments.{k}.state.status"
            tripped = pass_(
                f"Guardrail tripped in {spec.name}",
                parameters={"fault": spec.name, "experiment_state.$": f"$.experiments.{k}.state.raw"},
                result_path="$.guardrail_tripped",
            )
            tripped.next(load_end_wait)
            if isinstance(previous, sfn.Choice):
                previous.otherwise(before)
            else:
                previous.next(before)
            before.next(start).next(reset_k).next(wait_k).next(get_k).next(check_k)
            check_k.when(sfn.Condition.string_equals(status, "stopped"), tripped)
            check_k.when(
                sfn.Condition.or_(
                    sfn.Condition.string_equals(status, "failed"),
                    sfn.Condition.string_equals(status, "cancelled"),
                ),
                fail_with(
                    f"{spec.name} failed", "FaultFailed", f"FIS experiment of fault {spec.name} failed"
                ),
            )
            check_k.when(
                sfn.Condition.and_(
                    sfn.Condition.not_(sfn.Condition.string_equals(status, "completed")),
                    sfn.Condition.number_greater_than_equals("$.loop.n", c.MAX_POLLS_EXPERIMENT),
                ),
                fail_with(
                    f"{spec.name} timed out",
                    "FaultTimeout",
                    f"FIS experiment of fault {spec.name} did not end",
                ),
            )
            check_k.when(sfn.Condition.not_(sfn.Condition.string_equals(status, "completed")), count_k)
            count_k.next(wait_k)
            previous = check_k
        if isinstance(previous, sfn.Choice):
            previous.otherwise(load_end_wait)
        else:
            previous.next(load_end_wait)

        # ------------------------------------------------------------------------------ end of load
        reset_end = reset("Reset load end polls")
        describe_end, picked_end = describe_load("Describe finished load task")
        stopped = sfn.Choice(self, "Load finished?")
        has_container = sfn.Choice(self, "Load container reported?")
        count_end = count("Count load end polls")
        wait_end = sfn.Wait(self, "Wait for load to finish", time=sfn.WaitTime.seconds_path("$.waits.poll_s"))
        exit_ok = sfn.Choice(self, "Load exit code 0?")
        quiesce = sfn.Wait(self, "Quiesce", time=sfn.WaitTime.seconds_path("$.waits.quiesce_s"))
        load_end_wait.next(reset_end).next(describe_end)
        picked_end.next(stopped)
        stopped.when(sfn.Condition.string_equals(status_path, "STOPPED"), has_container)
        stopped.when(
            sfn.Condition.number_greater_than_equals("$.loop.n", max_load_end_polls),
            fail_with("Load did not stop", "LoadTaskStopTimeout", "the load task ran past its expected end"),
        )
        stopped.otherwise(count_end)
        count_end.next(wait_end).next(describe_end)
        load_failed = fail_with(
            "Load failed", "LoadFailed", "the load task exited with an error (see its log)"
        )
        pick_container = pass_(
            "Pick load container",
            parameters={"container.$": "$.load_status.task.Containers[0]"},
            result_path="$.load_exit",
        )
        has_container.when(
            sfn.Condition.is_present("$.load_status.task.Containers[0]"), pick_container
        ).otherwise(load_failed)
        exit_code = "$.load_exit.container.ExitCode"
        pick_container.next(exit_ok)
        exit_ok.when(
            sfn.Condition.and_(
                sfn.Condition.is_present(exit_code), sfn.Condition.number_equals(exit_code, 0)
            ),
            quiesce,
        ).otherwise(load_failed)

        # ------------------------------------------------------------------------------ timeline
        timeline = tasks.LambdaInvoke(
            self,
            "Write timeline",
            lambda_function=timeline_function,
            payload=sfn.TaskInput.from_object(
                {
                    **self._run_fields(),
                    "cluster": target_cluster,
                    # Fault targets are the gate config's service names; health rows use the same names.
                    "services": {s.fault.target: s.service for s in experiments},
                    "faults": {
                        s.key: {"name": s.name, "kind": s.fault.kind, "target": s.fault.target}
                        for s in experiments
                    },
                    "experiments.$": "$.experiments",
                    "started_at.$": "$$.Execution.StartTime",
                    "ended_at.$": "$$.State.EnteredTime",
                }
            ),
            result_selector={
                "observed_until.$": "$.Payload.observed_until",
                "fault_events.$": "$.Payload.fault_events",
                "health_events.$": "$.Payload.health_events",
            },
            result_path="$.timeline",
        )
        # GateError = FIS, ECS or S3 failed: worth one more try before the run is given up (cleanup).
        timeline.add_retry(errors=["GateError"], interval=Duration.seconds(5), max_attempts=2, backoff_rate=2)
        on_error(timeline)

        # ------------------------------------------------------------------------------ assertions
        assertions = sfn.Parallel(self, "Assertions", result_path="$.results")
        for name in self.check_names:
            assertions.branch(self._check_branch(name, check_functions[name], config, load_duration_s))
        on_error(assertions)
        verdict = tasks.LambdaInvoke(
            self,
            "Verdict",
            lambda_function=verdict_function,
            payload=sfn.TaskInput.from_object(
                {
                    **self._run_fields(),
                    "results.$": "$.results",
                    "checks": self.check_names,
                    "unknown_is_failure": config.unknown_is_failure,
                    "guardrail_tripped.$": "$.guardrail_tripped",
                }
            ),
            result_selector={
                "passed.$": "$.Payload.passed",
                "result.$": "$.Payload.result",
                "reason.$": "$.Payload.reason",
                "failed_checks.$": "$.Payload.failed_checks",
                "unknown_checks.$": "$.Payload.unknown_checks",
                "evidence_uri.$": "$.Payload.evidence_uri",
            },
            result_path="$.verdict",
        )
        on_error(verdict)
        passed = sfn.Choice(self, "Passed?")
        gate_failed = sfn.Fail(self, "Gate failed", error="GateFailed", cause_path="$.verdict.reason")
        notify_failed = tasks.SnsPublish(
            self,
            "Notify failed",
            topic=topic,
            subject=f"ResilienceGate {gate}: FAILED"[:100],
            message=sfn.TaskInput.from_object(
                {
                    "gate": gate,
                    "run_id.$": "$.run.run_id",
                    "verdict.$": "$.verdict",
                    "guardrail_tripped.$": "$.guardrail_tripped",
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify_failed.add_catch(gate_failed, errors=["States.ALL"], result_path="$.notify_error")
        quiesce.next(timeline).next(assertions).next(verdict).next(passed)
        passed.when(
            sfn.Condition.boolean_equals("$.verdict.passed", True),
            sfn.Succeed(self, "Gate passed", output_path="$.verdict"),
        ).otherwise(notify_failed.next(gate_failed))

        validate.when(sfn.Condition.not_(valid), invalid_input).otherwise(describe_target)
        describe_target.next(target_ok)
        definition = init.next(has_waits)
        locate.next(validate)

        self.log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=RemovalPolicy.DESTROY
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment=f"ResilienceGate {gate}: load, faults, assertions, verdict",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.seconds(c.STATE_MACHINE_TIMEOUT_S),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
        )

    @staticmethod
    def _run_fields() -> dict[str, str]:
        """The run event's common fields (see :mod:`lambdas`); bucket and prefix come from the env."""
        return {"run_id.$": "$.run.run_id", "gate.$": "$.run.gate", "dt.$": "$.run.dt"}

    def _check_branch(
        self, name: str, fn: lambda_.IFunction, config: GateConfig, load_duration_s: int
    ) -> sfn.IChainable:
        """One Parallel branch: invoke the check; any error becomes ``{name, Error, Cause}``."""
        section = {k: v for k, v in config.checks.get(name, {}).items() if k != "enabled"}
        payload: dict[str, Any] = {**self._run_fields()}
        payload["config" if name in c.NEEDS_DATABASE else "thresholds"] = section
        if name == "slo":
            payload["duration_s"] = load_duration_s
        if name == "recovery":
            payload["observed_until.$"] = "$.timeline.observed_until"
        invoke = tasks.LambdaInvoke(
            self,
            f"Check {name}",
            lambda_function=fn,
            payload=sfn.TaskInput.from_object(payload),
            output_path="$.Payload",
        )
        # GateError = an infrastructure failure (S3, database, Kafka): worth one more try.
        invoke.add_retry(errors=["GateError"], interval=Duration.seconds(5), max_attempts=2, backoff_rate=2)
        errored = sfn.Pass(
            self,
            f"Check {name} errored",
            parameters={"name": name, "Error.$": "$.Error", "Cause.$": "$.Cause"},
        )
        invoke.add_catch(errored, errors=["States.ALL"])
        return invoke
