"""The load generator on AWS: Locust (``loadgen/``) as a one-off Fargate task in its own ECS cluster.

The image is ``loadgen/Dockerfile`` built as a CDK Docker image asset (``ContainerImage.from_asset``): synth
only stages the build context (``loadgen/``, the leaf package ``resgate/contract/`` and the Dockerfile,
nothing else of the repository) and needs no Docker; ``cdk deploy`` builds and pushes it, so the deploying
machine needs a Docker engine. Where it has none, build and push the image elsewhere and pass
``-c loadgen_image=<uri>``: the task then uses that image (``ContainerImage.from_registry``) and nothing is
built.

The state machine starts the task with ``ecs:runTask`` and sets ``RESGATE_EVIDENCE_S3_URI`` per run, and
the run's profile's users, spawn rate and duration (container environment overrides). With
``load.workers`` (or a profile's), the same task definition runs as one master and N worker tasks
(``RESGATE_LOAD_ROLE``, set per task by the state machine; :mod:`loadgen.distributed`): the security group
admits the Locust port (5557) from the load tasks only, and the task role may also read objects under the
gate's prefix (the master collects its workers' ledger parts there). The rest of the
environment (target, and those three for a reader of the task definition) comes from the gate config's
``load`` section. A
cluster of its own keeps the load task out of reach of the target's FIS experiments. The task may put
objects under the gate's evidence prefix only (the ledger and the load stats), and publish metrics in
the load's namespace only (``cloudwatch:PutMetricData`` conditioned on ``cloudwatch:namespace``): its
error ratio and p95 every 10 s, which the guardrail alarms read (:mod:`loadgen.live_metrics`).
"""

from __future__ import annotations

import math
from pathlib import Path

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.evidence_bucket import EvidenceStore
from infra.nag import acknowledge
from loadgen.upload import parse_s3_locustfile
from resgate.config.schema import GateConfig, Load
from resgate.contract import env as env_names
from resgate.contract.errors import ConfigError

# The build context is the repository root (the Dockerfile copies loadgen/...); stage only what it uses.
DOCKER_CONTEXT_EXCLUDE = (
    "*",
    "!loadgen",
    "!loadgen/**",
    "!resgate",
    "!resgate/__init__.py",
    "!resgate/contract",
    "!resgate/contract/**",
    "**/__pycache__",
)


def locustfile_source(value: str, *, own_image: bool) -> tuple[str | None, tuple[str, str] | None]:
    """Where the Fargate task takes ``load.locustfile`` from: ``(RESGATE_LOCUSTFILE or None, (bucket, key)
    to grant or None)``. The bundled paperbroker locustfile needs nothing; ``s3://bucket/key.py`` is
    downloaded by the task; an absolute path is taken from the user's own image (``-c loadgen_image``).
    Anything else cannot be in the built image: ConfigError naming ``load.locustfile``."""
    if value in (c.DEFAULT_LOCUSTFILE, f"/app/{c.DEFAULT_LOCUSTFILE}"):
        return None, None
    if value.startswith("s3://"):
        return value, parse_s3_locustfile(value, where="load.locustfile")
    if own_image and value.startswith("/"):
        return value, None
    raise ConfigError(
        f"{value!r} is not in the load image on AWS: give s3://bucket/key.py (the task downloads it), or "
        "build your own image from loadgen/Dockerfile with your locustfile in it, pass "
        "-c loadgen_image=<uri> and an absolute path in that image",
        where="load.locustfile",
    )


def max_load_workers(cfg: GateConfig) -> int:
    """The most worker tasks any run of ``cfg`` starts: ``load.workers`` or a profile's, whichever is
    larger (the state machine has a start state per worker and runs those the run's profile asks for)."""
    return max([cfg.load.workers, *(p.load.workers for p in cfg.profiles.values())])


