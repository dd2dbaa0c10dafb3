"""Unit tests for the recovery check, from small hand-made fault and health timelines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks import recovery as rc
from resgate.checks.result import UNKNOWN, CheckResult
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.contract.errors import ConfigError
from resgate.evidence.report import recovery_table

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fault(ts, event, fault_id="f1", kind="process_kill", target="gateway"):
    return {"ts": ts, "fault_id": fault_id, "kind": kind, "target": target, "event": event}


def sup(ts, event, replica="0", service="gateway"):
    return {"ts": ts, "service": service, "replica": replica, "event": event}


def window(start, end, requests=100, failures=0, latency=0.005):
    """``requests`` client requests started evenly over ``[start, end)``, each completing ``latency`` s
    later; the first ``failures`` of them failed."""
    step = (end - start) / requests
    return [
        {"start": start + i * step, "end": start + i * step + latency, "ok": i >= failures}
        for i in range(requests)
    ]


def steady_windows(start, end, failures=1, requests=100, step=5.0):
    """Windows of ``step`` seconds with ``requests`` requests (20/s by default) and ``failures`` each."""
    out, t = [], start
    while t < end:
        out += window(t, t + step, requests, failures)
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
        d["requests"] = [
            *steady_windows(70.0, injected),
            *window(injected, healthy_at, 100, 40),
            *steady_windows(healthy_at, healthy_at + 20.0, failures=after_failures),
        ]
    return d


def check(d, **thresholds):
    return rc.check(rc.RecoveryEvidence.from_dict(d), rc.RecoveryThresholds.from_dict(thresholds))


NO_SERVING = {"error_ratio_tolerance": None, "min_throughput_ratio": None}
"""Thresholds that judge health and RTO only (the tests whose evidence has no ledger)."""


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
    r = check(d, **NO_SERVING)
    assert r.valid is False
    ex = r.examples[0]
    assert ex["kind"] == "never_recovered" and ex["fault_id"] == "f1"
    assert ex["unhealthy_for_at_least_s"] == pytest.approx(100.0)


def test_explicit_observation_end_is_used_for_never_recovered():
    d = {"faults": [fault(100.0, "injected")], "health": [sup(100.5, "killed")], "observed_until": 400.0}
    r = check(d, **NO_SERVING)
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
    r = check(kill_and_heal(105.0, after_failures=50), **NO_SERVING)
    assert r.valid is True


def test_a_missing_ledger_leaves_the_check_unknown_when_serving_again_is_judged():
    r = check(kill_and_heal(105.0, windows=False))
    assert r.valid == UNKNOWN and "no client ledger" in r.error
    assert check(kill_and_heal(105.0, windows=False), **NO_SERVING).valid is True


def test_no_requests_before_the_first_fault_means_no_baseline():
    d = kill_and_heal(105.0)
    d["requests"] = [q for q in d["requests"] if q["start"] >= 100.0]
    r = check(d)
    assert r.valid == UNKNOWN and "baseline" in r.error


def test_a_run_with_no_load_at_all_is_unknown():
    d = kill_and_heal(105.0)
    d["requests"], d["load_ended_ts"] = [], 200.0
    r = check(d)
    assert r.valid == UNKNOWN and "no baseline" in r.error


def test_a_service_that_serves_nothing_after_recovery_while_the_load_runs_has_not_recovered():
    d = kill_and_heal(105.0)
    d["requests"] = [q for q in d["requests"] if q["start"] < 105.0]
    d["load_ended_ts"] = 200.0
    r = check(d)
    assert r.valid is False
    ex = r.examples[0]
    assert ex["kind"] == "throughput_not_back" and ex["fault_id"] == "f1"
    assert ex["ok_per_s_after"] == 0.0 and ex["requests_after"] == 0
    assert ex["baseline_ok_per_s"] == pytest.approx(19.8)
    assert r.counts["throughput_not_back"] == 1


def test_silence_after_recovery_once_the_load_has_ended_is_only_reported():
    d = kill_and_heal(105.0)
    d["requests"] = [q for q in d["requests"] if q["start"] < 105.0]
    d["load_ended_ts"] = 105.2  # the load ended 0.2 s after the recovery: nothing to judge
    r = check(d)
    assert r.valid is True, r.examples
    assert r.counts["serving_unmeasured"] == 1
    (ex,) = [e for e in r.examples if e["kind"] == "serving_unmeasured"]
    assert "the end of the load" in ex["reason"]


def test_silence_after_recovery_with_the_loads_end_unknown_is_undecided():
    d = kill_and_heal(105.0)
    d["requests"] = [q for q in d["requests"] if q["start"] < 105.0]
    r = check(d)
    assert r.valid == UNKNOWN and "the load's end is unknown" in r.error


def test_throughput_exactly_at_the_minimum_ratio_of_the_baseline_passes_and_just_below_fails():
    # Baseline: 20 ok requests/s (no failures). After recovery at 105: 100 requests in 10 s = 10/s.
    d = kill_and_heal(105.0, after_failures=0)
    d["requests"] = [
        *steady_windows(70.0, 100.0, failures=0),
        *window(100.0, 105.0, 100, 40),
        *window(105.0, 115.0, 100),
        *steady_windows(115.0, 135.0, failures=0),
    ]
    d["load_ended_ts"] = 300.0
    r = check(d, min_throughput_ratio=0.5)
    assert r.valid is True, r.examples
    assert r.details["faults"][0]["ok_per_s_after"] == pytest.approx(10.0)
    r = check(d, min_throughput_ratio=0.501)
    assert r.valid is False and r.examples[0]["kind"] == "throughput_not_back"


def test_the_throughput_part_can_be_switched_off():
    d = kill_and_heal(105.0)
    d["requests"] = [q for q in d["requests"] if q["start"] < 105.0 or q["start"] >= 114.0]
    d["load_ended_ts"] = 300.0
    assert check(d).valid is False
    assert check(d, min_throughput_ratio=None).valid is True


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
    r = check(d, **NO_SERVING)
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
    r = check(d, **NO_SERVING)
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
    r = check(d, **NO_SERVING)
    assert r.valid is True and r.details["faults"][0]["time_to_healthy_s"] == pytest.approx(12.0)


def test_simple_health_probes_work_like_the_supervisor_timeline():
    d = {
        "faults": [fault(100.0, "injected", target="postgres", kind="pg_blip")],
        "health": [
            {"ts": t, "service": "postgres", "healthy": t < 100 or t >= 106} for t in range(90, 130, 2)
        ],
    }
    r = check(d, **NO_SERVING)
    assert r.valid is True
    f = r.details["faults"][0]
    assert f["time_to_detect_s"] == 0 and f["time_to_healthy_s"] == 6


def test_a_fault_that_never_made_the_target_unhealthy_recovers_at_once_and_is_reported_as_undetected():
    d = {
        "faults": [fault(100.0, "injected", kind="kafka_latency", target="projector")],
        "health": [sup(t, "healthy", service="projector") for t in (90.0, 101.0, 110.0)],
    }
    r = check(d, **NO_SERVING)
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
    r = check(d, **NO_SERVING)
    assert r.valid is True
    f = r.details["faults"][0]
    assert f["source"] == "fault_timeline" and f["time_to_healthy_s"] == 12.0 and f["time_to_detect_s"] == 1.0


def test_without_any_evidence_of_recovery_the_fault_is_unknown():
    d = {"faults": [fault(100.0, "injected", target="kafka")], "health": [sup(1.0, "healthy")]}
    r = check(d, **NO_SERVING)
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
    d["requests"] += steady_windows(125.0, 300.0)
    r = check(d)
    assert r.valid is False
    assert r.counts["faults"] == 2 and r.counts["rto_met"] == 1 and r.counts["rto_missed"] == 1
    assert r.examples[0]["fault_id"] == "f2" and r.examples[0]["kind"] == "rto_missed"


def test_the_error_window_after_recovery_stops_at_the_next_injection():
    d = kill_and_heal(105.0, after_failures=1)
    # A second fault right after the first recovery: its errors must not be blamed on the first one.
    d["faults"] += [fault(110.0, "injected", fault_id="f2"), fault(118.0, "recovered", fault_id="f2")]
    d["health"] = [h for h in d["health"] if h["ts"] < 110.0] + [sup(110.2, "killed"), sup(118.0, "healthy")]
    d["requests"] = [q for q in d["requests"] if q["start"] < 110.0]
    d["requests"] += window(110.0, 118.0, 100, 60)
    d["requests"] += steady_windows(118.0, 140.0)
    r = check(d)
    assert r.valid is True, r.examples
    assert r.details["faults"][0]["requests_after"] == 100


def test_fixture_with_gateway_kill_passes():
    d = json.loads((FIXTURES / "recovery_gateway_kill.json").read_text())
    d["requests"] = [q for w in d.pop("ledger_windows") for q in window(**w)]
    r = check(d)
    assert r.valid is True, r.examples
    f = r.details["faults"][0]
    assert f["time_to_healthy_s"] == pytest.approx(5.5) and f["error_ratio_after"] == pytest.approx(0.005)


def test_served_requests_complete_their_latency_after_the_ledgers_start_time():
    recs = [
        {"ts": 10.0, "outcome": "ok", "latency_ms": 2500.0},
        {"ts": 11.0, "outcome": "info", "latency_ms": 3000.0},
        {"ts": 12.0, "outcome": "fail", "latency_ms": 1.0},
    ]
    assert rc.served_requests(recs) == [
        rc.Served(12.0, 12.001, False),
        rc.Served(10.0, 12.5, True),
        rc.Served(11.0, 14.0, False),
    ]


def test_evidence_from_run_adds_the_ledgers_requests_and_the_loads_end():
    d = kill_and_heal(105.0, windows=False)
    recs = [{"ts": 70.0 + i * 0.05, "outcome": "ok", "latency_ms": 5.0} for i in range(2000)]
    ev = rc.evidence_from_run(d["faults"], d["health"], records=recs, load_duration_s=100.0)
    assert ev.load_ended_ts == 170.0 and len(ev.requests) == 2000
    r = rc.check(ev, rc.RecoveryThresholds())
    assert r.valid is True, r.examples
    assert r.details["baseline_error_ratio"] == 0.0 and r.details["baseline_ok_per_s"] == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("thresholds", "where"),
    [
        ({"rto_s": 0}, "thresholds.recovery.rto_s"),
        ({"rto_s": -5}, "thresholds.recovery.rto_s"),
        ({"rto_s": "30s"}, "thresholds.recovery.rto_s"),
        ({"error_ratio_tolerance": 2}, "thresholds.recovery.error_ratio_tolerance"),
        ({"after_window_s": 0}, "thresholds.recovery.after_window_s"),
        ({"min_throughput_ratio": 0}, "thresholds.recovery.min_throughput_ratio"),
        ({"min_throughput_ratio": 1.001}, "thresholds.recovery.min_throughput_ratio"),
        ({"min_throughput_ratio": "half"}, "thresholds.recovery.min_throughput_ratio"),
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
    assert th.min_throughput_ratio == rc.DEFAULT_MIN_THROUGHPUT_RATIO == 0.5
    assert rc.RecoveryThresholds.from_dict({"min_throughput_ratio": 1}).min_throughput_ratio == 1.0


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
                "requests": [{"start": 5, "end": 1, "ok": True}],
            },
            "evidence.recovery.requests[0].end",
        ),
        (
            {"faults": [], "health": [], "requests": [{"start": 1, "end": 1, "ok": "yes"}]},
            "evidence.recovery.requests[0].ok",
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
    d["requests"] = [
        *steady_windows(70.0, 100.0, failures=0),
        *window(100.0, 105.0, 100, 40),
        *window(105.0, 107.5, 50),
        *window(107.5, 108.0, 10, 10),
        *steady_windows(108.0, 130.0, failures=0),
    ]
    r = check(d)
    f1 = next(f for f in r.details["faults"] if f["fault_id"] == "f1")
    assert f1["error_ratio_after"] == 0.0
    assert f1["requests_after"] == 50 and f1["after_window"] == [105.0, 107.5]


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
    r = check(partition(134.0), **NO_SERVING)
    assert r.valid is True, r.examples
    f = r.details["faults"][0]
    assert f["lifted_ts"] == pytest.approx(130.0) and f["time_to_healthy_s"] == pytest.approx(4.0)
    assert f["time_to_detect_s"] == pytest.approx(1.0)


def test_a_held_fault_recovering_exactly_at_the_rto_after_its_end_passes_and_just_after_fails():
    assert check(partition(160.0), **NO_SERVING).valid is True
    r = check(partition(160.001), **NO_SERVING)
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
    # it healed while the partition still held (it does not need the path)
    r = check(partition(120.0), **NO_SERVING)
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
    d["requests"] = [
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


# --- the two recorded defects, as timelines: what the runner writes now, what the ledger held ---------------


def ledger(start, end, per_s, *, latency_ms=5.0, outcome=lambda ts: "ok"):
    """Ledger records (``ts`` = when the request started) of a steady load from ``start`` to ``end``."""
    n = round((end - start) * per_s)
    return [
        {"ts": start + i / per_s, "outcome": outcome(start + i / per_s), "latency_ms": latency_ms}
        for i in range(n)
    ]


def event(ts, name, fault_id, kind, target, **detail):
    return {"ts": ts, "fault_id": fault_id, "kind": kind, "target": target, "event": name, "detail": detail}


def run_evidence(faults, health, records, load_duration_s=None):
    """Evidence as the gate builds it: only the fault events recovery knows, the ledger's requests."""
    known = [e for e in faults if e["event"] in rc.FAULT_EVENTS]
    if load_duration_s is None:
        return rc.evidence_from_run(known, health, records=records)
    return rc.evidence_from_run(known, health, records=records, load_duration_s=load_duration_s)


