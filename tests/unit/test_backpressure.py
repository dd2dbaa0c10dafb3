"""The backpressure check on small hand-made runs: a baseline, one burst, the time after it; every threshold
at its exact boundary, each anomaly present and absent."""

from __future__ import annotations

from typing import Any

import pytest

from resgate.checks import backpressure as bp
from resgate.checks.ledger import LedgerRecord
from resgate.contract.errors import ConfigError

T0 = 1_000.0
BURST_START, BURST_END = T0 + 10, T0 + 15  # the fault's injecting and ended events
LOAD_END = T0 + 40


def rec(ts: float, status: int | str = 201, latency_ms: float = 10.0, **extra: Any) -> LedgerRecord:
    ok = isinstance(status, int) and 200 <= status < 300
    fail = status == 503 or status == 429 or (isinstance(status, int) and 400 <= status < 500)
    return LedgerRecord(
        ts=ts,
        op="submit_order",
        client_id="c1",
        idempotency_key=f"k{ts}",
        status=status,
        outcome="ok" if ok else "fail" if fail else "info",
        latency_ms=latency_ms,
        **extra,
    )


def timeline(kind: str = "overload") -> list[dict[str, Any]]:
    def ev(ts: float, event: str, **detail: Any) -> dict[str, Any]:
        return {
            "ts": ts,
            "fault_id": "burst",
            "kind": kind,
            "target": "gateway",
            "event": event,
            "detail": detail,
        }

    return [
        ev(BURST_START, "injecting", duration_s=5),
        ev(BURST_START + 0.01, "injected", duration_s=5),
        ev(BURST_END - 0.01, "lifting"),
        ev(BURST_END, "ended"),
    ]


def steady(start: float, end: float, latency_ms: float = 10.0, per_s: int = 10) -> list[LedgerRecord]:
    """``per_s`` accepted requests a second over ``[start, end)``."""
    n = int((end - start) * per_s)
    return [rec(start + i / per_s, latency_ms=latency_ms) for i in range(n)]


def run(
    during: list[LedgerRecord],
    *,
    after_latency_ms: float = 10.0,
    slow_until: float | None = None,
    faults: list[dict[str, Any]] | None = None,
    thresholds: bp.BackpressureThresholds | None = None,
) -> Any:
    """A run: 10 s of baseline at 10 ms, the burst's records, then the time after the burst (its first
    seconds at ``after_latency_ms`` until ``slow_until``), judged."""
    after = steady(BURST_END, LOAD_END)
    if slow_until is not None:
        after = [rec(r.ts, latency_ms=after_latency_ms) if r.ts < slow_until else r for r in after]
    records = [*steady(T0, BURST_START), *during, *after]
    ev = bp.evidence_from_run(timeline() if faults is None else faults, records)
    return bp.check(ev, thresholds or bp.BackpressureThresholds())


def shed_burst(shed: int = 95, unclear: int = 5, accepted_ms: float = 20.0) -> list[LedgerRecord]:
    """A burst of 100 accepted requests at ``accepted_ms``, ``shed`` 503s with Retry-After and ``unclear``
    timeouts, spread over the burst's window."""
    out = [rec(BURST_START + 0.02 + i * 0.04, latency_ms=accepted_ms) for i in range(100)]
    out += [
        rec(BURST_START + 0.03 + i * 0.04, status=503, retry_after=1.0, latency_ms=2) for i in range(shed)
    ]
    out += [rec(BURST_START + 0.05 + i * 0.04, status="timeout", latency_ms=3000) for i in range(unclear)]
    return out


def kinds(result: Any) -> set[str]:
    return {e["kind"] for e in result.examples}


def test_a_burst_shed_with_retry_after_and_fast_accepted_requests_passes() -> None:
    r = run(shed_burst(shed=95, unclear=5))
    assert r.valid is True, r.examples
    assert r.counts == {"bursts": 1, "requests": 200, "accepted": 100, "shed": 95, "unclear": 5}
    row = r.details["bursts"][0]
    assert row["clear_shed_ratio"] == 0.95 and row["back_after_s"] == 0.0


def test_the_clear_shed_ratio_passes_at_its_minimum_and_fails_just_below() -> None:
    assert run(shed_burst(shed=95, unclear=5)).valid is True  # 95 / 100 = 0.95
    r = run(shed_burst(shed=94, unclear=6))
    assert r.valid is False and kinds(r) == {"unclear_rejections"}


def test_a_burst_answered_by_timeouts_fails_as_unclear_rejections() -> None:
    r = run(shed_burst(shed=0, unclear=50))
    assert r.valid is False
    assert r.examples[0]["kind"] == "unclear_rejections" and r.examples[0]["clear_shed_ratio"] == 0.0


def test_a_503_without_retry_after_is_unclear_and_a_429_is_a_clear_shed() -> None:
    assert bp.answer_class(rec(1, status=503)) == "unclear"
    assert bp.answer_class(rec(1, status=503, retry_after=1.0)) == "shed"
    assert bp.answer_class(rec(1, status=429)) == "shed"
    assert bp.answer_class(rec(1, status=500)) == "unclear"
    assert bp.answer_class(rec(1, status="conn_reset")) == "unclear"
    assert bp.answer_class(rec(1, status=409)) is None  # an answer, not overload
    assert bp.answer_class(rec(1, status=201)) == "accepted"


