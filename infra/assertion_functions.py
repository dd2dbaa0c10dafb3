"""The gate's Lambdas as one construct: the six assertion Lambdas (slo, recovery, retryable, integrity,
replay, verdict), the timeline and quiesce steps, and the cleanup Lambda that :class:`infra.abort_cleanup.
AbortCleanup` gives its job (what it stops, and the grants to stop it).

Each function is a :class:`infra.gate_function.GateFunction` (own role, log group and Powertools settings);
this construct tells each one what its job needs and grants its role that, on the resources it is given
(assets: :mod:`infra.lambda_bundling`):

- the checks and the verdict: get/put under ``evidence/gate=<name>/`` only, ``ListBucket`` only for that
  prefix; slo: ``cloudwatch:GetMetricStatistics`` (its ALB source);
- streaming (only when the config enables it), in the VPC in a security group of its own (to MSK, never
  the database): the Kafka bootstrap in its environment, no database secret; with MSK IAM auth,
  ``kafka-cluster:Connect`` and ``DescribeTopic``/``ReadData`` on its trades topic only;
- the database clients (integrity, replay and the quiesce step), in the VPC with their own security group:
  ``secretsmanager:GetSecretValue`` on the one database secret, and the ENI actions Lambda needs to attach
  them to the VPC (CDK adds ``AWSLambdaVPCAccessExecutionRole`` only to roles it creates itself); with MSK
  IAM auth, ``kafka-cluster:Connect`` on the one cluster and ``DescribeTopic``/``ReadData`` on the topics
  the checks read (their consumers join no group, so no group permission);
- replay, when a rebuild names an ``ecs_task``: its rebuild tasks (:mod:`infra.replay_rebuilds`);
- the timeline and the quiesce step: the target's experiments and tasks (:mod:`infra.gate_steps`);
- with ``ops_items``, the verdict: ``ssm:CreateOpsItem`` on OpsItems tagged with the gate
  (:func:`infra.policies.ops_items_statement`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.evidence_bucket import EvidenceStore
from infra.fault_experiments import ExperimentSpec
from infra.gate_function import SIZING, GateFunction
from infra.gate_steps import grant_steps
from infra.replay_rebuilds import grant_replay_tasks, replay_environment
from lambdas.common import settings as lambda_settings
from resgate.checks.replay import EcsTaskSpec
from resgate.sections.kafka import KafkaSettings, cluster_parts

__all__ = ["SIZING", "AssertionFunctions"]

_FULL_SECRET_ARN = re.compile(r"-[A-Za-z0-9]{6}$")


class AssertionFunctions(Construct):
    """One Lambda per check plus the verdict, the timeline and quiesce steps and the abort cleanup (see the
    module): ``evidence`` is the store the functions read and write, ``db_secret_arn`` the database secret,
    ``target_cluster``/``target_services`` what the timeline and the quiesce step read, ``experiments`` the
    ones the timeline reads; ``ops_items`` turns on the verdict's OpsItems; ``leader_samples`` (the config
    has a ``leader_loss``) lets the timeline read the load task's ``leader_samples.jsonl``.

    Attributes: ``functions`` ({name: Function}, in :data:`infra.constants.FUNCTION_NAMES` order),
    ``check_functions`` (the five checks and the optional ones: streaming when ``streaming_topic`` is given,
    the trades topic it reads), ``verdict_function``, ``timeline_function``,
    ``quiesce_function``, ``cleanup_function``, ``roles`` ({name: Role}), ``log_groups`` ({name: LogGroup}),
    ``database_security_group`` (the integrity/replay functions' security group, and replay's rebuild
    tasks': allow it into the database and into MSK on ``kafka_port``, 9092/9094/9098 as ``kafka`` says),
    ``stream_security_group`` (the streaming function's, or None: allow it into MSK only).

    ``kafka`` is how the functions reach the brokers (its settings go into their environment),
    ``kafka_topics`` the topics they read; ``replay_tasks`` the ECS tasks replay runs its rebuilds in (in
    ``subnets`` and the database security group, on ``target_cluster`` unless a task names its cluster);
    ``quiesce_groups`` the consumer groups the quiesce step reads the lag of;
    ``optional_checks`` the checks of :data:`infra.constants.OPTIONAL_CHECK_FUNCTIONS` the config enables
    (each gets its Lambda, granted like the other checks).
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
        experiments: Sequence[ExperimentSpec],
        ops_items: bool = False,
        kafka: KafkaSettings | None = None,
        kafka_topics: Sequence[str] = (),
        replay_tasks: Sequence[EcsTaskSpec] = (),
        quiesce_groups: Sequence[str] = (),
        optional_checks: Sequence[str] = (),
        streaming_topic: str | None = None,
        leader_samples: bool = False,
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
        self.stream_security_group: ec2.SecurityGroup | None = None
        # What each function's job adds to its environment (GateFunction adds the evidence and Powertools').
        self.optional_checks = tuple(
            n
            for n in c.OPTIONAL_CHECK_FUNCTIONS
            if (bool(streaming_topic) if n == c.STREAMING_FUNCTION else n in optional_checks)
        )
        environments: dict[str, dict[str, str]] = {
            name: {} for name in (*c.FUNCTION_NAMES, *self.optional_checks)
        }
        environments[c.VERDICT_FUNCTION][c.ENV_UNKNOWN_IS_FAILURE] = "true" if unknown_is_failure else "false"
        for name in c.IN_VPC:
            environments[name].update(
                {
                    c.ENV_DB_SECRET_ARN: db_secret_arn,
                    c.ENV_KAFKA_BOOTSTRAP: kafka_bootstrap,
                    **kafka.to_env(lambda_settings.KAFKA_ENV),
                }
            )
        if streaming_topic:
            self.stream_security_group = ec2.SecurityGroup(
                self,
                "StreamClients",
                vpc=vpc,
                description=f"ResilienceGate {gate}: the streaming Lambda (to MSK only)",
                allow_all_outbound=True,
            )
            environments[c.STREAMING_FUNCTION].update(
                {c.ENV_KAFKA_BOOTSTRAP: kafka_bootstrap, **kafka.to_env(lambda_settings.KAFKA_ENV)}
            )
        if replay_tasks:
            environments["replay"].update(
                replay_environment(
                    target_cluster=target_cluster,
                    subnets=subnets,
                    security_group=self.database_security_group,
                )
            )
        if ops_items:
            environments[c.VERDICT_FUNCTION][c.ENV_OPS_ITEMS] = "true"
        self.built = {
            name: GateFunction(
                self,
                name=name,
                gate=gate,
                root=root,
                skip_bundling=skip_bundling,
                evidence=evidence,
                environment=env,
                vpc=vpc if name in (*c.IN_VPC, *c.TOPIC_CLIENTS) else None,
                subnets=subnets,
                security_groups=[self._security_group_of(name)],
            )
            for name, env in environments.items()
        }
        self.functions: dict[str, lambda_.Function] = {n: b.function for n, b in self.built.items()}
        self.roles: dict[str, iam.Role] = {n: b.role for n, b in self.built.items()}
        self.log_groups: dict[str, logs.LogGroup] = {n: b.log_group for n, b in self.built.items()}
        self._grant_checks(evidence, db_secret_arn)
        if kafka.iam:
            self._grant_msk_iam(kafka, kafka_topics, streaming_topic)
        if replay_tasks:
            grant_replay_tasks(self, self.roles["replay"], replay_tasks, target_cluster)
        grant_steps(
            self,
            timeline=self.roles[c.TIMELINE_FUNCTION],
            quiesce=self.roles[c.QUIESCE_FUNCTION],
            gate=gate,
            evidence=evidence,
            target_cluster=target_cluster,
            target_services=target_services,
            has_experiments=bool(experiments),
            kafka=kafka,
            quiesce_groups=quiesce_groups,
            leader_samples=leader_samples,
        )
        if ops_items:
            self.roles[c.VERDICT_FUNCTION].add_to_policy(policies.ops_items_statement(self, gate=gate))

    def _grant_checks(self, evidence: EvidenceStore, db_secret_arn: str) -> None:
        """The checks and the verdict: read and write the gate's evidence; slo and the database clients:
        more."""
        for name, role in self.roles.items():
            if name in c.INFRA_FUNCTIONS:
                continue  # granted by their own job: infra.gate_steps, infra.abort_cleanup
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

    def _security_group_of(self, name: str) -> ec2.SecurityGroup:
        if name in c.TOPIC_CLIENTS and self.stream_security_group is not None:
            return self.stream_security_group
        return self.database_security_group

    def _grant_msk_iam(
        self, kafka: KafkaSettings, topics: Sequence[str], streaming_topic: str | None
    ) -> None:
        """The database clients: connect to the one MSK cluster, describe and read the topics they read;
        streaming: the same on its trades topic only."""
        assert kafka.cluster_arn is not None  # infra.settings.check_kafka_on_aws
        region, account, name, uuid = cluster_parts(kafka.cluster_arn)
        partition = kafka.cluster_arn.split(":")[1]

        def arns(names: Sequence[str]) -> list[str]:
            return [f"arn:{partition}:kafka:{region}:{account}:topic/{name}/{uuid}/{t}" for t in names]

        readers = {fn: arns(topics) for fn in c.IN_VPC}
        if streaming_topic:
            readers[c.STREAMING_FUNCTION] = arns([streaming_topic])
        for fn, topic_arns in readers.items():
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

    @property
    def check_functions(self) -> Mapping[str, lambda_.Function]:
        return {n: self.functions[n] for n in (*c.CHECK_FUNCTIONS, *self.optional_checks)}

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
