"""IAM statements that several constructs grant themselves, each scoped to one cluster or one gate's tag.

The FIS role, the timeline and cleanup Lambdas and the state machine all act on ECS tasks whose ids are
only known at run time, and on FIS experiments that do not exist before the run: a task statement is
therefore bounded by ``ecs:cluster`` and an experiment statement by the gate's tag on the experiment.
Each shape is written once here; the construct that owns the role calls it with its own resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from infra import constants as c


def ecs_arn(scope: IConstruct, resource: str, name: str) -> str:
    """``arn:…:ecs:<region>:<account>:<resource>/<name>`` in ``scope``'s stack."""
    return Stack.of(scope).format_arn(service="ecs", resource=resource, resource_name=name)


def cluster_arn(scope: IConstruct, cluster_name: str) -> str:
    """The ARN of the ECS cluster ``cluster_name`` in ``scope``'s stack (a cluster given by name)."""
    return ecs_arn(scope, "cluster", cluster_name)


def on_cluster(cluster: str) -> dict[str, dict[str, str]]:
    """The condition ``ecs:cluster`` = ``cluster`` (an ARN)."""
    return {"ArnEquals": {"ecs:cluster": cluster}}


def cluster_task_statements(
    scope: IConstruct, *, cluster_name: str, cluster: str, task_actions: Sequence[str]
) -> list[iam.PolicyStatement]:
    """Two statements: ``task_actions`` on the cluster's tasks, and ``ecs:ListTasks`` (authorised on
    container instances), both conditioned on ``ecs:cluster`` = ``cluster`` (the cluster's ARN)."""
    return [
        iam.PolicyStatement(
            actions=list(task_actions),
            resources=[ecs_arn(scope, "task", f"{cluster_name}/*")],
            conditions=on_cluster(cluster),
        ),
        iam.PolicyStatement(
            actions=["ecs:ListTasks"],
            resources=[ecs_arn(scope, "container-instance", f"{cluster_name}/*")],
            conditions=on_cluster(cluster),
        ),
    ]


def tagged_tasks_statement(
    scope: IConstruct, *, cluster_name: str, cluster: str, tags: Mapping[str, str], actions: Sequence[str]
) -> iam.PolicyStatement:
    """``actions`` on the cluster's tasks that carry every tag of ``tags`` (``aws:ResourceTag/<key>``),
    conditioned on ``ecs:cluster`` = ``cluster`` too: a task of the cluster that is not the gate's target
    (another team's service, the gate's own load) cannot be touched."""
    if not tags:
        raise ValueError("a tag-scoped statement needs at least one tag")
    return iam.PolicyStatement(
        actions=list(actions),
        resources=[ecs_arn(scope, "task", f"{cluster_name}/*")],
        conditions={
            **on_cluster(cluster),
            "StringEquals": {f"aws:ResourceTag/{k}": v for k, v in tags.items()},
        },
    )


def lambda_vpc_statement() -> iam.PolicyStatement:
    """What Lambda needs in a function's own role to attach it to a VPC (the five ENI actions of
    ``AWSLambdaVPCAccessExecutionRole``, without its log permissions on every log group). CDK adds that
    managed policy only to roles it creates; CreateFunction checks these actions. ``Resource: *``:
    DescribeNetworkInterfaces has no resource-level permission, and the ENIs do not exist before Lambda
    creates them."""
    return iam.PolicyStatement(
        actions=[
            "ec2:CreateNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        ],
        resources=["*"],
    )


def describe_services_statement(
    scope: IConstruct, *, cluster_name: str, services: Sequence[str]
) -> iam.PolicyStatement:
    """``ecs:DescribeServices`` on ``services`` of the cluster ``cluster_name`` (conditioned on it)."""
    return iam.PolicyStatement(
        actions=["ecs:DescribeServices"],
        resources=[ecs_arn(scope, "service", f"{cluster_name}/{s}") for s in services],
        conditions=on_cluster(cluster_arn(scope, cluster_name)),
    )


def experiments_arn(scope: IConstruct) -> str:
    """``arn:…:fis:<region>:<account>:experiment/*``: experiment ids are only known at run time."""
    return Stack.of(scope).format_arn(service="fis", resource="experiment", resource_name="*")


def gate_experiments_statement(
    scope: IConstruct, *, gate: str, actions: Sequence[str]
) -> iam.PolicyStatement:
    """``actions`` on FIS experiments tagged with ``gate`` (``aws:ResourceTag/ResGateGate``)."""
    return iam.PolicyStatement(
        actions=list(actions),
        resources=[experiments_arn(scope)],
        conditions={"StringEquals": {f"aws:ResourceTag/{c.EXPERIMENT_TAG_GATE}": gate}},
    )


def add_statements(role: iam.IRole, statements: Sequence[iam.PolicyStatement]) -> None:
    """Add each statement to ``role``'s default policy, in order."""
    for st in statements:
        role.add_to_principal_policy(st)


def ops_items_statement(scope: IConstruct, *, gate: str) -> iam.PolicyStatement:
    """``ssm:CreateOpsItem`` (and ``ssm:AddTagsToResource``, which tagging at creation needs) on OpsItems
    that carry the gate's tag and no other (``aws:RequestTag`` / ``aws:TagKeys``): an OpsItem's id only
    exists once it is created, so its ARN is ``opsitem/*``. The shape of AWS's own managed policy
    ``AIOpsConsoleAdminPolicy`` (statement ``SSMOpsItemAccess``)."""
    return iam.PolicyStatement(
        actions=["ssm:CreateOpsItem", "ssm:AddTagsToResource"],
        resources=[Stack.of(scope).format_arn(service="ssm", resource="opsitem", resource_name="*")],
        conditions={
            "StringEquals": {f"aws:RequestTag/{c.OPS_ITEM_TAG_GATE}": gate},
            "ForAllValues:StringEquals": {"aws:TagKeys": [c.OPS_ITEM_TAG_GATE]},
        },
    )