def test_the_accepted_p95_passes_at_its_bound_and_fails_just_above() -> None:
    t = bp.BackpressureThresholds(max_accepted_p95_ms=1000)
    assert run(shed_burst(accepted_ms=1000), thresholds=t).valid is True
    r = run(shed_burst(accepted_ms=1000.5), thresholds=t)
    assert r.valid is False and kinds(r) == {"accepted_latency_unbounded"}


def test_an_unbounded_queue_that_rejects_nothing_fails_on_its_accepted_latency() -> None:
    r = run(shed_burst(shed=0, unclear=0, accepted_ms=4200), after_latency_ms=3000, slow_until=BURST_END + 3)
    assert r.valid is False
    assert kinds(r) == {"accepted_latency_unbounded"}  # back 3 s after the lift: within 10 s


def test_a_burst_that_overloaded_nothing_is_unknown() -> None:
    r = run(shed_burst(shed=0, unclear=0, accepted_ms=20))
    assert r.valid == "unknown" and kinds(r) == {"no_overload"}
    assert "no_overload" in (r.error or "")


def test_a_run_without_an_overload_fault_is_unknown() -> None:
    r = run(shed_burst(), faults=timeline(kind="hang"))
    assert r.valid == "unknown" and kinds(r) == {"no_burst"}


def test_a_run_without_baseline_requests_is_unknown() -> None:
    records = [*shed_burst(), *steady(BURST_END, LOAD_END)]
    r = bp.check(bp.evidence_from_run(timeline(), records), bp.BackpressureThresholds())
    assert r.valid == "unknown" and "no_baseline" in kinds(r)


def test_recovery_passes_at_recover_within_s_and_fails_a_second_later() -> None:
    t = bp.BackpressureThresholds(recover_within_s=3, window_s=1)
    # every request of the first 3 s after the lift at 500 ms: the first good window starts at +3 s
    r = run(shed_burst(), after_latency_ms=500, slow_until=BURST_END + 3, thresholds=t)
    assert r.valid is True, r.examples
    assert r.details["bursts"][0]["back_after_s"] == 3.0
    r = run(shed_burst(), after_latency_ms=500, slow_until=BURST_END + 4, thresholds=t)
    assert r.valid is False and kinds(r) == {"slow_to_recover"}
    assert r.examples[0]["back_after_s"] == 4.0


def test_a_target_never_back_to_its_baseline_latency_fails() -> None:
    r = run(shed_burst(), after_latency_ms=500, slow_until=LOAD_END + 1)
    assert r.valid is False and kinds(r) == {"not_back_to_baseline"}


def test_the_latency_bound_after_the_burst_is_factor_times_baseline_plus_slack() -> None:
    # baseline p95 10 ms: bound 2 * 10 + 50 = 70 ms
    t = bp.BackpressureThresholds(recover_within_s=0, window_s=1)
    assert run(shed_burst(), after_latency_ms=70, slow_until=LOAD_END + 1, thresholds=t).valid is True
    r = run(shed_burst(), after_latency_ms=70.5, slow_until=LOAD_END + 1, thresholds=t)
    assert r.valid is False and kinds(r) == {"not_back_to_baseline"}


def test_throughput_after_the_burst_must_reach_its_share_of_the_baseline() -> None:
    records = [*steady(T0, BURST_START), *shed_burst(), *steady(BURST_END, LOAD_END, per_s=5)]
    ev = bp.evidence_from_run(timeline(), records)
    assert (
        bp.check(ev, bp.BackpressureThresholds(min_throughput_ratio=0.5)).valid is True
    )  # 5/s >= 0.5 * 10/s
    r = bp.check(ev, bp.BackpressureThresholds(min_throughput_ratio=0.51))
    assert r.valid is False and kinds(r) == {"not_back_to_baseline"}


def test_the_burst_window_comes_from_the_phases_of_the_fault_timeline() -> None:
    ev = bp.evidence_from_run(timeline(), steady(T0, LOAD_END))
    assert ev.bursts == (bp.BurstWindow("burst", BURST_START, BURST_END),)
    assert (ev.baseline_start, ev.baseline_end) == (T0, BURST_START)


def test_thresholds_take_their_defaults_and_name_a_bad_field() -> None:
    assert bp.BackpressureThresholds.from_dict({}) == bp.BackpressureThresholds()
    t = bp.BackpressureThresholds.from_dict({"min_clear_shed_ratio": 1, "recover_within_s": 0})
    assert t.min_clear_shed_ratio == 1.0 and t.recover_within_s == 0.0
    with pytest.raises(ConfigError) as e:
        bp.BackpressureThresholds.from_dict({"min_clear_shed_ratio": 1.01}, where="checks.backpressure")
    assert e.value.where == "checks.backpressure.min_clear_shed_ratio"
    with pytest.raises(ConfigError) as e:
        bp.BackpressureThresholds.from_dict({"window_s": 0.49}, where="checks.backpressure")
    assert e.value.where == "checks.backpressure.window_s"
    with pytest.raises(ConfigError) as e:
        bp.BackpressureThresholds.from_dict({"max_p95": 1}, where="checks.backpressure")
    assert e.value.where == "checks.backpressure" and "max_p95" in str(e.value)


