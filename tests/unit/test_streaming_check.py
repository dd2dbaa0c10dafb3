"""The ``streaming`` check on small hand-made stream ledgers: each threshold at its exact boundary with the
anomaly present and absent, keys (symbols, sequences) that repeat across clients and symbols, the ranges
the feed declared it could not resend, and the cases that can only be unknown.

The blueprint's names for these figures (WebSocket connection error rate, reconnect time, time to first
fill) are those of the AWS "Chaos engineering for trading systems" guidance the issue cites; the limits
here are the gate's own defaults (``resgate.checks.streaming``).
"""

from __future__ import annotations

from typing import Any

import pytest

from resgate.checks import streaming
from resgate.checks.streaming import StreamingEvidence, StreamingThresholds, check, fault_windows, ranges
from resgate.contract import stream as sl
from resgate.contract.errors import ConfigError

T0 = 1000.0


def rec(client: str, ts: float, event: str, **fields: Any) -> dict[str, Any]:
    return {"ts": ts, "client_id": client, "event": event, **fields}


def history(
    client: str, symbol: str, got: list[int], *, base: int = 0, t0: float = T0, end: float = T0 + 100
) -> list[dict[str, Any]]:
    """A subscriber: connected at ``t0``, a snapshot at ``base``, received ``got``, ended at ``end``."""
    out = [rec(client, t0, sl.EV_CONNECT, attempt=1, connect_ms=1.0)]
    out.append(rec(client, t0, sl.EV_SNAPSHOT, symbol=symbol, seq=base))
    out += [rec(client, t0 + s, sl.EV_MSG, symbol=symbol, seq=s) for s in got]
    out.append(rec(client, end, sl.EV_HEARTBEAT))
    out.append(rec(client, end, sl.EV_DISCONNECT, reason="stopped"))
    return out


def published(n: int, *, t0: float = T0) -> dict[int, float]:
    """Trades 1..n, trade ``s`` published at ``t0 + s``."""
    return {s: t0 + s for s in range(1, n + 1)}


def run(records: list[dict[str, Any]], pub: dict[str, dict[int, float]], **th: Any) -> streaming.CheckResult:
    return check(StreamingEvidence(records=tuple(records), published=pub), StreamingThresholds(**th))


# ------------------------------------------------------------------------------------- completeness
def test_a_subscriber_that_received_every_published_trade_passes() -> None:
    r = run(history("a", "AAPL", list(range(1, 11))), {"AAPL": published(10)})
    assert r.valid is True
    assert r.counts["completeness"] == 1.0 and r.counts["owed"] == 10 and r.counts["unhealed"] == 0


def test_completeness_at_the_minimum_passes_and_just_below_it_fails_naming_the_range() -> None:
    recs = history("a", "AAPL", [s for s in range(1, 11) if s != 4])  # 9 of 10
    assert run(recs, {"AAPL": published(10)}, min_completeness=0.9).valid is True
    r = run(recs, {"AAPL": published(10)}, min_completeness=0.91)
    assert r.valid is False
    assert r.examples == [
        {"kind": "gap_not_healed", "client_id": "a", "symbol": "AAPL", "from_seq": 4, "to_seq": 4}
    ]


def test_trades_before_the_first_snapshot_are_not_owed() -> None:
    r = run(history("a", "AAPL", list(range(6, 11)), base=5), {"AAPL": published(10)})
    assert r.valid is True and r.counts["owed"] == 5


def test_a_trade_published_exactly_tail_grace_before_the_subscriber_ended_is_owed_one_later_is_not() -> None:
    recs = history("a", "AAPL", list(range(1, 10)), end=T0 + 12)  # trade 10 (at T0+10) never came
    assert run(recs, {"AAPL": published(10)}, tail_grace_s=2.0).valid is False  # 10 <= 12 - 2: owed
    assert run(recs, {"AAPL": published(10)}, tail_grace_s=2.001).valid is True  # published too late


