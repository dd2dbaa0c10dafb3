"""The verdict Lambda merges results as false > unknown > true and writes the run's four verdict files."""

from __future__ import annotations

import itertools
import json
from xml.etree import ElementTree as ET

import pytest

from lambdas.verdict.handler import handler
from resgate.checks.compose import verdict
from resgate.checks.result import UNKNOWN, CheckResult
from tests.functional.support import emitted, load_event

VALIDITIES = (True, False, UNKNOWN)


def result(name, valid, **counts):
    out = {"name": name, "valid": valid, "counts": counts, "examples": []}
    if valid == UNKNOWN:
        out["error"] = "could not decide"
    if valid is False:
        out["examples"] = [{"kind": "lost", "order_id": "o-7"}]
    return out


def test_verdict_handler_passes_and_writes_the_closing_files_when_every_check_passed(
    evidence, lambda_context, capsys
):
    event = load_event("verdict")

    out = handler(event, lambda_context)

    assert out == {
        "passed": True,
        "result": "PASS",
        "reason": "",
        "failed_checks": [],
        "unknown_checks": [],
        "evidence_uri": f"s3://{evidence.bucket}/{evidence.prefix}/{evidence.key.prefix}/",
    }
    # phases.jsonl: the phases table, written on AWS by the same write_run_files as locally
    assert evidence.files() == ["checks.jsonl", "junit.xml", "phases.jsonl", "report.md", "verdict.json"]
    raw = evidence.get("verdict.json")
    assert raw.endswith("\n") and raw.count("\n") == 1
    record = json.loads(raw)
    assert record["passed"] is True and record["result"] == "PASS" and record["exit_code"] == 0
    assert (record["gate"], record["run_id"], record["dt"]) == ("paperbroker", event["run_id"], event["dt"])
    rows = [json.loads(line) for line in evidence.get("checks.jsonl").splitlines()]
    assert [r["name"] for r in rows] == ["slo", "recovery", "retryable"]
    assert all(r["run_id"] == event["run_id"] and r["gate"] == "paperbroker" for r in rows)
    assert rows[0] == {"run_id": event["run_id"], "gate": "paperbroker", **event["results"][0]}
    suite = ET.fromstring(evidence.get("junit.xml"))
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    report = evidence.get("report.md")
    assert "**Verdict: PASS**" in report and "| slo | PASS |" in report and "slo.p95_ms" in report
    metrics, _ = emitted(capsys)
    assert metrics[0]["GatePassed"] == [1.0] and metrics[0]["ChecksFailed"] == [0.0]


@pytest.mark.parametrize("validities", list(itertools.product(VALIDITIES, repeat=3)))
def test_verdict_handler_passed_matches_the_false_over_unknown_over_true_merge(
    evidence, lambda_context, validities
):
    results = [result(n, v) for n, v in zip(("slo", "recovery", "retryable"), validities, strict=True)]

    out = handler(load_event("verdict", results=results), lambda_context)

    merged = verdict([CheckResult.from_dict(r) for r in results], unknown_is_failure=True)
    assert out["passed"] is merged.passed
    assert out["passed"] is all(v is True for v in validities)
    assert out["result"] == ("PASS" if merged.passed else "FAIL")
    assert out["failed_checks"] == list(merged.failed)
    assert out["unknown_checks"] == list(merged.unknown)
    assert json.loads(evidence.get("verdict.json"))["passed"] is out["passed"]


def test_verdict_handler_fails_a_run_with_a_failed_check_and_reports_it(evidence, lambda_context):
    results = [result("slo", True), result("recovery", UNKNOWN), result("retryable", False)]

    out = handler(load_event("verdict", results=results), lambda_context)

    assert out["passed"] is False and out["result"] == "FAIL"
    assert out["reason"] == "failed: retryable; unknown: recovery"
    suite = ET.fromstring(evidence.get("junit.xml"))
    assert suite.get("failures") == "2"
    report = evidence.get("report.md")
    assert "### retryable: FAIL" in report and "o-7" in report and "Error: could not decide" in report


def test_verdict_handler_passes_unknown_only_when_the_event_says_unknown_is_not_a_failure(
    evidence, lambda_context
):
    results = [result("slo", True), result("recovery", UNKNOWN), result("retryable", True)]

    strict = handler(load_event("verdict", results=results), lambda_context)
    lenient = handler(load_event("verdict", results=results, unknown_is_failure=False), lambda_context)

    assert strict["passed"] is False and strict["unknown_checks"] == ["recovery"]
    assert lenient["passed"] is True
    assert ET.fromstring(evidence.get("junit.xml")).get("skipped") == "1"


def test_verdict_handler_counts_a_caught_lambda_error_as_unknown(evidence, lambda_context):
    cause = json.dumps({"errorMessage": "slo: could not read s3://x", "errorType": "GateError"})
    results = [
        result("slo", True),
        {"name": "recovery", "Error": "GateError", "Cause": cause},
        {"Payload": result("retryable", True), "StatusCode": 200},
    ]

    out = handler(load_event("verdict", results=results), lambda_context)

    assert out["passed"] is False and out["unknown_checks"] == ["recovery"]
    rows = [json.loads(line) for line in evidence.get("checks.jsonl").splitlines()]
    assert rows[1]["valid"] == UNKNOWN and "GateError: slo: could not read s3://x" in rows[1]["error"]
    assert rows[2]["name"] == "retryable" and rows[2]["valid"] is True


def test_verdict_handler_counts_an_expected_check_without_a_result_as_unknown(evidence, lambda_context):
    out = handler(
        load_event("verdict", results=[result("slo", True), result("recovery", True)]), lambda_context
    )

    assert out["passed"] is False and out["unknown_checks"] == ["retryable"]


def test_verdict_handler_never_passes_a_run_without_results(evidence, lambda_context):
    out = handler(load_event("verdict", results=[], checks=[]), lambda_context)

    assert out["passed"] is False and out["result"] == "FAIL"
    assert "no check results" in out["reason"]


def test_verdict_handler_reports_error_when_the_run_could_not_finish(evidence, lambda_context):
    evidence.put_jsonl(
        "faults.jsonl",
        [
            {
                "ts": 1.0,
                "fault_id": "kill-gateway",
                "kind": "stop_task",
                "target": "gateway",
                "event": "injected",
            }
        ],
        stamp=True,
    )
    event = load_event("verdict", results=[result("slo", True)], checks=[], error="FIS experiment failed")

    out = handler(event, lambda_context)

    assert out["passed"] is False and out["result"] == "ERROR" and out["reason"] == "FIS experiment failed"
    assert json.loads(evidence.get("verdict.json"))["exit_code"] == 2
    assert "`kill-gateway` (stop_task, target `gateway`): injected" in evidence.get("report.md")


def test_the_report_links_the_runs_dashboard_when_the_event_gives_it(evidence, lambda_context):
    url = (
        "https://console.aws.amazon.com/cloudwatch/home#dashboards/dashboard/ResilienceGate-pb?start=a&end=b"
    )
    handler(load_event("verdict", dashboard=url), lambda_context)
    assert f"- dashboard: <{url}>" in evidence.get("report.md")


def test_a_dashboard_that_is_not_an_https_url_is_refused_before_anything_is_written(evidence, lambda_context):
    with pytest.raises(Exception, match=r"event\.dashboard"):
        handler(load_event("verdict", dashboard="javascript:alert(1)"), lambda_context)
    assert evidence.files() == []
