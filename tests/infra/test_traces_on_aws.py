"""Every ending leaves a trace: what the template gives the cleanup Lambda to write an aborted run's
verdict, notify and release its lock, and the OpsItems flag (``-c ops_items=true``) with its grant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

import app as cdk_app
from infra import constants as c
from infra.settings import DeploymentSettings
from resgate.contract.errors import ConfigError

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


def _statements(template: dict[str, Any], role_fragment: str) -> list[dict[str, Any]]:
    out = []
    for policy in template["Resources"].values():
        if policy["Type"] != "AWS::IAM::Policy":
            continue
        if any(role_fragment in r["Ref"] for r in policy["Properties"]["Roles"]):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(st: dict[str, Any]) -> list[str]:
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


def _function_env(template: dict[str, Any], fragment: str) -> dict[str, Any]:
    (fn,) = [
        r for k, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function" and fragment in k
    ]
    return fn["Properties"]["Environment"]["Variables"]


@pytest.fixture(scope="module")
def with_ops_items() -> tuple[dict[str, Any], list[str]]:
    app = cdk.App(context={c.CTX_SKIP_BUNDLING: "true", c.CTX_OPS_ITEMS: "true"})
    stack = cdk_app.build(app)
    return Template.from_stack(stack).to_json(), stack.unreviewed_findings


def test_ops_items_are_off_by_default_and_nothing_may_create_one(synth):
    # (ssm: actions of the duplicate delivery's automation, issue 21, are no OpsItem permission)
    assert not any(
        a.startswith(("ssm:CreateOpsItem", "ssm:AddTagsToResource", "ssm:*", "*"))
        for p in synth.resources("AWS::IAM::Policy").values()
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        for a in _actions(st)
    )
    for fn in synth.resources("AWS::Lambda::Function").values():
        assert c.ENV_OPS_ITEMS not in fn["Properties"]["Environment"]["Variables"]


def test_with_ops_items_only_the_verdict_and_cleanup_may_create_them_tagged_with_the_gate(with_ops_items):
    template, unreviewed = with_ops_items
    assert unreviewed == []
    holders = set()
    for logical_id, policy in template["Resources"].items():
        if policy["Type"] != "AWS::IAM::Policy":
            continue
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "ssm:CreateOpsItem" in _actions(st):
                holders.add(logical_id)
                assert _actions(st) == ["ssm:CreateOpsItem", "ssm:AddTagsToResource"]
                assert st["Condition"] == {
                    "StringEquals": {"aws:RequestTag/ResGateGate": "paperbroker"},
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["ResGateGate"]},
                }
                assert json.dumps(st["Resource"]).endswith(':opsitem/*"]]}')
    assert sorted(h.split("Role")[0] for h in holders) == ["AssertionsCleanup", "AssertionsVerdict"]
    assert _function_env(template, "AssertionsVerdictFunction")[c.ENV_OPS_ITEMS] == "true"
    assert _function_env(template, "AssertionsCleanupFunction")[c.ENV_OPS_ITEMS] == "true"
    assert c.ENV_OPS_ITEMS not in _function_env(template, "AssertionsSloFunction")


def test_the_cleanup_may_notify_write_the_run_files_and_release_the_lock_and_knows_where(synth):
    template = synth.template_json
    env = _function_env(template, "AssertionsCleanupFunction")
    assert env[c.ENV_GATE_NAME] == "paperbroker" and env[c.ENV_LOCK_KEY] == "paperbroker/paperbroker"
    assert env[c.ENV_NOTIFY_TOPIC_ARN] == {"Ref": next(iter(synth.resources("AWS::SNS::Topic")))}
    assert env[c.ENV_LOCK_TABLE] == {"Ref": next(iter(synth.resources("AWS::DynamoDB::Table")))}
    statements = _statements(template, "AssertionsCleanupRole")
    publish = [st for st in statements if "sns:Publish" in _actions(st)]
    assert publish == [{"Action": "sns:Publish", "Effect": "Allow", "Resource": env[c.ENV_NOTIFY_TOPIC_ARN]}]
    objects = [st for st in statements if "s3:PutObject" in _actions(st)]
    assert objects and all("/evidence/gate=paperbroker/*" in json.dumps(st["Resource"]) for st in objects)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), (None, False)])
def test_the_ops_items_flag_is_read_from_the_context(value, expected):
    ctx = {} if value is None else {c.CTX_OPS_ITEMS: value}
    assert DeploymentSettings.from_context(ctx.get, root=ROOT, env={}).ops_items is expected


def test_an_ops_items_flag_that_is_not_a_boolean_is_refused():
    with pytest.raises(ConfigError) as e:
        DeploymentSettings.from_context({c.CTX_OPS_ITEMS: "sometimes"}.get, root=ROOT, env={})
    assert e.value.where == "context.ops_items"
