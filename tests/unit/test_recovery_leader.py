"""The recovery check's leader judgments over small hand-made leader samples, each rule at its boundary."""

from __future__ import annotations

from typing import Any

import pytest

from resgate.checks.recovery import RecoveryEvidence, RecoveryThresholds, check
from resgate.checks.recovery.leader import (
    LeaderObservation,
    LeaderSample,
    leader_anomalies,
    leader_figures,
    split_brain,
    stale_leaders,
)
from resgate.contract.errors import ConfigError

T0 = 1000.0  # the fault is in effect at T0


def _s(ts: float, replica: str, leader: int | None, token: int | None, *, answered: bool = True,
       ready: bool | None = None) -> dict[str, Any]:  # fmt: skip
    return {"ts": ts, "replica": replica, "answered": answered, "leader": leader, "token": token,
            "ready": bool(leader) if ready is None else ready}  # fmt: skip


def _clean(takeover_at: float = 3.0) -> list[dict[str, Any]]:
    """m0 leads (token 4) before the fault, stops answering at T0, m1 takes over with token 5."""
    return [
        _s(T0 - 1, "m0", 1, 4),
        _s(T0 - 1, "m1", 0, None),
        _s(T0 + 0.2, "m0", None, None, answered=False, ready=None),
        _s(T0 + takeover_at, "m1", 1, 5),
        _s(T0 + 6, "m0", 0, None),
    ]


def _obs(samples: list[dict[str, Any]], *, ended: float = T0 + 40, hb: dict[str, float] | None = None,
         restarts: dict[str, int] | None = None, **extra: Any) -> LeaderObservation:  # fmt: skip
    return LeaderObservation.from_event(
        {
            "fault_id": "leader-loss",
            "event": "leader_samples",
            "detail": {
                "deposed": "m0",
                "deposed_token": 4,
                "started_ts": T0 - 1,
                "ended_ts": ended,
                "samples": samples,
                "max_leading_heartbeat_age_s": hb or {"m0": 1.0, "m1": 1.2},
                "restarts": restarts or {"m0": 0, "m1": 0},
                **extra,
            },
        }
    )


def _kinds(obs: LeaderObservation, *, rto_s: float = 30, hb: float = 5) -> list[str]:
    return [a["kind"] for a in leader_anomalies(obs, T0, rto_s=rto_s, max_heartbeat_age_s=hb)[1]]


def test_a_clean_handover_has_its_figures_and_no_anomaly():
    obs = _obs(_clean())
    f = leader_figures(obs, T0)
    assert f["time_to_pause_s"] == 0.2 and f["time_to_leader_s"] == 3.0
    assert (f["new_leader"], f["new_token"]) == ("m1", 5)
    assert f["leader_flip"] is True and f["readiness_flip"] is True
    assert _kinds(obs) == []


def test_a_sampling_that_stopped_on_an_error_is_undecided_even_when_what_it_saw_looks_clean():
    failed = _obs(_clean(), error="ClientError: ThrottlingException")
    assert failed.error == "ClientError: ThrottlingException"
    assert _kinds(failed) == ["no_data"]
    assert _reasons(failed) == ["the leader sampling failed: ClientError: ThrottlingException"]
    for none in (None, ""):
        assert _obs(_clean(), error=none).error is None and _kinds(_obs(_clean(), error=none)) == []


def test_two_replicas_leading_at_once_under_different_tokens_is_split_brain_and_a_stale_leader():
    samples = [*_clean(), _s(T0 + 5, "m0", 1, 4)]  # m0 resumed, still leading with token 4
    obs = _obs(samples)
    assert split_brain(obs) == [{"kind": "split_brain", "ts": T0 + 5, "leaders": {"m0": 4, "m1": 5}}]
    assert [a["token"] for a in stale_leaders(obs)] == [4]
    assert sorted(set(_kinds(obs))) == ["split_brain", "stale_leader"]


def test_a_deposed_leader_acting_after_its_successor_stopped_is_a_stale_leader_without_split_brain():
    samples = [*_clean(), _s(T0 + 5, "m1", 0, None), _s(T0 + 5.5, "m0", 1, 4)]
    obs = _obs(samples)
    assert split_brain(obs) == []
    assert _kinds(obs) == ["stale_leader"]


def test_two_replicas_reporting_the_same_token_is_not_split_brain():
    obs = _obs([*_clean(), _s(T0 + 5, "m0", 1, 5)])
    assert split_brain(obs) == [] and stale_leaders(obs) == []


def test_a_takeover_exactly_at_the_rto_passes_and_just_after_it_fails():
    assert _kinds(_obs(_clean(takeover_at=30.0)), rto_s=30) == []
    assert _kinds(_obs(_clean(takeover_at=30.001)), rto_s=30) == ["takeover_missed"]


