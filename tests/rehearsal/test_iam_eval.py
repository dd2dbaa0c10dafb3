"""The rehearsal's IAM evaluator (support/iam_eval.py) on the statement shapes the gate's stack uses: each
rule of the IAM policy evaluation logic with a request it allows and one it denies, at the boundary."""

from __future__ import annotations

import pytest

from tests.rehearsal.support.iam_eval import AccessDenied, evaluate, require

ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/pb"
TASK = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/pb/0123abcd"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/Faults"

STOP_TAGGED = {
    "Effect": "Allow",
    "Action": "ecs:StopTask",
    "Resource": f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/pb/*",
    "Condition": {"ArnEquals": {"ecs:cluster": CLUSTER}, "StringEquals": {"aws:ResourceTag/app": "pb"}},
}


def test_an_action_no_statement_names_is_an_implicit_deny():
    d = evaluate([STOP_TAGGED], "ecs:DescribeTasks", TASK, {"ecs:cluster": CLUSTER})
    assert (d.allowed, d.reason) == (False, "implicit deny")


def test_actions_match_case_insensitively_and_with_wildcards():
    st = {"Effect": "Allow", "Action": ["ecs:Describe*"], "Resource": "*"}
    assert evaluate([st], "ECS:describetasks", TASK).allowed
    assert not evaluate([st], "ecs:ListTasks", TASK).allowed
    assert evaluate([{**st, "Action": "ecs:?topTask"}], "ecs:StopTask", TASK).allowed


def test_a_resource_outside_the_statements_arn_pattern_is_denied():
    ctx = {"ecs:cluster": CLUSTER, "aws:ResourceTag/app": "pb"}
    assert evaluate([STOP_TAGGED], "ecs:StopTask", TASK, ctx).allowed
    other = TASK.replace("task/pb/", "task/other/")
    assert not evaluate([STOP_TAGGED], "ecs:StopTask", other, ctx).allowed
    # ARNs compare case-sensitively
    assert not evaluate([STOP_TAGGED], "ecs:StopTask", TASK.replace("task/pb", "task/PB"), ctx).allowed


def test_every_condition_key_must_hold_and_a_missing_key_fails():
    # condition key names are case-insensitive
    assert evaluate(
        [STOP_TAGGED], "ecs:StopTask", TASK, {"ecs:cluster": CLUSTER, "aws:resourcetag/APP": "pb"}
    ).allowed
    assert not evaluate(
        [STOP_TAGGED], "ecs:StopTask", TASK, {"ecs:cluster": CLUSTER, "aws:ResourceTag/app": "x"}
    ).allowed
    assert not evaluate([STOP_TAGGED], "ecs:StopTask", TASK, {"ecs:cluster": CLUSTER}).allowed
    other = CLUSTER.replace("/pb", "/other")
    assert not evaluate(
        [STOP_TAGGED], "ecs:StopTask", TASK, {"ecs:cluster": other, "aws:ResourceTag/app": "pb"}
    ).allowed


def test_string_like_and_arn_like_take_wildcards_across_arn_segments():
    st = {
        "Effect": "Allow",
        "Action": "ssm:SendCommand",
        "Resource": f"arn:aws:ssm:us-east-1:{ACCOUNT}:managed-instance/*",
        "Condition": {
            "StringLike": {"ssm:resourceTag/ECS_TASK_ARN": f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/pb/*"}
        },
    }
    mi = f"arn:aws:ssm:us-east-1:{ACCOUNT}:managed-instance/mi-0abc"
    assert evaluate([st], "ssm:SendCommand", mi, {"ssm:resourceTag/ECS_TASK_ARN": TASK}).allowed
    assert not evaluate(
        [st], "ssm:SendCommand", mi, {"ssm:resourceTag/ECS_TASK_ARN": TASK.replace("/pb/", "/x/")}
    ).allowed
    arn_like = {
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": "*",
        "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:states:*:*:stateMachine:*"}},
    }
    assert evaluate(
        [arn_like], "iam:PassRole", ROLE, {"aws:SourceArn": "arn:aws:states:us-east-1:1:stateMachine:Gate"}
    ).allowed


def test_pass_role_is_allowed_only_to_the_named_service():
    st = {
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": [ROLE],
        "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
    }
    assert evaluate([st], "iam:PassRole", ROLE, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}).allowed
    assert not evaluate([st], "iam:PassRole", ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}).allowed
    assert not evaluate(
        [st], "iam:PassRole", ROLE + "2", {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    ).allowed


def test_request_tags_and_for_all_values_tag_keys():
    st = {
        "Effect": "Allow",
        "Action": ["ssm:CreateOpsItem", "ssm:AddTagsToResource"],
        "Resource": f"arn:aws:ssm:us-east-1:{ACCOUNT}:opsitem/*",
        "Condition": {
            "StringEquals": {"aws:RequestTag/ResGateGate": "pb"},
            "ForAllValues:StringEquals": {"aws:TagKeys": ["ResGateGate"]},
        },
    }
    item = f"arn:aws:ssm:us-east-1:{ACCOUNT}:opsitem/*"
    ok = {"aws:RequestTag/ResGateGate": "pb", "aws:TagKeys": ["ResGateGate"]}
    assert evaluate([st], "ssm:CreateOpsItem", item, ok).allowed
    extra = {"aws:RequestTag/ResGateGate": "pb", "aws:TagKeys": ["ResGateGate", "Owner"]}
    assert not evaluate([st], "ssm:CreateOpsItem", item, extra).allowed


def test_a_namespace_condition_allows_put_metric_data_in_that_namespace_only():
    st = {
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": "ResilienceGate/Load"}},
    }
    assert evaluate(
        [st], "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "ResilienceGate/Load"}
    ).allowed
    assert not evaluate([st], "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Other"}).allowed


def test_an_explicit_deny_wins_over_any_allow():
    allow = {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "ecs:StopTask", "Resource": "*"}
    d = evaluate([allow, deny], "ecs:StopTask", TASK)
    assert (d.allowed, d.reason, d.statement) == (False, "explicit deny", 1)
    assert evaluate([allow, deny], "ecs:ListTasks", TASK).allowed


def test_not_action_and_negated_and_if_exists_operators():
    st = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    assert evaluate([st], "s3:GetObject", "*").allowed and not evaluate([st], "iam:PassRole", ROLE).allowed
    neq = {
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"s3:x-amz-acl": "public-read"}},
    }
    assert evaluate([neq], "s3:PutObject", "*").allowed  # a missing key passes a negated operator
    assert not evaluate([neq], "s3:PutObject", "*", {"s3:x-amz-acl": "public-read"}).allowed
    if_exists = {
        "Effect": "Allow",
        "Action": "ec2:RunInstances",
        "Resource": "*",
        "Condition": {"StringEqualsIfExists": {"ec2:InstanceType": "t3.micro"}},
    }
    assert evaluate([if_exists], "ec2:RunInstances", "*").allowed
    assert not evaluate([if_exists], "ec2:RunInstances", "*", {"ec2:InstanceType": "m5.large"}).allowed


def test_an_operator_the_evaluator_does_not_know_is_refused_not_allowed():
    st = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
        "Condition": {"NumericLessThan": {"s3:max-keys": "10"}},
    }
    with pytest.raises(ValueError, match="NumericLessThan"):
        evaluate([st], "s3:GetObject", "*", {"s3:max-keys": "5"})


def test_access_denied_names_the_role_action_and_resource_as_aws_does():
    with pytest.raises(AccessDenied) as e:
        require(ROLE, [STOP_TAGGED], "ecs:StopTask", TASK, {"ecs:cluster": CLUSTER})
    assert str(e.value).startswith(
        f"User: {ROLE} is not authorized to perform: ecs:StopTask on resource: {TASK}"
    )
    assert e.value.code == "AccessDeniedException"
