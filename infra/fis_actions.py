"""The IAM permissions each FIS action the gate uses needs on its experiment role: one table, used both to
build the FIS role (:class:`infra.fault_experiments.FaultExperiments`) and by the static rule that checks
every synthesized template's role (``tests/infra/support/aws_rules.py``).

The permissions are those the *AWS FIS Actions reference*
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html) lists under each action's
"Permissions", row for row: ``aws:ecs:task-network-latency`` and ``aws:ecs:task-network-packet-loss`` also
resolve their targets to the SSM managed instances the task's SSM agent sidecar registered and describe the
tasks' container instances, instances and subnets (``ecs:DescribeContainerInstances``,
``ec2:DescribeInstances``, ``ec2:DescribeSubnets``); ``aws:ecs:task-network-blackhole-port`` lists only
``ecs:DescribeTasks`` and the three SSM command permissions (as ``aws:ecs:task-kill-process`` and the stress
actions do). ``aws:fis:wait`` needs none. :data:`TARGET_RESOLUTION` is what FIS needs to resolve an
``aws:ecs:task`` target given by ``resourceTags`` (list and describe the cluster's tasks, look tags up),
whatever the action.

Each permission is granted by one statement shape (:func:`statements_for`), scoped as far as the action
allows: task and container-instance actions to the target cluster (``ecs:cluster``), ``ecs:StopTask`` to the
tasks that carry the gate's target tags too, ``ssm:SendCommand`` to FIS's own documents and the target
cluster's managed instances; the rest have no resource-level permission (``Resource: *``). ``ecs:ListTasks``
is one of those: FIS lists a Fargate cluster's tasks with no container instance to scope the request to, and
AWS's own ``AWSFaultInjectionSimulatorECSAccess`` managed policy and aws-samples/fis-template-library's ECS
AZ-impairment role both grant it on ``*`` (a container-instance ARN would deny FIS's listing); here on ``*``
with the ``ecs:cluster`` condition, so only the target cluster's tasks are listed.

The data-store and automation actions (issue 21): ``aws:rds:reboot-db-instances`` (target key
``DBInstances``, resource type ``aws:rds:db``) and ``aws:rds:failover-db-cluster`` (``Clusters``,
``aws:rds:cluster``) reboot or fail over only the database ``target.aws.database`` names, and only while it
carries the gate's target tags (``aws:ResourceTag/<key>``: the IAM Service Authorization Reference for
Amazon RDS lists ``rds:RebootDBInstance`` on the required resource type ``db*`` and ``rds:FailoverDBCluster``
on ``cluster*``, and both resource types take ``aws:ResourceTag/${TagKey}``:
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonrds.html);
``aws:ssm:start-automation-execution`` starts only the gate's own automation documents
(:mod:`infra.fault_automation`) and passes only their automation role, to SSM only (the reference lists
``iam:PassRole`` as needed when the document assumes a role, which the gate's documents do). The rows are the
reference's for each action (the AWS managed policies ``AWSFaultInjectionSimulatorRDSAccess`` and
``AWSFaultInjectionSimulatorSSMAccess`` grant the same, on ``*``), scoped to the gate's resources here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from infra import policies

FIS_ACTIONS_REFERENCE = "https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html"

# aws:ecs:task-network-blackhole-port (and the other in-task actions) per the reference: the task, then FIS's
# SSM documents sent to it; latency and packet loss also describe where the task runs.
_IN_TASK = ("ecs:DescribeTasks", "ssm:SendCommand", "ssm:ListCommands", "ssm:CancelCommand")
_NETWORK = (
    "ecs:DescribeTasks",
    "ecs:DescribeContainerInstances",
    "ec2:DescribeInstances",
    "ec2:DescribeSubnets",
    "ssm:SendCommand",
    "ssm:ListCommands",
    "ssm:CancelCommand",
)
# FIS action id -> the permissions the FIS actions reference lists for it.
ACTION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "aws:ecs:stop-task": ("ecs:DescribeTasks", "ecs:ListTasks", "ecs:StopTask", "tag:GetResources"),
    "aws:ecs:task-network-blackhole-port": _IN_TASK,
    "aws:ecs:task-network-latency": _NETWORK,
    "aws:ecs:task-network-packet-loss": _NETWORK,
    "aws:fis:wait": (),
    "aws:rds:reboot-db-instances": ("rds:RebootDBInstance", "rds:DescribeDBInstances", "tag:GetResources"),
    "aws:rds:failover-db-cluster": ("rds:FailoverDBCluster", "rds:DescribeDBClusters", "tag:GetResources"),
    "aws:ssm:start-automation-execution": (
        "ssm:GetAutomationExecution",
        "ssm:StartAutomationExecution",
        "ssm:StopAutomationExecution",
        "iam:PassRole",
    ),
}
# Resolving an aws:ecs:task target by resourceTags, for the ECS actions.
TARGET_RESOLUTION: tuple[str, ...] = ("ecs:DescribeTasks", "ecs:ListTasks", "tag:GetResources")
# FIS's registration script tags each task's managed instance with its task ARN; the network actions send
# FIS's own, AWS-owned SSM documents, named with this prefix.
SSM_TAG_ECS_TASK_ARN = "ECS_TASK_ARN"
FIS_SSM_DOCUMENT_PREFIX = "AWSFIS-"


def permissions_for(action_ids: Iterable[str]) -> list[str]:
    """The permissions the actions need plus, with an ECS action, :data:`TARGET_RESOLUTION`, each once, in
    table order. Raises KeyError naming an action the table does not list (a new action needs its row
    first)."""
    out: list[str] = []
    actions = sorted(set(action_ids))
    for action in actions:
        if action not in ACTION_PERMISSIONS:
            raise KeyError(f"FIS action {action} is not in infra.fis_actions.ACTION_PERMISSIONS")
        out += [p for p in ACTION_PERMISSIONS[action] if p not in out]
    if any(a.startswith("aws:ecs:") for a in actions):
        out += [p for p in TARGET_RESOLUTION if p not in out]
    return out


def statements_for(
    scope: IConstruct,
    permissions: Iterable[str],
    *,
    cluster_name: str,
    target_tags: Mapping[str, str],
    databases: Sequence[str] = (),
    automation_documents: Sequence[str] = (),
    automation_roles: Sequence[str] = (),
) -> list[iam.PolicyStatement]:
    """One statement per group of ``permissions`` with the same scope (see the module doc): ``databases``
    are the ARNs of the RDS instances or Aurora clusters the RDS actions may act on, ``automation_documents``
    the ARNs of the SSM documents the automation action may start and ``automation_roles`` the roles it
    may pass to SSM. Raises KeyError for a permission with no statement shape here."""
    wanted = list(dict.fromkeys(permissions))
    cluster = policies.cluster_arn(scope, cluster_name)
    stack = Stack.of(scope)
    tasks = policies.ecs_arn(scope, "task", f"{cluster_name}/*")
    instances = policies.ecs_arn(scope, "container-instance", f"{cluster_name}/*")
    shapes: dict[str, tuple[str, ...]] = {
        "ecs:DescribeTasks": ("tasks",),
        "ecs:ListTasks": ("listing",),
        "ecs:DescribeContainerInstances": ("instances",),
        "ecs:StopTask": ("tagged",),
        "ssm:SendCommand": ("managed", "documents"),
        "tag:GetResources": ("any",),
        "ec2:DescribeInstances": ("any",),
        "ec2:DescribeSubnets": ("any",),
        "ssm:ListCommands": ("any",),
        "ssm:CancelCommand": ("any",),
        "rds:RebootDBInstance": ("database",),
        "rds:FailoverDBCluster": ("database",),
        "rds:DescribeDBInstances": ("any",),
        "rds:DescribeDBClusters": ("any",),
        "ssm:StartAutomationExecution": ("automation_documents", "executions"),
        "ssm:GetAutomationExecution": ("executions",),
        "ssm:StopAutomationExecution": ("executions",),
        "iam:PassRole": ("pass_automation_role",),
    }
    unknown = [p for p in wanted if p not in shapes]
    if unknown:
        raise KeyError(f"no statement shape for {unknown} in infra.fis_actions.statements_for")
    groups: dict[str, list[str]] = {}
    for p in wanted:
        for shape in shapes[p]:
            groups.setdefault(shape, []).append(p)
    out: list[iam.PolicyStatement] = []
    for shape, actions in groups.items():
        if shape == "tasks":
            out.append(
                iam.PolicyStatement(
                    actions=actions, resources=[tasks], conditions=policies.on_cluster(cluster)
                )
            )
        elif shape == "listing":
            # No container instance to name on Fargate: every resource, but only the target cluster's
            # (ecs:cluster, the condition key ListTasks takes; aws/aws-cdk#3199 scopes it the same way).
            out.append(
                iam.PolicyStatement(actions=actions, resources=["*"], conditions=policies.on_cluster(cluster))
            )
        elif shape == "instances":
            out.append(
                iam.PolicyStatement(
                    actions=actions, resources=[instances], conditions=policies.on_cluster(cluster)
                )
            )
        elif shape == "tagged":
            # FIS stops the tasks it selected by these tags; the role may stop no other task of the cluster.
            out.append(
                policies.tagged_tasks_statement(
                    scope, cluster_name=cluster_name, cluster=cluster, tags=target_tags, actions=actions
                )
            )
        elif shape == "managed":
            # Only the managed instances whose ECS_TASK_ARN tag is a task of the target cluster.
            out.append(
                iam.PolicyStatement(
                    actions=actions,
                    resources=[
                        stack.format_arn(service="ssm", resource="managed-instance", resource_name="*")
                    ],
                    conditions={"StringLike": {f"ssm:resourceTag/{SSM_TAG_ECS_TASK_ARN}": tasks}},
                )
            )
        elif shape == "documents":
            out.append(
                iam.PolicyStatement(
                    actions=actions,
                    resources=[
                        stack.format_arn(
                            service="ssm",
                            account="",
                            resource="document",
                            resource_name=f"{FIS_SSM_DOCUMENT_PREFIX}*",
                        )
                    ],
                )
            )
        elif shape == "database":
            if not databases:
                raise KeyError(f"{actions} need the database ARNs (databases=)")
            # Only the database the config names, and only while it carries the gate's target tags.
            conditions = (
                {"StringEquals": {f"aws:ResourceTag/{k}": v for k, v in target_tags.items()}}
                if target_tags
                else None
            )
            out.append(iam.PolicyStatement(actions=actions, resources=list(databases), conditions=conditions))
        elif shape == "automation_documents":
            if not automation_documents:
                raise KeyError(f"{actions} need the automation documents (automation_documents=)")
            out.append(iam.PolicyStatement(actions=actions, resources=list(automation_documents)))
        elif shape == "executions":
            # The execution's id exists only once it is started: no narrower resource is possible.
            out.append(
                iam.PolicyStatement(
                    actions=actions,
                    resources=[
                        stack.format_arn(service="ssm", resource="automation-execution", resource_name="*")
                    ],
                )
            )
        elif shape == "pass_automation_role":
            if not automation_roles:
                raise KeyError(f"{actions} need the automation roles (automation_roles=)")
            out.append(
                iam.PolicyStatement(
                    actions=actions,
                    resources=list(automation_roles),
                    conditions={"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}},
                )
            )
        else:
            out.append(iam.PolicyStatement(actions=actions, resources=["*"]))
    return out