def test_no_takeover_is_missed_when_observed_past_the_rto_and_undecided_before_it():
    no_takeover = [s for s in _clean() if s["replica"] != "m1" or s["leader"] == 0]
    assert "takeover_missed" in _kinds(_obs(no_takeover, ended=T0 + 30), rto_s=30)
    early = _kinds(_obs(no_takeover, ended=T0 + 29.9), rto_s=30)
    assert "takeover_missed" not in early and "no_data" in early


def test_a_leader_heartbeat_exactly_at_the_bound_passes_and_just_above_it_fails():
    assert _kinds(_obs(_clean(), hb={"m1": 5.0})) == []
    assert _kinds(_obs(_clean(), hb={"m1": 5.001})) == ["stale_heartbeat"]


def test_a_restarted_replica_during_the_handover_fails_and_none_passes():
    assert _kinds(_obs(_clean(), restarts={"m0": 1, "m1": 0})) == ["leader_restarted"]
    assert _kinds(_obs(_clean(), restarts={"m0": 0, "m1": 0})) == []


def test_a_leader_that_never_went_away_is_undecided_not_passed():
    samples = [_s(T0 - 1, "m0", 1, 4), _s(T0 - 1, "m1", 0, None)]
    obs = _obs(samples)
    f = leader_figures(obs, T0)
    assert f["leader_flip"] is False and f["time_to_pause_s"] is None
    assert _kinds(obs) == ["no_data"]


def test_a_leader_back_under_its_own_token_before_anyone_took_over_leads_again_without_anomaly():
    samples = [
        _s(T0 - 1, "m0", 1, 4),
        _s(T0 - 1, "m1", 0, None),
        _s(T0 + 0.2, "m0", None, None, answered=False, ready=None),
        _s(T0 + 2.0, "m0", 1, 4),  # a pause shorter than its lease: nobody took over
    ]
    f = leader_figures(_obs(samples), T0)
    assert (f["time_to_leader_s"], f["new_leader"], f["new_token"]) == (2.0, "m0", 4)
    assert _kinds(_obs(samples)) == []
    # the same replica back under an older token than its own is no leader again
    older = [*samples[:3], _s(T0 + 2.0, "m0", 1, 3)]
    assert leader_figures(_obs(older), T0)["time_to_leader_s"] is None


def test_missing_samples_or_no_leader_before_the_fault_is_undecided():
    assert "no_data" in _kinds(_obs([]))
    figures, anomalies = leader_anomalies(None, T0, rto_s=30, max_heartbeat_age_s=5)
    assert figures == {} and [a["kind"] for a in anomalies] == ["no_data"]
    no_leader_before = [s for s in _clean() if s["ts"] >= T0]
    assert "no_data" in _kinds(_obs(no_leader_before))


def test_readiness_flip_needs_ready_before_none_after_and_ready_again():
    samples = [dict(s, ready=False) if s["replica"] == "m1" else s for s in _clean()]
    assert leader_figures(_obs(samples), T0)["readiness_flip"] is False
    assert leader_figures(_obs(_clean()), T0)["readiness_flip"] is True


def _recovery(samples: list[dict[str, Any]]) -> Any:
    faults = [
        {"ts": T0 - 0.1, "fault_id": "leader-loss", "kind": "leader_loss", "target": "matcher",
         "event": "injecting", "detail": {"duration_s": 5}},
        {"ts": T0, "fault_id": "leader-loss", "kind": "leader_loss", "target": "matcher", "event": "injected",
         "detail": {"duration_s": 5}},
        {"ts": T0 + 5, "fault_id": "leader-loss", "kind": "leader_loss", "target": "matcher",
         "event": "ended", "detail": {}},
    ]  # fmt: skip
    health = [
        {"ts": T0 - 2, "service": "matcher", "replica": "m0", "event": "healthy"},
        {"ts": T0 + 6, "service": "matcher", "replica": "m0", "healthy": True},
    ]
    detail = {"samples": samples, "started_ts": T0 - 1, "ended_ts": T0 + 40, "deposed": "m0",
              "deposed_token": 4, "max_leading_heartbeat_age_s": {"m1": 1.0}, "restarts": {}}  # fmt: skip
    leaders = [{"fault_id": "leader-loss", "event": "leader_samples", "detail": detail}]
    ev = RecoveryEvidence.from_dict({"faults": faults, "health": health, "leaders": leaders})
    return check(ev, RecoveryThresholds(error_ratio_tolerance=None, min_throughput_ratio=None))


