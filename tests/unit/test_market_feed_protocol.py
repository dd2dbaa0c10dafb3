"""The feed's protocol without a network: snapshot on subscribe, resend or snapshot on resume, duplicates
dropped (paperbroker.feed.MarketFeed), and what a subscriber records for each message
(loadgen.stream_client.SubscriberState): sequences, gaps, resume answers, its own fills."""

from __future__ import annotations

import json
from typing import Any

from loadgen.stream_client import SubscriberState
from paperbroker.feed import MarketFeed, _Subscriber
from resgate.contract import stream as sl


def trade(symbol: str, seq: int, **kw: Any) -> dict[str, Any]:
    return {"symbol": symbol, "seq": seq, "price": "10", "qty": 1, **kw}


def drained(sub: _Subscriber) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_a_new_subscriber_gets_a_snapshot_then_only_later_trades_of_its_symbols() -> None:
    feed = MarketFeed()
    feed.add_trade(trade("AAPL", 1))
    sub = _Subscriber()
    first = feed.subscribe(sub, ["AAPL"], {})
    assert first == [{"type": "snapshot", "symbol": "AAPL", "seq": 1, "price": "10"}]
    feed.add_trade(trade("AAPL", 2))
    feed.add_trade(trade("MSFT", 1))
    assert [(m["symbol"], m["seq"]) for m in drained(sub)] == [("AAPL", 2)]


def test_a_redelivered_trade_is_not_sent_twice() -> None:
    feed = MarketFeed()
    assert feed.add_trade(trade("AAPL", 1)) is True
    assert feed.add_trade(trade("AAPL", 1)) is False


def test_a_resume_within_history_resends_the_missed_trades_and_says_so() -> None:
    feed = MarketFeed()
    for s in range(1, 6):
        feed.add_trade(trade("AAPL", s))
    out = feed.subscribe(_Subscriber(), ["AAPL"], {"AAPL": 2})
    assert out[0] == {"type": "resume", "symbol": "AAPL", "from_seq": 2, "to_seq": 5, "mode": "resend"}
    assert [(m["seq"], m["resent"]) for m in out[1:]] == [(3, True), (4, True), (5, True)]


def test_a_resume_older_than_history_gets_a_fresh_snapshot_and_says_so() -> None:
    feed = MarketFeed(history=2)
    for s in range(1, 6):
        feed.add_trade(trade("AAPL", s))
    out = feed.subscribe(_Subscriber(), ["AAPL"], {"AAPL": 1})
    assert [m["type"] for m in out] == ["resume", "snapshot"]
    assert out[0]["mode"] == sl.MODE_SNAPSHOT and out[1]["seq"] == 5


def test_with_feed_no_resend_a_resume_says_resend_and_sends_nothing() -> None:
    feed = MarketFeed(resend=False)
    for s in range(1, 6):
        feed.add_trade(trade("AAPL", s))
    out = feed.subscribe(_Subscriber(), ["AAPL"], {"AAPL": 2})
    assert [m["type"] for m in out] == ["resume"] and out[0]["mode"] == sl.MODE_RESEND


def test_a_projector_restart_unregisters_every_subscriber_and_has_each_closed_to_resubscribe() -> None:
    feed = MarketFeed()
    a, b = _Subscriber(), _Subscriber()
    feed.subscribe(a, ["AAPL"], {})
    feed.subscribe(b, ["MSFT"], {})
    assert feed.projector_restarted() == 2
    assert feed.subscribers == set() and a.restart and b.restart  # each writer closes with 1012
    assert [m["type"] for m in drained(a)] == [sl.MSG_HEARTBEAT]  # the wake-up; the writer closes instead
    feed.add_trade(trade("AAPL", 1))
    assert drained(a) == []


def test_with_feed_drops_silently_a_projector_restart_unregisters_subscribers_without_closing_them() -> None:
    feed = MarketFeed(close_on_restart=False)
    a = _Subscriber()
    feed.subscribe(a, ["AAPL"], {})
    assert feed.projector_restarted() == 1
    assert feed.subscribers == set() and not a.restart and drained(a) == []  # its writer heartbeats on
    feed.add_trade(trade("AAPL", 1))
    assert drained(a) == [] and feed.projector_restarts == 1


def test_the_subscriber_records_every_sequence_a_gap_and_resumes_from_its_last() -> None:
    st = SubscriberState("s1", ["AAPL"])
    assert st.subscribe_request() == {"op": "subscribe", "symbols": ["AAPL"]}
    recs = st.on_message({"type": "snapshot", "symbol": "AAPL", "seq": 3}, 1.0)
    recs += st.on_message({"type": "trade", "symbol": "AAPL", "seq": 4}, 2.0)
    recs += st.on_message({"type": "trade", "symbol": "AAPL", "seq": 7}, 3.0)
    recs += st.on_message({"type": "trade", "symbol": "AAPL", "seq": 7}, 3.5)  # overlap: dropped
    recs += st.on_message({"type": "heartbeat", "ts": 4.0}, 4.0)
    assert [(r["event"], r.get("seq"), r.get("from_seq"), r.get("to_seq")) for r in recs] == [
        ("snapshot", 3, None, None),
        ("msg", 4, None, None),
        ("gap", None, 5, 6),
        ("msg", 7, None, None),
        ("heartbeat", None, None, None),
    ]
    assert st.subscribe_request()["resume"] == {"AAPL": 7}


def test_the_subscriber_times_its_own_order_from_acknowledgement_to_first_fill_once() -> None:
    st = SubscriberState("s1", ["AAPL"])
    st.on_message({"type": "snapshot", "symbol": "AAPL", "seq": 0}, 1.0)
    st.order_acknowledged("o1", 10.0)
    recs = st.on_message({"type": "trade", "symbol": "AAPL", "seq": 1, "sell_order_id": "o1"}, 10.25)
    assert recs[-1] == {
        "ts": 10.25,
        "client_id": "s1",
        "event": "fill",
        "order_id": "o1",
        "symbol": "AAPL",
        "seq": 1,
        "ttff_ms": 250.0,
    }
    again = st.on_message({"type": "trade", "symbol": "AAPL", "seq": 2, "buy_order_id": "o1"}, 11.0)
    assert [r["event"] for r in again] == ["msg"]


def test_a_subscriber_on_a_busy_feed_yields_to_the_other_users_every_few_messages(monkeypatch) -> None:
    import websocket

    from loadgen import stream_client
    from loadgen.stream_client import YIELD_EVERY, Subscriber

    frames = [json.dumps({"type": "trade", "symbol": "AAPL", "seq": i}) for i in range(1, 101)]

    class BusySocket:
        def settimeout(self, _s: float) -> None:
            pass

        def recv(self) -> str:
            if not frames:
                raise websocket.WebSocketConnectionClosedException("closed")
            return frames.pop(0)

    zero_sleeps: list[float] = []
    monkeypatch.setattr(stream_client.time, "sleep", lambda s: zero_sleeps.append(s))
    records: list[dict[str, Any]] = []
    sub = Subscriber("ws://unused", SubscriberState("s1", ["AAPL"]), records.append)
    assert sub._read(BusySocket()) == "closed"
    assert len([r for r in records if r["event"] == "msg"]) == 100
    assert zero_sleeps == [0] * (101 // YIELD_EVERY)
