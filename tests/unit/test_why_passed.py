"""report.md answers "why did it pass?" (resgate/evidence/why.py): each check's pass condition with the run's
limits, each SLO figure beside its limit, one line per anomaly a passing check counted."""

from __future__ import annotations

from resgate.checks.result import UNKNOWN, CheckResult
from resgate.evidence.report import report_markdown
from resgate.evidence.why import anomaly_lines, figures_with_limits, passes_when


def _slo(**limits: float | None) -> CheckResult:
    overall = {
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "max_error_ratio": None,
        "min_throughput_rps": None,
    }
    overall.update(limits)
    return CheckResult(
        "slo", True, {"p95_ms": 10, "error_ratio": 0.01}, details={"limits": {"overall": overall}}
    )


def test_each_slo_figure_shows_its_limit_and_a_figure_without_a_limit_shows_none() -> None:
    r = _slo(p95_ms=500, max_error_ratio=0.05, min_throughput_rps=20)
    shown = "requests=9, p95_ms=10, error_ratio=0.01, throughput_rps=30, p99_ms=12"
    assert figures_with_limits(r, shown) == (
        "requests=9, p95_ms=10 (≤ 500), error_ratio=0.01 (≤ 0.05), throughput_rps=30 (≥ 20), p99_ms=12"
    )
    assert figures_with_limits(CheckResult("recovery", True), shown) == shown


def test_the_slo_pass_condition_names_the_whole_run_and_the_per_phase_limits() -> None:
    r = _slo(p99_ms=2000, max_error_ratio=0.01)
    r.details["limits"]["phases"] = {"limits": {"steady": {"max_error_ratio": 0.35, "p95_ms": None}}}
    assert passes_when(r) == "p99_ms ≤ 2000, error_ratio ≤ 0.01; per phase steady: max_error_ratio ≤ 0.35"
    assert passes_when(_slo()) == "no whole-run limit"


def test_the_recovery_pass_condition_carries_the_rto_and_the_throughput_ratio() -> None:
    r = CheckResult("recovery", True, details={"rto_s": 30.0, "min_throughput_ratio": 0.5})
    text = passes_when(r)
    assert "(30.0 s;" in text and "≥ 0.5 × the baseline's" in text
    assert "≥" not in passes_when(CheckResult("recovery", True, details={"rto_s": 10}))


def test_the_retryable_pass_condition_lists_the_allowed_classes() -> None:
    r = CheckResult("retryable", True, details={"allowed_classes": ["conn_reset", "throttled_429"]})
    assert passes_when(r).endswith("(allowed: conn_reset, throttled_429)")


def test_every_anomaly_a_passing_check_counted_gets_one_line_with_its_meaning_and_reason() -> None:
    recovery = CheckResult(
        "recovery",
        True,
        {"anomalies": 2},
        examples=[
            {"kind": "not_detected", "fault_id": "redeliver"},
            {"kind": "serving_unmeasured", "fault_id": "kill-p", "reason": "cut to 0.00 s"},
        ],
    )
    lines = anomaly_lines([recovery])
    assert len(lines) == 2
    assert lines[0].startswith("- recovery: not_detected at `redeliver`: no health probe")
    assert lines[1].startswith("- recovery: serving_unmeasured at `kill-p`: the window after recovery")
    assert lines[1].endswith("(cut to 0.00 s).")


def test_a_failing_or_undecided_check_is_not_explained_as_counted_and_not_failing() -> None:
    ex = [{"kind": "rto_missed", "fault_id": "k"}]
    assert anomaly_lines([CheckResult("recovery", False, {"anomalies": 1}, examples=ex)]) == []
    assert anomaly_lines([CheckResult("recovery", UNKNOWN, {"anomalies": 1}, examples=ex)]) == []


def test_anomalies_cut_from_the_capped_examples_are_still_counted() -> None:
    r = CheckResult("slo", True, {"anomalies": 3}, examples=[{"kind": "no_baseline", "scope": "golden"}])
    lines = anomaly_lines([r])
    assert lines[0].startswith("- slo: no_baseline at golden: no golden profile is set")
    assert lines[1] == "- slo: 2 more of the kinds above (the examples are capped)."
    assert len(anomaly_lines([CheckResult("slo", True, {"anomalies": 1}, examples=r.examples)])) == 1


def test_allowed_failed_requests_and_recovered_orders_are_explained() -> None:
    retryable = CheckResult(
        "retryable",
        True,
        {
            "requests": 100,
            "failed": 3,
            "allowed": 3,
            "not_allowed": 0,
            "conn_reset": 2,
            "timeout": 1,
            "throttled_429": 0,
        },
    )
    integrity = CheckResult("integrity", True, {"lost": 0, "recovered": 4})
    lines = anomaly_lines([retryable, integrity])
    assert lines[0] == (
        "- retryable: 3 of 100 requests failed, each of a class a client may retry "
        "(conn_reset=2, timeout=1): allowed, not a failure."
    )
    assert lines[1].startswith("- integrity: recovered=4: orders whose every attempt failed")
    assert (
        anomaly_lines([CheckResult("retryable", True, {"allowed": 0}), CheckResult("integrity", True)]) == []
    )


def test_the_report_has_the_pass_conditions_and_the_counted_section_only_when_something_was_counted() -> None:
    quiet = [_slo(p95_ms=500)]
    md = report_markdown(
        gate="g", run_id="r", verdict={"result": "PASS"}, results=quiet, figures={}, faults=[], plot=None
    )
    assert "| slo | PASS | - | p95_ms ≤ 500 | p95_ms=10 (≤ 500), error_ratio=0.01 |" in md
    assert "Counted, not failing" not in md
    noisy = [
        *quiet,
        CheckResult("recovery", True, {"anomalies": 1}, examples=[{"kind": "aborted", "fault_id": "x"}]),
    ]
    md = report_markdown(
        gate="g", run_id="r", verdict={"result": "PASS"}, results=noisy, figures={}, faults=[], plot=None
    )
    assert "### Counted, not failing" in md and "- recovery: aborted at `x`: the fault was stopped" in md


def test_the_backpressure_condition_names_its_limits() -> None:
    r = CheckResult(
        "backpressure",
        True,
        {"bursts": 1},
        details={
            "limits": {"min_clear_shed_ratio": 0.95, "max_accepted_p95_ms": 1000.0, "recover_within_s": 10.0}
        },
    )
    text = passes_when(r)
    assert "≥ 0.95 of the rejected requests" in text and "≤ 1000.0 ms" in text and "within 10.0 s" in text