def test_what_a_subscriber_is_owed_ends_where_the_feed_was_last_seen_reaching_it() -> None:
    # heard from at T0+12 (heartbeat), then reconnecting when it stopped at T0+50: trade 10 (T0+10) is
    # owed with a 2 s grace, trade 11 (T0+11) is not, whatever came after the last heartbeat
    recs = history("a", "AAPL", list(range(1, 10)), end=T0 + 12)
    recs += [
        rec("a", T0 + 40, sl.EV_DISCONNECT, reason="closed"),
        rec("a", T0 + 50, sl.EV_CONNECT, attempt=3, connect_ms=1.0),
    ]
    r = run(recs, {"AAPL": published(11)}, tail_grace_s=2.0)
    assert r.valid is False and r.counts["owed"] == 10
    assert [(e["from_seq"], e["to_seq"]) for e in r.examples] == [(10, 10)]


def test_the_same_sequences_on_two_clients_and_two_symbols_are_judged_apart() -> None:
    recs = history("a", "AAPL", list(range(1, 6))) + history("a", "MSFT", [1, 2, 4, 5])
    recs += history("b", "AAPL", [1, 2, 3, 5]) + history("b", "MSFT", list(range(1, 6)))
    r = run(recs, {"AAPL": published(5), "MSFT": published(5)})
    assert r.valid is False
    assert r.counts["owed"] == 20 and r.counts["received"] == 18 and r.counts["subscribers"] == 2
    assert sorted((e["client_id"], e["symbol"], e["from_seq"], e["to_seq"]) for e in r.examples) == [
        ("a", "MSFT", 3, 3),
        ("b", "AAPL", 4, 4),
    ]


def test_a_gap_resent_after_a_reconnect_counts_as_received() -> None:
    recs = history("a", "AAPL", [1, 2, 5])
    recs += [rec("a", T0 + 6, sl.EV_MSG, symbol="AAPL", seq=s, resent=True) for s in (3, 4)]
    assert run(recs, {"AAPL": published(5)}).valid is True


def test_a_range_the_feed_declared_it_cannot_resend_is_skipped_not_an_unhealed_gap() -> None:
    recs = history("a", "AAPL", [1, 2, 3])
    recs += [
        rec("a", T0 + 8, sl.EV_RESUME, symbol="AAPL", from_seq=3, to_seq=7, mode=sl.MODE_SNAPSHOT),
        rec("a", T0 + 8, sl.EV_SNAPSHOT, symbol="AAPL", seq=7),
        rec("a", T0 + 9, sl.EV_MSG, symbol="AAPL", seq=8),
    ]
    r = run(recs, {"AAPL": published(8)})
    assert r.valid is True and r.counts["skipped_by_snapshot"] == 4 and r.counts["owed"] == 4


def test_trades_a_subscriber_received_without_ever_getting_a_snapshot_are_not_judged() -> None:
    recs = [
        rec("b", T0, sl.EV_CONNECT, attempt=1, connect_ms=1.0),
        rec("b", T0 + 1, sl.EV_MSG, symbol="AAPL", seq=1),
        rec("b", T0 + 50, sl.EV_HEARTBEAT),
    ]
    r = run([*history("a", "AAPL", [1, 2, 3]), *recs], {"AAPL": published(3)})
    assert r.valid is True and r.counts["owed"] == 3 and r.counts["received"] == 3


def test_gather_reads_the_configured_topic_and_trade_type(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls: list[tuple[Any, ...]] = []

    def fake(bootstrap: str, topic: str, trade_type: str, *, kafka: Any = None) -> Any:
        calls.append((bootstrap, topic, trade_type, kafka))
        return {"AAPL": {1: 1.0}}, []

    # a stand-in module: gather imports its reader on first use (aiokafka stays out of the Lambdas' import)
    stand_in = types.ModuleType("resgate.checks.streaming.published")
    stand_in.read_published = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "resgate.checks.streaming.published", stand_in)
    th = StreamingThresholds(topic="t.trades", trade_type="Fill")
    assert streaming.gather("b:9092", th, kafka="k") == ({"AAPL": {1: 1.0}}, [])
    assert calls == [("b:9092", "t.trades", "Fill", "k")]


