"""What the two step Lambdas that read the infrastructure may do: the timeline step (FIS and ECS state →
``faults.jsonl``/``health.jsonl``) and the quiesce step (waits until the target is healthy and drained).

- the timeline: put under the gate's prefix, get the runs' ``load_shape.jsonl`` (and list the prefix, so
  that its absence is a 404), ``fis:GetExperiment`` and ``fis:ListExperimentResolvedTargets``
  (its proof of effect: what each experiment resolved, :mod:`lambdas.timeline.effect`) only on experiments
  tagged with this gate, ``ecs:DescribeServices`` on the target services, ``ecs:ListTasks`` /
  ``ecs:DescribeTasks`` (health, and the stopped tasks a stop-task resolved) conditioned on ``ecs:cluster``
  = the target cluster;
- the quiesce step: the target services' tasks like the timeline (its health probe) and, with MSK IAM,
  ``kafka-cluster:DescribeGroup`` on the quiesce consumer groups (its lag probe).

Their functions are built with the others (:class:`infra.gate_function.GateFunction`); the quiesce step
runs in the VPC with the database clients (:mod:`infra.assertion_functions`).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import policies
from infra.evidence_bucket import EvidenceStore
from resgate.contract.layout import FILES
from resgate.sections.kafka import KafkaSettings, cluster_parts


def grant_steps(
    scope: Construct,
    *,
    timeline: iam.IRole,
    quiesce: iam.IRole,
    gate: str,
    evidence: EvidenceStore,
    target_cluster: str,
    target_services: Sequence[str],
    has_experiments: bool,
    kafka: KafkaSettings,
    quiesce_groups: Sequence[str],
    leader_samples: bool = False,
) -> None:
    """Grant the timeline's role and the quiesce step's role what their steps read (see the module)."""
    grant_timeline(
        scope,
        timeline,
        gate,
        evidence,
        target_cluster,
        target_services,
        has_experiments=has_experiments,
        leader_samples=leader_samples,
    )
    grant_quiesce(scope, quiesce, target_cluster, target_services, kafka, quiesce_groups)


def grant_timeline(
    scope: Construct,
    role: iam.IRole,
    gate: str,
    evidence: EvidenceStore,
    target_cluster: str,
    target_services: Sequence[str],
    *,
    has_experiments: bool,
    leader_samples: bool = False,
) -> None:
    """The timeline step: read the run's experiments and the target services' tasks, put evidence, and
    read the runs' ``load_shape.jsonl`` only (the overload shape's rows: every run looks for it, and finds
    it only with ``overload`` faults by ``factor``). Listing the gate's prefix makes that file's absence a
    404, not a 403: S3 answers a HeadObject of a missing key 403 without ``s3:ListBucket`` (Amazon S3 API
    reference, "HeadObject"), and the default config's every run failed on it."""
    role.add_to_policy(evidence.put_statement())
    for statement in evidence.run_file_read_statements(FILES["load_shape"]):
        role.add_to_policy(statement)
    if leader_samples:  # a leader loss's samples, from the load task that watched it (loadgen.leader_watch)
        for statement in evidence.run_file_read_statements(FILES["leader_samples"]):
            role.add_to_policy(statement)
    grant_target_tasks_read(scope, role, target_cluster, target_services)
    if has_experiments:
        role.add_to_policy(
            policies.gate_experiments_statement(
                scope, gate=gate, actions=["fis:GetExperiment", "fis:ListExperimentResolvedTargets"]
            )
        )


def grant_quiesce(
    scope: Construct,
    role: iam.IRole,
    target_cluster: str,
    target_services: Sequence[str],
    kafka: KafkaSettings,
    groups: Sequence[str],
) -> None:
    """The quiesce step: the target services' tasks (its health probe) and, with MSK IAM, the
    committed offsets of the quiesce consumer groups (its lag probe)."""
    grant_target_tasks_read(scope, role, target_cluster, target_services)
    if kafka.iam and groups and kafka.cluster_arn:
        region, account, name, uuid = cluster_parts(kafka.cluster_arn)
        partition = kafka.cluster_arn.split(":")[1]
        arn = f"arn:{partition}:kafka:{region}:{account}:group/{name}/{uuid}"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kafka-cluster:DescribeGroup"], resources=[f"{arn}/{g}" for g in groups]
            )
        )


def grant_target_tasks_read(
    scope: Construct, role: iam.IRole, target_cluster: str, target_services: Sequence[str]
) -> None:
    """Read the target services and their tasks (the timeline's and the quiesce step's ECS health)."""
    if target_services:
        role.add_to_policy(
            policies.describe_services_statement(scope, cluster_name=target_cluster, services=target_services)
        )
    policies.add_statements(
        role,
        policies.cluster_task_statements(
            scope,
            cluster_name=target_cluster,
            cluster=policies.cluster_arn(scope, target_cluster),
            task_actions=["ecs:DescribeTasks"],
        ),
    )
