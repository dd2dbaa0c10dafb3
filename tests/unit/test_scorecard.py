"""The scorecard: goodput per phase against the baseline's, the run's row, the report section."""

from __future__ import annotations

import pytest

from resgate.checks.result import UNKNOWN, CheckResult
from resgate.evidence.scorecard import (
    build_scorecard,
    goodput_rps,
    leader_summary,
    phase_goodput,
    render_scorecard,
    scorecard_markdown,
    with_score,
)


def fault_row(fid: str, tth: float | None, kind: str = "stop_task") -> dict:
    return {
        "fault_id": fid,
        "kind": kind,
        "target": "gateway",
        "time_to_detect_s": 0.5,
        "time_to_healthy_s": tth,
    }


def phase(key: str, duration_s: float, requests: int, failures: int = 0) -> dict:
    return {"key": key, "duration_s": duration_s, "requests": requests, "failures": failures}


def recovery(*rows: dict) -> CheckResult:
    return CheckResult("recovery", True, {}, details={"rto_s": 30, "faults": list(rows)})


def test_goodput_counts_successes_per_second_and_a_phase_that_served_nothing_is_zero() -> None:
    assert goodput_rps(phase("baseline", 10.0, 120, 20)) == pytest.approx(10.0)
    assert goodput_rps(phase("during:k", 30.0, 0)) == 0.0
    assert goodput_rps(phase("during:k", 30.0, 50, 50)) == 0.0
    assert goodput_rps(phase("during:k", 0.0, 0)) is None


def test_phase_goodput_is_keyed_by_the_phase_key() -> None:
    rows = [phase("baseline", 10.0, 100), phase("during:a", 2.0, 10), phase("recovery:a", 5.0, 50)]
    assert phase_goodput(rows) == {"baseline": 10.0, "during:a": 5.0, "recovery:a": 10.0}


def test_each_fault_is_scored_on_its_own_during_and_recovery_phases_not_another_faults() -> None:
    phases = [
        phase("baseline", 10.0, 100),
        phase("during:a", 2.0, 10),  # 5 rps: half the baseline's
        phase("recovery:a", 5.0, 50),
        phase("during:b", 4.0, 0),  # b served nothing
        phase("recovery:b", 5.0, 25),
    ]
    card = build_scorecard([recovery(fault_row("a", 1.0), fault_row("b", 2.0))], phases, verdict="PASS")
    a, b = card.faults
    assert (a["goodput_during"], a["goodput_after"]) == (0.5, 1.0)
    assert (b["goodput_during"], b["goodput_after"]) == (0.0, 0.5)


def test_a_service_that_serves_nothing_after_a_fault_keeps_only_its_rto_points() -> None:
    phases = [phase("baseline", 10.0, 100), phase("during:k", 2.0, 0), phase("recovery:k", 5.0, 40, 40)]
    card = build_scorecard([recovery(fault_row("k", 2.0))], phases, verdict="PASS")
    assert card.faults[0]["goodput_during"] == 0.0 and card.faults[0]["goodput_after"] == 0.0
    assert card.score.value == 50


def test_a_phase_too_short_for_one_baseline_request_is_unmeasured_not_zero_goodput() -> None:
    """The demo once scored 81 instead of 98: three instant faults each had a *during* phase of 2-5 ms
    with no request in it (at 67 requests per second), read as 0 % goodput."""
    base = phase("baseline", 10.0, 100)  # 10 requests per second: one request per 0.1 s
    instant = [base, phase("during:k", 0.0999, 0), phase("recovery:k", 5.0, 50)]
    card = build_scorecard([recovery(fault_row("k", 1.0))], instant, verdict="PASS")
    assert card.faults[0]["goodput_during"] is None and card.faults[0]["goodput_after"] == 1.0
    assert card.score.value == 100
    # exactly one expected request: measured, and serving none of it is 0 % goodput
    one = [base, phase("during:k", 0.1, 0), phase("recovery:k", 5.0, 50)]
    card = build_scorecard([recovery(fault_row("k", 1.0))], one, verdict="PASS")
    assert card.faults[0]["goodput_during"] == 0.0
    assert card.score.value == 75
    # the recovery phase is judged by the same rule
    short_after = [base, phase("during:k", 2.0, 20), phase("recovery:k", 0.05, 0)]
    card = build_scorecard([recovery(fault_row("k", 1.0))], short_after, verdict="PASS")
    assert card.faults[0]["goodput_after"] is None and card.faults[0]["goodput_during"] == 1.0


