"""A FAIL or ERROR verdict opens an OpsCenter OpsItem when the deployment asks for one; a PASS never does.

OpsCenter is a stubbed SSM client (moto 5.2.5 has no CreateOpsItem): botocore validates each request
against the SSM model before the Stubber answers, and the ``opscenter`` fixture keeps the parameters.
"""

from __future__ import annotations

import json

import lambdas.common.opsitem as opsitem
from lambdas.verdict.handler import handler
from tests.functional.support import emitted, load_event

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:Gate:20260101T120000Z-a1b2c3"


def failing_event(**overrides):
    event = load_event("verdict", execution_arn=EXECUTION, **overrides)
    event["results"][2] = {**event["results"][2], "valid": False}
    return event


def test_a_failed_verdict_opens_an_ops_item_linking_the_report_the_evidence_and_the_execution(
    evidence, lambda_context, opscenter
):
    opscenter.expect(1)

    out = handler(failing_event(), lambda_context)

    assert out["result"] == "FAIL"
    (item,) = opscenter.created
    data = {k: v["Value"] for k, v in item["OperationalData"].items()}
    prefix = f"{evidence.prefix}/{evidence.key.prefix}"
    assert data["report"] == f"s3://{evidence.bucket}/{prefix}/report.md"
    assert data["evidence_prefix"] == out["evidence_uri"] == f"s3://{evidence.bucket}/{prefix}/"
    assert data["execution_arn"] == EXECUTION
    assert (
        "console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/"
        in (data["execution_console_url"])
    )
    assert item["Title"].startswith("ResilienceGate paperbroker: FAIL run ") and item["Severity"] == "2"
    assert "failed: retryable" in item["Description"]
    assert item["Tags"] == [{"Key": "ResGateGate", "Value": "paperbroker"}]


def test_an_error_verdict_of_the_cleanup_branch_opens_one_too(evidence, lambda_context, opscenter):
    opscenter.expect(1)
    event = load_event("verdict", execution_arn=EXECUTION, results=[], error={"Error": "LoadFailed"})

    assert handler(event, lambda_context)["result"] == "ERROR"
    assert opscenter.created[0]["Severity"] == "3"


def test_a_failed_verdict_opens_none_unless_configured(evidence, lambda_context, monkeypatch):
    asked = []
    monkeypatch.setattr(opsitem, "client", asked.append)

    assert handler(failing_event(), lambda_context)["result"] == "FAIL"
    assert asked == []


def test_a_passing_verdict_never_opens_one(evidence, lambda_context, opscenter):
    assert handler(load_event("verdict", execution_arn=EXECUTION), lambda_context)["passed"] is True
    assert opscenter.created == []


def test_an_ops_item_that_cannot_be_opened_does_not_change_the_verdict(
    evidence, lambda_context, opscenter, capsys
):
    opscenter.stubber.add_client_error("create_ops_item", "OpsItemLimitExceededException", "too many")

    out = handler(failing_event(), lambda_context)

    assert out["result"] == "FAIL" and json.loads(evidence.get("verdict.json"))["result"] == "FAIL"
    metrics, _ = emitted(capsys)
    assert metrics[0]["OpsItemFailed"] == [1.0]