def test_errors_of_a_database_stop_that_started_before_its_injection_completed_are_not_the_previous_faults():
    """Issue 16, defect 1 (the tutorial's APP_BUG=500_when_db_down run): `kill-web` healed at 151.0, then
    `db-down` started stopping Postgres at 160.0; its first HTTP 500 came from a request started at 160.058,
    0.1 s before the stop had completed and the fault was stamped in effect (160.159). Those errors belong
    to db-down, whose window starts when its injection started."""

    def outcome(ts):
        return "info" if 160.058 <= ts < 163.6 else "ok"  # Postgres down: the buggy app answers 500

    faults = [
        event(145.0, "injecting", "kill-web", "stop_task", "web"),
        event(145.02, "injected", "kill-web", "stop_task", "web", replicas=["web-0"]),
        event(160.0, "injecting", "db-down", "db_blip", "postgres", duration_s=3.0),
        event(160.159, "injected", "db-down", "db_blip", "postgres", duration_s=3.0),
        event(163.159, "lifting", "db-down", "db_blip", "postgres"),
        event(163.6, "ended", "db-down", "db_blip", "postgres"),
    ]
    health = [
        sup(121.0, "healthy", replica="0", service="web"),
        sup(121.0, "healthy", replica="1", service="web"),
        sup(145.01, "killed", replica="0", service="web"),  # seen while the kill call was still running
        sup(146.0, "started", replica="0", service="web"),
        sup(151.0, "healthy", replica="0", service="web"),
        *[{"ts": t / 10, "service": "postgres", "healthy": not 1601 <= t < 1636} for t in range(1210, 1900)],
    ]
    # 60 requests/s from 120.15 (a ledger's first request is never on a round second), 3 ms each
    records = ledger(120.15, 190.0, 60, latency_ms=3.0, outcome=outcome)
    r = rc.check(run_evidence(faults, health, records), rc.RecoveryThresholds())
    assert r.valid is True, r.examples
    web, db = r.details["faults"]
    assert web["fault_id"] == "kill-web" and web["after_window"] == [151.0, 160.0]
    assert web["after_cut_by"] == "the start of the next fault (db-down)"
    assert web["error_ratio_after"] == 0.0 and web["time_to_detect_s"] == 0.0
    assert db["fault_id"] == "db-down" and db["lifted_ts"] == 163.6