def test_the_recovery_check_fails_a_leader_loss_with_split_brain_and_passes_a_clean_one():
    good = _recovery(_clean())
    assert good.valid is True, good.examples
    assert good.counts["leader_losses"] == 1 and good.counts["max_time_to_leader_s"] == 3.0
    assert good.details["faults"][0]["leader"]["new_leader"] == "m1"
    bad = _recovery([*_clean(), _s(T0 + 5, "m0", 1, 4)])
    assert bad.valid is False and bad.counts["split_brain"] == 2
    assert {e["kind"] for e in bad.examples} >= {"split_brain", "stale_leader"}


def test_the_recovery_check_is_undecided_for_a_leader_loss_without_samples():
    ev = RecoveryEvidence.from_dict(
        {
            "faults": [
                {"ts": T0, "fault_id": "ll", "kind": "leader_loss", "target": "matcher", "event": "injected"}
            ],
            "health": [{"ts": T0 - 1, "service": "matcher", "replica": "m0", "event": "healthy"}],
        }
    )
    r = check(ev, RecoveryThresholds(error_ratio_tolerance=None, min_throughput_ratio=None))
    assert r.valid == "unknown" and "no leader samples" in (r.error or "")


def test_max_heartbeat_age_must_be_positive_and_defaults_to_five_seconds():
    assert RecoveryThresholds.from_dict({}).max_heartbeat_age_s == 5.0
    assert RecoveryThresholds.from_dict({"max_heartbeat_age_s": 2.5}).max_heartbeat_age_s == 2.5
    with pytest.raises(ConfigError) as e:
        RecoveryThresholds.from_dict({"max_heartbeat_age_s": 0}, where="checks.recovery")
    assert e.value.where == "checks.recovery.max_heartbeat_age_s"


def _reasons(obs: LeaderObservation, **kw: Any) -> list[str]:
    _, anomalies = leader_anomalies(obs, T0, rto_s=kw.get("rto_s", 30), max_heartbeat_age_s=5)
    return [a.get("reason", "") for a in anomalies if a["kind"] == "no_data"]


def test_a_handover_recorded_at_one_instant_is_neither_split_brain_nor_a_gap():
    # at T0 + 3 the successor's sample comes first, then the deposed leader's: one moment, one leader
    samples = [
        _s(T0 - 1, "m0", 1, 4),
        _s(T0 - 1, "m1", 0, None),
        _s(T0 + 3, "m1", 1, 5),
        _s(T0 + 3, "m0", 0, None),
    ]
    obs = _obs(samples)
    assert split_brain(obs) == []
    f = leader_figures(obs, T0)
    assert f["leader_flip"] is False and f["time_to_pause_s"] == 3.0 and f["time_to_leader_s"] == 3.0


def test_the_flip_needs_a_leader_just_before_the_fault_and_a_gap_at_or_after_it():
    # a leader only at T0 exactly is not "before"; a pause sampled at T0 exactly is "after"
    at_t0 = [_s(T0, "m0", 1, 4), _s(T0 + 1, "m0", None, None, answered=False), _s(T0 + 2, "m1", 1, 5)]
    assert leader_figures(_obs(at_t0), T0)["leader_flip"] is False
    assert "no replica was seen leading before the leader loss" in _reasons(_obs(at_t0))
    gap_at_t0 = [_s(T0 - 1, "m0", 1, 4), _s(T0, "m0", None, None, answered=False), _s(T0 + 2, "m1", 1, 5)]
    f = leader_figures(_obs(gap_at_t0), T0)
    assert f["leader_flip"] is True and f["time_to_pause_s"] == 0.0 and f["time_to_leader_s"] == 2.0
    # the last moment before the fault decides: a leader earlier that had stepped down does not count
    stepped_down = [
        _s(T0 - 2, "m0", 1, 4),
        _s(T0 - 1, "m0", 0, None),
        _s(T0 + 1, "m1", 0, None),
        _s(T0 + 2, "m1", 1, 5),
    ]
    assert leader_figures(_obs(stepped_down), T0)["leader_flip"] is False
    # a gap before the fault is not the fault's
    early_gap = [
        _s(T0 - 3, "m0", 1, 4),
        _s(T0 - 2, "m0", 0, None),
        _s(T0 - 1, "m0", 1, 4),
        _s(T0 + 1, "m1", 1, 5),
        _s(T0 + 1, "m0", 0, None),
    ]
    f = leader_figures(_obs(early_gap), T0)
    assert f["leader_flip"] is False and f["time_to_pause_s"] == 1.0


def test_readiness_counts_only_answers_that_say_ready_true():
    samples = [dict(s, ready=None) for s in _clean()]
    f = leader_figures(_obs(samples), T0)
    assert f["leader_flip"] is True and f["readiness_flip"] is False