def test_a_snapshot_the_feed_sent_without_saying_it_could_not_resend_excuses_nothing() -> None:
    recs = history("a", "AAPL", [1, 2, 3])
    recs += [
        rec("a", T0 + 8, sl.EV_RESUME, symbol="AAPL", from_seq=3, to_seq=7, mode=sl.MODE_RESEND),
        rec("a", T0 + 8, sl.EV_SNAPSHOT, symbol="AAPL", seq=7),
        rec("a", T0 + 9, sl.EV_MSG, symbol="AAPL", seq=8),
    ]
    r = run(recs, {"AAPL": published(8)})
    assert r.valid is False and r.counts["skipped_by_snapshot"] == 0
    assert r.counts["unhealed"] == 4  # AAPL 4..7: one range, four trades
    assert [(e["from_seq"], e["to_seq"]) for e in r.examples] == [(4, 7)]


def test_ranges_joins_consecutive_sequences() -> None:
    assert ranges([7, 1, 3, 2, 9, 8]) == [(1, 3), (7, 9)]
    assert ranges([]) == []


# ------------------------------------------------------------------------------------- fault windows
def faults(start: float, end: float) -> tuple[dict[str, Any], ...]:
    return (
        {"ts": start, "fault_id": "kill", "event": "injected", "kind": "stop_task"},
        {"ts": end, "fault_id": "kill", "event": "recovered", "kind": "stop_task"},
    )


def test_fault_windows_run_from_the_injection_to_the_last_end_event() -> None:
    evs = [*faults(T0 + 3, T0 + 6), {"ts": T0 + 5, "fault_id": "kill", "event": "ended"}]
    assert fault_windows(evs) == [("kill", T0 + 3, T0 + 6)]
    kill = [
        {"ts": 1.0, "fault_id": "x", "event": "injecting"},
        {"ts": 1.5, "fault_id": "x", "event": "injected"},
    ]
    assert fault_windows(kill, 10.0) == [("x", 1.0, 11.0)]  # no end event: the instant window after it


def test_fault_windows_are_ordered_by_their_start() -> None:
    evs = [
        {"ts": T0 + 5, "fault_id": "a", "event": "injected"},
        {"ts": T0 + 6, "fault_id": "a", "event": "ended"},
        {"ts": T0 + 1, "fault_id": "b", "event": "injected"},
        {"ts": T0 + 100, "fault_id": "b", "event": "ended"},
    ]
    assert fault_windows(evs) == [("b", T0 + 1, T0 + 100), ("a", T0 + 5, T0 + 6)]


def test_window_completeness_at_the_minimum_passes_and_below_it_fails() -> None:
    # trades 1..20, window [T0+1, T0+20]; 19 arrive in time, trade 20 arrives after end + rto
    recs = history("a", "AAPL", list(range(1, 20)), end=T0 + 200)
    recs.append(rec("a", T0 + 20 + 10.001, sl.EV_MSG, symbol="AAPL", seq=20))
    pub = {"AAPL": published(20)}
    ev = StreamingEvidence(records=tuple(recs), published=pub, faults=faults(T0 + 1, T0 + 20))
    ok = check(ev, StreamingThresholds(rto_s=10.0, min_completeness_during=0.95))
    assert ok.valid is True and ok.details["windows"][0]["ratio"] == 0.95
    bad = check(ev, StreamingThresholds(rto_s=10.0, min_completeness_during=0.951))
    assert bad.valid is False and [e["kind"] for e in bad.examples] == ["window_incomplete"]


