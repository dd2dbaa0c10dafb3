"""`resgate aws report` and `resgate aws query` against moto: the stack's outputs from CloudFormation, the
run's report from the evidence bucket, the Athena request and the result table."""

from __future__ import annotations

import io
import json

import boto3
import pytest
import requests
from moto import mock_aws

from resgate.aws_cli import Clients, StackOutputs, athena_query, query, report, stack_outputs
from resgate.checks.result import CheckResult
from resgate.cli import main
from resgate.contract.errors import ConfigError
from resgate.contract.layout import RunKey
from resgate.evidence.run_files import write_run_files
from resgate.evidence.s3 import S3Store

REGION = "us-east-1"
OUTPUTS = {
    "StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:gate",
    "EvidenceBucket": "evidence-bucket",
    "GlueDatabase": "resgate_paperbroker_evidence",
    "AthenaWorkGroup": "resgate-paperbroker",
    "GateName": "paperbroker",
    "EvidencePrefix": "evidence",
}


@pytest.fixture
def aws(monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in OUTPUTS.items()},
        }
        cfn.create_stack(StackName="ResGate-paperbroker", TemplateBody=json.dumps(template))
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="evidence-bucket")
        athena = boto3.client("athena", region_name=REGION)
        athena.create_work_group(Name="resgate-paperbroker")
        yield Clients(cloudformation=cfn, s3=s3, athena=athena)


def _run(clients: Clients, run_id: str, date: str, passed: bool, started_at: float) -> RunKey:
    key = RunKey(gate="paperbroker", date=date, run_id=run_id)
    store = S3Store("evidence-bucket", "evidence", key, client=clients.s3)
    record = {"gate": key.gate, "run_id": run_id, "result": "PASS" if passed else "FAIL"}
    record |= {"exit_code": 0 if passed else 1, "started_at": started_at, "reason": ""}
    write_run_files(store, results=[CheckResult("slo", passed)], record=record)
    return key


def test_the_stack_outputs_name_the_machine_bucket_database_and_workgroup(aws):
    outputs = stack_outputs(aws.cloudformation, "ResGate-paperbroker")
    assert outputs == StackOutputs(
        state_machine_arn=OUTPUTS["StateMachineArn"],
        bucket="evidence-bucket",
        database="resgate_paperbroker_evidence",
        workgroup="resgate-paperbroker",
        gate="paperbroker",
    )
    with pytest.raises(ConfigError, match="no stack 'ResGate-nope'"):
        stack_outputs(aws.cloudformation, "ResGate-nope")


def test_report_prints_the_runs_report_and_exits_with_its_verdict(aws, capsys):
    outputs = StackOutputs.from_outputs("s", OUTPUTS)
    _run(aws, "20250301T100000Z-aaaaaa", "2025-03-01", True, 1740823200.0)
    _run(aws, "manual-1", "2025-03-02", False, 1740906000.0)
    out = io.StringIO()
    assert report(aws, outputs, "20250301T100000Z-aaaaaa", out=out) == 0
    assert "20250301T100000Z-aaaaaa" in out.getvalue() and "PASS" in out.getvalue()
    assert report(aws, outputs, "manual-1", out=io.StringIO()) == 1  # a name without a date is searched for
    latest = io.StringIO()
    assert report(aws, outputs, "latest", out=latest) == 1
    assert "manual-1" in latest.getvalue()
    with pytest.raises(ConfigError, match="no run 'gone'"):
        report(aws, outputs, "gone", out=io.StringIO())


def test_the_cli_finds_the_stack_and_prints_the_report(aws, capsys):
    _run(aws, "20250301T100000Z-bbbbbb", "2025-03-01", True, 1740823200.0)
    assert main(["aws", "report", "20250301T100000Z-bbbbbb", "--stack", "ResGate-paperbroker"]) == 0
    assert "20250301T100000Z-bbbbbb" in capsys.readouterr().out


def _queue_athena_results(rows: list[list[str]], columns: list[str]) -> None:
    body = {
        "account_id": "123456789012",
        "region": REGION,
        "results": [
            {
                "rows": [{"Data": [{"VarCharValue": v} for v in r]} for r in [columns, *rows]],
                "column_info": [{"Name": c, "Type": "varchar"} for c in columns],
            }
        ],
    }
    requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results", json=body, timeout=5)


