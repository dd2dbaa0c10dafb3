"""Recovery's error-ratio windows at their exact boundaries: the baseline ends at the first injection, the
after-recovery measure starts at recovery and stops at the next injection.

A window that straddles one of these instants belongs to neither side: it mixes steady traffic with the
fault's own errors, so counting it would move the baseline (or the after ratio) by the fault itself.
Each rule has a case on the boundary (counted) and one just across it (not counted).
"""

from __future__ import annotations

from typing import Any

import pytest

from resgate.checks import recovery as rc
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError

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


# --- recovery of one fault, rule by rule (each found by `make mutate`) --------------------------------


def _sup(ts: float, event: str, replica: str = "0", service: str = "gateway") -> dict[str, Any]:
    return {"ts": ts, "service": service, "replica": replica, "event": event}


def _fault(ts: float, event: str, fault_id: str = "f1", **kw: Any) -> dict[str, Any]:
    base = {"ts": ts, "fault_id": fault_id, "kind": "process_kill", "target": "gateway", "event": event}
    return {**base, **kw}


def _held(ts: float, duration_s: float, fault_id: str = "p1") -> dict[str, Any]:
    return _fault(ts, "injected", fault_id, kind="network_partition", detail={"duration_s": duration_s})


def _row(d: dict[str, Any], fault_id: str = "f1", **thresholds: Any) -> dict[str, Any]:
    r = _check(d, error_ratio_tolerance=None, **thresholds)
    return next(f for f in r.details["faults"] if f["fault_id"] == fault_id)


def test_the_injected_event_names_the_faults_kind_and_target_even_when_another_event_comes_first() -> None:
    d = {
        "faults": [
            _fault(99.0, "detected", kind="guess", target="elsewhere"),
            _fault(100.0, "injected"),
        ],
        "health": [_sup(90.0, "healthy"), _sup(101.0, "killed"), _sup(105.0, "healthy")],
    }
    row = _row(d)
    assert (row["kind"], row["target"], row["time_to_healthy_s"]) == ("process_kill", "gateway", 5.0)


def test_a_target_that_is_itself_an_observed_service_is_not_cut_at_its_slash() -> None:
    assert rc.target_service("db/primary", ["db", "db/primary"]) == "db/primary"
    assert rc.target_service("gateway/2", ["gateway"]) == "gateway"
    assert rc.target_service("queue", ["gateway"]) == "queue"


def test_a_replica_already_unhealthy_before_the_fault_must_be_healthy_again_too() -> None:
    d = {
        "faults": [_fault(100.0, "injected")],
        "health": [
            _sup(90.0, "healthy", "0"),
            _sup(95.0, "unhealthy", "1"),
            _sup(101.0, "killed", "0"),
            _sup(110.0, "healthy", "0"),
        ],
    }
    assert _row(d)["recovered_ts"] is None


def test_a_held_fault_that_nothing_detected_recovered_when_it_was_lifted() -> None:
    d = {"faults": [_held(100.0, 10.0)], "health": [_sup(90.0, "healthy"), _sup(105.0, "healthy")]}
    row = _row(d, "p1")
    assert (row["detected_ts"], row["recovered_ts"], row["time_to_healthy_s"]) == (None, 110.0, 0.0)


def test_a_held_faults_recovery_is_the_first_all_healthy_moment_after_it_was_lifted() -> None:
    # Healthy for a moment at 105 while the fault still acted, down again at 108: recovered at 115.
    d = {
        "faults": [_held(100.0, 10.0)],
        "health": [
            _sup(90.0, "healthy"),
            _sup(101.0, "killed"),
            _sup(105.0, "healthy"),
            _sup(108.0, "killed"),
            _sup(115.0, "healthy"),
        ],
    }
    assert (_row(d, "p1")["recovered_ts"], _row(d, "p1")["time_to_healthy_s"]) == (115.0, 5.0)


def test_a_failure_seen_exactly_when_a_held_fault_is_lifted_still_counts_against_it() -> None:
    d = {
        "faults": [_held(100.0, 10.0)],
        "health": [_sup(90.0, "healthy"), _sup(110.0, "killed"), _sup(115.0, "healthy")],
    }
    assert (_row(d, "p1")["detected_ts"], _row(d, "p1")["time_to_healthy_s"]) == (110.0, 5.0)


