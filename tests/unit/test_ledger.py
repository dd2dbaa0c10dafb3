"""Unit tests for the client ledger record type and its streaming reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks.ledger import LedgerRecord, iter_ledger, load_ledger
from resgate.contract.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def rec(**over):
    d = {
        "ts": 100.0,
        "op": "submit_order",
        "client_id": "c1",
        "idempotency_key": "k1",
        "status": 201,
        "outcome": "ok",
        "latency_ms": 12.0,
    }
    d.update(over)
    return d


def test_ledger_fixture_file_streams_every_record_and_skips_blank_lines():
    records = load_ledger(FIXTURES / "ledger_small.jsonl")
    assert [r.op for r in records] == [
        "submit_order",
        "submit_order",
        "submit_order",
        "cancel_order",
        "get_order",
    ]
    first = records[0]
    assert first.order_id == "o-1" and first.symbol == "ACME" and first.qty == 10.0 and first.attempt == 1
    assert records[1].retry_after == 1.0 and records[1].failed and records[1].http_status == 503
    assert (
        records[3].status == "timeout" and records[3].http_status is None and records[3].retry_after is None
    )
    assert records[4].idempotency_key is None and not records[4].failed


def test_iter_ledger_is_lazy_and_reads_lines_from_memory():
    lines = iter([json.dumps(rec()), json.dumps(rec(ts=101.0)).encode(), rec(ts=102.0)])
    it = iter_ledger(lines)
    assert next(it).ts == 100.0
    assert [r.ts for r in it] == [101.0, 102.0]


def test_a_line_that_is_not_json_names_the_file_and_line(tmp_path):
    p = tmp_path / "ledger.jsonl"
    p.write_text(json.dumps(rec()) + "\n{not json\n")
    with pytest.raises(ConfigError) as e:
        load_ledger(p)
    assert e.value.where == f"{p}:2"


def test_a_bad_field_names_the_file_line_and_field(tmp_path):
    p = tmp_path / "ledger.jsonl"
    p.write_text("\n".join([json.dumps(rec()), json.dumps(rec()), json.dumps(rec(status="teapot"))]))
    with pytest.raises(ConfigError) as e:
        load_ledger(p)
    assert e.value.where == f"{p}:3:status"


def test_in_memory_source_name_is_used_in_errors():
    with pytest.raises(ConfigError) as e:
        load_ledger([json.dumps(rec(outcome="maybe"))], source="s3://bucket/ledger.jsonl")
    assert e.value.where == "s3://bucket/ledger.jsonl:1:outcome"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ts", None),
        ("ts", "yesterday"),
        ("ts", float("inf")),
        ("op", ""),
        ("client_id", None),
        ("status", 99),
        ("status", 600),
        ("status", True),
        ("status", None),
        ("status", "dns_error"),
        ("outcome", "ko"),
        ("latency_ms", -1),
        ("latency_ms", None),
        ("retry_after", "tomorrow"),
        ("retry_after", -2),
        ("attempt", -1),
        ("attempt", 1.5),
        ("qty", "ten"),
    ],
)
def test_invalid_record_fields_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        LedgerRecord.from_dict(rec(**{field: value}), where="ledger.jsonl:7")
    assert e.value.where == f"ledger.jsonl:7:{field}"


def test_missing_required_field_is_reported():
    d = rec()
    del d["op"]
    with pytest.raises(ConfigError, match="op"):
        LedgerRecord.from_dict(d)


def test_numeric_status_and_retry_after_strings_are_accepted():
    r = LedgerRecord.from_dict(rec(status="503", outcome="info", retry_after="2"))
    assert r.status == 503 and r.retry_after == 2.0


def test_transport_statuses_are_kept_as_strings():
    for s in ("timeout", "conn_refused", "conn_reset", "conn_error"):
        assert LedgerRecord.from_dict(rec(status=s, outcome="info")).status == s


def test_missing_or_empty_idempotency_key_reads_as_none():
    d = rec()
    del d["idempotency_key"]
    assert LedgerRecord.from_dict(d).idempotency_key is None
    assert LedgerRecord.from_dict(rec(idempotency_key="")).idempotency_key is None


def test_unknown_keys_are_kept_and_round_trip_through_to_dict():
    d = rec(order_id="o-9", error="boom", trace_id="abc")
    r = LedgerRecord.from_dict(d)
    assert r.extra == {"trace_id": "abc"}
    assert LedgerRecord.from_dict(r.to_dict()) == r
    assert r.to_dict() == d


def test_non_text_error_bodies_are_kept_as_json_text():
    r = LedgerRecord.from_dict(rec(status=500, outcome="info", error={"detail": "x"}))
    assert r.error == '{"detail": "x"}'


def test_a_line_that_is_not_an_object_is_rejected():
    with pytest.raises(ConfigError) as e:
        load_ledger(["[1, 2]"])
    assert e.value.where == "ledger:1"


def test_a_reads_order_status_and_filled_quantity_round_trip_and_older_records_still_read():
    r = LedgerRecord.from_dict(rec(op="get_order", order_id="o-1", order_status="filled", filled_qty=10))
    assert (r.order_status, r.filled_qty) == ("filled", 10.0)
    assert LedgerRecord.from_dict(r.to_dict()) == r
    assert "order_status" not in LedgerRecord.from_dict(rec()).to_dict()
