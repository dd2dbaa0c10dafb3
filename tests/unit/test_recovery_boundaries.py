"""Recovery's error-ratio windows at their exact boundaries: the baseline ends at the first injection, the
after-recovery measure starts at recovery and stops at the next injection.

A window that straddles one of these instants belongs to neither side: it mixes steady traffic with the
fault's own errors, so counting it would move the baseline (or the after ratio) by the fault itself.
Each rule has a case on the boundary (counted) and one just across it (not counted).
"""

from __future__ import annotations

from typing import Any

from resgate.checks import recovery as rc
from resgate.checks.result import UNKNOWN

INJECTED = 100.0
HEALTHY_AT = 110.0


def _evidence(windows: list[dict[str, Any]], *, second_injection: float | None = None) -> dict[str, Any]:
    faults = [
        {"ts": INJECTED, "fault_id": "f1", "kind": "process_kill", "target": "gateway", "event": "injected"}
    ]
    if second_injection is not None:
        faults.append(
            {
                "ts": second_injection,
                "fault_id": "f2",
                "kind": "process_kill",
                "target": "other",
                "event": "injected",
            }
        )
    return {
        "faults": faults,
        "health": [
            {"ts": 90.0, "service": "gateway", "replica": "0", "event": "healthy"},
            {"ts": INJECTED + 0.5, "service": "gateway", "replica": "0", "event": "killed"},
            {"ts": HEALTHY_AT, "service": "gateway", "replica": "0", "event": "healthy"},
        ],
        "error_windows": windows,
    }


def _w(start: float, end: float, failures: int, requests: int = 100) -> dict[str, Any]:
    return {"start": start, "end": end, "requests": requests, "failures": failures}


def _check(d: dict[str, Any], **thresholds: Any) -> Any:
    return rc.check(rc.RecoveryEvidence.from_dict(d), rc.RecoveryThresholds.from_dict(thresholds))


AFTER_CLEAN = _w(HEALTHY_AT, HEALTHY_AT + 5, 0)


def test_a_baseline_window_ending_exactly_at_the_injection_is_the_baseline() -> None:
    r = _check(_evidence([_w(90.0, INJECTED, 2), AFTER_CLEAN]))
    assert r.details["baseline_error_ratio"] == 0.02
    assert r.valid is True, r.to_dict()


def test_a_window_straddling_the_injection_is_not_part_of_the_baseline() -> None:
    # Only a straddling window before the fault: no baseline at all, so the error ratio is undecided.
    r = _check(_evidence([_w(95.0, INJECTED + 0.001, 0), AFTER_CLEAN]))
    assert r.details["baseline_error_ratio"] is None
    assert r.valid == UNKNOWN, r.to_dict()
    assert "no baseline" in (r.error or "")


def test_a_straddling_window_full_of_the_faults_errors_does_not_raise_the_baseline() -> None:
    # Baseline 0 %; the straddling window is all errors. After recovery 5 % > 0 % + 1 %: not back.
    windows = [_w(90.0, INJECTED, 0), _w(99.0, INJECTED + 1, 100), _w(HEALTHY_AT, HEALTHY_AT + 5, 5)]
    r = _check(_evidence(windows))
    assert r.details["baseline_error_ratio"] == 0.0
    assert r.valid is False
    assert r.counts["error_ratio_not_back"] == 1


def test_the_error_ratio_just_at_baseline_plus_tolerance_is_back_and_just_above_is_not() -> None:
    at = _check(_evidence([_w(90.0, INJECTED, 0), _w(HEALTHY_AT, HEALTHY_AT + 5, 1)]))
    above = _check(_evidence([_w(90.0, INJECTED, 0), _w(HEALTHY_AT, HEALTHY_AT + 5, 2)]))
    assert (at.valid, at.counts["error_ratio_not_back"]) == (True, 0)
    assert (above.valid, above.counts["error_ratio_not_back"]) == (False, 1)


def test_an_after_window_starting_exactly_at_recovery_is_measured() -> None:
    r = _check(_evidence([_w(90.0, INJECTED, 0), _w(HEALTHY_AT, HEALTHY_AT + 5, 50)]))
    (row,) = r.details["faults"]
    assert (row["error_ratio_after"], row["requests_after"]) == (0.5, 100)


def test_a_window_straddling_recovery_is_not_charged_to_the_time_after_it() -> None:
    # The window that ends just after recovery still holds the outage's errors: it is not "after".
    windows = [_w(90.0, INJECTED, 0), _w(HEALTHY_AT - 1, HEALTHY_AT + 1, 100), _w(HEALTHY_AT + 1, 115, 0)]
    r = _check(_evidence(windows))
    (row,) = r.details["faults"]
    assert (row["error_ratio_after"], row["requests_after"]) == (0.0, 100)
    assert r.valid is True, r.to_dict()


def test_an_after_window_starting_at_the_end_of_the_after_window_is_not_measured() -> None:
    # after_window_s = 10: [110, 120) is "after"; a window starting at 120 is not.
    windows = [_w(90.0, INJECTED, 0), _w(HEALTHY_AT, 120.0, 0), _w(120.0, 125.0, 100)]
    r = _check(_evidence(windows), after_window_s=10)
    (row,) = r.details["faults"]
    assert (row["error_ratio_after"], row["requests_after"]) == (0.0, 100)


def test_an_after_window_ending_exactly_at_the_next_injection_is_measured_and_one_past_it_is_not() -> None:
    at = _check(
        _evidence([_w(90.0, INJECTED, 0), _w(HEALTHY_AT, 113.0, 30)], second_injection=113.0),
        error_ratio_tolerance=None,
    )
    past = _check(
        _evidence([_w(90.0, INJECTED, 0), _w(HEALTHY_AT, 113.001, 30)], second_injection=113.0),
        error_ratio_tolerance=None,
    )
    first_at = next(f for f in at.details["faults"] if f["fault_id"] == "f1")
    first_past = next(f for f in past.details["faults"] if f["fault_id"] == "f1")
    assert (first_at["error_ratio_after"], first_at["requests_after"]) == (0.3, 100)
    assert (first_past["error_ratio_after"], first_past["requests_after"]) == (None, 0)


def test_the_baseline_ends_at_the_first_injection_not_the_last() -> None:
    # A window between the two faults is after the first injection: not baseline.
    windows = [_w(90.0, INJECTED, 0), _w(HEALTHY_AT, 115.0, 0), _w(115.0, 118.0, 90)]
    r = _check(_evidence(windows, second_injection=120.0))
    assert r.details["baseline_error_ratio"] == 0.0