def test_a_held_fault_unhealthy_from_before_with_no_observation_until_after_it_was_lifted() -> None:
    d = {
        "faults": [_held(100.0, 10.0)],
        "health": [_sup(95.0, "unhealthy"), _sup(120.0, "healthy"), _sup(130.0, "healthy")],
    }
    assert _row(d, "p1")["recovered_ts"] == 120.0


def test_an_ended_event_at_the_injection_instant_lifts_the_fault_then() -> None:
    t = rc.FaultTimeline("p1", "network_partition", "gateway", 100.0, None, None, None, 100.0, held_s=30.0)
    assert t.lifted_ts == 100.0
    early = rc.FaultTimeline("p1", "network_partition", "gateway", 100.0, None, None, None, 99.0, held_s=30.0)
    assert early.lifted_ts == 130.0


def test_a_failure_at_the_next_faults_injection_instant_belongs_to_the_next_fault() -> None:
    d = {
        "faults": [_fault(100.0, "injected"), _fault(120.0, "injected", "f2")],
        "health": [_sup(90.0, "healthy"), _sup(120.0, "killed"), _sup(125.0, "healthy")],
    }
    first, second = _row(d, "f1"), _row(d, "f2")
    assert (first["detected_ts"], first["time_to_detect_s"]) == (None, None)
    assert (second["detected_ts"], second["time_to_healthy_s"]) == (120.0, 5.0)


def test_observation_ends_with_the_last_error_window_when_it_outlasts_the_health_timeline() -> None:
    d = _evidence([_w(90.0, INJECTED, 0), _w(HEALTHY_AT, 200.0, 0)])
    d["health"] = d["health"][:2]  # never healthy again
    r = _check(d)
    assert r.details["observed_until"] == 200.0
    assert r.examples[0]["unhealthy_for_at_least_s"] == 100.0


def test_counts_name_every_figure_with_zeros_and_a_recovery_exactly_at_the_rto_meets_it() -> None:
    r = _check(_evidence([_w(90.0, INJECTED, 0), AFTER_CLEAN]), rto_s=HEALTHY_AT - INJECTED)
    assert r.counts == {
        "faults": 1,
        "recovered": 1,
        "rto_met": 1,
        "rto_missed": 0,
        "never_recovered": 0,
        "error_ratio_not_back": 0,
        "undecided": 0,
        "not_detected": 0,
        "error_ratio_unmeasured": 0,
        "aborted": 0,
        "max_time_to_healthy_s": 10.0,
        "anomalies": 0,
    }


def test_examples_list_failures_first_then_undecided_then_reported() -> None:
    d = {
        "faults": [
            _fault(100.0, "injected", "a"),  # not detected: reported only
            _fault(200.0, "injected", "b", target="ghost"),  # no observation: undecided
            _fault(300.0, "injected", "c"),  # never recovered: failing
        ],
        "health": [_sup(90.0, "healthy"), _sup(150.0, "healthy"), _sup(301.0, "killed")],
    }
    r = _check(d, error_ratio_tolerance=None, rto_s=100)
    assert [(e["kind"], e["fault_id"]) for e in r.examples] == [
        ("never_recovered", "c"),
        ("no_data", "b"),
        ("not_detected", "a"),
    ]
    assert r.counts["anomalies"] == 3


def test_thresholds_accept_values_just_inside_their_bounds_and_refuse_those_just_outside() -> None:
    th = rc.RecoveryThresholds.from_dict({"rto_s": 0.5, "error_ratio_tolerance": 0, "after_window_s": 0.5})
    assert (th.rto_s, th.error_ratio_tolerance, th.after_window_s) == (0.5, 0, 0.5)
    assert rc.RecoveryThresholds.from_dict({"error_ratio_tolerance": 1}).error_ratio_tolerance == 1
    for bad in ({"error_ratio_tolerance": 1.001}, {"error_ratio_tolerance": -0.1}, {"rto_s": 0}):
        with pytest.raises(ConfigError):
            rc.RecoveryThresholds.from_dict(bad)
