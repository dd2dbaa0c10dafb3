"""Recovery's serving measures at their exact boundaries, on the ledger's requests (``{start, end, ok}``).

A request is counted by the moment it completed. The baseline is what completed from the first request
until the first fault's injection *started* (``injecting``, else ``injected``), that instant excluded; the
after-recovery measure is what completed from recovery (included) for ``after_window_s``, stopping at the
next fault's start (excluded) and at the load's end. A request in flight across a fault's start
(``start < fault start < end``) saw both sides, so it counts for neither: counting it would move the
baseline (or the after ratio) by the fault itself. Recovery is not such a cut. Each rule has a case on the
boundary and one just across it.

Every case has a baseline of 10 ok requests/s and, after recovery, as many again (``min_throughput_ratio``
0.5), with the load's end known, so the throughput rule does not interfere unless a test says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from resgate.checks import recovery as rc
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError

STARTED = 100.0
"""The first fault's injection started (``injecting``): the end of the baseline."""
INJECTED = 100.5
"""The first fault was in effect (``injected``): detection and an instantaneous fault's recovery are timed
from here."""
HEALTHY_AT = 110.0
LOAD_ENDED = 130.0


def _evidence(
    requests: list[dict[str, Any]],
    *,
    second_start: float | None = None,
    load_ended_ts: float | None = LOAD_ENDED,
) -> dict[str, Any]:
    faults = [
        {"ts": STARTED, "fault_id": "f1", "kind": "process_kill", "target": "gateway", "event": "injecting"},
        {"ts": INJECTED, "fault_id": "f1", "kind": "process_kill", "target": "gateway", "event": "injected"},
    ]
    if second_start is not None:
        f2 = {"fault_id": "f2", "kind": "process_kill", "target": "other"}
        faults += [
            {"ts": second_start, **f2, "event": "injecting"},
            {"ts": second_start + 1.0, **f2, "event": "injected"},
        ]
    return {
        "faults": faults,
        "health": [
            {"ts": 90.0, "service": "gateway", "replica": "0", "event": "healthy"},
            {"ts": INJECTED + 0.1, "service": "gateway", "replica": "0", "event": "killed"},
            {"ts": HEALTHY_AT, "service": "gateway", "replica": "0", "event": "healthy"},
        ],
        "requests": requests,
        "load_ended_ts": load_ended_ts,
    }


def _reqs(
    start: float, end: float, n: int, failures: int = 0, latency: float = 0.005
) -> list[dict[str, Any]]:
    """``n`` requests started evenly over ``[start, end)``, each completing ``latency`` s later; the first
    ``failures`` of them failed."""
    step = (end - start) / n
    return [
        {"start": start + i * step, "end": start + i * step + latency, "ok": i >= failures} for i in range(n)
    ]


def _req(start: float, end: float, ok: bool = False) -> dict[str, Any]:
    return {"start": start, "end": end, "ok": ok}


def _check(d: dict[str, Any], **thresholds: Any) -> Any:
    return rc.check(rc.RecoveryEvidence.from_dict(d), rc.RecoveryThresholds.from_dict(thresholds))


def _first(r: Any) -> dict[str, Any]:
    return next(f for f in r.details["faults"] if f["fault_id"] == "f1")


BASE = _reqs(90.0, STARTED, 100)
"""100 ok requests completed in [90, 100): a baseline of 10 ok/s, error ratio 0."""
AFTER_CLEAN = _reqs(HEALTHY_AT, HEALTHY_AT + 10, 100)
"""100 ok requests completed in [110, 120): the whole default after-window, at the baseline's rate."""


def test_a_request_completed_just_before_the_faults_start_is_the_baseline_one_completed_at_it_not() -> None:
    """Rewritten: the old rule counted a 1-s window ending exactly at the injection. Requests are now counted
    by their completion in ``[first request, first fault's start)``: one completing a hair before the start
    is baseline; one completing exactly at it is not (nor is it in flight across it)."""
    base = _reqs(90.0, STARTED, 100, failures=2)
    before = _check(_evidence([*base, _req(99.95, STARTED - 0.001), *AFTER_CLEAN]))
    at = _check(_evidence([*base, _req(99.95, STARTED), *AFTER_CLEAN]))
    assert (before.details["baseline_error_ratio"], before.counts["faults"]) == (3 / 101, 1)
    assert at.details["baseline_error_ratio"] == 0.02
    assert at.details["straddling_requests"] == before.details["straddling_requests"] == 0
    assert at.valid is True, at.to_dict()


def test_a_request_in_flight_across_the_faults_start_is_not_part_of_the_baseline() -> None:
    # Only a request in flight across the start before the fault: no baseline, so serving is undecided.
    r = _check(_evidence([_req(95.0, STARTED + 0.001, ok=True), *AFTER_CLEAN]))
    assert (r.details["baseline_error_ratio"], r.details["straddling_requests"]) == (None, 1)
    assert r.valid == UNKNOWN, r.to_dict()
    assert "no baseline" in (r.error or "")