def test_a_partition_followed_by_30_s_without_a_completed_request_has_not_recovered():
    """Issue 16, defect 2: after a 5 s partition (hang) between a service and its clients, the health probe
    said healthy 3.9 s after the lift, but no request completed for 30 s (the hung ones came back after
    30.657 s). A window with no completed request while the load ran is the outage, not a lack of data."""
    faults = [
        event(110.0, "injecting", "kill", "stop_task", "web"),
        event(110.01, "injected", "kill", "stop_task", "web"),
        event(120.0, "injecting", "partition", "network_partition", "web", duration_s=5.0),
        event(120.002, "injected", "partition", "network_partition", "web", duration_s=5.0),
        event(125.002, "lifting", "partition", "network_partition", "web"),
        event(125.003, "ended", "partition", "network_partition", "web"),
        event(165.0, "injecting", "latency", "network_latency", "web", duration_s=5.0),
        event(165.001, "injected", "latency", "network_latency", "web", duration_s=5.0),
        event(170.001, "lifting", "latency", "network_latency", "web"),
        event(170.002, "ended", "latency", "network_latency", "web"),
    ]
    health = [
        sup(100.0, "healthy", replica="0", service="web"),
        sup(100.0, "healthy", replica="1", service="web"),
        sup(110.005, "killed", replica="0", service="web"),
        sup(112.0, "healthy", replica="0", service="web"),
        sup(121.0, "unhealthy", replica="0", service="web"),
        sup(121.0, "unhealthy", replica="1", service="web"),
        sup(128.9, "healthy", replica="0", service="web"),
        sup(128.9, "healthy", replica="1", service="web"),
        sup(199.0, "healthy", replica="0", service="web"),
    ]
    records = [
        *ledger(100.0, 120.0, 50),
        *ledger(120.0, 120.4, 50, latency_ms=30657.0),  # one hung request per user
        *ledger(150.7, 200.0, 50),
    ]
    r = rc.check(run_evidence(faults, health, records, load_duration_s=100.0), rc.RecoveryThresholds())
    assert r.valid is False
    (failure,) = [e for e in r.examples if e["kind"] in rc.FAILING_KINDS]
    assert failure["kind"] == "throughput_not_back" and failure["fault_id"] == "partition"
    assert failure["requests_after"] == 0 and failure["after_window"] == [128.9, 138.9]
    assert failure["baseline_ok_per_s"] == pytest.approx(50.0)
    kill, _, latency = r.details["faults"]
    # the one request sent just before each recovery and completing after it is not "after" (49.9/s)
    assert kill["ok_per_s_after"] == pytest.approx(50.0, abs=0.2)
    assert latency["ok_per_s_after"] == pytest.approx(50.0, abs=0.2)


