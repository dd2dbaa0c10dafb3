"""The retryable Lambda returns what the retryable checker returns for the same ledger, streamed from S3."""

from __future__ import annotations

import json

import pytest

from lambdas.common import settings
from lambdas.retryable.handler import handler
from resgate.checks import retryable
from resgate.checks.ledger import load_ledger
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError
from tests.functional.support import FIXTURES, as_payload, emitted, load_event, timed

LEDGER = (FIXTURES / "ledger_small.jsonl").read_text()
A_500 = {
    "ts": 1767225602.0,
    "op": "submit_order",
    "client_id": "c3",
    "idempotency_key": "c3-0001",
    "status": 500,
    "outcome": "info",
    "latency_ms": 8.0,
    "error": "",
}


def expected(event, text):
    ev = retryable.RetryableEvidence(records=tuple(load_ledger(text.splitlines())))
    return as_payload(
        retryable.check(ev, retryable.RetryableThresholds.from_dict(event["thresholds"])).to_dict()
    )


def test_retryable_handler_returns_the_checkers_passing_result_for_the_ledger_in_s3(
    evidence, lambda_context, capsys
):
    evidence.put("ledger.jsonl", LEDGER)
    event = load_event("retryable")

    out = handler(event, lambda_context)

    assert timed(out) == expected(event, LEDGER)
    assert out["valid"] is True and out["counts"]["requests"] == 5
    metrics, _ = emitted(capsys)
    assert metrics[0]["CheckValid"] == [1.0] and metrics[0]["not_allowed"] == [0.0]


def test_retryable_handler_returns_the_checkers_failing_result_for_a_500_without_a_reason(
    evidence, lambda_context
):
    text = LEDGER + json.dumps(A_500) + "\n"
    evidence.put("ledger.jsonl", text)
    event = load_event("retryable")

    out = handler(event, lambda_context)

    assert timed(out) == expected(event, text)
    assert out["valid"] is False
    assert out["examples"][0]["class"] == "server_error_5xx" and out["examples"][0]["client_id"] == "c3"


def test_retryable_handler_applies_the_thresholds_from_the_event(evidence, lambda_context):
    text = LEDGER + json.dumps(A_500) + "\n"
    evidence.put("ledger.jsonl", text)
    event = load_event("retryable", thresholds={"allowed": [*retryable.DEFAULT_ALLOWED, "server_error_5xx"]})

    out = handler(event, lambda_context)

    assert timed(out) == expected(event, text)
    assert out["valid"] is True


def test_retryable_handler_reports_unknown_when_the_ledger_is_missing(evidence, lambda_context):
    out = handler(load_event("retryable"), lambda_context)

    assert out["valid"] == UNKNOWN
    assert (
        out["error"]
        == f"no client ledger was written (s3://{evidence.bucket}/{evidence.object_key('ledger.jsonl')})"
    )


def test_retryable_handler_reports_unknown_when_the_ledger_is_empty(evidence, lambda_context):
    evidence.put("ledger.jsonl", "")

    out = handler(load_event("retryable"), lambda_context)

    assert out["valid"] == UNKNOWN
    assert timed(out) == expected(load_event("retryable"), "")


def test_retryable_handler_reports_unknown_naming_the_line_of_a_malformed_ledger_record(
    evidence, lambda_context
):
    evidence.put("ledger.jsonl", LEDGER + '{"ts": 1.0, "op": "submit_order"\n')

    out = handler(load_event("retryable"), lambda_context)

    assert out["valid"] == UNKNOWN
    assert out["error"].startswith("malformed evidence:")
    assert "ledger.jsonl:7" in out["error"]


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("run_id", "../etc", "event.run_id"),
        ("gate", "Paper Broker", "event.gate"),
        ("dt", "2026-02-30", "event.dt"),
        ("evidence_bucket", None, "event.evidence_bucket"),
        ("evidence_prefix", "a/../b", "event.evidence_prefix"),
        ("thresholds", {"allowed": ["teapot_418"]}, "event.thresholds.allowed"),
    ],
)
def test_retryable_handler_rejects_an_invalid_event_naming_the_field(
    evidence, lambda_context, field, value, where
):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        handler(load_event("retryable", **{field: value}), lambda_context)


def test_retryable_handler_takes_the_bucket_from_the_environment_when_the_event_has_none(
    evidence, lambda_context, monkeypatch
):
    monkeypatch.setenv("EVIDENCE_BUCKET", evidence.bucket)
    evidence.put("ledger.jsonl", LEDGER)
    event = load_event("retryable")
    del event["evidence_bucket"]

    assert handler(event, lambda_context)["valid"] is True


def test_retryable_handler_streams_a_ledger_larger_than_one_read_chunk(evidence, lambda_context):
    rows = [
        {
            "ts": 1767225600.0 + i / 100,
            "op": "submit_order",
            "client_id": f"c{i % 50}",
            "idempotency_key": f"c{i % 50}-{i:06d}",
            "status": 503 if i % 97 == 0 else 201,
            "outcome": "fail" if i % 97 == 0 else "ok",
            "latency_ms": 3.5,
            "retry_after": None if i != 4850 else 1,
            "name": "POST /orders",
        }
        for i in range(12_000)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    assert len(text) > 2 * settings.S3_READ_CHUNK_BYTES
    evidence.put("ledger.jsonl", text)
    event = load_event("retryable")

    out = handler(event, lambda_context)

    assert timed(out) == expected(event, text)
    assert out["counts"]["requests"] == 12_000 and out["valid"] is False
