"""Unit tests for the SLO check, from small hand-made Locust stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks import slo
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def ep(name="submit_order", lat=None, failures=0, method="POST", none=0, start=1000.0, last=1010.0):
    """A Locust stats entry with the given ``{ms: count}`` histogram."""
    lat = {10: 90, 20: 10} if lat is None else lat
    return {
        "name": name,
        "method": method,
        "num_requests": sum(lat.values()) + none,
        "num_none_requests": none,
        "num_failures": failures,
        "response_times": {str(k): v for k, v in lat.items()},
        "start_time": start,
        "last_request_timestamp": last,
    }


def run(stats, thresholds, duration_s=10.0, samples=None):
    ev = slo.SloEvidence.from_dict({"stats": stats, "duration_s": duration_s, "samples": samples})
    return slo.check(ev, slo.SloThresholds.from_dict(thresholds))


def kinds(result):
    return [e["kind"] for e in result.examples]


# ------------------------------------------------------------------ latency, errors, throughput


def test_slo_passes_when_every_figure_is_within_its_limit():
    r = run(
        [ep()], {"p50_ms": 15, "p95_ms": 25, "p99_ms": 25, "max_error_ratio": 0.01, "min_throughput_rps": 5}
    )
    assert r.valid is True, r.examples
    assert r.counts["requests"] == 100 and r.counts["p50_ms"] == 10 and r.counts["p95_ms"] == 20
    assert r.counts["throughput_rps"] == 10.0
    assert r.examples == []


def test_slo_fails_when_p95_is_above_the_limit():
    r = run([ep(lat={10: 90, 500: 10})], {"p95_ms": 100})
    assert r.valid is False
    ex = [e for e in r.examples if e["scope"] == "overall"]
    assert ex == [
        {"kind": "latency_above_limit", "scope": "overall", "metric": "p95_ms", "value": 500, "limit": 100}
    ]


def test_slo_fails_when_p99_is_above_the_limit_though_p95_is_fine():
    r = run([ep(lat={10: 98, 900: 2})], {"p95_ms": 100, "p99_ms": 200})
    assert r.valid is False
    assert {(e["metric"], e["value"]) for e in r.examples} == {("p99_ms", 900)}


def test_slo_reports_each_endpoint_that_breaks_a_latency_limit():
    r = run([ep("submit_order"), ep("rfq", lat={10: 50, 800: 50})], {"p95_ms": 100})
    assert r.valid is False
    endpoints = {e.get("endpoint") for e in r.examples}
    assert "POST rfq" in endpoints and "POST submit_order" not in endpoints
    assert r.details["endpoints"]["POST rfq"]["p95_ms"] == 800


def test_per_endpoint_override_relaxes_a_limit_for_that_endpoint_only():
    stats = [ep("submit_order", lat={10: 100}), ep("rfq", lat={10: 90, 800: 10})]
    th = {"p95_ms": 1000, "p99_ms": 100, "per_endpoint": {"rfq": {"p99_ms": 1000}}}
    r = run(stats, th)
    # The endpoint passes with its override, but the whole run still breaks the run-wide p99.
    assert r.valid is False
    assert [(e["scope"], e["metric"]) for e in r.examples] == [("overall", "p99_ms")]


def test_per_endpoint_override_can_tighten_and_can_switch_a_limit_off():
    stats = [ep("submit_order", lat={50: 100}, method="POST"), ep("get_order", lat={10: 100}, method="GET")]
    r = run(stats, {"p95_ms": 100, "per_endpoint": {"GET get_order": {"p95_ms": 5}}})
    assert r.valid is False
    assert [e["endpoint"] for e in r.examples] == ["GET get_order"]
    r = run(stats, {"p95_ms": 40, "per_endpoint": {"submit_order": {"p95_ms": None}}})
    assert [e["scope"] for e in r.examples] == ["overall"]


def test_slo_fails_when_error_ratio_is_above_the_limit():
    r = run([ep(failures=5)], {"max_error_ratio": 0.01})
    assert r.valid is False
    assert r.counts["error_ratio"] == 0.05
    overall = next(e for e in r.examples if e["scope"] == "overall")
    assert (
        overall["kind"] == "error_ratio_above_limit"
        and overall["failures"] == 5
        and overall["requests"] == 100
    )


def test_slo_passes_when_error_ratio_is_at_the_limit():
    assert run([ep(failures=1)], {"max_error_ratio": 0.01}).valid is True


def test_slo_fails_when_throughput_is_below_the_limit():
    r = run([ep()], {"min_throughput_rps": 50}, duration_s=10.0)
    assert r.valid is False
    assert r.examples == [
        {
            "kind": "throughput_below_limit",
            "scope": "overall",
            "metric": "throughput_rps",
            "value": 10.0,
            "limit": 50,
        }
    ]


def test_throughput_limit_applies_to_the_whole_run_not_each_endpoint():
    r = run([ep("a"), ep("b")], {"min_throughput_rps": 15}, duration_s=10.0)
    assert r.valid is True


def test_duration_is_derived_from_locust_timestamps_when_not_given():
    r = run([ep(start=1000.0, last=1020.0)], {"min_throughput_rps": 1}, duration_s=None)
    assert r.counts["duration_s"] == 20.0 and r.counts["throughput_rps"] == 5.0
    assert r.valid is True


def test_throughput_is_unknown_when_the_duration_cannot_be_told():
    e = ep()
    del e["start_time"], e["last_request_timestamp"]
    r = run([e], {"min_throughput_rps": 1}, duration_s=None)
    assert r.valid == UNKNOWN
    assert "duration" in r.error


def test_no_requests_at_all_is_unknown_never_a_pass():
    r = run([], {"p95_ms": 100})
    assert r.valid == UNKNOWN and "no requests" in r.error


def test_no_limits_configured_is_unknown():
    r = run([ep()], {})
    assert r.valid == UNKNOWN and "no SLO limit" in r.error


def test_only_async_requests_without_response_times_leave_latency_unknown():
    r = run([ep(lat={}, none=10)], {"p95_ms": 100})
    assert r.valid == UNKNOWN
    assert "response time" in r.error


def test_limits_for_an_endpoint_that_got_no_requests_are_unknown():
    r = run([ep("submit_order")], {"p95_ms": 100, "per_endpoint": {"rfq": {"p95_ms": 50}}})
    assert r.valid == UNKNOWN and "rfq" in r.error


def test_overall_percentiles_come_from_the_merged_histogram():
    stats = [ep("fast", lat={10: 99, 20: 1}), ep("slow", lat={1000: 10})]
    r = run(stats, {"p95_ms": 2000})
    assert r.counts["p95_ms"] == 1000
    assert r.details["endpoints"]["POST fast"]["p95_ms"] == 10


def test_entries_of_the_same_endpoint_from_several_workers_are_merged():
    stats = [ep("submit_order", lat={10: 50}, failures=1), ep("submit_order", lat={30: 50}, failures=1)]
    r = run(stats, {"p95_ms": 100})
    assert r.counts["endpoints"] == 1
    assert r.details["endpoints"]["POST submit_order"] == {
        "requests": 100,
        "failures": 2,
        "timed": 100,
        "error_ratio": 0.02,
        "throughput_rps": 10.0,
        "p50_ms": 10,
        "p95_ms": 30,
        "p99_ms": 30,
    }


def test_locust_aggregated_row_is_not_counted_twice():
    total = ep("Aggregated", method="")
    r = run([ep(), total], {"p95_ms": 100})
    assert r.counts["requests"] == 100


def test_real_locust_json_output_is_accepted_as_evidence():
    raw = json.loads((FIXTURES / "locust_stats.json").read_text())
    ev = slo.SloEvidence.from_dict(raw)
    r = slo.check(ev, slo.SloThresholds.from_dict({"p95_ms": 5000, "max_error_ratio": 0.5}))
    assert r.valid is True
    assert r.counts["requests"] == 39 and r.counts["failures"] == 3
    assert set(r.details["endpoints"]) == {"POST submit_order", "GET get_order", "POST rfq"}
    assert r.counts["duration_s"] == pytest.approx(9.1, abs=0.01)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("thresholds", "where"),
    [
        ({"p95_ms": -1}, "thresholds.slo.p95_ms"),
        ({"p95_ms": 0}, "thresholds.slo.p95_ms"),
        ({"p95_ms": "fast"}, "thresholds.slo.p95_ms"),
        ({"max_error_ratio": 1.5}, "thresholds.slo.max_error_ratio"),
        ({"p95": 100}, "thresholds.slo"),
        ({"per_endpoint": {"rfq": {"p95_ms": -3}}}, "thresholds.slo.per_endpoint.rfq.p95_ms"),
        ({"per_endpoint": {"rfq": {"latency": 3}}}, "thresholds.slo.per_endpoint.rfq"),
        ({"regression": {"baseline": [], "max_ratio": 0.5}}, "thresholds.slo.regression.max_ratio"),
        ({"regression": {"baseline": [], "alpha": 2}}, "thresholds.slo.regression.alpha"),
        ({"regression": {"baseline": [], "min_windows": 1}}, "thresholds.slo.regression.min_windows"),
        (
            {"regression": {"baseline": {"stats": [{"name": "x"}]}}},
            "thresholds.slo.regression.baseline.stats[0].num_requests",
        ),
    ],
)
def test_bad_thresholds_raise_config_error_naming_the_key(thresholds, where):
    with pytest.raises(ConfigError) as e:
        slo.SloThresholds.from_dict(thresholds)
    assert e.value.where == where


def test_stats_whose_histogram_does_not_match_the_request_count_are_rejected():
    bad = ep()
    bad["num_requests"] = 101
    with pytest.raises(ConfigError) as e:
        slo.SloEvidence.from_dict([bad])
    assert e.value.where == "evidence.slo.stats[0].response_times"


def test_more_failures_than_requests_is_rejected():
    with pytest.raises(ConfigError, match="num_failures"):
        slo.SloEvidence.from_dict([ep(failures=101)])


# ------------------------------------------------------------------ regression


BASE_WINDOWS = [100.0, 102.0, 98.0, 101.0, 99.0, 100.0]


def regression(baseline_lat, baseline_samples, max_ratio=1.2):
    return {
        "p95_ms": 10_000,
        "regression": {
            "baseline": {"stats": [ep(lat=baseline_lat)], "duration_s": 10.0, "samples": baseline_samples},
            "max_ratio": max_ratio,
            "alpha": 0.05,
        },
    }


def test_regression_fails_when_p95_got_worse_beyond_the_ratio_and_the_test_is_significant():
    th = regression({90: 90, 100: 10}, BASE_WINDOWS)
    r = run([ep(lat={90: 90, 150: 10})], th, samples=[150.0, 152.0, 149.0, 151.0, 148.0, 150.0])
    assert r.valid is False
    ex = r.examples[0]
    assert ex["kind"] == "regression" and ex["metrics"] == ["p95_ms", "p99_ms"]
    assert ex["p95_ratio"] == 1.5 and ex["p_value"] < 0.05
    assert r.counts["p_value"] < 0.05


def test_regression_passes_when_worse_beyond_the_ratio_but_not_significant():
    th = regression({90: 90, 100: 10}, BASE_WINDOWS)
    noisy = [99.0, 180.0, 97.0, 101.0, 96.0, 100.0]
    r = run([ep(lat={90: 90, 150: 10})], th, samples=noisy)
    assert r.valid is True
    assert r.details["regression"]["worse"] == ["p95_ms", "p99_ms"]
    assert r.details["regression"]["significant"] is False and r.counts["p_value"] >= 0.05


def test_regression_passes_when_significant_but_within_the_ratio():
    th = regression({90: 90, 100: 10}, BASE_WINDOWS)
    r = run([ep(lat={90: 90, 110: 10})], th, samples=[110.0, 111.0, 109.0, 112.0, 110.0, 111.0])
    assert r.valid is True
    assert r.details["regression"]["significant"] is True and r.details["regression"]["worse"] == []


def test_regression_is_unknown_with_too_few_windows_on_either_side():
    th = regression({90: 90, 100: 10}, BASE_WINDOWS)
    r = run([ep(lat={90: 90, 150: 10})], th, samples=[150.0, 151.0])
    assert r.valid == UNKNOWN
    assert "too few windows" in r.error and "run 2" in r.error
    th = regression({90: 90, 100: 10}, [100.0])
    r = run([ep(lat={90: 90, 150: 10})], th, samples=[150.0] * 6)
    assert r.valid == UNKNOWN and "baseline 1" in r.error


def test_regression_is_unknown_when_the_baseline_has_no_timed_requests():
    th = regression({}, BASE_WINDOWS)
    r = run([ep(lat={90: 90, 150: 10})], th, samples=[150.0] * 6)
    assert r.valid == UNKNOWN and "baseline has no timed requests" in r.error


def test_a_plain_limit_violation_still_fails_when_the_regression_part_is_unknown():
    th = regression({90: 90, 100: 10}, [])
    th["p95_ms"] = 120
    r = run([ep(lat={90: 90, 150: 10})], th, samples=[])
    assert r.valid is False


def test_identical_windows_are_not_a_significant_difference():
    assert slo.mann_whitney_greater([5.0] * 4, [5.0] * 4) == 1.0


def test_window_p95_cuts_records_into_fixed_windows_from_the_first_ts():
    records = [{"ts": 100.0 + i * 0.5, "latency_ms": float(i % 10 + 1)} for i in range(20)]
    records.append({"ts": 112.0, "latency_ms": 500.0})
    # windows [100,105) and [105,110) hold 1..10 each; [110,115) holds the single slow request.
    assert slo.window_p95(records, 5.0) == [10.0, 10.0, 500.0]
    assert slo.window_p95(records, 5.0, min_samples=2) == [10.0, 10.0]
    assert slo.window_p95([], 5.0) == []


def test_evidence_from_run_builds_samples_from_ledger_records():
    from resgate.checks.ledger import load_ledger

    records = load_ledger(FIXTURES / "ledger_small.jsonl")
    ev = slo.evidence_from_run([ep()], duration_s=10.0, records=records, window_s=1.0)
    assert ev.samples == (15.0, 2000.0)
    assert len(ev.stats) == 1
