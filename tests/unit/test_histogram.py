"""Unit tests for latency histograms: validation, merging and nearest-rank percentiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks import histogram as h
from resgate.contract.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_normalize_reads_locust_json_keys_and_drops_empty_buckets():
    assert h.normalize({"12": 3, "150": 1, "3400": 0}) == {12.0: 3, 150.0: 1}


def test_normalize_adds_buckets_that_name_the_same_value():
    assert h.normalize({"12": 1, 12: 2, "12.0": 3}) == {12.0: 6}


@pytest.mark.parametrize(
    "bad",
    [{"x": 1}, {"12": -1}, {"12": 1.5}, {"12": "3"}, {"-5": 1}, {"nan": 1}, {True: 1}, {"12": True}, [1, 2]],
)
def test_normalize_rejects_malformed_histograms_with_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError) as e:
        h.normalize(bad, where="evidence.slo.stats[0].response_times")
    assert e.value.where == "evidence.slo.stats[0].response_times"


def test_percentile_is_nearest_rank_over_one_to_a_hundred():
    hist = h.from_samples(range(1, 101))
    assert h.percentile(hist, 50) == 50
    assert h.percentile(hist, 95) == 95
    assert h.percentile(hist, 99) == 99
    assert h.percentile(hist, 100) == 100
    assert h.percentile(hist, 0.5) == 1


def test_percentile_rank_is_exact_for_decimal_percentiles():
    hist = h.from_samples(range(1, 1001))
    assert h.percentile(hist, 99.9) == 999


def test_percentile_of_small_counts_rounds_the_rank_up():
    hist = {10.0: 1, 20.0: 1, 30.0: 1}
    assert h.percentile(hist, 50) == 20
    assert h.percentile(hist, 34) == 20
    assert h.percentile(hist, 33) == 10


def test_percentile_of_empty_histogram_is_none():
    assert h.percentile({}, 95) is None
    assert h.percentiles({}) == {"p50": None, "p95": None, "p99": None}


@pytest.mark.parametrize("p", [0, -1, 100.1])
def test_percentile_rejects_out_of_range_percent(p):
    with pytest.raises(ValueError):
        h.percentile({1.0: 1}, p)


def test_merged_percentile_is_not_the_average_of_the_parts_percentiles():
    fast = {10.0: 99, 20.0: 1}  # p95 = 10
    slow = {1000.0: 10}  # p95 = 1000
    merged = h.merge([fast, slow])
    assert merged == {10.0: 99, 20.0: 1, 1000.0: 10}
    # 110 samples: rank ceil(0.95*110)=105 falls among the slow ones; the average (505) would be wrong.
    assert h.percentile(merged, 95) == 1000
    assert h.percentile(merged, 50) == 10


def test_merge_does_not_modify_its_inputs():
    a, b = {1.0: 1}, {1.0: 2, 2.0: 1}
    h.merge([a, b])
    assert a == {1.0: 1} and b == {1.0: 2, 2.0: 1}


def test_percentiles_names_keys_by_percent():
    assert h.percentiles(h.from_samples([1, 2, 3, 4]), (50, 99.9)) == {"p50": 2, "p99.9": 4}


def test_nearest_rank_on_raw_samples_matches_histogram_percentile():
    assert h.nearest_rank([5, 1, 4, 2, 3], 60) == 3
    assert h.nearest_rank([], 60) is None


def test_real_locust_json_histogram_reads_and_merges():
    stats = json.loads((FIXTURES / "locust_stats.json").read_text())
    hists = [h.normalize(e["response_times"]) for e in stats]
    merged = h.merge(hists)
    assert h.total(merged) == sum(e["num_requests"] - e["num_none_requests"] for e in stats)
    assert h.percentile(merged, 100) == 3400