def test_answer_classes_at_the_edges_of_the_4xx_range() -> None:
    assert bp.answer_class(rec(1, status=399)) == "unclear"
    assert bp.answer_class(rec(1, status=400)) is None
    assert bp.answer_class(rec(1, status=499)) is None
    assert bp.answer_class(rec(1, status=500)) == "unclear"


def test_p95_is_the_nearest_rank() -> None:
    assert bp.p95([]) is None
    assert bp.p95([7.0]) == 7.0
    assert bp.p95([float(i) for i in range(1, 21)]) == 19.0  # rank ceil(0.95 * 20) = 19
    assert bp.p95([float(i) for i in range(1, 22)]) == 20.0  # rank ceil(19.95) = 20


def test_the_load_ends_a_millisecond_after_its_last_request() -> None:
    ev = bp.evidence_from_run(timeline(), steady(T0, T0 + 2))
    assert ev.load_end == pytest.approx(T0 + 1.9 + 0.001, abs=1e-9)
    empty = bp.evidence_from_run(timeline(), [])
    assert (empty.bursts, empty.load_end, empty.records) == ((), 0.0, ())


def test_the_baseline_rate_counts_a_window_shorter_than_a_second() -> None:
    ev = bp.BackpressureEvidence(
        bursts=(),
        baseline_start=T0,
        baseline_end=T0 + 0.5,
        load_end=T0 + 1,
        records=tuple(steady(T0, T0 + 0.5)),
    )
    assert bp.baseline_figures(ev) == {"accepted": 5, "accepted_rps": 10.0, "accepted_p95_ms": 10.0}


def test_a_window_that_ends_exactly_at_the_end_of_the_load_is_judged_and_none_beyond_it() -> None:
    base = {"accepted_p95_ms": 10.0, "accepted_rps": 10.0}
    t = bp.BackpressureThresholds(window_s=2.0)
    lift = T0
    records = steady(lift, lift + 2)
    assert bp.time_back_to_baseline(records, lift, lift + 2.0, base, t) == 0.0
    # 10 good requests in [lift + 2, lift + 2.5) and the load ends at lift + 2.5: no whole window holds them
    late = [rec(lift + 2 + i * 0.045) for i in range(10)]
    assert bp.time_back_to_baseline(late, lift, lift + 2.5, base, t) is None


def test_the_clear_shed_ratio_of_an_example_is_rounded_to_four_places() -> None:
    r = run(shed_burst(shed=1, unclear=2))
    assert r.examples[0]["clear_shed_ratio"] == 0.3333


def test_one_rejection_is_overload_evidence() -> None:
    r = run(shed_burst(shed=1, unclear=0))
    assert r.valid is True and r.counts["shed"] == 1


def test_an_accepted_p95_exactly_at_its_bound_without_rejections_is_no_overload() -> None:
    t = bp.BackpressureThresholds(max_accepted_p95_ms=1000)
    r = run(shed_burst(shed=0, unclear=0, accepted_ms=1000), thresholds=t)
    assert r.valid == "unknown" and kinds(r) == {"no_overload"}


@pytest.mark.parametrize(
    ("field", "lo", "hi"),
    [
        ("min_clear_shed_ratio", 0, 1),
        ("max_accepted_p95_ms", 1, 600_000),
        ("recover_within_s", 0, 3600),
        ("latency_factor", 1, 100),
        ("latency_slack_ms", 0, 60_000),
        ("min_throughput_ratio", 0, 1),
        ("window_s", 0.5, 60),
    ],
)
def test_each_threshold_is_accepted_at_its_bounds_and_refused_just_outside(
    field: str, lo: float, hi: float
) -> None:
    assert getattr(bp.BackpressureThresholds.from_dict({field: lo}), field) == lo
    assert getattr(bp.BackpressureThresholds.from_dict({field: hi}), field) == hi
    for bad in (lo - 0.25, hi + 0.25):
        with pytest.raises(ConfigError) as e:
            bp.BackpressureThresholds.from_dict({field: bad}, where="checks.backpressure")
        assert e.value.where == f"checks.backpressure.{field}"


def test_an_absent_section_is_the_defaults_and_a_non_mapping_is_refused() -> None:
    assert bp.BackpressureThresholds.from_dict(None) == bp.BackpressureThresholds()
    with pytest.raises(ConfigError) as e:
        bp.BackpressureThresholds.from_dict([1], where="checks.backpressure")  # type: ignore[arg-type]
    assert e.value.where == "checks.backpressure" and "object" in str(e.value)


def test_the_result_carries_its_limits_for_the_report() -> None:
    t = bp.BackpressureThresholds(recover_within_s=7)
    r = run(shed_burst(), thresholds=t)
    assert r.details["limits"]["recover_within_s"] == 7.0
    assert r.details["limits"]["min_clear_shed_ratio"] == 0.95