def test_requests_in_flight_across_the_faults_start_full_of_its_errors_are_not_charged_after_recovery() -> (
    None
):
    """Rewritten: a request now ends when it completes, so one in flight across the start can never raise
    the baseline. The rule this pins is the other half: such requests (here hung by the fault and failing
    only after recovery) are not charged to the after-window either. One that *started* exactly at the
    fault's start is not in flight across it: it is the fault's own (sent into the outage), so it counts
    neither in the baseline nor after recovery, but as in flight at recovery."""
    hung = _reqs(99.0, STARTED, 100, failures=100, latency=11.0)  # complete in [110, 111): after recovery
    r = _check(_evidence([*BASE, *hung, *AFTER_CLEAN]))
    assert (r.details["baseline_error_ratio"], r.details["straddling_requests"]) == (0.0, 100)
    assert (_first(r)["error_ratio_after"], _first(r)["requests_after"]) == (0.0, 100)
    assert r.valid is True, r.to_dict()
    at_start = _check(_evidence([*BASE, _req(STARTED, HEALTHY_AT + 0.5), *AFTER_CLEAN]))
    assert (at_start.details["straddling_requests"], _first(at_start)["requests_after"]) == (0, 100)
    assert _first(at_start)["in_flight_at_recovery"] == 1


def test_the_error_ratio_just_at_baseline_plus_tolerance_is_back_and_just_above_is_not() -> None:
    at = _check(_evidence([*BASE, *_reqs(HEALTHY_AT, HEALTHY_AT + 10, 100, failures=1)]))
    above = _check(_evidence([*BASE, *_reqs(HEALTHY_AT, HEALTHY_AT + 10, 100, failures=2)]))
    assert (at.valid, at.counts["error_ratio_not_back"]) == (True, 0), at.to_dict()
    assert (above.valid, above.counts["error_ratio_not_back"]) == (False, 1)
    assert at.counts["throughput_not_back"] == above.counts["throughput_not_back"] == 0


def test_a_request_sent_exactly_at_recovery_is_measured_and_one_sent_just_before_it_is_not() -> None:
    """The after-window starts at recovery, included, and judges the requests *sent* in it: one sent just
    before recovery went into the outage (it is counted as in flight at recovery, not as after)."""
    at = _check(_evidence([*BASE, _req(HEALTHY_AT, HEALTHY_AT + 0.5), *AFTER_CLEAN]))
    before = _check(_evidence([*BASE, _req(HEALTHY_AT - 0.001, HEALTHY_AT + 0.5), *AFTER_CLEAN]))
    assert (_first(at)["error_ratio_after"], _first(at)["requests_after"]) == (1 / 101, 101)
    assert (_first(before)["error_ratio_after"], _first(before)["requests_after"]) == (0.0, 100)
    assert (_first(at)["in_flight_at_recovery"], _first(before)["in_flight_at_recovery"]) == (0, 1)


def test_a_request_sent_into_the_outage_that_fails_after_recovery_is_not_charged_after_it() -> None:
    """Recovery is a cut for requests as a fault's start is: a request sent during the outage and failing
    just after recovery (a client deadline running out behind a lossy path) was sent into the fault, so it
    does not count against the service's time after recovery (measured on the suite's 50 % loss run: 9
    such timeouts in the 10 s after the lift made it fail with an error ratio of 1.5 %)."""
    outage = _reqs(STARTED, HEALTHY_AT, 100, failures=100)
    late = _check(_evidence([*BASE, *outage, _req(109.0, HEALTHY_AT + 0.001), *AFTER_CLEAN]))
    early = _check(_evidence([*BASE, *outage, _req(109.0, HEALTHY_AT - 0.001), *AFTER_CLEAN]))
    assert (_first(late)["error_ratio_after"], _first(late)["requests_after"]) == (0.0, 100)
    assert (_first(early)["error_ratio_after"], _first(early)["requests_after"]) == (0.0, 100)
    assert (_first(late)["in_flight_at_recovery"], _first(early)["in_flight_at_recovery"]) == (1, 0)
    assert late.details["straddling_requests"] == early.details["straddling_requests"] == 0
    assert late.valid is True and early.valid is True, late.to_dict()


def test_a_request_completed_at_the_end_of_the_after_window_is_not_measured() -> None:
    # after_window_s = 10: completions in [110, 120) are "after"; from 120 (included) they are not.
    failing_later = _reqs(120.0, 125.0, 100, failures=100, latency=0.0)  # the first completes at 120.0
    r = _check(_evidence([*BASE, *AFTER_CLEAN, *failing_later]), after_window_s=10)
    assert _first(r)["after_window"] == [HEALTHY_AT, 120.0]
    assert (_first(r)["error_ratio_after"], _first(r)["requests_after"]) == (0.0, 100)
    inside = _check(_evidence([*BASE, *AFTER_CLEAN, _req(119.0, 119.999)]), after_window_s=10)
    assert (_first(inside)["error_ratio_after"], _first(inside)["requests_after"]) == (1 / 101, 101)


