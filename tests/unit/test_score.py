"""The resilience score: correctness scores 0, bands at their exact boundaries, components and caps."""

from __future__ import annotations

import pytest

from resgate.checks.result import UNKNOWN, CheckResult
from resgate.evidence.score import (
    FAIL_CAP,
    MARGINAL_AT,
    PASS_AT,
    FaultFigures,
    band_of,
    fault_score,
    resilience_score,
    rto_points,
    share_points,
)


def ok(name: str, **counts: int) -> CheckResult:
    return CheckResult(name=name, valid=True, counts=dict(counts))


PASSING = [ok("slo"), ok("recovery"), ok("retryable"), ok("integrity", lost=0), ok("replay", mismatching=0)]


def fault(tth: float | None = 0.0, during: float | None = 1.0, after: float | None = 1.0) -> FaultFigures:
    return FaultFigures("kill-gateway", "stop_task", 30.0, tth, during, after)


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (PASS_AT, "Pass"),
        (PASS_AT - 1, "Marginal"),
        (MARGINAL_AT, "Marginal"),
        (MARGINAL_AT - 1, "Fail"),
        (0, "Fail"),
        (100, "Pass"),
        (None, "Not scored"),
    ],
)
def test_each_band_starts_exactly_at_its_threshold(value: int | None, band: str) -> None:
    assert band_of(value) == band


def test_rto_points_are_full_up_to_half_the_rto_and_none_at_the_rto() -> None:
    assert rto_points(15.0, 30.0) == 1.0
    assert rto_points(15.000001, 30.0) < 1.0
    assert rto_points(22.5, 30.0) == pytest.approx(0.5)
    assert rto_points(29.999, 30.0) > 0.0
    assert rto_points(30.0, 30.0) == 0.0
    assert rto_points(None, 30.0) == 0.0


def test_goodput_shares_are_clamped_to_zero_and_one_and_none_stays_unmeasured() -> None:
    assert share_points(1.7) == 1.0
    assert share_points(-0.1) == 0.0
    assert share_points(0.4) == 0.4
    assert share_points(None) is None


def test_a_fault_weighs_rto_half_and_during_and_after_a_quarter_each() -> None:
    s = fault_score(fault(tth=22.5, during=0.2, after=0.6))
    assert s.points == pytest.approx(100 * (0.5 * 0.5 + 0.25 * 0.2 + 0.25 * 0.6))


def test_an_unmeasured_component_is_left_out_and_the_others_reweighted() -> None:
    s = fault_score(fault(tth=0.0, during=None, after=0.5))
    assert s.during is None
    assert s.points == pytest.approx(100 * (0.5 * 1.0 + 0.25 * 0.5) / 0.75)


def test_a_clean_run_with_a_perfect_fault_scores_100_and_passes() -> None:
    s = resilience_score(PASSING, [fault()])
    assert (s.value, s.band, s.reasons) == (100, "Pass", ())


@pytest.mark.parametrize(
    ("name", "counts"),
    [("integrity", {"lost": 1}), ("integrity", {"duplicated": 1}), ("replay", {"mismatching": 1})],
)
def test_any_correctness_anomaly_scores_zero_whatever_the_recovery(name: str, counts: dict) -> None:
    results = [r for r in PASSING if r.name != name] + [CheckResult(name, False, counts)]
    s = resilience_score(results, [fault()])
    assert (s.value, s.band) == (0, "Fail")
    key = next(iter(counts))
    assert f"{key}=1" in s.reasons[0] and name in s.reasons[0]


def test_a_failed_slo_caps_a_perfect_recovery_below_the_marginal_band() -> None:
    results = [r for r in PASSING if r.name != "slo"] + [CheckResult("slo", False, {"p95_ms": 900})]
    s = resilience_score(results, [fault()])
    assert (s.value, s.band) == (FAIL_CAP, "Fail")
    assert "slo" in s.reasons[0]


def test_a_failed_check_leaves_a_score_already_below_the_cap_alone() -> None:
    results = [r for r in PASSING if r.name != "retryable"] + [CheckResult("retryable", False)]
    s = resilience_score(results, [fault(tth=None, during=0.0, after=None)])
    assert s.value == 0 and s.reasons == ()


def test_an_undecided_check_is_not_scored() -> None:
    results = [r for r in PASSING if r.name != "recovery"] + [CheckResult("recovery", UNKNOWN)]
    s = resilience_score(results, [fault()])
    assert (s.value, s.band) == (None, "Not scored")
    assert "recovery" in s.reasons[0]


def test_an_undecided_streaming_check_is_not_scored_and_a_failed_one_caps_the_score() -> None:
    s = resilience_score([*PASSING, CheckResult("streaming", UNKNOWN)], [fault()])
    assert (s.value, s.band) == (None, "Not scored") and "streaming" in s.reasons[0]
    capped = resilience_score([*PASSING, CheckResult("streaming", False)], [fault()])
    assert (capped.value, capped.band) == (FAIL_CAP, "Fail")


def test_a_run_without_faults_is_not_scored() -> None:
    s = resilience_score(PASSING, [])
    assert (s.value, s.band, s.reasons) == (None, "Not scored", ("no fault was injected",))


def test_the_run_score_is_the_rounded_mean_of_its_faults() -> None:
    s = resilience_score(PASSING, [fault(), fault(tth=None, during=0.0, after=None)])
    # 100 and 0 (never recovered, nothing served during, after unmeasured)
    assert s.value == 50 and s.band == "Fail"
    assert [round(f.points) for f in s.faults] == [100, 0]


def test_a_score_at_exactly_80_passes_and_79_is_marginal() -> None:
    # rto full (0.5) + during d*0.25 + after 1*0.25 = 0.80 -> d = 0.2
    assert resilience_score(PASSING, [fault(during=0.2)]).band == "Pass"
    assert resilience_score(PASSING, [fault(during=0.2)]).value == 80
    assert resilience_score(PASSING, [fault(during=0.16)]).value == 79
    assert resilience_score(PASSING, [fault(during=0.16)]).band == "Marginal"
