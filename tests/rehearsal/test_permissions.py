"""The rehearsal's permission enforcement (support/permissions.py) on a small hand-made template: each call a
twin answers is evaluated against the caller's role, and a call the role does not allow fails with
AccessDenied naming the role, the action and the resource, as AWS words it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.rehearsal.support.permissions import Denied, Guarded, Permissions, Unmapped

ARN = "arn:aws:ecs:us-east-1:123456789012"
LOAD_CLUSTER = f"{ARN}:cluster/Load"
TASK_DEF = f"{ARN}:task-definition/LoadTask:1"


class _Assembly:
    def __init__(self, resources: dict[str, Any]) -> None:
        self.resources = resources

    def of_type(self, rtype: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == rtype}

    def render(self, value: Any) -> Any:
        return value


def _policy(role: str, *statements: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {"Roles": [{"Ref": role}], "PolicyDocument": {"Statement": list(statements)}},
    }


RUN = {
    "Effect": "Allow",
    "Action": "ecs:RunTask",
    "Resource": TASK_DEF,
    "Condition": {"ArnEquals": {"ecs:cluster": LOAD_CLUSTER}},
}
PASS_BOTH = {
    "Effect": "Allow",
    "Action": "iam:PassRole",
    "Resource": ["arn:aws:iam::123456789012:role/TaskRole", "arn:aws:iam::123456789012:role/ExecRole"],
    "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
}
SEND = {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "*"}
FIS_READS = {
    "Effect": "Allow",
    "Action": [
        "ecs:DescribeTasks",
        "ecs:ListTasks",
        "ecs:DescribeContainerInstances",
        "ec2:DescribeInstances",
        "ec2:DescribeSubnets",
        "ssm:ListCommands",
        "ssm:CancelCommand",
        "tag:GetResources",
    ],
    "Resource": "*",
}


AUTOMATION_DOC = "arn:aws:ssm:us-east-1:123456789012:document/gate-redeliver"
AUTOMATION_ROLE = "arn:aws:iam::123456789012:role/AutomationRole"
START_AUTOMATION = [
    {
        "Effect": "Allow",
        "Action": "ssm:StartAutomationExecution",
        "Resource": [AUTOMATION_DOC, "arn:aws:ssm:us-east-1:123456789012:automation-execution/*"],
    },
    {
        "Effect": "Allow",
        "Action": ["ssm:GetAutomationExecution", "ssm:StopAutomationExecution"],
        "Resource": "arn:aws:ssm:us-east-1:123456789012:automation-execution/*",
    },
]
PASS_AUTOMATION_ROLE = {
    "Effect": "Allow",
    "Action": "iam:PassRole",
    "Resource": AUTOMATION_ROLE,
    "Condition": {"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}},
}


DATABASE = "arn:aws:rds:us-east-1:123456789012:db:paperbroker-db"
REBOOT_TAGGED = [
    {
        "Effect": "Allow",
        "Action": "rds:RebootDBInstance",
        "Resource": DATABASE,
        "Condition": {"StringEquals": {"aws:ResourceTag/app": "pb"}},
    },
    {"Effect": "Allow", "Action": ["rds:DescribeDBInstances", "tag:GetResources"], "Resource": "*"},
]


def _template(machine: list[dict[str, Any]], fis: list[dict[str, Any]]) -> _Assembly:
    role = {"Type": "AWS::IAM::Role", "Properties": {}}
    return _Assembly(
        {
            "MachineRole": role,
            "FisRole": role,
            "TaskRole": role,
            "ExecRole": role,
            "FnRole": role,
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"RoleArn": {"Fn::GetAtt": ["MachineRole", "Arn"]}},
            },
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Role": {"Fn::GetAtt": ["FnRole", "Arn"]}},
            },
            "LoadTask": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    "TaskRoleArn": {"Fn::GetAtt": ["TaskRole", "Arn"]},
                    "ExecutionRoleArn": {"Fn::GetAtt": ["ExecRole", "Arn"]},
                },
            },
            "Latency": {
                "Type": "AWS::FIS::ExperimentTemplate",
                "Properties": {
                    "RoleArn": {"Fn::GetAtt": ["FisRole", "Arn"]},
                    "Targets": {
                        "Tasks": {"ResourceTags": {"aws:ecs:clusterName": "paperbroker", "app": "pb"}}
                    },
                },
            },
            "Redeliver": {
                "Type": "AWS::FIS::ExperimentTemplate",
                "Properties": {
                    "RoleArn": {"Fn::GetAtt": ["FisRole", "Arn"]},
                    "Targets": {},
                    "Actions": {
                        "Redeliver": {
                            "ActionId": "aws:ssm:start-automation-execution",
                            "Parameters": {
                                "documentArn": AUTOMATION_DOC,
                                "documentParameters": json.dumps({"AutomationAssumeRole": AUTOMATION_ROLE}),
                                "maxDuration": "PT5M",
                            },
                        }
                    },
                },
            },
            "Reboot": {
                "Type": "AWS::FIS::ExperimentTemplate",
                "Properties": {
                    "RoleArn": {"Fn::GetAtt": ["FisRole", "Arn"]},
                    "Targets": {"DBInstances": {"ResourceArns": [DATABASE]}},
                    "Actions": {"Reboot": {"ActionId": "aws:rds:reboot-db-instances"}},
                },
            },
            "MachinePolicy": _policy("MachineRole", *machine),
            "FisPolicy": _policy("FisRole", *fis),
        }
    )


class _Ecs:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def run_task(self, **p: Any) -> dict[str, Any]:
        self.calls.append(p)
        return {"tasks": [{"taskArn": f"{ARN}:task/Load/1"}]}


def _run_task(assembly: _Assembly) -> tuple[_Ecs, Any]:
    perms = Permissions(assembly, log=lambda _: None)
    ecs = _Ecs()
    guarded = Guarded("ecs", ecs, perms.machine(), perms)
    return ecs, lambda: guarded.run_task(cluster=LOAD_CLUSTER, taskDefinition=TASK_DEF)


def test_run_task_is_allowed_when_the_role_may_run_the_task_definition_and_pass_both_its_roles() -> None:
    ecs, call = _run_task(_template([RUN, PASS_BOTH], []))
    assert call()["tasks"]
    assert len(ecs.calls) == 1


def test_run_task_is_denied_naming_the_execution_role_the_machine_role_may_not_pass() -> None:
    """Amazon ECS developer guide, "Amazon ECS task execution IAM role": RunTask needs ``iam:PassRole`` for
    the roles already in the task definition (the execution role too), not only for overrides."""
    task_role_only = {**PASS_BOTH, "Resource": "arn:aws:iam::123456789012:role/TaskRole"}
    ecs, call = _run_task(_template([RUN, task_role_only], []))
    with pytest.raises(Denied) as e:
        call()
    assert e.value.code == "AccessDeniedException"
    assert (
        "User: arn:aws:iam::123456789012:role/MachineRole is not authorized to perform: iam:PassRole"
        in str(e.value)
    )
    assert "on resource: arn:aws:iam::123456789012:role/ExecRole" in str(e.value)
    assert ecs.calls == []  # the twin never saw the call


def test_run_task_on_another_cluster_is_denied_by_the_ecs_cluster_condition() -> None:
    perms = Permissions(_template([RUN, PASS_BOTH], []), log=lambda _: None)
    guarded = Guarded("ecs", _Ecs(), perms.machine(), perms)
    with pytest.raises(Denied, match="ecs:RunTask"):
        guarded.run_task(cluster=f"{ARN}:cluster/Other", taskDefinition=TASK_DEF)
    assert perms.denials and perms.denials[0].startswith("MachineRole: ")


def test_a_function_signs_with_a_key_naming_it_and_a_call_signed_by_no_function_is_refused() -> None:
    perms = Permissions(_template([], []), log=lambda _: None)
    assert perms.caller(perms.access_key("Fn")).role_id == "FnRole"
    with pytest.raises(Unmapped, match="names no function"):
        perms.caller("testing")


def test_a_call_the_rehearsal_cannot_map_to_iam_requests_is_refused() -> None:
    perms = Permissions(_template([], []), log=lambda _: None)
    with pytest.raises(Unmapped, match="no IAM mapping for ecs:delete_cluster"):
        perms.requests("ecs", "delete_cluster", {"cluster": "x"})


def test_fis_reads_the_experiments_tags_for_aws_resource_tag_conditions() -> None:
    tagged = {
        "Effect": "Allow",
        "Action": "fis:GetExperiment",
        "Resource": "arn:aws:fis:us-east-1:123456789012:experiment/*",
        "Condition": {"StringEquals": {"aws:ResourceTag/ResGateGate": "pb"}},
    }
    tags = {"EXP1": {"ResGateGate": "pb"}, "EXP2": {"ResGateGate": "other"}}
    perms = Permissions(_template([tagged], []), experiment_tags=lambda i: tags[i], log=lambda _: None)
    machine = perms.machine()
    perms.check(machine, "fis", "get_experiment", {"id": "EXP1"})
    with pytest.raises(Denied, match=r"fis:GetExperiment on resource: arn:aws:fis:.*experiment/EXP2"):
        perms.check(machine, "fis", "get_experiment", {"id": "EXP2"})


def test_an_fis_network_action_is_denied_naming_the_permission_its_role_lacks() -> None:
    """AWS FIS user guide, "AWS FIS Actions reference" (fis-actions-reference.html): the ECS task network
    actions need ``ssm:SendCommand`` (with the reads) on the experiment role."""
    perms = Permissions(_template([], [FIS_READS]), log=lambda _: None)
    why = perms.fis_denial("Latency", "aws:ecs:task-network-latency")
    assert why is not None
    assert "arn:aws:iam::123456789012:role/FisRole is not authorized to perform: ssm:SendCommand" in why
    assert (
        Permissions(_template([], [FIS_READS, SEND]), log=lambda _: None).fis_denial(
            "Latency", "aws:ecs:task-network-latency"
        )
        is None
    )
    assert perms.fis_denial("Latency", "aws:fis:wait") is None  # needs nothing


def test_an_fis_automation_action_is_judged_on_its_document_and_the_role_it_passes() -> None:
    """AWS FIS Actions reference, ``aws:ssm:start-automation-execution``: ``ssm:StartAutomationExecution``,
    ``ssm:GetAutomationExecution``, ``ssm:StopAutomationExecution`` and ``iam:PassRole`` (the document's
    ``AutomationAssumeRole``). The rehearsal once asked for them on no resource ("-") and so denied a role
    that allows exactly the gate's document and its automation role (the default config's redelivery)."""
    allowed = Permissions(_template([], [*START_AUTOMATION, PASS_AUTOMATION_ROLE]), log=lambda _: None)
    assert allowed.fis_denial("Redeliver", "aws:ssm:start-automation-execution") is None

    no_pass = Permissions(_template([], START_AUTOMATION), log=lambda _: None)
    why = no_pass.fis_denial("Redeliver", "aws:ssm:start-automation-execution")
    assert why is not None and f"iam:PassRole on resource: {AUTOMATION_ROLE}" in why

    other_doc = [{**START_AUTOMATION[0], "Resource": "arn:aws:ssm:us-east-1:123456789012:document/other"}]
    why = Permissions(
        _template([], [*other_doc, START_AUTOMATION[1], PASS_AUTOMATION_ROLE]), log=lambda _: None
    ).fis_denial("Redeliver", "aws:ssm:start-automation-execution")
    assert why is not None and f"ssm:StartAutomationExecution on resource: {AUTOMATION_DOC}" in why


def test_an_fis_rds_reboot_is_judged_on_the_tags_the_database_itself_carries() -> None:
    """AWS FIS Actions reference, ``aws:rds:reboot-db-instances``: ``rds:RebootDBInstance``,
    ``rds:DescribeDBInstances``, ``tag:GetResources``; the Service Authorization Reference for Amazon RDS
    (list_amazonrds.html) lists ``rds:RebootDBInstance`` on resource type ``db*`` with
    ``aws:ResourceTag/${TagKey}``: the condition reads the database's own tags. The rehearsal once judged it
    on the ECS task targets' tags, which an RDS template has none of, and so denied the stack's role the
    reboot of a database tagged as the stack requires (the leader-loss rehearsal)."""
    tagged = Permissions(_template([], REBOOT_TAGGED), database_tags={"app": "pb"}, log=lambda _: None)
    assert tagged.fis_denial("Reboot", "aws:rds:reboot-db-instances") is None
    for tags in ({}, {"app": "other"}):
        perms = Permissions(_template([], REBOOT_TAGGED), database_tags=tags, log=lambda _: None)
        why = perms.fis_denial("Reboot", "aws:rds:reboot-db-instances")
        assert why is not None and f"rds:RebootDBInstance on resource: {DATABASE}" in why, why


def test_run_task_with_tags_also_needs_tag_resource_on_create() -> None:
    """Amazon ECS developer guide, "Grant permission to tag resources on creation"
    (supported-iam-actions-tagging.html): RunTask with tags is also authorized as ``ecs:TagResource`` with
    ``ecs:CreateAction = RunTask``."""
    tag_on_run = {
        "Effect": "Allow",
        "Action": "ecs:TagResource",
        "Resource": f"{ARN}:task/Load/*",
        "Condition": {"StringEquals": {"ecs:CreateAction": "RunTask"}},
    }
    tags = [{"key": "ResGateReplay", "value": "rebuild"}]
    for statements, allowed in (([RUN, PASS_BOTH], False), ([RUN, PASS_BOTH, tag_on_run], True)):
        perms = Permissions(_template(statements, []), log=lambda _: None)
        guarded = Guarded("ecs", _Ecs(), perms.machine(), perms)
        if allowed:
            guarded.run_task(cluster=LOAD_CLUSTER, taskDefinition=TASK_DEF, tags=tags)
        else:
            with pytest.raises(Denied, match=r"ecs:TagResource on resource: .*:task/Load/"):
                guarded.run_task(cluster=LOAD_CLUSTER, taskDefinition=TASK_DEF, tags=tags)


def test_the_lambda_runtime_folder_relinks_a_package_left_pointing_at_a_virtualenv_that_is_gone(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache shared by several checkouts held links into a removed worktree's .venv: every Lambda of the
    # rehearsal then failed "No module named 'boto3'".
    import boto3

    from tests.rehearsal.support import lambda_twin

    monkeypatch.setenv("RESGATE_REHEARSAL_CACHE", str(tmp_path))
    first = lambda_twin.runtime_folder()
    (first / "boto3").unlink()
    (first / "boto3").symlink_to(tmp_path / "gone" / "boto3")
    again = lambda_twin.runtime_folder()
    assert (again / "boto3").resolve() == Path(boto3.__file__).resolve().parent


def test_an_ops_item_created_with_tags_needs_add_tags_to_resource_with_the_gates_tag_only() -> None:
    """The stack's OpsItem grant (infra/policies.py ``ops_items_statement``, the shape of AWS's
    ``AIOpsConsoleAdminPolicy``): ``ssm:CreateOpsItem`` and ``ssm:AddTagsToResource`` on ``opsitem/*`` with
    ``aws:RequestTag/ResGateGate`` and no other tag key."""
    grant = {
        "Effect": "Allow",
        "Action": ["ssm:CreateOpsItem", "ssm:AddTagsToResource"],
        "Resource": "arn:aws:ssm:us-east-1:123456789012:opsitem/*",
        "Condition": {
            "StringEquals": {"aws:RequestTag/ResGateGate": "pb"},
            "ForAllValues:StringEquals": {"aws:TagKeys": ["ResGateGate"]},
        },
    }
    perms = Permissions(_template([grant], []), log=lambda _: None)
    machine = perms.machine()
    perms.check(machine, "ssm", "create_ops_item", {"Tags": [{"Key": "ResGateGate", "Value": "pb"}]})
    with pytest.raises(Denied, match="ssm:CreateOpsItem"):
        tags = [{"Key": "ResGateGate", "Value": "pb"}, {"Key": "Other", "Value": "x"}]
        perms.check(machine, "ssm", "create_ops_item", {"Tags": tags})
    no_tagging = {**grant, "Action": "ssm:CreateOpsItem"}
    perms = Permissions(_template([no_tagging], []), log=lambda _: None)
    with pytest.raises(Denied, match="ssm:AddTagsToResource"):
        perms.check(
            perms.machine(), "ssm", "create_ops_item", {"Tags": [{"Key": "ResGateGate", "Value": "pb"}]}
        )