def test_query_runs_in_the_stacks_workgroup_and_database_and_prints_a_table(aws):
    outputs = StackOutputs.from_outputs("s", OUTPUTS)
    _queue_athena_results([["r2", "FAIL"], ["r1", "PASS"]], ["run_id", "result"])
    sql = "SELECT run_id, result FROM verdicts ORDER BY started_at DESC"
    out = io.StringIO()
    assert query(aws, outputs, sql, out=out) == 0
    assert out.getvalue().splitlines() == [
        "run_id  result",
        "------  ------",
        "r2      FAIL",
        "r1      PASS",
        "(2 rows)",
    ]
    (qid,) = aws.athena.list_query_executions(WorkGroup="resgate-paperbroker")["QueryExecutionIds"]
    q = aws.athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
    assert q["Query"] == sql
    assert q["WorkGroup"] == "resgate-paperbroker"
    assert q["QueryExecutionContext"]["Database"] == "resgate_paperbroker_evidence"
    # moto appends the result file's name to the output location the request gave
    assert q["ResultConfiguration"]["OutputLocation"].startswith("s3://evidence-bucket/athena-results/")


def test_the_results_prefix_is_the_workgroups():
    from infra import constants as c
    from resgate import aws_cli

    assert aws_cli.ATHENA_RESULTS_PREFIX == c.ATHENA_RESULTS_PREFIX


def test_an_empty_result_has_no_rows(aws):
    _, rows = athena_query(aws.athena, StackOutputs.from_outputs("s", OUTPUTS), "SELECT 1")
    assert rows == []


def test_aws_baseline_set_records_a_passing_runs_phases_as_the_golden_profile_in_the_bucket(aws, capsys):
    from resgate.evidence.golden import read_golden
    from resgate.evidence.store import write_jsonl

    key = RunKey(gate="paperbroker", date="2025-03-01", run_id="20250301T100000Z-cccccc")
    store = S3Store("evidence-bucket", "evidence", key, client=aws.s3)
    ledger = [
        {
            "ts": 1740823200.0 + i,
            "op": "submit_order",
            "client_id": "c",
            "idempotency_key": f"k{i}",
            "status": "201",
            "outcome": "ok",
            "latency_ms": 12.0,
        }
        for i in range(10)
    ]
    write_jsonl(store, "ledger", ledger)
    record = {
        "gate": key.gate,
        "run_id": key.run_id,
        "result": "PASS",
        "passed": True,
        "exit_code": 0,
        "started_at": 1740823200.0,
        "reason": "",
    }
    write_run_files(store, results=[CheckResult("slo", True)], record=record)
    assert read_golden(store) is None
    assert main(["aws", "baseline-set", "latest", "--stack", "ResGate-paperbroker"]) == 0
    assert "s3://evidence-bucket/evidence/gate=paperbroker/golden/profile.json" in capsys.readouterr().out
    golden = read_golden(store)
    assert golden is not None and golden.run_id == key.run_id
    assert [p.key for p in golden.phases] == ["steady"] and golden.phases[0].requests == 10
    capsys.readouterr()
    assert main(["aws", "baseline-show", "--stack", "ResGate-paperbroker"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == (
        f"golden profile of gate paperbroker: run {key.run_id} "
        "(s3://evidence-bucket/evidence/gate=paperbroker/golden/profile.json)"
    )
    assert shown[3].startswith("| steady | - |") and "| 10 |" in shown[3]
    assert main(["aws", "baseline-show", "--stack", "ResGate-paperbroker", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == key.run_id


def test_aws_baseline_show_without_a_profile_says_none_is_set(aws, capsys):
    assert main(["aws", "baseline-show", "--stack", "ResGate-paperbroker"]) == 0
    assert capsys.readouterr().out == (
        "no golden profile at s3://evidence-bucket/evidence/gate=paperbroker/golden/profile.json: "
        "no baseline (runs are not judged against one)\n"
    )