def test_a_trade_healed_exactly_at_the_window_end_plus_rto_counts_for_the_window() -> None:
    recs = [
        *history("a", "AAPL", [1], end=T0 + 200),
        rec("a", T0 + 2 + 10.0, sl.EV_MSG, symbol="AAPL", seq=2),
    ]
    ev = StreamingEvidence(
        records=tuple(recs), published={"AAPL": published(2)}, faults=faults(T0 + 1, T0 + 2)
    )
    assert check(ev, StreamingThresholds(rto_s=10.0, min_completeness_during=1.0)).valid is True


# ------------------------------------------------------------------- reconnects, errors, fills
def test_a_reconnect_as_long_as_the_rto_passes_and_one_millisecond_longer_fails() -> None:
    base = history("a", "AAPL", [1])
    at = [*base, rec("a", T0 + 5, sl.EV_RECONNECT, duration_ms=30000.0, attempts=3)]
    over = [*base, rec("a", T0 + 5, sl.EV_RECONNECT, duration_ms=30001.0, attempts=3)]
    assert run(at, {"AAPL": published(1)}, rto_s=30.0).valid is True
    r = run(over, {"AAPL": published(1)}, rto_s=30.0)
    assert (
        r.valid is False
        and r.examples[0]["kind"] == "slow_reconnect"
        and r.counts["max_reconnect_ms"] == 30_001.0
    )


def test_the_connection_error_rate_at_the_maximum_passes_and_above_it_fails() -> None:
    base = history("a", "AAPL", [1])  # one connect
    one_error = [*base, rec("a", T0, sl.EV_CONNECT_ERROR, attempt=1, error="refused")]
    assert run(one_error, {"AAPL": published(1)}, max_connection_error_rate=0.5).valid is True
    r = run(one_error, {"AAPL": published(1)}, max_connection_error_rate=0.49)
    assert r.valid is False and r.examples[0] == {
        "kind": "connection_errors",
        "errors": 1,
        "attempts": 2,
        "rate": 0.5,
    }


def test_failed_attempts_during_a_fault_and_its_rto_are_not_connection_errors() -> None:
    recs = history("a", "AAPL", [1], end=T0 + 200)
    during = [rec("a", T0 + 20 + 10.0, sl.EV_CONNECT_ERROR, attempt=i, error="refused") for i in range(3)]
    ev = StreamingEvidence(
        records=tuple(recs + during), published={"AAPL": published(1)}, faults=faults(T0 + 10, T0 + 20)
    )
    ok = check(ev, StreamingThresholds(rto_s=10.0, max_connection_error_rate=0.0))
    assert ok.valid is True and ok.counts["connect_errors"] == 3 and ok.counts["connection_error_rate"] == 0.0
    after = [rec("a", T0 + 20 + 10.001, sl.EV_CONNECT_ERROR, attempt=1, error="refused")]
    ev2 = StreamingEvidence(
        records=tuple(recs + after), published={"AAPL": published(1)}, faults=faults(T0 + 10, T0 + 20)
    )
    bad = check(ev2, StreamingThresholds(rto_s=10.0, max_connection_error_rate=0.0))
    assert bad.valid is False and bad.examples[0]["kind"] == "connection_errors"


def test_a_failed_attempt_exactly_at_a_faults_start_is_the_faults() -> None:
    recs = [*history("a", "AAPL", [1], end=T0 + 200)]
    recs.append(rec("a", T0 + 10, sl.EV_CONNECT_ERROR, attempt=1, error="refused"))
    ev = StreamingEvidence(tuple(recs), {"AAPL": published(1)}, faults(T0 + 10, T0 + 20))
    assert check(ev, StreamingThresholds(rto_s=10.0, max_connection_error_rate=0.0)).valid is True
    before = [*recs[:-1], rec("a", T0 + 9.999, sl.EV_CONNECT_ERROR, attempt=1, error="refused")]
    ev2 = StreamingEvidence(tuple(before), {"AAPL": published(1)}, faults(T0 + 10, T0 + 20))
    assert check(ev2, StreamingThresholds(rto_s=10.0, max_connection_error_rate=0.0)).valid is False


