"""A run cut into phases by its fault timeline (baseline, each fault's during and recovery, steady), the
figures of each phase from merged histograms, and the SLO limits per phase, each at its boundary."""

from __future__ import annotations

from typing import Any

import pytest

from resgate.checks.slo import (
    EndpointStats,
    PhaseLimits,
    SloEvidence,
    SloThresholds,
    check,
    phase_windows,
    run_phases,
)
from resgate.checks.slo.phases import locust_bucket
from resgate.contract.errors import ConfigError

KILL = [{"ts": 10.0, "fault_id": "kill-gw", "kind": "stop_task", "target": "gateway", "event": "injected"}]
HEALTH = [
    {"ts": 0.0, "service": "gateway", "replica": "0", "event": "healthy"},
    {"ts": 10.05, "service": "gateway", "replica": "0", "event": "killed"},
    {"ts": 13.0, "service": "gateway", "replica": "0", "event": "healthy"},
]


def _ledger(n: int = 400, step: float = 0.1, *, bad=lambda t: False, ms=lambda t: 20.0) -> list[dict]:
    return [
        {"ts": i * step, "latency_ms": ms(i * step), "outcome": "fail" if bad(i * step) else "ok"}
        for i in range(n)
    ]


def _by_key(phases) -> dict[str, Any]:
    return {p.key: p for p in phases}


def test_a_kill_raises_the_error_ratio_during_and_it_returns_in_recovery() -> None:
    records = _ledger(bad=lambda t: 10 <= t < 13 and int(t * 10) % 2 == 0)
    phases = _by_key(run_phases(KILL, HEALTH, records))
    assert list(phases) == ["baseline", "during:kill-gw", "recovery:kill-gw", "steady"]
    assert phases["baseline"].error_ratio == 0.0
    assert phases["during:kill-gw"].error_ratio == 0.5
    assert (phases["during:kill-gw"].start_ts, phases["during:kill-gw"].end_ts) == (10.0, 13.0)
    assert phases["recovery:kill-gw"].error_ratio == 0.0
    assert phases["recovery:kill-gw"].duration_s == pytest.approx(5.0)  # healthy + settle_s (5 s)
    assert sum(p.requests for p in phases.values()) == len(records)  # every request in exactly one phase


def test_a_held_fault_acts_until_it_ends_and_its_recovery_is_bounded_by_the_rto() -> None:
    faults = [
        {
            "ts": 5.0,
            "fault_id": "part",
            "kind": "network_partition",
            "target": "gateway",
            "event": "injected",
            "detail": {"duration_s": 3},
        },
        {"ts": 5.2, "fault_id": "part", "kind": "network_partition", "target": "gateway", "event": "started"},
        {"ts": 8.0, "fault_id": "part", "kind": "network_partition", "target": "gateway", "event": "ended"},
    ]
    health = [
        {"ts": 0.0, "service": "gateway", "replica": "0", "event": "healthy"},
        {"ts": 6.0, "service": "gateway", "replica": "0", "event": "unhealthy"},
    ]  # never healthy again: the recovery window is cut at the RTO
    w = {x.key: x for x in phase_windows(faults, health, load_start=0.0, load_end=60.0, rto_s=4.0)}
    assert (w["during:part"].start, w["during:part"].end) == (5.0, 8.0)
    assert (w["recovery:part"].start, w["recovery:part"].end) == (8.0, 12.0)
    assert (w["baseline"].start, w["baseline"].end) == (0.0, 5.0)


def test_a_later_fault_owns_the_time_where_it_overlaps_an_earlier_ones_recovery() -> None:
    faults = [
        *KILL,
        {"ts": 15.0, "fault_id": "kill-2", "kind": "stop_task", "target": "gateway", "event": "injected"},
    ]
    health = [
        *HEALTH,
        {"ts": 15.1, "service": "gateway", "replica": "0", "event": "killed"},
        {"ts": 17.0, "service": "gateway", "replica": "0", "event": "healthy"},
    ]
    phases = _by_key(run_phases(faults, health, _ledger()))
    assert phases["recovery:kill-gw"].duration_s == pytest.approx(2.0)  # 13..15, then kill-2 is on
    assert phases["during:kill-2"].duration_s == pytest.approx(2.0)
    assert sum(p.requests for p in phases.values()) == 400


def test_a_run_without_faults_is_one_steady_phase() -> None:
    phases = run_phases([], [], _ledger(50))
    assert [p.key for p in phases] == ["steady"]
    assert phases[0].requests == 50


