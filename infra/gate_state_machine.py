"""The gate run on AWS: a Step Functions state machine that walks the same phases as ``resgate run``.

The phases are built in :mod:`infra.state_machine`, one module each, and chained here in run order:
validate and preflight (the target's lock is taken, :mod:`infra.state_machine.lock`: one run per target
at a time; the target's ECS services exist; the gate config is copied to the run's evidence prefix) →
start the Locust task and, once it runs, schedule the faults from its start time
(:mod:`infra.state_machine.schedule`) and wait through the baseline → the ``stop_task`` faults in ``at_s``
order, each an FIS experiment started at its scheduled time (one found *stopped* by its stop conditions
is a tripped guardrail: the remaining faults are skipped, as locally; faults scheduled after the end of
the load are skipped), then every experiment polled until it ends → wait for the load to end (task
STOPPED, exit code 0) → quiesce (the quiesce Lambda: the same wait as ``resgate run``'s) → timeline
Lambda (``faults.jsonl``, ``health.jsonl``) → Parallel of the check Lambdas → verdict Lambda → release
the lock → Succeed, or SNS notice + Fail.

Every error (a task that throws, a loop that runs out of polls, a load task that died, a failed
experiment) goes to the **cleanup** branch (:mod:`infra.state_machine.cleanup`): stop the load task and
every experiment started so far, release the lock, record an ERROR verdict, notify, Fail with the
original error. Nothing in
the run escapes that branch (an invalid input enters it too, before anything is started). A
StopExecution (ABORTED) or the state machine's timeout (TIMED_OUT) ends the execution without any Catch:
for those, :mod:`infra.abort_cleanup`'s EventBridge rule invokes the cleanup Lambda, which stops the load
task (tagged with the run id) and the gate's running experiments, releases the lock, and writes the
run's ERROR verdict and notifies.

Execution input (every field optional)::

    {"profile": "nightly",
     "waits": {"baseline_s": 5, "poll_s": 15, "start_poll_s": 2, "quiesce_s": 75, "load_s": 45,
               "lock_wait_s": 600, "at_<fault key>": <s>, ...}}

Defaults come from the gate config and the profile (:mod:`infra.state_machine.profiles`: its load duration
and fault times; no profile: the config's own load and faults). ``poll_s``, ``start_poll_s`` (the load
task's start) and ``quiesce_s`` are delays; ``baseline_s``, ``load_s`` and ``at_<key>`` are offsets from
the load task's start (the fault key is its name with non-alphanumerics as ``_``); tests pass 0
everywhere, or a start time in the past. The run id is the execution name and ``dt`` the execution's start
date, so the run's files land in ``s3://<bucket>/evidence/gate=<gate>/dt=<date>/run_id=<execution name>/``
(its tables' rows under ``gate=<gate>/<table>/dt=<date>/run_id=<execution name>/``).

The construct grants its own role what the SDK tasks need (they are ``CustomState`` tasks, with no
generated policy): ``ecs:DescribeServices`` on the target services, ``ecs:RunTask`` of the load task
definition in the load cluster (with ``ecs:TagResource`` on creation and ``iam:PassRole`` of its two roles
to ECS), ``ecs:StopTask`` / ``ecs:DescribeTasks`` conditioned on the load cluster,
``fis:StartExperiment`` on the gate's templates (and on experiments only with the gate's request tag),
``fis:GetExperiment`` / ``fis:StopExperiment`` only on experiments tagged with this gate, put under the
gate's evidence prefix, ``dynamodb:PutItem``/``GetItem``/``DeleteItem`` on the target's lock item only
(:class:`infra.run_lock.RunLock`). The Lambda and SNS tasks use the typed integrations, whose generated
policies are already scoped to the functions and the topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.evidence_bucket import EvidenceStore
from infra.fault_experiments import ExperimentSpec
from infra.load_generator import LoadGenerator
from infra.nag import acknowledge
from infra.run_dashboard import run_url_format
from infra.run_lock import RunLock
from infra.state_machine.assertions import build_assertions
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.faults import build_faults
from infra.state_machine.load import build_load_end, build_load_start
from infra.state_machine.lock import LockSpec
from infra.state_machine.preflight import WAIT_KEYS, build_preflight, default_waits
from infra.state_machine.profiles import build_profile_choice
from infra.state_machine.steps import Steps, chain
from infra.state_machine.verdict import build_verdict
from resgate.config.schema import GateConfig

__all__ = ["WAIT_KEYS", "GateStateMachine", "default_waits"]


class GateStateMachine(Construct):
    """The gate's state machine, its log group and its grants.

    Attributes: ``state_machine``, ``log_group``, ``default_waits``, ``check_names`` (the enabled
    checks, the Parallel's branches), ``experiment_keys`` ({fault name: state key}), ``profiles`` (the
    names the execution input's ``profile`` may take).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: GateConfig,
        config_text: str,
        evidence: EvidenceStore,
        check_functions: Mapping[str, lambda_.IFunction],
        verdict_function: lambda_.IFunction,
        timeline_function: lambda_.IFunction,
        quiesce_function: lambda_.IFunction,
        load: LoadGenerator,
        target_cluster: str,
        target_services: Sequence[str],
        experiments: Sequence[ExperimentSpec],
        topic: sns.ITopic,
        lock: RunLock,
        preflight_function: lambda_.IFunction | None = None,
        network_services: Sequence[str] = (),
        timeline_services: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        gate = config.name
        self.gate = gate
        self.check_names = [n for n in config.enabled_checks() if n in check_functions]
        self.experiment_keys = {s.name: s.key for s in experiments}
        self.default_waits = default_waits(config, experiments, poll_s=c.DEFAULT_POLL_S)
        load_cluster_arn = load.cluster.cluster_arn
        lock_spec = LockSpec(table_name=lock.table_name, key=lock.key, lease_s=lock.lease_s)

        steps = Steps(self)
        # Built first because every phase routes its errors into it.
        cleanup = CleanupBranch(
            steps=steps,
            gate=gate,
            topic=topic,
            verdict_function=verdict_function,
            check_names=self.check_names,
            unknown_is_failure=config.unknown_is_failure,
            load_cluster_arn=load_cluster_arn,
            experiments=experiments,
            lock=lock_spec,
            dashboard_url_format=run_url_format(gate),
            load_workers=load.workers,
        )
        profile = build_profile_choice(
            steps, cleanup, config, experiments, wait_keys=list(self.default_waits), cluster=target_cluster
        )
        self.profiles = sorted(config.profiles)
        definition = chain(
            build_preflight(
                steps=steps,
                cleanup=cleanup,
                gate=gate,
                waits=self.default_waits,
                evidence_bucket_name=evidence.bucket.bucket_name,
                config_text=config_text,
                target_cluster=target_cluster,
                target_services=target_services,
                lock=lock_spec,
                profile=profile,
                preflight_function=preflight_function,
                network_services=network_services,
            ),
            build_load_start(
                steps=steps,
                cleanup=cleanup,
                cluster_arn=load_cluster_arn,
                task_definition_arn=load.task_definition.task_definition_arn,
                container_name=load.container.container_name,
                subnet_ids=[s.subnet_id for s in load.subnets],
                security_group_id=load.security_group.security_group_id,
                experiments=experiments,
                workers=load.workers,
            ),
            build_faults(steps=steps, cleanup=cleanup, gate=gate, experiments=experiments),
            build_load_end(
                steps=steps,
                cleanup=cleanup,
                cluster_arn=load_cluster_arn,
                duration_s=load.expected_duration_s,
                quiesce_function=quiesce_function,
                quiesce=config.quiesce,
                target_cluster=target_cluster,
                target_services=target_services,
                workers=load.workers,
            ),
            build_assertions(
                steps=steps,
                cleanup=cleanup,
                config=config,
                check_names=self.check_names,
                check_functions=check_functions,
                timeline_function=timeline_function,
                target_cluster=target_cluster,
                experiments=experiments,
                load_duration_s=load.expected_duration_s,
                services=timeline_services,
            ),
            build_verdict(
                steps=steps,
                cleanup=cleanup,
                gate=gate,
                verdict_function=verdict_function,
                check_names=self.check_names,
                unknown_is_failure=config.unknown_is_failure,
                topic=topic,
                lock=lock_spec,
                dashboard_url_format=run_url_format(gate),
            ),
        )

        # Under /aws/vendedlogs/: Step Functions then needs no entry in the account's CloudWatch Logs
        # resource policy, whose 5,120-character limit busy accounts reach.
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"{c.VENDED_LOGS_PREFIX}/states/{Stack.of(self).stack_name}-gate",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
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
        # The lock's states are optimized DynamoDB tasks written as ASL: no generated policy.
        self.state_machine.add_to_role_policy(lock.acquire_statement())
        self._grant(
            evidence=evidence,
            load=load,
            target_cluster=target_cluster,
            target_services=target_services,
            experiments=experiments,
        )
        acknowledge(
            self.state_machine,
            "CloudFormation-Validate::E1029",
            "A gate config too long for States.Base64Decode is copied as plain text into each run's "
            "evidence (state_machine.preflight.config_body); its ${...} are the local runner's "
            "placeholders, data for CloudFormation, not Fn::Sub variables.",
        )

    def _grant(
        self,
        *,
        evidence: EvidenceStore,
        load: LoadGenerator,
        target_cluster: str,
        target_services: Sequence[str],
        experiments: Sequence[ExperimentSpec],
    ) -> None:
        """What the SDK tasks call: the target's services, the load task, the experiments, the config."""
        sm = self.state_machine
        on_load_cluster = policies.on_cluster(load.cluster.cluster_arn)
        load_tasks = policies.ecs_arn(self, "task", f"{load.cluster.cluster_name}/*")
        sm.add_to_role_policy(
            policies.describe_services_statement(self, cluster_name=target_cluster, services=target_services)
        )
        sm.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[load.task_definition.task_definition_arn],
                conditions=on_load_cluster,
            )
        )
        sm.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:TagResource"],
                resources=[load_tasks],
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        sm.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:StopTask", "ecs:DescribeTasks"],
                resources=[load_tasks],
                conditions=on_load_cluster,
            )
        )
        roles = [load.task_definition.task_role, load.task_definition.obtain_execution_role()]
        sm.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[r.role_arn for r in roles],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )
        if experiments:
            sm.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["fis:StartExperiment"], resources=[s.template_arn for s in experiments]
                )
            )
            sm.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["fis:StartExperiment", "fis:TagResource"],
                    resources=[policies.experiments_arn(self)],
                    conditions={"StringEquals": {f"aws:RequestTag/{c.EXPERIMENT_TAG_GATE}": self.gate}},
                )
            )
            sm.add_to_role_policy(
                policies.gate_experiments_statement(
                    self, gate=self.gate, actions=["fis:GetExperiment", "fis:StopExperiment"]
                )
            )
        sm.add_to_role_policy(evidence.put_statement())