def test_the_after_window_stops_at_the_next_faults_injection_start() -> None:
    """Ported: the after-window ends at the next fault's start (its ``injecting`` event, a second before it
    was in effect), excluded. A request completed just before it is measured; one completed exactly at it,
    or in flight across it, is not; nor are the next fault's own errors."""
    after = _reqs(HEALTHY_AT, 113.0, 30, failures=9)  # complete in [110, 113): 10 requests/s
    next_errors = _reqs(113.0, 120.0, 70, failures=70)  # started at or after the next fault's start
    common = [*BASE, *after, *next_errors]
    just_before = _check(
        _evidence([*common, _req(112.0, 112.999)], second_start=113.0), error_ratio_tolerance=None
    )
    at = _check(_evidence([*common, _req(112.0, 113.0)], second_start=113.0), error_ratio_tolerance=None)
    across = _check(
        _evidence([*common, _req(112.0, 113.001)], second_start=113.0), error_ratio_tolerance=None
    )
    assert _first(at)["after_window"] == [HEALTHY_AT, 113.0]
    assert (_first(just_before)["error_ratio_after"], _first(just_before)["requests_after"]) == (10 / 31, 31)
    assert (_first(at)["error_ratio_after"], _first(at)["requests_after"]) == (0.3, 30)
    assert (_first(across)["error_ratio_after"], _first(across)["requests_after"]) == (0.3, 30)
    assert (at.details["straddling_requests"], across.details["straddling_requests"]) == (0, 1)


def test_the_baseline_ends_at_the_first_faults_injection_start_not_its_effect_nor_the_last_fault() -> None:
    """Ported, with the new start: requests completed between the first fault's ``injecting`` and
    ``injected`` events, or between the two faults, are after the first injection started: not baseline."""
    while_injecting = _reqs(STARTED, INJECTED, 10, failures=10)
    between = _reqs(115.0, 118.0, 90, failures=90)
    r = _check(_evidence([*BASE, *while_injecting, *AFTER_CLEAN, *between], second_start=120.0))
    assert (r.details["baseline_error_ratio"], r.details["baseline_ok_per_s"]) == (0.0, 10.0)


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


def test_observation_ends_with_the_last_completed_request_when_it_outlasts_the_health_timeline() -> None:
    """Ported: the last completed request (its ``end``) now plays the last error window's part."""
    d = _evidence([*BASE, *_reqs(HEALTHY_AT, 199.0, 100), _req(199.0, 200.0, ok=True)])
    d["health"] = d["health"][:2]  # never healthy again
    r = _check(d)
    assert r.details["observed_until"] == 200.0
    assert r.examples[0]["kind"] == "never_recovered"
    assert r.examples[0]["unhealthy_for_at_least_s"] == 200.0 - INJECTED


def test_counts_name_every_figure_with_zeros_and_a_recovery_exactly_at_the_rto_meets_it() -> None:
    """Ported: the counts gained ``throughput_not_back``; ``error_ratio_unmeasured`` became
    ``serving_unmeasured``. The RTO is timed from the moment the fault was in effect."""
    r = _check(_evidence([*BASE, *AFTER_CLEAN]), rto_s=HEALTHY_AT - INJECTED)
    assert r.counts == {
        "faults": 1,
        "recovered": 1,
        "rto_met": 1,
        "rto_missed": 0,
        "never_recovered": 0,
        "error_ratio_not_back": 0,
        "throughput_not_back": 0,
        "undecided": 0,
        "not_detected": 0,
        "serving_unmeasured": 0,
        "aborted": 0,
        "max_time_to_healthy_s": HEALTHY_AT - INJECTED,
        "anomalies": 0,
    }
    assert (
        _check(_evidence([*BASE, *AFTER_CLEAN]), rto_s=HEALTHY_AT - INJECTED - 0.001).counts["rto_missed"]
        == 1
    )


def test_examples_list_failures_first_then_undecided_then_reported() -> None:
    d = {
        "faults": [
            _fault(100.0, "injected", "a"),  # not detected: reported only
            _fault(200.0, "injected", "b", target="ghost"),  # no observation: undecided
            _fault(300.0, "injected", "c"),  # never recovered: failing
        ],
        "health": [_sup(90.0, "healthy"), _sup(150.0, "healthy"), _sup(301.0, "killed")],
    }
    # No ledger here: serving is not judged (else "no client ledger" would be one more undecided example).
    r = _check(d, error_ratio_tolerance=None, min_throughput_ratio=None, rto_s=100)
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
