"""The scorecard's windows and goodput: cut at the next injection and at the load's end, one ledger pass."""

from __future__ import annotations

import pytest

from resgate.checks.ledger import LedgerRecord
from resgate.checks.result import CheckResult
from resgate.contract.errors import ConfigError
from resgate.evidence.scorecard import Window, build_scorecard, fault_windows, goodput, render_scorecard


def row(fid: str, t0: float, healthy: float | None, lifted: float | None = None) -> dict:
    return {
        "fault_id": fid,
        "kind": "stop_task",
        "target": "gateway",
        "injected_ts": t0,
        "lifted_ts": lifted,
        "recovered_ts": healthy,
        "time_to_detect_s": 0.5,
        "time_to_healthy_s": None if healthy is None else healthy - (lifted or t0),
    }


def test_an_instantaneous_fault_acts_until_healthy_and_is_judged_for_the_after_window() -> None:
    [(during, after)] = fault_windows([row("k", 100.0, 104.0)], rto_s=30, after_window_s=10)
    assert during == Window(100.0, 104.0)
    assert after == Window(104.0, 114.0)


def test_a_held_fault_acts_until_lifted() -> None:
    [(during, after)] = fault_windows([row("p", 100.0, 106.0, lifted=105.0)], rto_s=30, after_window_s=10)
    assert during == Window(100.0, 105.0)
    assert after == Window(106.0, 116.0)


def test_windows_end_at_the_next_injection_so_no_fault_is_charged_with_the_next() -> None:
    rows = [row("a", 100.0, 104.0), row("b", 108.0, 109.0)]
    (_d1, a1), (d2, _a2) = fault_windows(rows, rto_s=30, after_window_s=10)
    assert a1 == Window(104.0, 108.0)
    assert d2 == Window(108.0, 109.0)


def test_a_fault_that_never_recovered_acts_for_the_rto_and_has_no_after_window() -> None:
    [(during, after)] = fault_windows([row("k", 100.0, None)], rto_s=30, after_window_s=10)
    assert during == Window(100.0, 130.0) and after is None


def test_a_fault_healthy_at_its_injection_has_no_during_window() -> None:
    [(during, _after)] = fault_windows([row("d", 100.0, 100.0)], rto_s=30, after_window_s=10)
    assert during is None


def ledger(points: list[tuple[float, str]]) -> list[LedgerRecord]:
    return [LedgerRecord(ts, "submit_order", "c1", None, 201, o, 5.0) for ts, o in points]


def test_goodput_counts_only_successes_in_half_open_windows() -> None:
    recs = ledger([(0.0, "ok"), (5.0, "ok"), (9.999, "fail"), (10.0, "ok"), (11.0, "info"), (12.0, "ok")])
    base, [w] = goodput(recs, [Window(10.0, 12.0)], baseline_end=10.0)
    assert base == pytest.approx(2 / 10.0)
    assert w == pytest.approx(1 / 2.0)  # 12.0 is outside [10, 12)


def test_a_window_past_the_loads_last_request_is_cut_there_and_unmeasured_beyond() -> None:
    recs = ledger([(0.0, "ok"), (10.0, "ok"), (11.0, "ok")])
    _base, [cut, beyond] = goodput(recs, [Window(10.0, 20.0), Window(15.0, 25.0)], baseline_end=10.0)
    assert cut == pytest.approx(2 / 1.0)  # cut at the last request (11.0, counted): two in one second
    assert beyond is None


def test_a_service_that_serves_nothing_after_a_fault_scores_no_after_goodput() -> None:
    recs = ledger([(t, "ok") for t in range(0, 100)] + [(t + 0.5, "fail") for t in range(100, 140)])
    rec = CheckResult("recovery", True, {}, details={"rto_s": 30, "faults": [row("k", 100.0, 102.0)]})
    card = build_scorecard([rec], recs, verdict="PASS")
    [f] = card.faults
    assert f["goodput_after"] == 0.0 and f["goodput_during"] == 0.0
    assert card.score.value == 50  # full RTO points, nothing served during or after


def test_the_scorecard_names_integrity_anomalies_and_replay_parity() -> None:
    results = [
        CheckResult("recovery", True, details={"rto_s": 30, "faults": [row("k", 5.0, 6.0)]}),
        CheckResult("integrity", False, {"lost": 2, "duplicated": 0, "double_fill": 3, "orders_rows": 9}),
        CheckResult("replay", True, {"matching": 4, "read_models": 4}),
        CheckResult("retryable", True, {"failed": 4, "allowed": 3}),
    ]
    card = build_scorecard(results, ledger([(t, "ok") for t in range(20)]), verdict="FAIL")
    assert card.run["lost"] == 2 and card.run["other_anomalies"] == 3
    assert card.run["replay"] == "4/4" and card.run["retryable_share"] == 0.75
    assert card.score.value == 0
    text = render_scorecard(card)
    assert "resilience score: 0/100 (Fail)" in text and "double_fill=3" in text


def test_a_ledger_the_checks_refuse_leaves_goodput_unmeasured_and_says_why() -> None:
    def broken():
        yield LedgerRecord(1.0, "submit_order", "c1", None, 201, "ok", 5.0)
        raise ConfigError("client_id: is required", where="ledger.jsonl:2")

    rec = CheckResult("recovery", True, details={"rto_s": 30, "faults": [row("k", 5.0, 6.0)]})
    card = build_scorecard([rec], broken(), verdict="FAIL")
    assert card.faults[0]["goodput_during"] is None and card.faults[0]["goodput_after"] is None
    assert "ledger.jsonl:2" in card.run["ledger_error"]
    assert card.score.value == 100  # the RTO part alone; integrity judges the ledger itself