def test_without_a_baseline_phase_goodput_is_unmeasured_and_left_out_of_the_score() -> None:
    phases = [phase("during:k", 2.0, 10), phase("recovery:k", 5.0, 40)]
    card = build_scorecard([recovery(fault_row("k", 2.0))], phases, verdict="PASS")
    assert card.faults[0]["goodput_during"] is None and card.faults[0]["goodput_after"] is None
    assert card.score.value == 100  # the RTO part alone


def test_the_run_row_names_integrity_anomalies_replay_parity_and_the_retryable_share() -> None:
    results = [
        recovery(fault_row("k", 1.0)),
        CheckResult("integrity", False, {"lost": 2, "duplicated": 0, "double_fill": 3, "orders_rows": 9}),
        CheckResult("replay", True, {"matching": 4, "read_models": 4}),
        CheckResult("retryable", True, {"failed": 4, "allowed": 3}),
    ]
    card = build_scorecard(results, [phase("baseline", 5.0, 50)], verdict="FAIL")
    assert card.run["lost"] == 2 and card.run["other_anomalies"] == 3
    assert card.run["replay"] == "4/4" and card.run["retryable_share"] == 0.75
    assert card.score.value == 0
    text = render_scorecard(card)
    assert "resilience score: 0/100 (Fail)" in text and "double_fill=3" in text


def test_the_verdict_record_carries_the_score_and_its_band() -> None:
    card = build_scorecard([recovery(fault_row("k", 1.0))], [], verdict="PASS")
    assert with_score({"result": "PASS"}, card) == {"result": "PASS", "score": 100, "score_band": "Pass"}
    undecided = build_scorecard([CheckResult("recovery", UNKNOWN)], [], verdict="FAIL")
    assert with_score({}, undecided) == {"score": None, "score_band": "Not scored"}


def test_the_report_section_puts_the_rto_beside_each_time_and_says_when_nothing_was_injected() -> None:
    card = build_scorecard([recovery(fault_row("kill-gw", 3.25))], [], verdict="PASS")
    md = scorecard_markdown(card)
    assert "**Resilience score: 100/100 (Pass)**" in md
    assert "| kill-gw | stop_task | 0.5 | 3.2 | 30 |" in md
    calm = scorecard_markdown(build_scorecard([recovery()], [], verdict="PASS"))
    assert (
        "**Resilience score: not scored** — no fault was injected" in calm
        and "No fault was injected." in calm
    )


HANDOVER = {"group": "symbols-1-of-2", "deposed": "matcher-0", "deposed_token": 1, "time_to_pause_s": 0.3,
            "time_to_leader_s": 6.361, "new_leader": "matcher-1", "new_token": 2, "leader_flip": True,
            "readiness_flip": False, "max_leading_heartbeat_age_s": 0.948}  # fmt: skip


def test_a_leader_loss_prints_its_handover_under_its_row_and_other_faults_print_none() -> None:
    loss = {**fault_row("leader-loss", 0.0, kind="leader_loss"), "leader": HANDOVER}
    no_samples = {**fault_row("other-loss", 0.0, kind="leader_loss"), "leader": {}}
    lines = render_scorecard(
        build_scorecard([recovery(loss, no_samples, fault_row("k", 1.0))], [], verdict="PASS")
    )
    handovers = [line for line in lines.splitlines() if line.startswith("  ↳ ")]
    assert handovers == [
        "  ↳ group symbols-1-of-2: matcher-0 (token 1) paused 0.3 s in; matcher-1 leads 6.4 s in (token 2);"
        " leader 1→0→1 yes, ready 200→503→200 no; heartbeat ≤ 0.9 s"
    ]
    assert lines.splitlines().index(handovers[0]) == 3  # right under the leader loss's row


def test_a_handover_without_a_group_or_a_new_leader_says_so() -> None:
    one_group = {**HANDOVER, "group": None, "new_leader": None, "leader_flip": None}
    assert leader_summary(one_group) == (
        "matcher-0 (token 1) paused 0.3 s in; no leader again; leader 1→0→1 -, ready 200→503→200 no;"
        " heartbeat ≤ 0.9 s"
    )