def test_a_fill_arriving_exactly_at_a_faults_start_is_the_faults_one_just_before_is_not() -> None:
    recs = history("a", "AAPL", [1], end=T0 + 200)
    window = faults(T0 + 10, T0 + 20)

    def fill(arrived: float) -> dict[str, Any]:
        return rec("a", arrived, sl.EV_FILL, order_id="o", symbol="AAPL", seq=1, ttff_ms=9000.0)

    th = StreamingThresholds(rto_s=10.0, max_ttff_p95_ms=100.0)
    at_start = check(StreamingEvidence(tuple([*recs, fill(T0 + 10)]), {"AAPL": published(1)}, window), th)
    assert at_start.valid is True and at_start.counts["ttff_p95_ms"] is None
    before = check(StreamingEvidence(tuple([*recs, fill(T0 + 9.999)]), {"AAPL": published(1)}, window), th)
    assert before.valid is False


def test_a_fill_without_its_time_is_not_counted() -> None:
    recs = [*history("a", "AAPL", [1]), rec("a", T0 + 1, sl.EV_FILL, order_id="o", symbol="AAPL", seq=1)]
    r = run(recs, {"AAPL": published(1)})
    assert r.valid is True and r.counts["fills"] == 0


def test_time_to_first_fill_p95_at_the_maximum_passes_and_above_it_fails() -> None:
    base = history("a", "AAPL", [1])
    fills = [
        rec("a", T0 + 1, sl.EV_FILL, order_id=f"o{i}", symbol="AAPL", seq=1, ttff_ms=float(i))
        for i in range(1, 21)
    ]
    # nearest-rank p95 of 1..20 is 19
    assert run(base + fills, {"AAPL": published(1)}, max_ttff_p95_ms=19.0).valid is True
    r = run(base + fills, {"AAPL": published(1)}, max_ttff_p95_ms=18.999)
    assert r.valid is False and r.examples[0]["kind"] == "slow_first_fill" and r.counts["ttff_p95_ms"] == 19.0


def test_a_fill_whose_wait_overlaps_a_fault_and_its_rto_is_not_judged_one_just_after_is() -> None:
    recs = history("a", "AAPL", [1], end=T0 + 200)
    window = faults(T0 + 10, T0 + 20)  # with rto 10: [T0+10, T0+30]

    def fill(acked: float, ttff_ms: float) -> dict[str, Any]:
        return rec(
            "a", acked + ttff_ms / 1000, sl.EV_FILL, order_id="o", symbol="AAPL", seq=1, ttff_ms=ttff_ms
        )

    at_edge = StreamingEvidence(tuple([*recs, fill(T0 + 30, 9000.0)]), {"AAPL": published(1)}, window)
    r = check(at_edge, StreamingThresholds(rto_s=10.0, max_ttff_p95_ms=100.0))
    assert r.valid is True and r.counts["ttff_p95_ms"] is None and r.counts["ttff_p95_ms_all"] == 9000.0
    after = StreamingEvidence(tuple([*recs, fill(T0 + 30.001, 9000.0)]), {"AAPL": published(1)}, window)
    r2 = check(after, StreamingThresholds(rto_s=10.0, max_ttff_p95_ms=100.0))
    assert r2.valid is False and r2.examples[0]["kind"] == "slow_first_fill"


def test_no_fills_leave_time_to_first_fill_unjudged() -> None:
    r = run(history("a", "AAPL", [1]), {"AAPL": published(1)}, max_ttff_p95_ms=0.0)
    assert r.valid is True and r.counts["fills"] == 0 and r.counts["ttff_p95_ms"] is None


# ------------------------------------------------------------------------------------- unknown
def test_an_empty_stream_ledger_is_unknown_never_a_pass() -> None:
    r = run([], {"AAPL": published(3)})
    assert r.valid == "unknown" and "no_subscriber_connected" in (r.error or "")


