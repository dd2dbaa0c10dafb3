"""The shared adapter code: run events, S3 evidence, payloads, the DB secret, the error policy."""

from __future__ import annotations

import json

import boto3
import psycopg
import pytest

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.results import from_payload, full_result, to_payload
from lambdas.common.secrets import dsn_from_secret, redacted
from lambdas.common.verdict import VerdictInputs
from lambdas.retryable.handler import handler as retryable_handler
from lambdas.slo.sources import SloSource
from resgate.checks import integrity, recovery, replay, retryable, slo
from resgate.checks.result import UNKNOWN, CheckResult
from resgate.contract.errors import ConfigError, EvidenceMissing, GateError
from resgate.evidence.store import jsonable, ledger
from tests.functional.support import REGION, emitted, load_event


def test_the_run_event_resolves_the_evidence_prefix_like_the_local_layout(evidence):
    run = RunEvent.from_event(load_event("retryable", evidence_prefix="/evidence/"))
    store = run.store()

    run_folder = f"dt=2026-01-01/run_id={run.run_id}"
    assert store.object_key("ledger") == f"evidence/gate=paperbroker/ledger/{run_folder}/ledger.jsonl"
    assert store.object_key("verdicts") == f"evidence/gate=paperbroker/verdicts/{run_folder}/verdict.json"
    assert store.object_key("report") == f"evidence/{evidence.key.prefix}/report.md"
    assert (
        store.uri() == f"s3://{evidence.bucket}/evidence/gate=paperbroker/dt=2026-01-01/run_id={run.run_id}/"
    )


def test_the_run_event_takes_bucket_and_prefix_from_the_environment(monkeypatch):
    monkeypatch.setenv(settings.ENV_EVIDENCE_BUCKET, "from-env-bucket")
    monkeypatch.setenv(settings.ENV_EVIDENCE_PREFIX, "runs")
    event = load_event("retryable")
    del event["evidence_bucket"], event["evidence_prefix"]

    run = RunEvent.from_event(event)

    assert (run.bucket, run.prefix) == ("from-env-bucket", "runs")


def test_a_missing_evidence_file_raises_evidence_missing_before_the_first_line_is_read(evidence):
    store = RunEvent.from_event(load_event("retryable")).store()

    with pytest.raises(EvidenceMissing, match=r"ledger\.jsonl is missing"):
        store.lines("ledger")
    with pytest.raises(EvidenceMissing):
        ledger(store)


def test_the_ledger_view_streams_afresh_on_every_pass(evidence):
    evidence.put(
        "ledger.jsonl",
        '{"ts": 1, "op": "get_order", "client_id": "c", "status": 200, "outcome": "ok", "latency_ms": 1}\n',
    )
    view = ledger(RunEvent.from_event(load_event("retryable")).store())

    assert len(list(view)) == 1 and len(list(view)) == 1


def test_a_handler_raises_gate_error_when_the_bucket_cannot_be_read(lambda_context, capsys):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="some-other-bucket")

    with pytest.raises(GateError, match="could not read"):
        retryable_handler(load_event("retryable", evidence_bucket="no-such-bucket-here"), lambda_context)
    metrics, _ = emitted(capsys)
    assert metrics[0]["CheckErrored"] == [1.0] and metrics[0]["check"] == "retryable"


def test_a_check_result_goes_to_s3_whole_and_to_the_state_machine_as_a_small_summary(evidence):
    store = RunEvent.from_event(load_event("retryable")).store()
    big = CheckResult(
        name="integrity",
        valid=False,
        counts={"lost": 5000},
        examples=[{"kind": "lost", "order_id": f"o-{i}"} for i in range(20)],
        details={"blob": "x" * 300_000},
    )

    payload = to_payload(big, store=store)

    assert len(json.dumps(payload)) <= settings.SUMMARY_LIMIT_BYTES
    assert payload["valid"] is False and payload["counts"] == {"lost": 5000}
    assert len(payload["examples"]) == settings.TRIMMED_EXAMPLES
    assert payload["details"]["truncated"] is True and payload["details"]["examples_total"] == 20
    assert payload["details"]["full_result"] == store.uri("result-integrity.json")
    assert json.loads(evidence.get("result-integrity.json")) == big.to_dict()
    assert full_result(payload, store) == big.to_dict()


def test_a_result_that_fits_passes_whole_and_writes_no_extra_file(evidence):
    store = RunEvent.from_event(load_event("retryable")).store()
    small = CheckResult("slo", True, counts={"p95_ms": 12}, details={"endpoints": 5})

    assert to_payload(small, store=store) == small.to_dict()
    assert not store.exists("result-slo.json")


def test_a_summary_whose_full_result_is_gone_stands_for_the_result_saying_why(evidence):
    store = RunEvent.from_event(load_event("retryable")).store()
    big = CheckResult(
        "slo", True, counts={"p95_ms": 12}, examples=[{"i": i, "x": "y" * 500} for i in range(40)]
    )
    summary = to_payload(big, store=store)
    summary["name"] = "renamed"  # points to result-renamed.json, which nobody wrote

    entry = full_result(summary, store)

    assert entry["valid"] is True and entry["counts"] == {"p95_ms": 12}
    assert "full_result_error" in entry["details"]