def test_the_report_names_the_fault_whose_service_did_not_serve_again():
    d = kill_and_heal(105.0)
    d["requests"] = [q for q in d["requests"] if q["start"] < 105.0]
    d["load_ended_ts"] = 200.0
    lines = recovery_table([check(d)])
    assert lines[1] == "### Recovery per fault (baseline 19.8 ok requests/s; RTO 30.0 s)"
    (row,) = [line for line in lines if line.startswith("| `f1`")]
    assert (
        "| 0.0 |" in row and "10.0 s (cut by after_window_s)" in row and row.endswith("throughput_not_back |")
    )
    assert recovery_table([]) == []


def test_the_loads_end_comes_from_its_live_lines_the_start_of_the_last_second_it_ran():
    lines = [{"ts": 1000, "pid": 1, "requests": 5}, {"ts": 1017, "pid": 1, "requests": 0}]
    lines += [{"ts": 1018, "pid": 2, "requests": 3}, {"ts": "bad", "pid": 3}]
    assert rc.load_end_from_live(lines) == 1018.0
    assert rc.load_end_from_live([]) is None
    ev = rc.evidence_from_run([], [], records=[], load_ended_ts=1018.0, load_duration_s=20.0)
    assert ev.load_ended_ts == 1018.0  # the live lines win over the estimate


