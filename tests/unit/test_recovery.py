"""Unit tests for the recovery check, from small hand-made fault and health timelines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks import recovery as rc
from resgate.checks.result import UNKNOWN
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.contract.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fault(ts, event, fault_id="f1", kind="process_kill", target="gateway"):
    return {"ts": ts, "fault_id": fault_id, "kind": kind, "target": target, "event": event}


def sup(ts, event, replica="0", service="gateway"):
    return {"ts": ts, "service": service, "replica": replica, "event": event}


def steady_windows(start, end, failures=1, requests=100, step=5.0):
    out, t = [], start
    while t < end:
        out.append({"start": t, "end": t + step, "requests": requests, "failures": failures})
        t += step
    return out


def kill_and_heal(healthy_at, *, injected=100.0, windows=True, after_failures=1):
    """One gateway replica killed at ``injected`` and healthy again at ``healthy_at``."""
    d = {
        "faults": [fault(injected, "injected"), fault(injected, "ended")],
        "health": [
            sup(90.0, "healthy"),
            sup(injected + 0.2, "killed"),
            sup(injected + 1.0, "started"),
            sup(healthy_at, "healthy"),
            sup(healthy_at + 20.0, "healthy"),
        ],
    }
    if windows:
        d["error_windows"] = [
            *steady_windows(70.0, injected),
            {"start": injected, "end": healthy_at, "requests": 100, "failures": 40},
            *steady_windows(healthy_at, healthy_at + 20.0, failures=after_failures),
        ]
    return d


def check(d, **thresholds):
    return rc.check(rc.RecoveryEvidence.from_dict(d), rc.RecoveryThresholds.from_dict(thresholds))


def test_recovery_within_rto_is_valid_with_detection_and_healing_times():
    r = check(kill_and_heal(105.0))
    assert r.valid is True, r.examples
    f = r.details["faults"][0]
    assert f["time_to_detect_s"] == pytest.approx(0.2)
    assert f["time_to_healthy_s"] == pytest.approx(5.0)
    assert f["source"] == "health"
    assert r.counts["rto_met"] == 1 and r.counts["max_time_to_healthy_s"] == pytest.approx(5.0)


def test_recovery_after_the_rto_fails_and_names_the_fault():
    r = check(kill_and_heal(145.0))
    assert r.valid is False
    ex = r.examples[0]
    assert ex["kind"] == "rto_missed" and ex["fault_id"] == "f1" and ex["target"] == "gateway"
    assert ex["time_to_healthy_s"] == pytest.approx(45.0) and ex["rto_s"] == DEFAULT_RTO_SECONDS
    assert r.counts["rto_missed"] == 1


def test_rto_is_configurable():
    assert check(kill_and_heal(145.0), rto_s=60).valid is True
    assert check(kill_and_heal(105.0), rto_s=2).valid is False


def test_a_target_still_unhealthy_when_observation_ends_never_recovered():
    d = kill_and_heal(105.0, windows=False)
    d["health"] = [sup(90.0, "healthy"), sup(100.2, "exited"), sup(101.0, "started"), sup(200.0, "unhealthy")]
    r = check(d, error_ratio_tolerance=None)
    assert r.valid is False
    ex = r.examples[0]
    assert ex["kind"] == "never_recovered" and ex["fault_id"] == "f1"
    assert ex["unhealthy_for_at_least_s"] == pytest.approx(100.0)


def test_explicit_observation_end_is_used_for_never_recovered():
    d = {"faults": [fault(100.0, "injected")], "health": [sup(100.5, "killed")], "observed_until": 400.0}
    r = check(d, error_ratio_tolerance=None)
    assert r.valid is False and r.examples[0]["observed_until"] == 400.0


def test_error_ratio_not_back_to_baseline_after_recovery_fails():
    r = check(kill_and_heal(105.0, after_failures=20))
    assert r.valid is False
    ex = r.examples[0]
    assert ex["kind"] == "error_ratio_not_back" and ex["fault_id"] == "f1"
    assert ex["error_ratio_after"] == pytest.approx(0.2) and ex["baseline_error_ratio"] == pytest.approx(0.01)


def test_error_ratio_within_tolerance_of_baseline_passes():
    assert check(kill_and_heal(105.0, after_failures=2)).valid is True
    assert check(kill_and_heal(105.0, after_failures=20), error_ratio_tolerance=0.2).valid is True


def test_error_ratio_part_can_be_switched_off():
    r = check(kill_and_heal(105.0, after_failures=50), error_ratio_tolerance=None)
    assert r.valid is True


def test_missing_error_windows_leave_the_check_unknown_when_the_error_ratio_is_judged():
    r = check(kill_and_heal(105.0, windows=False))
    assert r.valid == UNKNOWN and "error-ratio windows" in r.error


def test_no_requests_before_the_first_fault_means_no_baseline():
    d = kill_and_heal(105.0)
    d["error_windows"] = [w for w in d["error_windows"] if w["start"] >= 100.0]
    r = check(d)
    assert r.valid == UNKNOWN and "baseline" in r.error


def test_no_requests_after_recovery_is_reported_but_the_rto_still_decides():
    d = kill_and_heal(105.0)
    d["error_windows"] = [w for w in d["error_windows"] if w["start"] < 105.0]
    r = check(d)
    assert r.valid is True
    assert r.counts["error_ratio_unmeasured"] == 1
    assert any("after recovery" in e.get("reason", "") for e in r.examples)


def test_nothing_injected_is_unknown():
    r = check({"faults": [], "health": [sup(1.0, "healthy")]})
    assert r.valid == UNKNOWN and r.error == "nothing was injected"
    r = check({"faults": [fault(5.0, "aborted")], "health": []})
    assert r.valid == UNKNOWN and r.details["not_injected"] == ["f1"]


def test_every_replica_must_be_healthy_again():
    d = {
        "faults": [fault(100.0, "injected")],
        "health": [
            sup(90.0, "healthy", replica="0"),
            sup(90.0, "healthy", replica="1"),
            sup(100.1, "killed", replica="0"),
            sup(100.2, "unhealthy", replica="1"),
            sup(104.0, "healthy", replica="0"),
            sup(150.0, "healthy", replica="1"),
        ],
    }
    r = check(d, error_ratio_tolerance=None)
    assert r.valid is False
    assert r.details["faults"][0]["time_to_healthy_s"] == pytest.approx(50.0)


def test_healthy_observations_before_the_fault_lands_are_not_a_recovery():
    d = {
        "faults": [fault(100.0, "injected")],
        "health": [
            sup(90.0, "healthy"),
            sup(100.0, "healthy"),  # the probe raced the kill
            sup(100.5, "exited"),
            sup(108.0, "healthy"),
        ],
    }
    r = check(d, error_ratio_tolerance=None)
    assert r.details["faults"][0]["time_to_healthy_s"] == pytest.approx(8.0)
    assert r.details["faults"][0]["time_to_detect_s"] == pytest.approx(0.5)


def test_a_replaced_replica_that_was_retired_no_longer_counts():
    d = {
        "faults": [fault(100.0, "injected", target="gateway")],
        "health": [
            sup(90.0, "healthy", replica="task-a"),
            sup(100.5, "killed", replica="task-a"),
            sup(101.0, "retired", replica="task-a"),
            sup(103.0, "started", replica="task-b"),
            sup(112.0, "healthy", replica="task-b"),
        ],
    }
    r = check(d, error_ratio_tolerance=None)
    assert r.valid is True and r.details["faults"][0]["time_to_healthy_s"] == pytest.approx(12.0)


def test_simple_health_probes_work_like_the_supervisor_timeline():
    d = {
        "faults": [fault(100.0, "injected", target="postgres", kind="pg_blip")],
        "health": [
            {"ts": t, "service": "postgres", "healthy": t < 100 or t >= 106} for t in range(90, 130, 2)
        ],
    }
    r = check(d, error_ratio_tolerance=None)
    assert r.valid is True
    f = r.details["faults"][0]
    assert f["time_to_detect_s"] == 0 and f["time_to_healthy_s"] == 6


def test_a_fault_that_never_made_the_target_unhealthy_recovers_at_once_and_is_reported_as_undetected():
    d = {
        "faults": [fault(100.0, "injected", kind="kafka_latency", target="projector")],
        "health": [sup(t, "healthy", service="projector") for t in (90.0, 101.0, 110.0)],
    }
    r = check(d, error_ratio_tolerance=None)
    assert r.valid is True
    assert r.details["faults"][0]["time_to_healthy_s"] == pytest.approx(1.0)
    assert [e["kind"] for e in r.examples] == ["not_detected"]


def test_a_replica_target_is_judged_on_its_whole_service():
    d = kill_and_heal(105.0)
    d["faults"] = [fault(100.0, "injected", target="gateway/0")]
    r = check(d)
    assert r.valid is True and r.details["faults"][0]["service"] == "gateway"


def test_without_health_observations_the_fault_timeline_recovered_event_stands_in():
    d = {
        "faults": [
            fault(100.0, "injected", target="kafka"),
            fault(101.0, "detected", target="kafka"),
            fault(112.0, "recovered", target="kafka"),
        ],
        "health": [],
    }
    r = check(d, error_ratio_tolerance=None)
    assert r.valid is True
    f = r.details["faults"][0]
    assert f["source"] == "fault_timeline" and f["time_to_healthy_s"] == 12.0 and f["time_to_detect_s"] == 1.0


def test_without_any_evidence_of_recovery_the_fault_is_unknown():
    d = {"faults": [fault(100.0, "injected", target="kafka")], "health": [sup(1.0, "healthy")]}
    r = check(d, error_ratio_tolerance=None)
    assert r.valid == UNKNOWN and "kafka" in r.error


def test_aborted_faults_are_reported_but_judged_on_recovery():
    d = kill_and_heal(105.0)
    d["faults"].append(fault(101.0, "aborted"))
    r = check(d)
    assert r.valid is True and r.counts["aborted"] == 1
    assert r.details["faults"][0]["aborted"] is True


def test_each_fault_is_judged_separately_and_failures_come_first_in_examples():
    d = kill_and_heal(105.0)
    d["faults"] += [fault(200.0, "injected", fault_id="f2", target="matcher")]
    d["health"] += [sup(190.0, "healthy", service="matcher"), sup(200.3, "killed", service="matcher")]
    d["health"] += [sup(260.0, "healthy", service="matcher"), sup(280.0, "healthy", service="matcher")]
    d["error_windows"] += steady_windows(125.0, 300.0)
    r = check(d)
    assert r.valid is False
    assert r.counts["faults"] == 2 and r.counts["rto_met"] == 1 and r.counts["rto_missed"] == 1
    assert r.examples[0]["fault_id"] == "f2" and r.examples[0]["kind"] == "rto_missed"


def test_the_error_window_after_recovery_stops_at_the_next_injection():
    d = kill_and_heal(105.0, after_failures=1)
    # A second fault right after the first recovery: its errors must not be blamed on the first one.
    d["faults"] += [fault(110.0, "injected", fault_id="f2"), fault(118.0, "recovered", fault_id="f2")]
    d["health"] = [h for h in d["health"] if h["ts"] < 110.0] + [sup(110.2, "killed"), sup(118.0, "healthy")]
    d["error_windows"] = [w for w in d["error_windows"] if w["start"] < 110.0]
    d["error_windows"] += [{"start": 110.0, "end": 118.0, "requests": 100, "failures": 60}]
    d["error_windows"] += steady_windows(118.0, 140.0)
    r = check(d)
    assert r.valid is True, r.examples
    assert r.details["faults"][0]["requests_after"] == 100


def test_fixture_with_gateway_kill_passes():
    d = json.loads((FIXTURES / "recovery_gateway_kill.json").read_text())
    r = check(d)
    assert r.valid is True, r.examples
    f = r.details["faults"][0]
    assert f["time_to_healthy_s"] == pytest.approx(5.5) and f["error_ratio_after"] == pytest.approx(0.005)


def test_error_ratio_windows_are_built_from_the_ledger():
    recs = [{"ts": 10.0 + i, "outcome": "ok" if i % 4 else "info"} for i in range(12)]
    ws = rc.error_ratio_windows(recs, 5.0)
    assert [(w.start, w.end, w.requests, w.failures) for w in ws] == [
        (10.0, 15.0, 5, 2),
        (15.0, 20.0, 5, 1),
        (20.0, 25.0, 2, 0),
    ]


def test_evidence_from_run_adds_error_windows_from_ledger_records():
    d = kill_and_heal(105.0, windows=False)
    recs = [{"ts": 70.0 + i * 0.5, "outcome": "ok"} for i in range(200)]
    ev = rc.evidence_from_run(d["faults"], d["health"], records=recs)
    r = rc.check(ev, rc.RecoveryThresholds())
    assert r.valid is True and r.details["baseline_error_ratio"] == 0.0


@pytest.mark.parametrize(
    ("thresholds", "where"),
    [
        ({"rto_s": 0}, "thresholds.recovery.rto_s"),
        ({"rto_s": -5}, "thresholds.recovery.rto_s"),
        ({"rto_s": "30s"}, "thresholds.recovery.rto_s"),
        ({"error_ratio_tolerance": 2}, "thresholds.recovery.error_ratio_tolerance"),
        ({"after_window_s": 0}, "thresholds.recovery.after_window_s"),
        ({"rto": 30}, "thresholds.recovery"),
    ],
)
def test_bad_thresholds_raise_config_error_naming_the_key(thresholds, where):
    with pytest.raises(ConfigError) as e:
        rc.RecoveryThresholds.from_dict(thresholds)
    assert e.value.where == where


def test_default_thresholds_use_the_default_rto():
    th = rc.RecoveryThresholds.from_dict(None)
    assert th.rto_s == DEFAULT_RTO_SECONDS and th.error_ratio_tolerance == rc.DEFAULT_ERROR_RATIO_TOLERANCE


@pytest.mark.parametrize(
    ("evidence", "where"),
    [
        ({"faults": [fault(1.0, "exploded")], "health": []}, "evidence.recovery.faults[0].event"),
        (
            {"faults": [{"ts": 1.0, "event": "injected"}], "health": []},
            "evidence.recovery.faults[0].fault_id",
        ),
        ({"faults": [], "health": [{"ts": 1.0, "service": "x"}]}, "evidence.recovery.health[0]"),
        (
            {"faults": [], "health": [{"ts": 1.0, "service": "x", "healthy": "yes"}]},
            "evidence.recovery.health[0].healthy",
        ),
        (
            {
                "faults": [],
                "health": [],
                "error_windows": [{"start": 5, "end": 1, "requests": 1, "failures": 0}],
            },
            "evidence.recovery.error_windows[0].end",
        ),
        ({"faults": [], "health": [], "surprise": 1}, "evidence.recovery"),
    ],
)
def test_bad_evidence_raises_config_error_naming_the_field(evidence, where):
    with pytest.raises(ConfigError) as e:
        rc.RecoveryEvidence.from_dict(evidence)
    assert e.value.where == where


def test_errors_of_the_next_fault_are_not_charged_to_the_previous_one():
    # f1 heals at 105; f2 (a database outage) is injected at 107.5, inside the window 105..110.
    d = kill_and_heal(105.0)
    d["faults"] += [fault(107.5, "injected", fault_id="f2", kind="db_blip")]
    d["error_windows"] = [
        *steady_windows(70.0, 100.0, failures=0),
        {"start": 100.0, "end": 105.0, "requests": 100, "failures": 40},
        {"start": 105.0, "end": 106.0, "requests": 20, "failures": 0},
        {"start": 106.0, "end": 107.0, "requests": 20, "failures": 0},
        {"start": 107.0, "end": 108.0, "requests": 20, "failures": 15},
        *steady_windows(108.0, 130.0, failures=0),
    ]
    r = check(d)
    f1 = next(f for f in r.details["faults"] if f["fault_id"] == "f1")
    assert f1["error_ratio_after"] == 0.0
    assert f1["requests_after"] == 40


# --- held faults (a partition, an outage, a hang): judged from the moment they were lifted ---------------


def held(ts, fault_id="p1", kind="network_partition", duration_s=30.0):
    return {**fault(ts, "injected", fault_id, kind), "detail": {"duration_s": duration_s}}


def partition(healthy_at, *, duration_s=30.0, ended=None, more_faults=()):
    """The gateway cut off at 100 for ``duration_s`` (lifted at ``ended``, default on schedule), unhealthy
    from 101, healthy again at ``healthy_at``."""
    lifted = 100.0 + duration_s if ended is None else ended
    return {
        "faults": [
            held(100.0, duration_s=duration_s),
            fault(lifted, "ended", "p1", "network_partition"),
            *more_faults,
        ],
        "health": [sup(90.0, "healthy"), sup(101.0, "unhealthy"), sup(healthy_at, "healthy")],
    }


def test_a_30s_partition_is_judged_from_its_end_so_a_quick_recovery_meets_the_rto():
    r = check(partition(134.0), error_ratio_tolerance=None)
    assert r.valid is True, r.examples
    f = r.details["faults"][0]
    assert f["lifted_ts"] == pytest.approx(130.0) and f["time_to_healthy_s"] == pytest.approx(4.0)
    assert f["time_to_detect_s"] == pytest.approx(1.0)


def test_a_held_fault_recovering_exactly_at_the_rto_after_its_end_passes_and_just_after_fails():
    assert check(partition(160.0), error_ratio_tolerance=None).valid is True
    r = check(partition(160.001), error_ratio_tolerance=None)
    assert r.valid is False and r.examples[0]["kind"] == "rto_missed"
    assert r.examples[0]["time_to_healthy_s"] == pytest.approx(30.001)


def test_a_held_fault_is_judged_from_its_ended_event_when_it_was_lifted_early():
    r = check(partition(134.0, ended=110.0), rto_s=20)
    assert r.valid is False and r.details["faults"][0]["time_to_healthy_s"] == pytest.approx(24.0)


def test_a_held_fault_without_an_ended_event_is_judged_from_its_scheduled_end():
    d = partition(134.0)
    d["faults"] = [held(100.0, duration_s=30.0)]
    f = check(d).details["faults"][0]
    assert f["lifted_ts"] == pytest.approx(130.0) and f["time_to_healthy_s"] == pytest.approx(4.0)


def test_a_service_healthy_when_the_fault_is_lifted_recovered_at_that_moment():
    r = check(
        partition(120.0), error_ratio_tolerance=None
    )  # it healed while the partition still held (it does not need the path)
    assert r.valid is True and r.details["faults"][0]["time_to_healthy_s"] == 0.0


def test_an_instantaneous_fault_is_still_judged_from_its_injection_even_with_a_duration_elsewhere():
    d = kill_and_heal(105.0, windows=False)
    d["faults"][0]["detail"] = {"replicas": ["gateway-0"]}  # no duration: a kill
    f = check(d).details["faults"][0]
    assert f["lifted_ts"] is None and f["time_to_healthy_s"] == pytest.approx(5.0)


@pytest.mark.parametrize("duration", [0, -1, "30", None, True, float("inf")])
def test_only_a_positive_finite_duration_makes_a_fault_held(duration):
    ev = rc.FaultEvent.from_dict({**fault(100.0, "injected"), "detail": {"duration_s": duration}})
    assert ev.held_s is None
    assert rc.FaultEvent.from_dict({**fault(100.0, "ended"), "detail": {"duration_s": 3}}).held_s is None


def test_the_error_ratio_after_a_held_fault_is_measured_after_it_was_lifted():
    d = partition(134.0)
    d["error_windows"] = [
        *steady_windows(70.0, 100.0),
        *steady_windows(100.0, 130.0, failures=60),  # the partition itself: clients fail
        *steady_windows(134.0, 160.0, failures=1),
    ]
    r = check(d, error_ratio_tolerance=0.05)
    assert r.valid is True, r.examples
    assert r.details["faults"][0]["error_ratio_after"] == pytest.approx(0.01)


def test_a_fault_that_nothing_detected_does_not_take_the_next_faults_failure_as_its_own():
    d = {
        "faults": [
            fault(100.0, "injected", "quiet"),
            fault(120.0, "injected", "loud"),
        ],
        "health": [sup(90.0, "healthy"), sup(110.0, "healthy"), sup(121.0, "killed"), sup(126.0, "healthy")],
    }
    quiet, loud = check(d).details["faults"]
    assert quiet["detected_ts"] is None and quiet["time_to_healthy_s"] == pytest.approx(10.0)
    assert loud["detected_ts"] == pytest.approx(121.0) and loud["time_to_healthy_s"] == pytest.approx(6.0)