def test_subscribers_that_never_connected_make_the_check_unknown() -> None:
    recs = [rec("a", T0 + i, sl.EV_CONNECT_ERROR, attempt=i, error="refused") for i in range(1, 4)]
    r = run(recs, {"AAPL": published(3)})
    assert r.valid == "unknown" and r.counts["connect_errors"] == 3


def test_nothing_published_on_the_topic_is_unknown() -> None:
    r = run(history("a", "AAPL", []), {})
    assert r.valid == "unknown" and "nothing_published" in (r.error or "")


def test_a_truncated_stream_ledger_is_unknown() -> None:
    ev = StreamingEvidence(
        records=tuple(history("a", "AAPL", [1])), published={"AAPL": published(1)}, bad_lines=1
    )
    assert check(ev, StreamingThresholds()).valid == "unknown"


def test_a_failing_anomaly_outranks_unknown() -> None:
    recs = [*history("a", "AAPL", [1]), rec("a", T0 + 5, sl.EV_RECONNECT, duration_ms=60000.0, attempts=1)]
    ev = StreamingEvidence(records=tuple(recs), published={"AAPL": published(1)}, bad_lines=2)
    assert check(ev, StreamingThresholds()).valid is False


# ------------------------------------------------------------------------------------- thresholds
def test_thresholds_default_to_the_documented_values() -> None:
    th = StreamingThresholds.from_dict({})
    assert (th.min_completeness, th.min_completeness_during, th.rto_s) == (1.0, 0.95, 30.0)
    assert (th.max_connection_error_rate, th.max_ttff_p95_ms, th.tail_grace_s) == (0.05, 5000.0, 2.0)
    assert (th.instant_window_s, th.topic, th.trade_type) == (10.0, "pb.executions", "TradeExecuted")


def test_thresholds_take_each_value_given_and_none_means_the_defaults() -> None:
    th = StreamingThresholds.from_dict(
        {"topic": "x.trades", "trade_type": "Fill", "rto_s": 12, "min_completeness": 1.0}
    )
    assert (th.topic, th.trade_type, th.rto_s, th.min_completeness) == ("x.trades", "Fill", 12.0, 1.0)
    assert isinstance(th.rto_s, float)
    assert StreamingThresholds.from_dict(None) == StreamingThresholds()
    assert StreamingThresholds.from_dict({"tail_grace_s": 0}).tail_grace_s == 0.0  # each range's low end


def test_a_section_that_is_not_a_mapping_and_a_negative_limit_are_named() -> None:
    with pytest.raises(ConfigError, match="must be an object") as e:
        StreamingThresholds.from_dict([1], where="checks.streaming")  # type: ignore[arg-type]
    assert e.value.where == "checks.streaming"
    with pytest.raises(ConfigError, match=r"must be a number >= 0, got -1"):
        StreamingThresholds.from_dict({"rto_s": -1}, where="checks.streaming")
    with pytest.raises(ConfigError, match=r"must be a number between 0 and 1, got 2"):
        StreamingThresholds.from_dict({"min_completeness": 2}, where="checks.streaming")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"min_completeness": 1.01}, "checks.streaming.min_completeness"),
        ({"min_completeness_during": -0.1}, "checks.streaming.min_completeness_during"),
        ({"rto_s": "30"}, "checks.streaming.rto_s"),
        ({"max_connection_error_rate": True}, "checks.streaming.max_connection_error_rate"),
        ({"typo": 1}, "checks.streaming"),
        ({"topic": ""}, "checks.streaming.topic"),
        ({"instant_window_s": -1}, "checks.streaming.instant_window_s"),
    ],
)
def test_bad_thresholds_are_a_config_error_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        StreamingThresholds.from_dict(body, where="checks.streaming")
    assert e.value.where == field


def test_the_report_states_the_streaming_pass_condition_with_the_runs_limits() -> None:
    from resgate.evidence.why import passes_when

    r = run(history("a", "AAPL", [1, 2]), {"AAPL": published(2)}, rto_s=12.0, max_ttff_p95_ms=800.0)
    text = passes_when(r)
    assert "≤ 12.0 s" in text and "≤ 800.0 ms" in text and "≥ 0.95 per fault" in text


