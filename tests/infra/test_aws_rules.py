"""What AWS enforces that a synth does not check, over the default stack (issue 20): the static rules of
``support/aws_rules.py`` (FIS filter paths PascalCase, each FIS action's documented permissions on its
role, PassRole of every role a RunTask passes) and the smaller defects a review found (the load image's
platform, RunTask's idempotency token, the dashboard's Container Insights period, the state machine's log
group under ``/aws/vendedlogs/``)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.infra.support.aws_rules import fis_filter_path_errors, fis_permission_errors, passrole_errors
from tests.infra.support.validators import definition_of

pytestmark = pytest.mark.infra


def test_every_fis_filter_path_of_the_default_stack_is_pascal_case(synth):
    assert fis_filter_path_errors(synth.template_json) == []


def test_every_fis_action_of_the_default_stack_has_its_documented_permissions(synth):
    """AWS FIS user guide, "AWS FIS Actions reference": ``aws:ecs:stop-task`` needs ``ecs:DescribeTasks``,
    ``ecs:ListTasks``, ``ecs:StopTask`` and ``tag:GetResources`` on the experiment role."""
    assert fis_permission_errors(synth.template_json) == []


def test_every_role_that_may_run_a_task_may_pass_that_task_definitions_roles(synth):
    """Amazon ECS developer guide, "Amazon ECS task execution IAM role": whoever calls RunTask needs
    ``iam:PassRole`` for the task definition's task role and execution role. The state machine runs the
    load task; the replay Lambda runs the rebuild task of the config (its roles named in the config)."""
    assert passrole_errors(synth.template_json) == []


def test_the_passrole_rule_names_the_role_and_the_task_definition_role_it_cannot_pass(synth):
    template = copy.deepcopy(synth.template_json)
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy":
            statements = r["Properties"]["PolicyDocument"]["Statement"]
            r["Properties"]["PolicyDocument"]["Statement"] = [
                s for s in statements if s["Action"] != "iam:PassRole"
            ]
    errors = passrole_errors(template)
    load_td = next(k for k, r in template["Resources"].items() if r["Type"] == "AWS::ECS::TaskDefinition")
    assert any(f"may ecs:RunTask {load_td} but not iam:PassRole its ExecutionRoleArn" in e for e in errors)
    assert any(f"may ecs:RunTask {load_td} but not iam:PassRole its TaskRoleArn" in e for e in errors)
    assert any("outside this template but may pass no role" in e and "Replay" in e for e in errors)


def _assets(synth: Any) -> dict[str, Any]:
    path = synth.outdir / f"{synth.stack.artifact_id}.assets.json"
    return json.loads(path.read_text())


def test_the_load_image_is_built_for_the_tasks_x86_64_platform(synth):
    """A Fargate task with ``runtimePlatform.cpuArchitecture: X86_64`` cannot run an arm64 image ("exec
    format error"): an image built on an ARM machine without a platform would be one."""
    (image,) = _assets(synth)["dockerImages"].values()
    assert image["source"]["platform"] == "linux/amd64"
    (td,) = synth.resources("AWS::ECS::TaskDefinition").values()
    assert td["Properties"]["RuntimePlatform"]["CpuArchitecture"] == "X86_64"


def test_starting_the_load_task_is_idempotent_across_retries(synth):
    """Amazon ECS API reference, RunTask ``clientToken``: up to 64 characters; the same token returns the
    same task. The Retry of ``Ecs.EcsException`` (an error the model does not name) could otherwise start a
    second load task when the first call had in fact succeeded."""
    state = definition_of(synth.template_json)["States"]["Start load task"]
    assert state["Parameters"]["ClientToken.$"] == "States.Hash($$.Execution.Id, 'SHA-256')"
    assert "Ecs.EcsException" in state["Retry"][0]["ErrorEquals"]


def test_the_dashboard_reads_running_task_count_at_container_insights_one_minute_period(synth):
    """Container Insights publishes ``RunningTaskCount`` once a minute (Amazon CloudWatch user guide,
    "Amazon ECS Container Insights metrics"): a 10 s period draws gaps."""
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    widgets = [w for w in body.split('{\\"type\\":') if "RunningTaskCount" in w]
    assert (
        widgets
        and all('\\"period\\":60' in w for w in widgets)
        and all('\\"period\\":10' not in w for w in widgets)
    )


def test_the_state_machine_logs_under_aws_vendedlogs(synth):
    """Amazon CloudWatch Logs user guide, "Enabling logging from AWS services": log groups under
    ``/aws/vendedlogs/`` need no entry in the account's resource policy (5,120 characters at most)."""
    (machine,) = synth.resources("AWS::StepFunctions::StateMachine").values()
    target = machine["Properties"]["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]
    log_group_id = target["LogGroupArn"]["Fn::GetAtt"][0]
    name = synth.template_json["Resources"][log_group_id]["Properties"]["LogGroupName"]
    assert name.startswith("/aws/vendedlogs/states/")