def test_a_successor_needs_a_larger_token_and_without_a_known_token_another_replica():
    same_token = [*_clean()[:3], _s(T0 + 3, "m1", 1, 4)]
    assert leader_figures(_obs(same_token), T0)["time_to_leader_s"] is None
    no_token = [*_clean()[:3], _s(T0 + 3, "m1", 1, None)]
    assert leader_figures(_obs(no_token), T0)["time_to_leader_s"] is None
    unknown = _obs([*_clean()[:3], _s(T0 + 2, "m0", 1, 9), _s(T0 + 3, "m1", 1, 5)])
    unknown = LeaderObservation(**{**unknown.__dict__, "deposed_token": None})
    f = leader_figures(unknown, T0)
    assert (f["time_to_leader_s"], f["new_leader"]) == (3.0, "m1")


def test_the_first_successor_seen_at_a_moment_is_the_new_leader_and_figures_keep_three_decimals():
    samples = [
        _s(T0 - 1, "m0", 1, 4),
        _s(T0 + 0.2344, "m0", None, None, answered=False),
        _s(T0 + 3.0006, "m1", 1, 5),
        _s(T0 + 3.0006, "m2", 1, 6),
    ]
    f = leader_figures(_obs(samples), T0)
    assert (f["new_leader"], f["new_token"]) == ("m1", 5)
    assert (f["time_to_pause_s"], f["time_to_leader_s"]) == (0.234, 3.001)


def test_an_observation_that_ended_before_the_rto_without_a_leader_says_so():
    no_takeover = [s for s in _clean() if s["replica"] != "m1" or s["leader"] == 0]
    reasons = _reasons(_obs(no_takeover, ended=T0 + 29.9))
    assert "the observation ended before the RTO, no replica had taken over" in reasons


def test_malformed_samples_and_events_are_config_errors_naming_the_field():
    with pytest.raises(ConfigError) as e:
        _obs([{"ts": T0, "answered": True}])
    assert (e.value.where or "").endswith("detail.samples[0].replica")
    with pytest.raises(ConfigError) as e:
        _obs([{"ts": T0, "replica": "", "answered": True}])
    assert (e.value.where or "").endswith("detail.samples[0].replica")
    with pytest.raises(ConfigError) as e:
        LeaderObservation.from_event({"detail": {"samples": {"a": 1}, "started_ts": 1, "ended_ts": 2}})
    assert (e.value.where or "").endswith("detail.samples")
    with pytest.raises(ConfigError):
        LeaderObservation.from_event([])  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        LeaderSample.from_dict([], where="s")  # type: ignore[arg-type]


def test_only_numbers_count_as_heartbeats_and_only_integers_as_figures():
    obs = _obs(_clean(), hb={"m0": "7", "m1": True, "m2": 2.0})  # type: ignore[dict-item]
    assert obs.max_leading_heartbeat_age_s == {"m2": 2.0}
    boolean = LeaderSample.from_dict(
        {"ts": T0, "replica": "m0", "answered": True, "leader": True, "token": True}, where="s"
    )
    assert (boolean.leader, boolean.token, boolean.leads) == (None, None, False)


def test_the_pause_is_the_first_moment_the_deposed_leader_no_longer_leads_and_ready_means_true():
    samples = [
        _s(T0 - 1, "m0", 1, 4),
        _s(T0 - 1, "m1", 0, None),
        _s(T0 + 0.5, "m1", 0, None, ready=None),  # a moment after the fault at which m0 still leads
        _s(T0 + 1, "m0", None, None, answered=False),
        _s(T0 + 3, "m1", 1, 5),
    ]
    f = leader_figures(_obs(samples), T0)
    assert (f["time_to_pause_s"], f["time_to_leader_s"]) == (1.0, 3.0)
    # readiness 200 -> 503 -> 200 over the handover alone (no later answer of the deposed replica)
    assert leader_figures(_obs(_clean()[:4]), T0)["readiness_flip"] is True


def test_the_figures_name_the_lease_group_the_samples_followed_and_none_without_one():
    def with_group(group: Any) -> LeaderObservation:
        detail = {"deposed": "m0", "deposed_token": 4, "started_ts": T0 - 1, "ended_ts": T0 + 40,
                  "samples": _clean()}  # fmt: skip
        if group is not None:
            detail["group"] = group
        return LeaderObservation.from_event({"fault_id": "leader-loss", "detail": detail})

    assert leader_figures(with_group("symbols-1-of-2"), T0)["group"] == "symbols-1-of-2"
    assert leader_figures(with_group(None), T0)["group"] is None
    assert with_group(7).group is None  # only a name is a group