# ------------------------------------------------------------------------------------- silent subscriber
def dropped(client: str, *, got_to: int, heard_to: float) -> list[dict[str, Any]]:
    """A subscriber connected at T0 that received AAPL 1..``got_to`` live and then only heartbeats until
    ``heard_to`` on the same connection (the feed dropped it without a close)."""
    out = [rec(client, T0, sl.EV_CONNECT, attempt=1, connect_ms=1.0)]
    out.append(rec(client, T0, sl.EV_SNAPSHOT, symbol="AAPL", seq=0))
    out += [rec(client, T0 + s, sl.EV_MSG, symbol="AAPL", seq=s) for s in range(1, got_to + 1)]
    out.append(rec(client, heard_to, sl.EV_HEARTBEAT))
    out.append(rec(client, heard_to, sl.EV_DISCONNECT, reason="stopped"))
    return out


def test_a_subscriber_heard_past_max_silence_after_a_trade_it_never_got_is_silent_naming_the_range() -> None:
    recs = dropped("a", got_to=10, heard_to=T0 + 20)  # 11..15 published from T0+11, heard until T0+20: 9 s
    pub = {"AAPL": published(15)}
    assert run(recs, pub, min_completeness=0.0, max_silence_s=9.0).valid is True
    r = run(recs, pub, min_completeness=0.0, max_silence_s=8.999)
    assert r.valid is False
    assert r.examples == [
        {
            "kind": "silent_subscriber",
            "client_id": "a",
            "symbol": "AAPL",
            "from_seq": 11,
            "to_seq": 15,
            "silent_s": 9.0,
        }
    ]
    assert r.counts["silent"] == 5 and r.counts["silent_subscribers"] == 1
    assert r.details["limits"]["max_silence_s"] == 8.999


def test_a_silent_subscriber_fails_with_the_default_limits_beside_its_unhealed_gap() -> None:
    r = run(dropped("a", got_to=10, heard_to=T0 + 30), {"AAPL": published(20)})
    assert r.valid is False
    assert {(e["kind"], e["from_seq"], e["to_seq"]) for e in r.examples} == {
        ("gap_not_healed", 11, 20),
        ("silent_subscriber", 11, 20),
    }


def test_a_later_trade_of_the_symbol_on_the_connection_ends_the_silence() -> None:
    recs = history("a", "AAPL", [s for s in range(1, 11) if s != 4])  # 4 (T0+4) missed, 5 came at T0+5
    pub = {"AAPL": published(10)}
    assert run(recs, pub, min_completeness=0.0, max_silence_s=1.0).valid is True
    r = run(recs, pub, min_completeness=0.0, max_silence_s=0.999)
    assert [(e["kind"], e["from_seq"], e["silent_s"]) for e in r.examples] == [("silent_subscriber", 4, 1.0)]


def test_a_trade_published_while_the_subscriber_was_away_is_not_silence() -> None:
    # connection 1 ends at T0+5.5; 6..10 published while it was away; connection 2 answered at T0+12
    # says resend, but the trades never came (feed_no_resend): an unhealed gap, never a silent one
    recs = [
        rec("a", T0, sl.EV_CONNECT, attempt=1, connect_ms=1.0),
        rec("a", T0, sl.EV_SNAPSHOT, symbol="AAPL", seq=0),
    ]
    recs += [rec("a", T0 + s, sl.EV_MSG, symbol="AAPL", seq=s) for s in range(1, 6)]
    recs += [
        rec("a", T0 + 5.5, sl.EV_DISCONNECT, reason="closed"),
        rec("a", T0 + 12, sl.EV_CONNECT, attempt=1, connect_ms=1.0),
    ]
    recs.append(rec("a", T0 + 12, sl.EV_RESUME, symbol="AAPL", from_seq=5, to_seq=11, mode=sl.MODE_RESEND))
    recs += [rec("a", T0 + s, sl.EV_MSG, symbol="AAPL", seq=s) for s in range(12, 21)]
    recs += [rec("a", T0 + 40, sl.EV_HEARTBEAT), rec("a", T0 + 40, sl.EV_DISCONNECT, reason="stopped")]
    r = run(recs, {"AAPL": published(20)}, max_silence_s=0.0)
    assert [(e["kind"], e["from_seq"], e["to_seq"]) for e in r.examples] == [("gap_not_healed", 6, 11)]
    assert r.counts["silent"] == 0