def test_counts_too_large_for_a_summary_are_left_to_the_full_result(evidence):
    store = RunEvent.from_event(load_event("retryable")).store()
    wide = CheckResult("replay", False, counts={f"bucket_{i}": i for i in range(2000)})

    payload = to_payload(wide, store=store)

    assert len(json.dumps(payload)) <= settings.SUMMARY_LIMIT_BYTES
    assert payload["counts"] == {} and payload["details"]["counts_in_full_result"] is True
    assert full_result(payload, store)["counts"] == wide.to_dict()["counts"]


def test_payloads_are_plain_json_even_when_a_result_holds_tuples_sets_and_nan():
    result = CheckResult("slo", True, counts={"p": float("nan"), 3: (1, 2)}, details={"s": {"b", "a"}})

    assert jsonable(result.to_dict())["counts"] == {"p": "nan", "3": [1, 2]}
    assert to_payload(result)["details"] == {"s": ["a", "b"]}


@pytest.mark.parametrize(
    ("entry", "name", "valid", "error"),
    [
        ({"name": "slo", "valid": True, "counts": {}, "examples": []}, "slo", True, None),
        ({"Payload": {"name": "slo", "valid": False}, "StatusCode": 200}, "slo", False, None),
        ({"name": "replay", "Error": "States.Timeout", "Cause": ""}, "replay", UNKNOWN, "States.Timeout"),
        ({"name": "replay", "error": {"Error": "Lambda.Unknown"}}, "replay", UNKNOWN, "Lambda.Unknown"),
        ({"Error": "States.TaskFailed", "Cause": "{}"}, "check-0", UNKNOWN, "States.TaskFailed"),
        ({"name": "slo", "valid": "maybe"}, "slo", UNKNOWN, "malformed result payload"),
        ("oops", "check-0", UNKNOWN, "not an object"),
    ],
)
def test_branch_outputs_are_read_back_and_anything_unreadable_is_unknown(entry, name, valid, error):
    r = from_payload(entry, 0)

    assert (r.name, r.valid) == (name, valid)
    assert (r.error is None) if error is None else (error in r.error)


def test_the_dsn_comes_from_an_rds_style_secret_and_is_logged_without_the_password():
    sm = boto3.client("secretsmanager", region_name=REGION)
    arn = sm.create_secret(
        Name="db",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": "db.example",
                "port": 5433,
                "username": "gate",
                "password": "p w'd",
            }
        ),
    )["ARN"]

    dsn = dsn_from_secret(arn)

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    assert info == {
        "host": "db.example",
        "port": "5433",
        "user": "gate",
        "password": "p w'd",
        "dbname": "postgres",
        "sslmode": "require",
    }
    assert "p w" not in redacted(dsn)


@pytest.mark.parametrize(
    ("secret", "where"),
    [
        ("not json at all", "is not JSON"),
        (json.dumps(["a"]), "must be a JSON object"),
        (json.dumps({"host": "h", "username": "u"}), r"\.password"),
        (json.dumps({"host": "h", "username": "u", "password": "p", "port": "x"}), r"\.port"),
    ],
)
def test_a_secret_that_is_not_rds_style_json_is_a_config_error_that_does_not_echo_it(secret, where):
    sm = boto3.client("secretsmanager", region_name=REGION)
    arn = sm.create_secret(Name="db", SecretString=secret)["ARN"]

    with pytest.raises(ConfigError, match=where) as e:
        dsn_from_secret(arn)
    assert "not json at all" not in str(e.value)


def test_an_unreadable_secret_is_a_gate_error():
    with pytest.raises(GateError, match="could not read the database secret"):
        dsn_from_secret("arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")


@pytest.mark.parametrize(
    ("fixture", "parse"),
    [
        ("slo", lambda e: slo.SloThresholds.from_dict(e["thresholds"])),
        (
            "slo_cloudwatch",
            lambda e: (
                slo.SloThresholds.from_dict(e["thresholds"]),
                SloSource.from_event(RunEvent.from_event(e)),
            ),
        ),
        ("recovery", lambda e: recovery.RecoveryThresholds.from_dict(e["thresholds"])),
        ("retryable", lambda e: retryable.RetryableThresholds.from_dict(e["thresholds"])),
        ("integrity", lambda e: integrity.IntegrityConfig.from_dict(e["config"])),
        ("replay", lambda e: replay.ReplayConfig.from_dict(e["config"])),
        ("verdict", lambda e: VerdictInputs.from_event(RunEvent.from_event(e))),
    ],
)
def test_every_event_fixture_is_a_valid_event_for_its_handler(fixture, parse):
    event = load_event(fixture)

    RunEvent.from_event(event)
    parse(event)
