"""cdk-nag (AwsSolutions, registered by app.py) finds nothing that is not fixed or acknowledged."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

import app as cdk_app
from infra.nag import IAM_FINDING_RULES, FindingRule, flatten, wildcard_findings

pytestmark = pytest.mark.infra


def test_synth_with_aws_solutions_checks_succeeds(synth):
    assert synth.synth_error is None, synth.synth_error


def test_the_registered_checks_fail_a_synth_with_an_unacknowledged_finding(tmp_path):
    # The same registration as the gate app, on a bucket that breaks AwsSolutions-S1/S10.
    app = cdk.App(outdir=str(tmp_path))
    s3.Bucket(cdk.Stack(app, "Bad"), "Bucket")
    cdk_app.register_checks(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    nag = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    rules = {v["ruleName"] for v in nag[0]["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def test_cdk_nag_reports_no_unacknowledged_error(synth):
    errors = [v["ruleName"] for v in synth.violations("error")]
    assert errors == []


def test_every_iam_finding_matches_a_reviewed_acknowledgement_rule(synth):
    assert synth.stack.unreviewed_findings == []


def test_flatten_renders_tokens_the_way_cdk_nag_names_findings():
    arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "Bucket1"}, "/x/*"]]}
    assert flatten(arn) == "arn:<AWS::Partition>:s3:::<Bucket1>/x/*"
    assert flatten({"Fn::GetAtt": ["Fn1", "Arn"]}) == "<Fn1.Arn>"


def test_a_new_wildcard_is_a_finding_no_rule_covers():
    doc = {"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::other/*"}]}
    findings = wildcard_findings(doc)
    assert findings == ["Action::s3:Get*", "Resource::arn:aws:s3:::other/*"]
    rules: list[FindingRule] = list(IAM_FINDING_RULES)
    assert not any(r.matches("AwsSolutions-IAM5", f) for r in rules for f in findings)


def test_a_stack_for_a_concrete_account_and_region_has_no_unreviewed_finding(tmp_path):
    """`cdk deploy -c account=… -c region=…` synthesizes literal ARNs where the test stack has the
    pseudo-parameter tokens: every reviewed rule still covers them, so a deploy's synth does not fail."""
    context = {"resgate:skip_bundling": "true", "account": "123456789012", "region": "eu-west-1"}
    app = cdk.App(outdir=str(tmp_path), context={**context, "ops_items": "true"})
    stack = cdk_app.build(app)
    app.synth()  # raises on an unacknowledged cdk-nag finding
    template = (tmp_path / f"{stack.artifact_id}.template.json").read_text()
    assert ":eu-west-1:123456789012:" in template
    assert stack.unreviewed_findings == []