def test_a_fault_lifted_after_the_load_had_ended_is_not_judged_on_the_silence_after_the_load():
    """The tutorial's db-down, as run on a loaded machine: Locust's 20 s started 2.2 s before its first
    request, so the load stopped at 1018.85 (its live lines' last second: 1018); the outage was lifted at
    1018.5. What follows is the silence of a load that has stopped, not an outage. Estimated as first
    request + 20 s (1021.03), the load's end would make it one (tutorial runs 1-5 of this branch's first
    10-run loop failed so)."""
    faults = [
        event(1015.05, "injecting", "db-down", "db_blip", "postgres", duration_s=3.0),
        event(1015.40, "injected", "db-down", "db_blip", "postgres", duration_s=3.0),
        event(1018.44, "lifting", "db-down", "db_blip", "postgres"),
        event(1018.5, "ended", "db-down", "db_blip", "postgres"),
    ]
    health = [
        {"ts": t / 10, "service": "postgres", "healthy": not 10152 <= t < 10185} for t in range(10000, 10250)
    ]
    records = [*ledger(1001.03, 1015.0, 50), *ledger(1015.0, 1018.85, 50, outcome=lambda ts: "info")]
    ev = run_evidence(faults, health, records)
    live = rc.evidence_from_run(
        [e for e in faults if e["event"] in rc.FAULT_EVENTS], health, records=records, load_ended_ts=1018.0
    )
    r = rc.check(live, rc.RecoveryThresholds())
    assert r.valid is True, r.examples
    (ex,) = r.examples
    assert ex["kind"] == "serving_unmeasured" and "the end of the load" in ex["reason"]
    estimated = rc.evidence_from_run(
        [e for e in faults if e["event"] in rc.FAULT_EVENTS], health, records=records, load_duration_s=20.0
    )
    assert rc.check(estimated, rc.RecoveryThresholds()).valid is False
    # without the load's end the same silence could be an outage: undecided, never passed
    assert ev.load_ended_ts is None and rc.check(ev, rc.RecoveryThresholds()).valid == UNKNOWN


