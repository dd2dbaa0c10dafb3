"""Unit tests for the retryable check: each failure class, present and absent, and the thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from resgate.checks import retryable as rt
from resgate.checks.ledger import LedgerRecord, load_ledger
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def rec(
    status=201,
    outcome=None,
    *,
    key="k-1",
    op="submit_order",
    retry_after=None,
    error=None,
    ts=1.0,
    method=None,
):
    if outcome is None:
        outcome = "ok" if isinstance(status, int) and status < 400 else "info"
    d = {
        "ts": ts,
        "op": op,
        "client_id": "c1",
        "idempotency_key": key,
        "status": status,
        "outcome": outcome,
        "latency_ms": 5.0,
        "retry_after": retry_after,
        "error": error,
    }
    if method is not None:
        d["method"] = method
    return LedgerRecord.from_dict(d)


def check(records, **thresholds):
    return rt.check(
        rt.RetryableEvidence(records=tuple(records)), rt.RetryableThresholds.from_dict(thresholds)
    )


@pytest.mark.parametrize(
    ("record", "cls"),
    [
        (rec(409, "fail"), "rejected_conflict_409"),
        (rec(429, "fail", retry_after=1), "throttled_429"),
        (rec(503, retry_after=2), "unavailable_503_retry_after"),
        (rec(503), "unavailable_503_no_retry_after"),
        (rec("conn_refused"), "conn_refused"),
        (rec("conn_reset"), "conn_reset"),
        (rec("timeout"), "timeout"),
        (rec(400, "fail"), "client_error_4xx"),
        (rec(422, "fail"), "client_error_4xx"),
        (rec(404, "fail"), "client_error_4xx"),
        (rec(500, error='{"error": "internal"}'), "server_error_5xx"),
        (rec(502), "server_error_5xx"),
        (rec(504), "server_error_5xx"),
        (rec("conn_error"), "other"),
        (rec(200, "fail"), "other"),
        (rec(201), None),
    ],
)
def test_classify_puts_each_failure_in_its_class(record, cls):
    assert rt.classify(record) == cls


@pytest.mark.parametrize(
    "record",
    [
        rec(409, "fail"),
        rec(429, "fail"),
        rec(503, retry_after=1),
        rec(503, retry_after=0),
        rec("conn_refused"),
        rec("conn_refused", key=None),
        rec("conn_reset"),
        rec("timeout"),
        rec("timeout", key=None, op="get_order"),
    ],
)
def test_allowed_failures_pass_by_default(record):
    r = check([rec(201), record])
    assert r.valid is True, r.examples
    assert r.counts["failed"] == 1 and r.counts["allowed"] == 1 and r.counts["not_allowed"] == 0


@pytest.mark.parametrize(
    ("record", "cls"),
    [
        (rec(503), "unavailable_503_no_retry_after"),
        (rec(400, "fail"), "client_error_4xx"),
        (rec(500, error="Internal Server Error"), "server_error_5xx"),
        (rec(502), "server_error_5xx"),
        (rec(504), "server_error_5xx"),
        (rec("conn_error"), "other"),
        (rec("timeout", key=None), "timeout"),
        (rec("conn_reset", key=None, op="cancel_order"), "conn_reset"),
    ],
)
def test_failures_that_are_not_clearly_retryable_fail_the_check_and_are_named(record, cls):
    r = check([rec(201), record])
    assert r.valid is False
    assert r.counts["not_allowed"] == 1 and r.counts[cls] == 1
    (ex,) = r.examples
    assert ex["kind"] == "not_retryable" and ex["class"] == cls and ex["op"] == record.op
    assert ex["idempotency_key"] == record.idempotency_key


def test_a_timeout_without_idempotency_key_is_indeterminate_and_says_so():
    r = check([rec("timeout", key=None, op="submit_order")])
    assert "no idempotency key" in r.examples[0]["reason"]


def test_example_carries_a_snippet_of_the_error_body():
    body = "x" * 1000
    r = check([rec(500, error=body)])
    assert r.examples[0]["error"] == "x" * rt.ERROR_SNIPPET_CHARS


def test_client_errors_pass_only_when_configured():
    records = [rec(201), rec(422, "fail")]
    assert check(records).valid is False
    allowed = [*sorted(rt.DEFAULT_ALLOWED), "client_error_4xx"]
    assert check(records, allowed=allowed).valid is True


def test_requiring_idempotency_keys_can_be_turned_off():
    records = [rec("timeout", key=None)]
    assert check(records, needs_idempotency_key=[]).valid is True


def test_safe_ops_are_configurable():
    records = [rec("timeout", key=None, op="rfq")]
    assert check(records).valid is False
    assert check(records, safe_ops=["get_order", "rfq"]).valid is True


@pytest.mark.parametrize("status", ["timeout", "conn_reset"])
@pytest.mark.parametrize(
    ("method", "valid"),
    [
        ("GET", True),
        ("get", True),
        ("HEAD", True),
        ("OPTIONS", True),
        ("POST", False),
        ("PUT", False),
        ("DELETE", False),
        (None, False),
    ],
)
def test_an_indeterminate_failure_of_a_safe_http_method_is_retryable_without_a_key(status, method, valid):
    # a plain locustfile's ledger: op is the URL path, no idempotency key, only the method says it is a read
    r = check([rec(status, key=None, op="/items", method=method)])
    assert r.valid is valid, r.examples


def test_safe_methods_are_configurable_and_compared_in_upper_case():
    records = [rec("timeout", key=None, op="/items", method="PUT")]
    assert check(records).valid is False
    assert check(records, safe_methods=["get", "put"]).valid is True
    assert check([rec("timeout", key=None, op="/items", method="GET")], safe_methods=[]).valid is False


def test_a_safe_method_does_not_excuse_a_class_that_is_never_allowed():
    assert check([rec(500, key=None, op="/items", method="GET")]).valid is False


def test_the_method_is_read_from_the_ledger_and_written_back():
    r = rec("timeout", key=None, method="GET")
    assert r.method == "GET" and r.to_dict()["method"] == "GET" and "method" not in r.extra


def test_no_failures_at_all_is_valid():
    r = check([rec(201), rec(200, op="get_order", key=None)])
    assert r.valid is True and r.counts["requests"] == 2 and r.counts["failed"] == 0


def test_an_empty_ledger_is_unknown():
    r = check([])
    assert r.valid == UNKNOWN and "no requests" in r.error


def test_counts_report_every_class_and_examples_are_capped_per_class():
    records = [rec(500, ts=float(i)) for i in range(50)] + [rec(503) for _ in range(3)] + [rec(409, "fail")]
    r = check(records)
    assert r.valid is False
    assert r.counts["server_error_5xx"] == 50 and r.counts["unavailable_503_no_retry_after"] == 3
    assert r.counts["rejected_conflict_409"] == 1 and r.counts["not_allowed"] == 53
    assert set(rt.CLASSES) <= set(r.counts)
    classes = [e["class"] for e in r.examples]
    assert classes.count("server_error_5xx") == rt.EXAMPLES_PER_CLASS
    assert classes.count("unavailable_503_no_retry_after") == 3
    assert r.details["not_allowed_by_class"]["server_error_5xx"] == 50


def test_ledger_fixture_passes_with_default_thresholds():
    records = load_ledger(FIXTURES / "ledger_small.jsonl")
    r = check(records)
    assert r.valid is True
    assert r.counts["unavailable_503_retry_after"] == 1 and r.counts["timeout"] == 1


def test_evidence_from_dict_reads_ledger_records():
    ev = rt.RetryableEvidence.from_dict({"records": [rec(503).to_dict()]})
    assert ev.records[0].status == 503
    with pytest.raises(ConfigError) as e:
        rt.RetryableEvidence.from_dict({"records": [{"ts": 1}]})
    assert e.value.where.startswith("evidence.retryable.records:1:")


@pytest.mark.parametrize(
    ("thresholds", "where"),
    [
        ({"allowed": ["throttled_429", "teapot_418"]}, "thresholds.retryable.allowed[1]"),
        ({"allowed": "throttled_429"}, "thresholds.retryable.allowed"),
        ({"needs_idempotency_key": ["nope"]}, "thresholds.retryable.needs_idempotency_key[0]"),
        ({"safe_ops": [""]}, "thresholds.retryable.safe_ops[0]"),
        ({"safe_methods": "GET"}, "thresholds.retryable.safe_methods"),
        ({"safe_methods": [""]}, "thresholds.retryable.safe_methods[0]"),
        ({"allow": []}, "thresholds.retryable"),
    ],
)
def test_bad_thresholds_raise_config_error_naming_the_key(thresholds, where):
    with pytest.raises(ConfigError) as e:
        rt.RetryableThresholds.from_dict(thresholds)
    assert e.value.where == where


def test_one_not_retryable_failure_among_allowed_ones_is_the_boundary_that_fails_through_judge():
    allowed = [rec(409, "fail"), rec(429, "fail", retry_after=1), rec(201)]
    assert rt.detect(rt.tally_failures(allowed, rt.RetryableThresholds())) == []
    assert check(allowed).valid is True
    tally = rt.tally_failures([*allowed, rec(500)], rt.RetryableThresholds())
    assert rt.detect(tally) == [{"kind": "not_retryable", "count": 1}]
    assert check([*allowed, rec(500)]).valid is False


def test_an_empty_ledger_is_an_undecided_anomaly_for_judge():
    assert rt.detect(rt.tally_failures([], rt.RetryableThresholds())) == [{"kind": "no_requests"}]
    assert {"no_requests"} == rt.UNDECIDED_KINDS and {"not_retryable"} == rt.FAILING_KINDS
