"""Cleanup when an execution ends without running its own cleanup branch (aborted, timed out).

A StopExecution or the state machine's timeout ends the execution at once: no Catch runs, so the state
machine's cleanup branch cannot stop the Locust task or the FIS experiments. Step Functions reports every
execution status change to EventBridge (``aws.states``, *Step Functions Execution Status Change*); this
rule sends those of the gate's state machine with status ABORTED, TIMED_OUT or FAILED to the cleanup Lambda
(:mod:`lambdas.cleanup`), which stops the run's load task and experiments, releases the run's lock on its
target and, for ABORTED and TIMED_OUT, writes the run's ERROR verdict and sends the failure notice (and
the OpsItem, when configured). A FAILED execution normally went through the cleanup branch or the verdict
(every stop ignores "already stopped", and the release is conditioned on the holder); one that left no
``verdict.json`` failed where no Catch applies (``States.DataLimitExceeded``, a failing Pass or Choice
state), and gets its ERROR verdict, notice and OpsItem here too, with the execution's error and cause.

The construct gives the cleanup Lambda (built with the other gate Lambdas, :class:`infra.gate_function.
GateFunction`) its job: what it stops and releases in its environment, and the grants to do it:
``ecs:ListTasks`` / ``ecs:DescribeTasks`` / ``ecs:StopTask`` conditioned on the load cluster,
``fis:ListExperiments`` (no resource-level permission) and ``fis:StopExperiment`` only on experiments
tagged with this gate; ``dynamodb:DeleteItem`` on the target's lock item only; get/put under the gate's
prefix (an aborted run's ERROR verdict and report, which lists the run's ``faults.jsonl``);
``sns:Publish`` on the gate's topic (its notice); with ``ops_items``, ``ssm:CreateOpsItem`` on OpsItems
tagged with the gate (:func:`infra.policies.ops_items_statement`).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.evidence_bucket import EvidenceStore
from infra.fault_experiments import ExperimentSpec
from infra.run_lock import RunLock

EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"


class AbortCleanup(Construct):
    """The rule on ``state_machine``'s aborted, timed-out and failed executions, and the cleanup Lambda
    ``function`` it invokes told and allowed to stop the load tasks of ``load_cluster`` and the
    ``experiments``, release ``lock``, write an aborted run's files to ``evidence`` and notify ``topic``
    (and, with ``ops_items``, open an OpsItem).

    Attributes: ``rule`` (the EventBridge rule whose target is ``function``), ``function``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gate: str,
        state_machine: sfn.IStateMachine,
        function: lambda_.Function,
        evidence: EvidenceStore,
        load_cluster: ecs.ICluster,
        experiments: Sequence[ExperimentSpec],
        lock: RunLock,
        topic: sns.ITopic,
        ops_items: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = function
        environment = {
            c.ENV_LOAD_CLUSTER: load_cluster.cluster_name,
            c.ENV_EXPERIMENT_TEMPLATE_IDS: ",".join(s.template.ref for s in experiments),
            c.ENV_GATE_NAME: gate,
            c.ENV_NOTIFY_TOPIC_ARN: topic.topic_arn,
            c.ENV_LOCK_TABLE: lock.table_name,
            c.ENV_LOCK_KEY: lock.key,
        }
        if ops_items:
            environment[c.ENV_OPS_ITEMS] = "true"
        for key, value in environment.items():
            function.add_environment(key, value)
        self._grant(
            function.role, gate, evidence, load_cluster, lock, topic, bool(experiments), ops_items=ops_items
        )
        self.rule = events.Rule(
            self,
            "Rule",
            description=f"ResilienceGate {gate}: stop load and faults of an aborted or timed-out run",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[EXECUTION_STATUS_CHANGE],
                detail={
                    "stateMachineArn": [state_machine.state_machine_arn],
                    "status": list(c.CLEANUP_ON_STATUSES),
                },
            ),
        )
        # An aborted run's load and faults should stop now; an hour-old event is no longer worth acting on.
        self.rule.add_target(
            targets.LambdaFunction(function, retry_attempts=2, max_event_age=Duration.hours(1))
        )

    def _grant(
        self,
        role: iam.IRole | None,
        gate: str,
        evidence: EvidenceStore,
        load_cluster: ecs.ICluster,
        lock: RunLock,
        topic: sns.ITopic,
        has_experiments: bool,
        *,
        ops_items: bool,
    ) -> None:
        """Find and stop the load cluster's tasks and the gate's experiments, release the lock, write an
        aborted run's files, notify (and open an OpsItem)."""
        assert role is not None  # infra.gate_function.GateFunction gives every function its role
        policies.add_statements(
            role,
            policies.cluster_task_statements(
                self,
                cluster_name=load_cluster.cluster_name,
                cluster=load_cluster.cluster_arn,
                task_actions=["ecs:DescribeTasks", "ecs:StopTask"],
            ),
        )
        if has_experiments:
            # ListExperiments has no resource-level permission; it only lists (filtered by template id).
            role.add_to_policy(iam.PolicyStatement(actions=["fis:ListExperiments"], resources=["*"]))
            role.add_to_policy(
                policies.gate_experiments_statement(self, gate=gate, actions=["fis:StopExperiment"])
            )
        role.add_to_policy(lock.release_statement())
        policies.add_statements(role, evidence.evidence_statements(write=True))
        topic.grant_publish(role)
        if ops_items:
            role.add_to_policy(policies.ops_items_statement(self, gate=gate))
