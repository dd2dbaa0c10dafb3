"""The SLO Lambda returns what the SLO checker returns for the same evidence, from S3 or from CloudWatch."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest

from lambdas.slo import handler as slo_handler
from lambdas.slo.handler import handler
from resgate.checks import slo
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError
from tests.functional.support import FIXTURES, REGION, as_payload, emitted, load_event, timed

LOCUST_STATS = json.loads((FIXTURES / "locust_stats.json").read_text())


def expected(event, stats):
    ev = slo.evidence_from_run(stats, duration_s=event.get("duration_s"))
    return as_payload(slo.check(ev, slo.SloThresholds.from_dict(event["thresholds"])).to_dict())


def test_slo_handler_returns_the_checkers_passing_result_for_locust_stats_in_s3(
    evidence, lambda_context, capsys
):
    evidence.put_jsonl("load_stats.jsonl", LOCUST_STATS, stamp=True)
    event = load_event("slo")

    out = handler(event, lambda_context)

    assert timed(out) == expected(event, LOCUST_STATS)
    assert out["valid"] is True
    metrics, _ = emitted(capsys)
    assert metrics and metrics[0]["CheckValid"] == [1.0] and metrics[0]["check"] == "slo"
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ResilienceGate"
    assert metrics[0]["p95_ms"] == [out["counts"]["p95_ms"]]
    assert slo_handler.handler.tools.logger.get_correlation_id() == event["run_id"]


def test_slo_handler_returns_the_checkers_failing_result_when_p95_is_above_the_limit(
    evidence, lambda_context
):
    evidence.put_jsonl("load_stats.jsonl", LOCUST_STATS, stamp=True)
    event = load_event("slo", thresholds={"p95_ms": 50, "max_error_ratio": 0.01})

    out = handler(event, lambda_context)

    assert timed(out) == expected(event, LOCUST_STATS)
    assert out["valid"] is False
    assert {e["kind"] for e in out["examples"]} >= {"latency_above_limit", "error_ratio_above_limit"}


def test_slo_handler_reports_unknown_when_the_load_stats_are_missing(evidence, lambda_context, capsys):
    out = handler(load_event("slo"), lambda_context)

    assert out["valid"] == UNKNOWN
    assert "load_stats.jsonl is missing" in out["error"]
    assert evidence.object_key("load_stats.jsonl") in out["error"]
    metrics, _ = emitted(capsys)
    assert metrics[0]["CheckUnknown"] == [1.0] and metrics[0]["CheckValid"] == [0.0]


def test_slo_handler_reports_unknown_when_the_load_stats_are_empty(evidence, lambda_context):
    evidence.put("load_stats.jsonl", "")

    out = handler(load_event("slo"), lambda_context)

    assert out["valid"] == UNKNOWN
    assert "no statistics" in out["error"]


def test_slo_handler_reports_unknown_naming_the_line_when_a_stats_entry_does_not_add_up(
    evidence, lambda_context
):
    bad = dict(LOCUST_STATS[0], num_requests=999)
    evidence.put_jsonl("load_stats.jsonl", [LOCUST_STATS[1], bad])

    out = handler(load_event("slo"), lambda_context)

    assert out["valid"] == UNKNOWN
    assert out["error"].startswith("malformed evidence:") and "stats[1]" in out["error"]


def test_slo_handler_reads_thresholds_from_the_runs_gate_config_when_the_event_has_none(
    evidence, lambda_context
):
    evidence.put_jsonl("load_stats.jsonl", LOCUST_STATS)
    evidence.put(
        "config.yaml", "gate: {name: paperbroker}\nchecks:\n  slo:\n    enabled: true\n    p95_ms: 50\n"
    )
    event = load_event("slo")
    del event["thresholds"]

    out = handler(event, lambda_context)

    assert timed(out) == expected({**event, "thresholds": {"p95_ms": 50}}, LOCUST_STATS)
    assert out["valid"] is False


def test_slo_handler_raises_a_config_error_without_thresholds_or_gate_config(evidence, lambda_context):
    evidence.put_jsonl("load_stats.jsonl", LOCUST_STATS)
    event = load_event("slo")
    del event["thresholds"]

    with pytest.raises(ConfigError, match=r"event\.thresholds"):
        handler(event, lambda_context)


def test_slo_handler_raises_a_config_error_naming_the_bad_threshold(evidence, lambda_context):
    with pytest.raises(ConfigError, match=r"event.thresholds.p95_ms"):
        handler(load_event("slo", thresholds={"p95_ms": -1}), lambda_context)


# ------------------------------------------------------------------------------------------ CloudWatch


def _put_alb_metrics(lb, when, latencies_s, target_5xx=0, elb_5xx=0):
    cw = boto3.client("cloudwatch", region_name=REGION)
    dims = [{"Name": "LoadBalancer", "Value": lb}]
    data = [
        {
            "MetricName": "TargetResponseTime",
            "Dimensions": dims,
            "Timestamp": when,
            "Values": latencies_s,
            "Unit": "Seconds",
        },
        {"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": when, "Value": len(latencies_s)},
        {
            "MetricName": "HTTPCode_Target_5XX_Count",
            "Dimensions": dims,
            "Timestamp": when,
            "Value": target_5xx,
        },
        {"MetricName": "HTTPCode_ELB_5XX_Count", "Dimensions": dims, "Timestamp": when, "Value": elb_5xx},
    ]
    cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)


def _cloudwatch_event(thresholds=None):
    event = load_event("slo_cloudwatch")
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    start = end - dt.timedelta(minutes=5)
    event["cloudwatch"] = {**event["cloudwatch"], "start": start.isoformat(), "end": end.isoformat()}
    if thresholds is not None:
        event["thresholds"] = thresholds
    return event, start, end


def _expected_from_raw(event, latencies_s, failures, elb_5xx, start, end):
    """The same run described as a Locust stats entry with the exact latency histogram."""
    hist = {}
    for s in latencies_s:
        ms = round(s * 1000.0, 3)
        hist[ms] = hist.get(ms, 0) + 1
    entry = {
        "name": "alb",
        "method": "",
        "num_requests": len(latencies_s) + elb_5xx,
        "num_none_requests": elb_5xx,
        "num_failures": failures + elb_5xx,
        "response_times": hist,
        "start_time": start.timestamp(),
        "last_request_timestamp": end.timestamp(),
    }
    ev = slo.SloEvidence.from_dict({"stats": [entry], "duration_s": (end - start).total_seconds()})
    return as_payload(slo.check(ev, slo.SloThresholds.from_dict(event["thresholds"])).to_dict())


LATENCIES_S = [0.010] * 50 + [0.020] * 30 + [0.045] * 15 + [0.120] * 4 + [0.900]


def test_slo_handler_judges_cloudwatch_percentiles_like_the_same_run_from_locust_stats(
    lambda_context, evidence, cloudwatch_percentiles
):
    event, start, end = _cloudwatch_event()
    _put_alb_metrics(event["cloudwatch"]["load_balancer"], start + dt.timedelta(minutes=2), LATENCIES_S)

    out = handler(event, lambda_context)

    assert timed(out) == _expected_from_raw(event, LATENCIES_S, 0, 0, start, end)
    assert out["valid"] is True
    pct = {p: cloudwatch_percentiles(LATENCIES_S, p) * 1000.0 for p in (50, 95, 99)}
    assert (out["counts"]["p50_ms"], out["counts"]["p95_ms"], out["counts"]["p99_ms"]) == (
        pct[50],
        pct[95],
        pct[99],
    )


def test_slo_handler_fails_on_cloudwatch_5xx_counting_load_balancer_errors_as_failed_requests(
    lambda_context, evidence, cloudwatch_percentiles
):
    event, start, end = _cloudwatch_event()
    _put_alb_metrics(
        event["cloudwatch"]["load_balancer"],
        start + dt.timedelta(minutes=2),
        LATENCIES_S,
        target_5xx=3,
        elb_5xx=4,
    )

    out = handler(event, lambda_context)

    assert timed(out) == _expected_from_raw(event, LATENCIES_S, 3, 4, start, end)
    assert out["valid"] is False
    assert out["counts"]["requests"] == 104 and out["counts"]["failures"] == 7


def test_slo_handler_reports_unknown_when_cloudwatch_has_no_requests(
    lambda_context, evidence, cloudwatch_percentiles
):
    event, _, _ = _cloudwatch_event()

    out = handler(event, lambda_context)

    assert out["valid"] == UNKNOWN
    assert "no requests" in out["error"]


def test_slo_handler_rejects_a_cloudwatch_window_that_ends_before_it_starts(lambda_context, evidence):
    event, start, _ = _cloudwatch_event()
    event["cloudwatch"]["end"] = (start - dt.timedelta(minutes=1)).isoformat()

    with pytest.raises(ConfigError, match=r"event\.cloudwatch\.end"):
        handler(event, lambda_context)
