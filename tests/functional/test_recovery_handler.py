"""The recovery Lambda returns what the recovery checker returns for the same fault and health timelines."""

from __future__ import annotations

import json

import pytest

from lambdas.recovery.handler import handler
from resgate.checks import recovery
from resgate.checks.ledger import load_ledger
from resgate.checks.result import UNKNOWN
from tests.functional.support import FIXTURES, as_payload, emitted, load_event, timed

TIMELINE = json.loads((FIXTURES / "recovery_gateway_kill.json").read_text())
# What the runner writes besides recovery events: scheduling lines and supervisor lines without a service.
NOISE_FAULTS = [
    {"ts": 999.0, "fault_id": "f1", "kind": "process_kill", "target": "gateway", "event": "scheduled"}
]
NOISE_HEALTH = [{"ts": 995.0, "event": "supervisor_started"}]


def ledger_lines(fail_from=1000.0, fail_to=1005.0):
    """One request every 0.5 s from 980 to 1020; those in [fail_from, fail_to) failed with a 503."""
    out = []
    for i in range(80):
        ts = 980.0 + i * 0.5
        failed = fail_from <= ts < fail_to
        out.append(
            {
                "ts": ts,
                "op": "submit_order",
                "client_id": "c1",
                "idempotency_key": f"k-{i}",
                "status": 503 if failed else 201,
                "outcome": "fail" if failed else "ok",
                "latency_ms": 5.0,
                "retry_after": 1 if failed else None,
            }
        )
    return out


def expected(event, faults, health, ledger):
    ev = recovery.evidence_from_run(faults, health, records=load_ledger(ledger) if ledger else [])
    return as_payload(
        recovery.check(ev, recovery.RecoveryThresholds.from_dict(event["thresholds"])).to_dict()
    )


def put_run(evidence, ledger=None):
    evidence.put_jsonl("faults.jsonl", NOISE_FAULTS + TIMELINE["faults"], stamp=True)
    evidence.put_jsonl("health.jsonl", NOISE_HEALTH + TIMELINE["health"], stamp=True)
    if ledger is not None:
        evidence.put_jsonl("ledger.jsonl", ledger)


def test_recovery_handler_returns_the_checkers_passing_result_with_the_ledgers_error_windows(
    evidence, lambda_context, capsys
):
    ledger = ledger_lines()
    put_run(evidence, ledger)
    event = load_event("recovery")

    out = handler(event, lambda_context)

    assert timed(out) == expected(
        event, TIMELINE["faults"], TIMELINE["health"], [json.dumps(r) for r in ledger]
    )
    assert out["valid"] is True and out["counts"]["faults"] == 1
    metrics, _ = emitted(capsys)
    assert metrics[0]["max_time_to_healthy_s"] == [out["counts"]["max_time_to_healthy_s"]]
    unit = {m["Name"]: m["Unit"] for m in metrics[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert unit["max_time_to_healthy_s"] == "Seconds"


def test_recovery_handler_returns_the_checkers_failing_result_when_the_rto_is_missed(
    evidence, lambda_context
):
    put_run(evidence)
    event = load_event("recovery", thresholds={"rto_s": 2})

    out = handler(event, lambda_context)

    assert timed(out) == expected(event, TIMELINE["faults"], TIMELINE["health"], None)
    assert out["valid"] is False
    assert out["counts"]["rto_missed"] == 1
    assert out["examples"][0]["kind"] == "rto_missed"


def test_recovery_handler_fails_when_the_error_ratio_does_not_come_back(evidence, lambda_context):
    ledger = ledger_lines(fail_from=1000.0, fail_to=1020.0)
    put_run(evidence, ledger)
    event = load_event("recovery")

    out = handler(event, lambda_context)

    assert timed(out) == expected(
        event, TIMELINE["faults"], TIMELINE["health"], [json.dumps(r) for r in ledger]
    )
    assert out["valid"] is False
    assert out["counts"]["error_ratio_not_back"] == 1


@pytest.mark.parametrize("missing", ["faults.jsonl", "health.jsonl"])
def test_recovery_handler_reports_unknown_when_a_timeline_is_missing(evidence, lambda_context, missing):
    put_run(evidence)
    evidence.s3.delete_object(Bucket=evidence.bucket, Key=evidence.object_key(missing))

    out = handler(load_event("recovery"), lambda_context)

    assert out["valid"] == UNKNOWN
    assert f"{missing} is missing" in out["error"]


def test_recovery_handler_reports_unknown_when_nothing_was_injected(evidence, lambda_context):
    evidence.put("faults.jsonl", "")
    evidence.put_jsonl("health.jsonl", TIMELINE["health"])

    out = handler(load_event("recovery"), lambda_context)

    assert timed(out) == expected(load_event("recovery"), [], TIMELINE["health"], None)
    assert out["valid"] == UNKNOWN