def test_a_trade_published_at_the_instant_the_feed_answered_the_subscribe_is_on_the_live_connection() -> None:
    recs = [
        rec("a", T0, sl.EV_CONNECT, attempt=1, connect_ms=1.0),
        rec("a", T0 + 6, sl.EV_SNAPSHOT, symbol="AAPL", seq=5),
    ]
    recs += [rec("a", T0 + 20, sl.EV_HEARTBEAT), rec("a", T0 + 20, sl.EV_DISCONNECT, reason="stopped")]
    r = run(recs, {"AAPL": published(10)}, min_completeness=0.0)
    assert [(e["kind"], e["from_seq"], e["to_seq"], e["silent_s"]) for e in r.examples] == [
        ("silent_subscriber", 6, 10, 14.0)
    ]
    late = [recs[0], {**recs[1], "ts": T0 + 6.001}, *recs[2:]]  # answered just after trade 6: 7..10 only
    r = run(late, {"AAPL": published(10)}, min_completeness=0.0)
    assert [(e["from_seq"], e["to_seq"]) for e in r.examples] == []  # 6..10 is one range, led by 6


def test_what_a_subscriber_heard_on_a_later_connection_does_not_extend_an_earlier_ones_silence() -> None:
    # connection 1 heard until T0+12; trade 11 (T0+11) never came; connection 2 (answered T0+13) got 12
    # at T0+14 and heartbeats until T0+40: trade 11's silence is 1 s on connection 1, not 3 s
    recs = dropped("a", got_to=10, heard_to=T0 + 12)
    recs += [rec("a", T0 + 13, sl.EV_CONNECT, attempt=1, connect_ms=1.0)]
    recs.append(rec("a", T0 + 13, sl.EV_RESUME, symbol="AAPL", from_seq=10, to_seq=11, mode=sl.MODE_RESEND))
    recs += [rec("a", T0 + 14, sl.EV_MSG, symbol="AAPL", seq=12), rec("a", T0 + 40, sl.EV_HEARTBEAT)]
    r = run(recs, {"AAPL": published(12)}, min_completeness=0.0, max_silence_s=1.5)
    assert r.valid is True and r.counts["silent"] == 0
    assert streaming.live_spans(recs)[("a", "AAPL")] == [(T0, T0 + 12), (T0 + 13, T0 + 40)]


def test_a_clients_records_are_taken_in_time_order_whatever_order_the_ledger_holds_them_in() -> None:
    recs = [*dropped("a", got_to=10, heard_to=T0 + 20)[:-1], rec("a", T0 + 21, sl.EV_DISCONNECT, reason="x")]
    shuffled = [recs[-2], *recs[:-2], recs[-1]]  # the heartbeat first: in file order it was never heard
    assert streaming.live_spans(shuffled) == streaming.live_spans(recs) == {("a", "AAPL"): [(T0, T0 + 20)]}
    assert run(shuffled, {"AAPL": published(15)}, min_completeness=0.0).counts["silent"] == 5


def test_silence_is_reported_to_the_millisecond() -> None:
    recs = dropped("a", got_to=10, heard_to=T0 + 12.23456)  # trade 11 (T0+11) missing: 1.23456 s
    r = run(recs, {"AAPL": published(11)}, min_completeness=0.0, max_silence_s=1.0, tail_grace_s=0.0)
    assert [e["silent_s"] for e in r.examples] == [1.235]
