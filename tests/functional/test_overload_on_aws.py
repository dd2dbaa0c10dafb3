"""An overload by ``factor`` on AWS, its evidence path through the Lambdas: the load task uploaded the shape's
``load_shape.jsonl`` (samples and fault rows, as :class:`loadgen.load_shape.OverloadShape` writes them) and
the ledger; the timeline Lambda adds the shape's fault rows to ``faults.jsonl`` (the run had no FIS
experiment), and the backpressure Lambda (the registry's ``check_handler``, the same checker as locally)
judges the surge window they give. S3 is moto; ECS is botocore's Stubber, as in test_timeline_handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import lambdas.timeline.handler as timeline
from lambdas.backpressure.handler import handler as backpressure_handler
from resgate.checks import backpressure, recovery
from tests.functional.support import REGION, load_event
from tests.functional.test_timeline_handler import T0, StubbedAws, service, task

SURGE = {"fault_id": "surge", "kind": "overload", "target": "gateway"}
AT, LIFT, ENDED = T0 + 100, T0 + 105, T0 + 106


def shape_lines() -> list[dict[str, Any]]:
    """What the shape wrote for 20 users × 4 from 100 s for 5 s (ticks once a second), with its samples."""
    rows = [
        (AT, "injecting", {"factor": 4.0, "base_users": 20, "users": 80, "duration_s": 5.0}),
        (AT + 1, "injected", {"users": 80, "duration_s": 5.0}),
        (AT + 1, "effect", {"observed": True, "evidence": "Locust ran 80 users (20 base)"}),
        (LIFT, "lifting", {"users": 80}),
        (ENDED, "ended", {"users": 20}),
    ]
    samples = [
        {"ts": T0 + s, "t_s": float(s), "users": 80 if 101 <= s <= 105 else 20, "target_users": 20}
        for s in range(90, 120)
    ]
    return [*samples, *({"ts": ts, **SURGE, "event": e, "detail": d} for ts, e, d in rows)]


def order(ts: float, status: int | str = 201, latency_ms: float = 12.0, **extra: Any) -> dict[str, Any]:
    ok = isinstance(status, int) and status < 300
    return {
        "ts": ts,
        "op": "submit_order",
        "client_id": f"c{int(ts * 10) % 80}",
        "idempotency_key": f"k-{ts:.3f}",
        "status": status,
        "outcome": "ok" if ok else "fail" if status == 503 else "info",
        "latency_ms": latency_ms,
        **extra,
    }


def ledger(rejection: dict[str, Any]) -> list[dict[str, Any]]:
    """A baseline from 80 s, the surge's requests (100 accepted, 100 rejected like ``rejection``), then
    20 s back at the baseline."""
    steady = [order(T0 + 80 + i / 10) for i in range(200)] + [order(ENDED + i / 10) for i in range(200)]
    surge = [order(AT + 0.02 + i * 0.05, latency_ms=40) for i in range(100)]
    surge += [order(AT + 0.03 + i * 0.05, **rejection) for i in range(100)]
    return sorted([*steady, *surge], key=lambda r: r["ts"])


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubbedAws]:
    ecs = boto3.client("ecs", region_name=REGION)
    fis = boto3.client("fis", region_name=REGION)
    aws = StubbedAws(ecs=ecs, fis=fis, ecs_stub=Stubber(ecs), fis_stub=Stubber(fis))
    monkeypatch.setattr(timeline, "client", {"ecs": ecs, "fis": fis}.__getitem__)
    with aws.ecs_stub, aws.fis_stub:
        yield aws
        aws.ecs_stub.assert_no_pending_responses()
        aws.fis_stub.assert_no_pending_responses()


def run_lambdas(evidence: Any, lambda_context: Any, stubbed: StubbedAws, rejection: dict[str, Any]) -> Any:
    evidence.put_jsonl("load_shape.jsonl", shape_lines())
    evidence.put_jsonl("ledger.jsonl", ledger(rejection), stamp=True)
    stubbed.fleet([task("aaaa1111", -300)], service([-290]))
    event = load_event("timeline", faults={}, experiments={})  # an overload by factor has no experiment
    out = timeline.handler(event, lambda_context)
    return out, backpressure_handler(load_event("retryable", thresholds={}), lambda_context)


def test_the_timeline_lambda_records_the_shapes_surge_window(evidence, lambda_context, stubbed) -> None:
    out, _ = run_lambdas(evidence, lambda_context, stubbed, {"status": 503, "retry_after": 1.0})
    assert out["fault_events"] == 5 and out["not_started"] == []
    faults = [json.loads(line) for line in evidence.get("faults.jsonl").splitlines() if line.strip()]
    assert [(f["event"], f["ts"]) for f in faults] == [
        ("injecting", AT),
        ("injected", AT + 1),
        ("effect", AT + 1),
        ("lifting", LIFT),
        ("ended", ENDED),
    ]
    for f in faults:
        assert (f["fault_id"], f["kind"], f["target"]) == ("surge", "overload", "gateway")
        assert f["run_id"] == "20260101T120000Z-a1b2c3"
        recovery.FaultEvent.from_dict(f)
    assert backpressure.evidence_from_run(faults, []).bursts == ()  # no ledger, no window


def test_the_backpressure_lambda_passes_a_surge_shed_with_retry_after(evidence, lambda_context, stubbed):
    _, result = run_lambdas(evidence, lambda_context, stubbed, {"status": 503, "retry_after": 1.0})
    assert result["valid"] is True, result
    assert result["counts"] == {"bursts": 1, "requests": 200, "accepted": 100, "shed": 100, "unclear": 0}
    (burst,) = result["details"]["bursts"]
    assert burst["fault_id"] == "surge" and burst["back_after_s"] == 0.0


def test_the_backpressure_lambda_fails_a_surge_answered_by_timeouts(evidence, lambda_context, stubbed):
    _, result = run_lambdas(evidence, lambda_context, stubbed, {"status": "timeout", "latency_ms": 3000})
    assert result["valid"] is False
    assert {e["kind"] for e in result["examples"]} >= {"unclear_rejections"}
    assert result["counts"]["unclear"] == 100


def test_without_the_shapes_file_the_timeline_has_no_surge_and_backpressure_is_unknown(
    evidence, lambda_context, stubbed
):
    evidence.put_jsonl("ledger.jsonl", ledger({"status": 503, "retry_after": 1.0}), stamp=True)
    stubbed.fleet([task("aaaa1111", -300)], service([-290]))
    out = timeline.handler(load_event("timeline", faults={}, experiments={}), lambda_context)
    assert out["fault_events"] == 0
    result = backpressure_handler(load_event("retryable", thresholds={}), lambda_context)
    # no surge window: nothing to judge, and no baseline before a surge either
    assert result["valid"] == "unknown" and {e["kind"] for e in result["examples"]} == {
        "no_burst",
        "no_baseline",
    }