class LoadGenerator(Construct):
    """Cluster, Fargate task definition and security group of the Locust load task.

    Attributes: ``cluster``, ``task_definition``, ``container`` (its ``container_name`` is what container
    overrides name), ``security_group``, ``log_group``, ``subnets`` (where the task runs), ``image_from``
    (``"asset"`` or ``"registry"``), ``expected_duration_s`` (load duration + stop timeout). The task
    role may put objects under ``evidence``'s gate prefix. With ``leader_cluster`` (the target's ECS
    cluster, given when the config has a ``leader_loss``) it may also list and describe that cluster's
    tasks, and that cluster's only (``ecs:cluster``): the leader watch finds the target's replicas at their
    private addresses (:mod:`loadgen.leader_watch`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        root: Path,
        gate: str,
        vpc: ec2.IVpc,
        subnets: list[ec2.ISubnet],
        load: Load,
        target_url: str,
        image_uri: str | None,
        evidence: EvidenceStore,
        workers: int = 0,
        leader_cluster: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.subnets = subnets
        self.workers = workers
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "Tasks",
            vpc=vpc,
            description=f"ResilienceGate {gate}: the Locust load tasks"
            + (" (workers to master on the Locust port)" if workers else " (egress only)"),
            allow_all_outbound=True,
        )
        if workers:  # a worker task reaches its master's Locust port; nothing else comes in
            self.security_group.add_ingress_rule(
                self.security_group, ec2.Port.tcp(c.LOADGEN_MASTER_PORT), "Locust workers to their master"
            )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=RemovalPolicy.DESTROY
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=1024,
            memory_limit_mib=2048,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        if image_uri:
            image = ecs.ContainerImage.from_registry(image_uri)
            self.image_from = "registry"
        else:
            image = ecs.ContainerImage.from_asset(
                str(root),
                file=c.LOADGEN_DOCKERFILE,
                exclude=list(DOCKER_CONTEXT_EXCLUDE),
                ignore_mode=IgnoreMode.DOCKER,
                # The task runs on X86_64 (runtime_platform above): built on an ARM machine without a
                # platform, the image would fail there with "exec format error".
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
            self.image_from = "asset"
        env = {
            env_names.ENV_TARGET_HOST: target_url,
            env_names.ENV_USERS: str(load.users),
            env_names.ENV_SPAWN_RATE: f"{load.spawn_rate:g}",
            env_names.ENV_DURATION_S: f"{load.duration_s:g}",
            env_names.ENV_STOP_TIMEOUT_S: str(c.LOADGEN_STOP_TIMEOUT_S),
            env_names.ENV_LOAD_NODE: c.LOADGEN_NODE,
            # The guardrail alarms' metrics (loadgen/live_metrics.py): publishing is on for this task only.
            env_names.ENV_METRICS_NAMESPACE: c.LOAD_METRICS_NAMESPACE,
            env_names.ENV_METRICS_GATE: gate,
            env_names.ENV_METRICS_PERIOD_S: str(c.LOAD_METRICS_PERIOD_S),
            # the open model (loadgen.pacing): shared by RESGATE_USERS, which a profile overrides per run
            **({env_names.ENV_ARRIVAL_RATE: f"{load.arrival_rate:g}"} if load.arrival_rate else {}),
            **load.env,
        }
        if workers:  # the state machine's overrides name each task's role, a profile the worker count
            env[env_names.ENV_LOAD_WORKERS] = str(load.workers)
            env[env_names.ENV_MASTER_PORT] = str(c.LOADGEN_MASTER_PORT)
        locustfile, s3_object = locustfile_source(load.locustfile, own_image=bool(image_uri))
        if locustfile is not None:
            env[env_names.ENV_LOCUSTFILE] = locustfile
        self.container = self.task_definition.add_container(
            c.LOADGEN_CONTAINER,
            container_name=c.LOADGEN_CONTAINER,
            image=image,
            essential=True,
            environment=env,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="loadgen", log_group=self.log_group),
            # The entrypoint stops Locust on SIGTERM and still uploads the ledger (see loadgen/Dockerfile).
            stop_timeout=Duration.seconds(c.LOADGEN_STOP_TIMEOUT_S + 25),
        )
        self.expected_duration_s = math.ceil(load.duration_s) + c.LOADGEN_STOP_TIMEOUT_S
        self.task_definition.add_to_task_role_policy(evidence.put_statement())
        if workers:
            # The master reads its workers' ledger parts (loadgen.distributed), polling for each until it
            # is uploaded: the gate's prefix only, listed too, so that a part not there yet is a 404 and a
            # 403 is a real denial (S3 answers a missing key 403 without s3:ListBucket: API reference,
            # "GetObject"; the rehearsal saw the master's every early poll denied).
            for statement in evidence.evidence_statements(write=False):
                self.task_definition.add_to_task_role_policy(statement)
        if s3_object is not None:  # the user's locustfile: that one object, read-only
            self.task_definition.add_to_task_role_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[f"arn:{Stack.of(self).partition}:s3:::{s3_object[0]}/{s3_object[1]}"],
                )
            )
        if leader_cluster:  # the leader watch's replicas: the target cluster's tasks, read only
            policies.add_statements(
                self.task_definition.task_role,
                policies.cluster_task_statements(
                    self,
                    cluster_name=leader_cluster,
                    cluster=policies.cluster_arn(self, leader_cluster),
                    task_actions=["ecs:DescribeTasks"],
                ),
            )
        # PutMetricData has no resource-level permission; the namespace condition is its only scope.
        self.task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": c.LOAD_METRICS_NAMESPACE}},
            )
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "The load settings (target URL, users, duration) are not secrets; they are the gate config's.",
        )
