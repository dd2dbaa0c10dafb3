"""The replay Lambda's rebuild tasks: what it is told about them and what its role may do with them.

When a read model's rebuild names an ``ecs_task`` (``checks.replay.read_models[].rebuild.ecs_task``),
replay runs it on ECS: the cluster, subnets and security group go into its environment, and its role gets
``ecs:RunTask`` on those task definitions only (conditioned on their cluster), ``iam:PassRole`` on their
task and execution roles only (to ECS tasks), ``ecs:DescribeTasks`` on the tasks of that cluster,
``ecs:TagResource`` at RunTask and ``ecs:StopTask`` (a rebuild past its timeout) only on tasks carrying the
replay tag it puts on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import policies
from lambdas.common import settings as lambda_settings
from resgate.checks.replay import EcsTaskSpec


def replay_environment(
    *, target_cluster: str, subnets: Sequence[ec2.ISubnet], security_group: ec2.ISecurityGroup
) -> dict[str, str]:
    """Where replay runs its rebuild tasks: ``target_cluster`` (unless a task names its own), in
    ``subnets``, with ``security_group`` (the database clients' group)."""
    return {
        lambda_settings.ENV_REPLAY_CLUSTER: target_cluster,
        lambda_settings.ENV_REPLAY_SUBNETS: ",".join(s.subnet_id for s in subnets),
        lambda_settings.ENV_REPLAY_SECURITY_GROUPS: security_group.security_group_id,
    }


def grant_replay_tasks(
    scope: Construct, role: iam.IRole, tasks: Sequence[EcsTaskSpec], target_cluster: str
) -> None:
    """replay: run the named task definitions on their cluster, pass their roles, watch and stop them."""
    by_cluster: dict[str, list[str]] = {}
    roles: list[str] = []
    for t in tasks:
        by_cluster.setdefault(t.cluster or target_cluster, []).append(_task_definition_arn(scope, t))
        roles += [r for r in (t.task_role_arn, t.execution_role_arn) if r and r not in roles]
    for cluster, definitions in by_cluster.items():
        name = cluster.rsplit("/", 1)[-1]
        arn = cluster if cluster.startswith("arn:") else policies.cluster_arn(scope, cluster)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"], resources=definitions, conditions=policies.on_cluster(arn)
            )
        )
        tasks_arn = policies.ecs_arn(scope, "task", f"{name}/*")
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


def _task_definition_arn(scope: Construct, task: EcsTaskSpec) -> str:
    """The ARN ``ecs:RunTask`` authorises: the given revision, or every revision of a family (RunTask with
    a family runs its latest revision)."""
    td = task.task_definition
    if td.startswith("arn:"):
        return td if ":" in td.rsplit("/", 1)[-1] else f"{td}:*"
    return policies.ecs_arn(scope, "task-definition", td if ":" in td else f"{td}:*")