def test_a_fault_that_recovers_after_the_next_one_started_has_an_empty_window_and_is_only_reported():
    d = kill_and_heal(105.0)
    d["faults"] += [fault(103.0, "injected", fault_id="f2", kind="db_blip", target="postgres")]
    d["health"] += [{"ts": t, "service": "postgres", "healthy": True} for t in (90.0, 104.0)]
    d["load_ended_ts"] = 300.0
    r = check(d)
    f1 = next(f for f in r.details["faults"] if f["fault_id"] == "f1")
    assert f1["after_window"] == [105.0, 105.0] and f1["requests_after"] == 0
    (ex,) = [e for e in r.examples if e["kind"] == "serving_unmeasured" and e["fault_id"] == "f1"]
    assert "cut to 0.00 s by the start of the next fault (f2)" in ex["reason"]


def test_the_report_lists_each_leader_losss_handover_under_the_recovery_table():
    figures = {"group": "symbols-0-of-2", "deposed": "m0", "deposed_token": 4, "time_to_pause_s": 0.2,
               "time_to_leader_s": 3.0, "new_leader": "m1", "new_token": 5, "leader_flip": True,
               "readiness_flip": True, "max_leading_heartbeat_age_s": 1.2}  # fmt: skip
    rows = [
        {"fault_id": "loss", "kind": "leader_loss", "leader": figures},
        {"fault_id": "kill", "kind": "stop_task"},
    ]

    def table(rows: list[dict]) -> list[str]:
        return recovery_table([CheckResult("recovery", True, {}, details={"rto_s": 30, "faults": rows})])

    lines = table(rows)
    assert lines[-3:] == [
        "Leader handovers (the lease group the samples followed):",
        "",
        "- `loss`: group symbols-0-of-2: m0 (token 4) paused 0.2 s in; m1 leads 3.0 s in (token 5);"
        " leader 1→0→1 yes, ready 200→503→200 yes; heartbeat ≤ 1.2 s",
    ]
    assert not [line for line in table(rows[1:]) if "handover" in line]
