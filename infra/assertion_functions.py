"""The gate's Lambdas as one construct: the six assertion Lambdas (slo, recovery, retryable, integrity,
replay, verdict), the timeline step (FIS and ECS state → ``faults.jsonl``/``health.jsonl``) and the cleanup
after an aborted or timed-out execution (stops the run's load task and experiments).

Each function has its own role, log group and Powertools settings, and the construct grants each role
what its function reads and writes, on the resources it is given (assets: :mod:`infra.lambda_bundling`):

- the checks and the verdict: get/put under ``evidence/gate=<name>/`` only, ``ListBucket`` only for that
  prefix; slo: ``cloudwatch:GetMetricStatistics`` (its ALB source); integrity/replay:
  ``secretsmanager:GetSecretValue`` on the one database secret, and the ENI actions Lambda needs to attach
  them to the VPC (CDK adds ``AWSLambdaVPCAccessExecutionRole`` only to roles it creates itself); with MSK
  IAM auth, ``kafka-cluster:Connect`` on the one cluster and ``DescribeTopic``/``ReadData`` on the topics
  the checks read (their consumers join no group, so no group permission);
- replay, when a rebuild names an ``ecs_task``: ``ecs:RunTask`` on those task definitions only
  (conditioned on their cluster), ``iam:PassRole`` on their task and execution roles only (to ECS tasks),
  ``ecs:DescribeTasks`` on the tasks of that cluster, ``ecs:TagResource`` at RunTask and ``ecs:StopTask``
  (a rebuild past its timeout) only on tasks carrying the replay tag it puts on them;
- the timeline: put under the gate's prefix, ``fis:GetExperiment`` only on experiments tagged with this
  gate, ``ecs:DescribeServices`` on the target services, ``ecs:ListTasks`` / ``ecs:DescribeTasks``
  conditioned on ``ecs:cluster`` = the target cluster;
- the cleanup: ``ecs:ListTasks`` / ``ecs:DescribeTasks`` / ``ecs:StopTask`` conditioned on the load
  cluster, ``fis:ListExperiments`` (no resource-level permission) and ``fis:StopExperiment`` only on
  experiments tagged with this gate; ``dynamodb:DeleteItem`` on the target's lock item only (it releases
  the lock of an aborted run); get/put under the gate's prefix (an aborted run's ERROR verdict and report,
  which lists the run's ``faults.jsonl``) and ``sns:Publish`` on the gate's topic (its notice);
- with ``ops_items``, the verdict and the cleanup only: ``ssm:CreateOpsItem`` on OpsItems tagged with the
  gate (:func:`infra.policies.ops_items_statement`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.evidence_bucket import EvidenceStore
from infra.fault_experiments import ExperimentSpec
from infra.lambda_bundling import lambda_code
from infra.nag import acknowledge
from infra.run_lock import RunLock
from lambdas.common import settings as lambda_settings
from resgate.checks.replay import EcsTaskSpec
from resgate.sections.kafka import KafkaSettings, cluster_parts

# Per function: (memory MB, timeout s, ephemeral storage MB). integrity/replay COPY the ledger into
# Postgres and rebuild read models from the topics; the others read small files.
SIZING: dict[str, tuple[int, int, int]] = {
    "slo": (1024, 300, 512),
    "recovery": (512, 300, 512),
    "retryable": (1024, 300, 512),
    "integrity": (2048, 900, 2048),
    "replay": (2048, 900, 2048),
    "verdict": (512, 120, 512),
    "timeline": (512, 120, 512),
    "cleanup": (256, 120, 512),
    "quiesce": (512, 900, 512),  # waits up to lambdas.quiesce.settle.MAX_WAIT_S
}
_FULL_SECRET_ARN = re.compile(r"-[A-Za-z0-9]{6}$")


class AssertionFunctions(Construct):
    """One Lambda per check plus the verdict, the timeline step and the abort cleanup, each with its own
    role, log group and Powertools settings, and each role granted what its function needs (see the module):
    ``evidence`` is the store the functions read and write, ``db_secret_arn`` the database secret,
    ``target_cluster``/``target_services`` what the timeline reads, ``load_cluster`` and ``experiments``
    what the cleanup stops (their ids go into its environment), ``lock`` and ``topic`` the lock it
    releases and the topic it notifies after an aborted run; ``ops_items`` turns on the OpsItems of the
    verdict and the cleanup.

    Attributes: ``functions`` ({name: Function}, in :data:`infra.constants.FUNCTION_NAMES` order),
    ``check_functions`` (the five checks), ``verdict_function``, ``timeline_function``, ``cleanup_function``,
    ``roles`` ({name: Role}), ``log_groups`` ({name: LogGroup}), ``database_security_group`` (the
    integrity/replay functions' security group, and replay's rebuild tasks': allow it into the database
    and into MSK on ``kafka_port``, 9092/9094/9098 as ``kafka`` says).

    ``kafka`` is how the functions reach the brokers (its settings go into their environment),
    ``kafka_topics`` the topics they read; ``replay_tasks`` the ECS tasks replay runs its rebuilds in (in
    ``subnets`` and the database security group, on ``target_cluster`` unless a task names its cluster).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        root: Path,
        gate: str,
        evidence: EvidenceStore,
        vpc: ec2.IVpc,
        subnets: Sequence[ec2.ISubnet],
        db_secret_arn: str,
        kafka_bootstrap: str,
        unknown_is_failure: bool,
        skip_bundling: bool,
        target_cluster: str,
        target_services: Sequence[str],
        load_cluster: ecs.ICluster,
        experiments: Sequence[ExperimentSpec],
        lock: RunLock,
        topic: sns.ITopic,
        ops_items: bool = False,
        kafka: KafkaSettings | None = None,
        kafka_topics: Sequence[str] = (),
        replay_tasks: Sequence[EcsTaskSpec] = (),
        quiesce_groups: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.gate = gate
        kafka = kafka or KafkaSettings()
        self.kafka_port = kafka.broker_port
        self.database_security_group = ec2.SecurityGroup(
            self,
            "DatabaseClients",
            vpc=vpc,
            description=f"ResilienceGate {gate}: integrity/replay Lambdas (to Postgres and MSK)",
            allow_all_outbound=True,
        )
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name in c.FUNCTION_NAMES:
            memory, timeout, storage = SIZING[name]
            env: dict[str, str] = {
                c.ENV_EVIDENCE_BUCKET: evidence.bucket.bucket_name,
                c.ENV_EVIDENCE_PREFIX: c.EVIDENCE_PREFIX,
                c.ENV_POWERTOOLS_SERVICE_NAME: f"resgate-{name}",
                c.ENV_POWERTOOLS_METRICS_NAMESPACE: c.METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            }
            if name == c.VERDICT_FUNCTION:
                env[c.ENV_UNKNOWN_IS_FAILURE] = "true" if unknown_is_failure else "false"
            in_vpc = name in c.IN_VPC
            if in_vpc:
                env[c.ENV_DB_SECRET_ARN] = db_secret_arn
                env[c.ENV_KAFKA_BOOTSTRAP] = kafka_bootstrap
                env.update(kafka.to_env(lambda_settings.KAFKA_ENV))
            if name == "replay" and replay_tasks:
                env[lambda_settings.ENV_REPLAY_CLUSTER] = target_cluster
                env[lambda_settings.ENV_REPLAY_SUBNETS] = ",".join(s.subnet_id for s in subnets)
                env[lambda_settings.ENV_REPLAY_SECURITY_GROUPS] = (
                    self.database_security_group.security_group_id
                )
            if name == c.CLEANUP_FUNCTION:
                env[c.ENV_LOAD_CLUSTER] = load_cluster.cluster_name
                env[c.ENV_EXPERIMENT_TEMPLATE_IDS] = ",".join(s.template.ref for s in experiments)
                env[c.ENV_GATE_NAME] = gate
                env[c.ENV_NOTIFY_TOPIC_ARN] = topic.topic_arn
                env[c.ENV_LOCK_TABLE] = lock.table_name
                env[c.ENV_LOCK_KEY] = lock.key
            if ops_items and name in c.OPS_ITEM_FUNCTIONS:
                env[c.ENV_OPS_ITEMS] = "true"
            log_group = logs.LogGroup(
                self,
                f"{name.title()}Logs",
                retention=logs.RetentionDays.THREE_MONTHS,
                removal_policy=RemovalPolicy.DESTROY,
            )
            what = "step" if name in c.INFRA_FUNCTIONS else "assertion"
            role = iam.Role(
                self,
                f"{name.title()}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"ResilienceGate {gate}: the {name} {what} Lambda",
            )
            # Instead of AWSLambdaBasicExecutionRole (any log group): only this function's own group.
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
                )
            )
            if in_vpc:
                # Before the function: CDK makes it depend on the role's policy, which CreateFunction checks.
                role.add_to_policy(policies.lambda_vpc_statement())
            fn = lambda_.Function(
                self,
                f"{name.title()}Function",
                description=f"ResilienceGate {gate}: {name} {what}",
                runtime=lambda_.Runtime.PYTHON_3_12,
                architecture=lambda_.Architecture.X86_64,
                handler=f"lambdas.{name}.handler.handler",
                code=lambda_code(root=root, name=name, skip_bundling=skip_bundling),
                memory_size=memory,
                timeout=Duration.seconds(timeout),
                ephemeral_storage_size=Size.mebibytes(storage),
                tracing=lambda_.Tracing.ACTIVE,
                role=role,
                log_group=log_group,
                environment=env,
                vpc=vpc if in_vpc else None,
                vpc_subnets=ec2.SubnetSelection(subnets=list(subnets)) if in_vpc else None,
                security_groups=[self.database_security_group] if in_vpc else None,
            )
            self.functions[name] = fn
            self.roles[name] = role
            self.log_groups[name] = log_group
            acknowledge(
                fn,
                "AwsSolutions-L1",
                "The checkers and their wheels (manylinux2014, cp312) are built and tested for Python 3.12.",
            )
        self._grant_checks(evidence, db_secret_arn)
        if kafka.iam:
            self._grant_msk_iam(kafka, kafka_topics)
        if replay_tasks:
            self._grant_replay_tasks(replay_tasks, target_cluster)
        self._grant_timeline(evidence, target_cluster, target_services, has_experiments=bool(experiments))
        self._grant_quiesce(target_cluster, target_services, kafka, groups=quiesce_groups)
        self._grant_cleanup(load_cluster, has_experiments=bool(experiments))
        self._grant_trace(evidence, lock, topic, ops_items=ops_items)

    def _grant_checks(self, evidence: EvidenceStore, db_secret_arn: str) -> None:
        """The checks and the verdict: read and write the gate's evidence; slo, integrity, replay: more."""
        for name, role in self.roles.items():
            if name in c.INFRA_FUNCTIONS:
                continue  # put-only, granted with the rest of what they need
            policies.add_statements(role, evidence.evidence_statements(write=True))
        # The slo check can read the ALB's figures instead of Locust's (event "source": "cloudwatch").
        self.roles["slo"].add_to_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricStatistics"], resources=["*"])
        )
        secret = db_secret_arn if _FULL_SECRET_ARN.search(db_secret_arn) else f"{db_secret_arn}-??????"
        for name in c.IN_VPC:
            self.roles[name].add_to_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret])
            )

    def _grant_msk_iam(self, kafka: KafkaSettings, topics: Sequence[str]) -> None:
        """integrity and replay: connect to the one MSK cluster, describe and read the topics they read."""
        assert kafka.cluster_arn is not None  # infra.settings.check_kafka_on_aws
        region, account, name, uuid = cluster_parts(kafka.cluster_arn)
        partition = kafka.cluster_arn.split(":")[1]
        topic_arns = [f"arn:{partition}:kafka:{region}:{account}:topic/{name}/{uuid}/{t}" for t in topics]
        for fn in c.IN_VPC:
            role = self.roles[fn]
            role.add_to_policy(
                iam.PolicyStatement(actions=["kafka-cluster:Connect"], resources=[kafka.cluster_arn])
            )
            if topic_arns:
                role.add_to_policy(
                    iam.PolicyStatement(
                        actions=["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                        resources=topic_arns,
                    )
                )

    def _grant_replay_tasks(self, tasks: Sequence[EcsTaskSpec], target_cluster: str) -> None:
        """replay: run the named task definitions on their cluster, pass their roles, watch and stop them."""
        role = self.roles["replay"]
        by_cluster: dict[str, list[str]] = {}
        roles: list[str] = []
        for t in tasks:
            by_cluster.setdefault(t.cluster or target_cluster, []).append(_task_definition_arn(self, t))
            roles += [r for r in (t.task_role_arn, t.execution_role_arn) if r and r not in roles]
        for cluster, definitions in by_cluster.items():
            name = cluster.rsplit("/", 1)[-1]
            arn = cluster if cluster.startswith("arn:") else policies.cluster_arn(self, cluster)
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["ecs:RunTask"], resources=definitions, conditions=policies.on_cluster(arn)
                )
            )
            tasks_arn = policies.ecs_arn(self, "task", f"{name}/*")
            key, value = lambda_settings.REPLAY_TASK_TAG
            for actions, extra in (
                (["ecs:DescribeTasks"], {}),
                # tagged at RunTask, and only tasks so tagged may be stopped (never the target's own)
                (["ecs:TagResource"], {"StringEquals": {"ecs:CreateAction": "RunTask"}}),
                (["ecs:StopTask"], {"StringEquals": {f"aws:ResourceTag/{key}": value}}),
            ):
                role.add_to_policy(
                    iam.PolicyStatement(
                        actions=actions,
                        resources=[tasks_arn],
                        conditions={**policies.on_cluster(arn), **extra},
                    )
                )
        if roles:
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=roles,
                    conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                )
            )

    def _grant_timeline(
        self,
        evidence: EvidenceStore,
        target_cluster: str,
        target_services: Sequence[str],
        *,
        has_experiments: bool,
    ) -> None:
        """The timeline step: read the run's experiments and the target services' tasks, put evidence."""
        role = self.roles[c.TIMELINE_FUNCTION]
        role.add_to_policy(evidence.put_statement())
        self._grant_target_tasks_read(role, target_cluster, target_services)
        if has_experiments:
            role.add_to_policy(
                policies.gate_experiments_statement(self, gate=self.gate, actions=["fis:GetExperiment"])
            )

    def _grant_target_tasks_read(
        self, role: iam.IRole, target_cluster: str, target_services: Sequence[str]
    ) -> None:
        """Read the target services and their tasks (the timeline's and the quiesce step's ECS health)."""
        if target_services:
            role.add_to_policy(
                policies.describe_services_statement(
                    self, cluster_name=target_cluster, services=target_services
                )
            )
        policies.add_statements(
            role,
            policies.cluster_task_statements(
                self,
                cluster_name=target_cluster,
                cluster=policies.cluster_arn(self, target_cluster),
                task_actions=["ecs:DescribeTasks"],
            ),
        )

    def _grant_quiesce(
        self,
        target_cluster: str,
        target_services: Sequence[str],
        kafka: KafkaSettings,
        *,
        groups: Sequence[str],
    ) -> None:
        """The quiesce step: the target services' tasks (its health probe) and, with MSK IAM, the
        committed offsets of the quiesce consumer groups (its lag probe)."""
        role = self.roles[c.QUIESCE_FUNCTION]
        self._grant_target_tasks_read(role, target_cluster, target_services)
        if kafka.iam and groups and kafka.cluster_arn:
            region, account, name, uuid = cluster_parts(kafka.cluster_arn)
            partition = kafka.cluster_arn.split(":")[1]
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["kafka-cluster:DescribeGroup"],
                    resources=[
                        f"arn:{partition}:kafka:{region}:{account}:group/{name}/{uuid}/{g}" for g in groups
                    ],
                )
            )

    def _grant_cleanup(self, load_cluster: ecs.ICluster, *, has_experiments: bool) -> None:
        """The abort cleanup: find and stop the load cluster's tasks, stop the gate's experiments."""
        role = self.roles[c.CLEANUP_FUNCTION]
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
                policies.gate_experiments_statement(self, gate=self.gate, actions=["fis:StopExperiment"])
            )

    def _grant_trace(
        self, evidence: EvidenceStore, lock: RunLock, topic: sns.ITopic, *, ops_items: bool
    ) -> None:
        """The cleanup releases an aborted run's lock, writes its ERROR verdict and notifies; with
        ``ops_items``, the verdict and the cleanup open OpsItems tagged with the gate."""
        role = self.roles[c.CLEANUP_FUNCTION]
        role.add_to_policy(lock.release_statement())
        policies.add_statements(role, evidence.evidence_statements(write=True))
        topic.grant_publish(role)
        if ops_items:
            for name in c.OPS_ITEM_FUNCTIONS:
                self.roles[name].add_to_policy(policies.ops_items_statement(self, gate=self.gate))

    @property
    def check_functions(self) -> Mapping[str, lambda_.Function]:
        return {n: self.functions[n] for n in c.CHECK_FUNCTIONS}

    @property
    def verdict_function(self) -> lambda_.Function:
        return self.functions[c.VERDICT_FUNCTION]

    @property
    def timeline_function(self) -> lambda_.Function:
        return self.functions[c.TIMELINE_FUNCTION]

    @property
    def quiesce_function(self) -> lambda_.Function:
        return self.functions[c.QUIESCE_FUNCTION]

    @property
    def cleanup_function(self) -> lambda_.Function:
        return self.functions[c.CLEANUP_FUNCTION]


def _task_definition_arn(scope: Construct, task: EcsTaskSpec) -> str:
    """The ARN ``ecs:RunTask`` authorises: the given revision, or every revision of a family (RunTask with
    a family runs its latest revision)."""
    td = task.task_definition
    if td.startswith("arn:"):
        return td if ":" in td.rsplit("/", 1)[-1] else f"{td}:*"
    return policies.ecs_arn(scope, "task-definition", td if ":" in td else f"{td}:*")