def test_an_empty_ledger_has_no_phases() -> None:
    assert run_phases(KILL, HEALTH, []) == []


def test_phase_percentiles_come_from_the_merged_histogram_never_from_averaged_percentiles() -> None:
    # second 0: 19 requests at 10 ms and one at 1000 ms (p95 10); second 1: 20 at 500 ms (p95 500).
    records = [{"ts": 0.01 * i, "latency_ms": 10.0, "outcome": "ok"} for i in range(19)]
    records.append({"ts": 0.5, "latency_ms": 1000.0, "outcome": "ok"})
    records += [{"ts": 1.0 + 0.01 * i, "latency_ms": 500.0, "outcome": "ok"} for i in range(20)]
    (steady,) = run_phases([], [], records)
    assert steady.samples == (10.0, 500.0)
    assert steady.p95_ms == 500.0  # rank 38 of 40 in the merged histogram; the average would be 255
    assert steady.p99_ms == 1000.0


def test_latencies_are_bucketed_as_locust_buckets_them() -> None:
    assert [locust_bucket(x) for x in (42.4, 99.6, 147.0, 1234.0, 56789.0)] == [42, 100, 150, 1200, 57000]


# ------------------------------------------------------------------------------------------ limits


def _evidence(phases) -> SloEvidence:
    stats = EndpointStats(
        name="/orders", method="POST", num_requests=10, num_failures=0, response_times={20.0: 10}
    )
    return SloEvidence(stats=(stats,), duration_s=10.0, phases=tuple(phases))


def _kill_run() -> list:
    # steady: 5 failures in 50 requests after recovery (t in [23, 28)) -> 0.1
    return run_phases(
        KILL, HEALTH, _ledger(bad=lambda t: 10 <= t < 13 or (23 <= t < 28 and int(t * 10) % 10 == 0))
    )


def test_a_steady_error_ratio_at_its_limit_passes_and_just_above_fails() -> None:
    phases = _kill_run()
    steady = _by_key(phases)["steady"]
    at = SloThresholds.from_dict({"phases": {"steady": {"max_error_ratio": steady.error_ratio}}})
    assert check(_evidence(phases), at).valid is True
    above = SloThresholds.from_dict({"phases": {"steady": {"max_error_ratio": steady.error_ratio - 1e-9}}})
    r = check(_evidence(phases), above)
    assert r.valid is False
    assert r.examples[0]["kind"] == "error_ratio_above_limit"
    assert r.examples[0]["phase"] == "steady"


def test_a_during_limit_per_fault_name_wins_over_its_kind_and_over_the_default() -> None:
    phases = _kill_run()  # during:kill-gw fails every request
    limits = {"during": {"max_error_ratio": 0.0, "per_fault": {"stop_task": {"max_error_ratio": 0.5}}}}
    r = check(_evidence(phases), SloThresholds.from_dict({"phases": limits}))
    assert r.valid is False and r.examples[0]["phase"] == "during:kill-gw"
    assert r.examples[0]["limit"] == 0.5
    limits["during"]["per_fault"]["kill-gw"] = {"max_error_ratio": 1.0}
    assert check(_evidence(phases), SloThresholds.from_dict({"phases": limits})).valid is True


def test_phase_limits_without_a_ledger_are_unknown() -> None:
    ev = _evidence([])
    ev = SloEvidence(stats=ev.stats, duration_s=10.0, phases=None)
    r = check(ev, SloThresholds.from_dict({"phases": {"steady": {"max_error_ratio": 0.1}}}))
    assert r.valid == "unknown"
    assert "ledger" in (r.error or "")


def test_the_per_phase_figures_are_in_the_results_details() -> None:
    r = check(_evidence(_kill_run()), SloThresholds.from_dict({"p95_ms": 1000}))
    keys = [p["key"] for p in r.details["phases"]]
    assert keys == ["baseline", "during:kill-gw", "recovery:kill-gw", "steady"]
    assert r.counts["phases"] == 4


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"stedy": {"max_error_ratio": 0.1}}, "thresholds.slo.phases.stedy"),
        ({"steady": {"max_error_ratio": 1.5}}, "thresholds.slo.phases.steady.max_error_ratio"),
        ({"steady": {"per_fault": {}}}, "thresholds.slo.phases.steady"),
        ({"during": {"per_fault": {"x": {"p95": 3}}}}, "thresholds.slo.phases.during.per_fault.x"),
        ({"during": {"per_fault": []}}, "thresholds.slo.phases.during.per_fault"),
    ],
)
def test_a_bad_phase_limit_is_a_config_error_naming_the_field(body: dict, where: str) -> None:
    with pytest.raises(ConfigError) as e:
        SloThresholds.from_dict({"phases": body})
    assert e.value.where == where


def test_a_phase_limit_on_an_unknown_regression_phase_names_the_field() -> None:
    with pytest.raises(ConfigError) as e:
        SloThresholds.from_dict({"regression": {"phases": ["steady", "dring"]}})
    assert e.value.where == "thresholds.slo.regression.phases[1]"


def test_phase_limits_list_their_per_fault_keys_for_the_config_schema() -> None:
    limits = PhaseLimits.from_dict({"during": {"per_fault": {"a": {}}}, "recovery": {"per_fault": {"b": {}}}})
    assert limits.fault_keys() == [("during.per_fault.a", "a"), ("recovery.per_fault.b", "b")]


def test_a_regression_block_without_an_inline_baseline_only_sets_the_golden_comparison() -> None:
    t = SloThresholds.from_dict({"p95_ms": 100, "regression": {"max_ratio": 1.5, "phases": ["steady"]}})
    assert t.regression is not None and t.regression.baseline is None
    assert (t.regression.max_ratio, t.regression.phases) == (1.5, ("steady",))


def _config_with_phases(phases: dict) -> str:
    import yaml

    from resgate.cli import default_config_path

    data = yaml.safe_load(default_config_path().read_text())
    data["checks"]["slo"]["phases"] = phases
    return yaml.safe_dump(data)


def test_a_per_fault_limit_naming_no_fault_of_the_gate_is_a_config_error_naming_the_field() -> None:
    from resgate.config import load_config_text

    with pytest.raises(ConfigError) as e:
        load_config_text(_config_with_phases({"during": {"per_fault": {"kill-gatway": {"p95_ms": 100}}}}))
    assert "checks.slo.phases.during.per_fault.kill-gatway" in str(e.value)
    assert "kill-gateway" in str(e.value)  # the faults it could have meant


def test_a_per_fault_limit_may_name_a_fault_of_the_gate_or_a_fault_kind() -> None:
    from resgate.config import load_config_text

    phases = {"during": {"per_fault": {"kill-gateway": {"max_error_ratio": 1.0}}}}
    phases["recovery"] = {"per_fault": {"network_partition": {"max_error_ratio": 0.5}}}
    cfg = load_config_text(_config_with_phases(phases))
    assert cfg.checks["slo"]["phases"]["during"]["per_fault"] == {"kill-gateway": {"max_error_ratio": 1.0}}


def test_the_packaged_network_gate_has_a_strict_steady_error_budget() -> None:
    from pathlib import Path

    from resgate.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "resgate" / "configs" / "network.yaml")
    assert cfg.checks["slo"]["phases"]["steady"]["max_error_ratio"] <= 0.35


def test_the_per_segment_owner_lookup_gives_each_moment_the_phase_a_scan_of_every_window_gives() -> None:
    from resgate.checks.slo.phases import _owner, _Owners

    faults = [
        *KILL,
        {
            "ts": 11.0,
            "fault_id": "part",
            "kind": "network_partition",
            "target": "db",
            "event": "injected",
            "detail": {"duration_s": 4},
        },
        {"ts": 12.5, "fault_id": "part", "kind": "network_partition", "target": "db", "event": "aborted"},
    ]
    windows = phase_windows(faults, HEALTH, load_start=0.0, load_end=40.0)
    lookup = _Owners(windows)
    for i in range(-20, 900):
        ts = i * 0.05
        assert lookup(ts) == _owner(ts, windows), ts


def test_a_steady_limit_on_a_run_with_no_steady_time_is_unknown_and_says_so() -> None:
    faults = [
        {
            "ts": 1.0,
            "fault_id": "long",
            "kind": "hang",
            "target": "gateway",
            "event": "injected",
            "detail": {"duration_s": 60},
        }
    ]
    phases = run_phases(faults, HEALTH, _ledger(100))  # the fault outlasts the load
    assert "steady" not in [p.key for p in phases]
    r = check(_evidence(phases), SloThresholds.from_dict({"phases": {"steady": {"max_error_ratio": 0.35}}}))
    assert r.valid == "unknown"
    assert r.error == "steady: the run has no such phase"
