"""Unit tests of the pure order book (price-time priority) and the matcher's pure engine."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from paperbroker.book import BUY, SELL, OrderBook, RestingOrder, parse_price
from paperbroker.events import new_event
from paperbroker.matching import MatchingEngine
from paperbroker.projection_plan import ProjectionOptions, build_plan, dedupe_keys

D = Decimal


def submit(book: OrderBook, oid: str, side: str, qty: int, price: str, arrival: int, client: str = "c"):
    return book.submit(order_id=oid, client_id=client, side=side, qty=qty, price=D(price), arrival=arrival)


def test_incoming_buy_takes_the_best_price_first_then_the_oldest_order_within_a_level():
    book = OrderBook("ABC")
    submit(book, "s1", SELL, 10, "101", 1)
    submit(book, "s2", SELL, 5, "100", 2)
    submit(book, "s3", SELL, 5, "100", 3)
    res = submit(book, "b1", BUY, 12, "101", 4)
    assert [(f.sell_order_id, f.qty, f.price) for f in res.fills] == [
        ("s2", 5, D("100")),
        ("s3", 5, D("100")),
        ("s1", 2, D("101")),
    ]
    assert res.rested is None
    assert book.get("s1").remaining == 8
    assert book.best_ask() == D("101")
    assert book.best_bid() is None


def test_incoming_sell_trades_at_the_resting_buy_price_and_rests_the_remainder():
    book = OrderBook("ABC")
    submit(book, "b1", BUY, 3, "99", 1)
    submit(book, "b2", BUY, 4, "100", 2)
    res = submit(book, "s1", SELL, 10, "99.5", 3)
    assert [(f.buy_order_id, f.qty, f.price, f.aggressor_order_id) for f in res.fills] == [
        ("b2", 4, D("100"), "s1")
    ]
    assert res.rested is not None and res.rested.remaining == 6
    assert book.best_ask() == D("99.5")
    assert book.best_bid() == D("99")
    assert book.depth(SELL) == [(D("99.5"), 6)]


def test_order_that_does_not_cross_rests_without_trading():
    book = OrderBook("ABC")
    submit(book, "s1", SELL, 5, "101", 1)
    res = submit(book, "b1", BUY, 5, "100", 2)
    assert res.fills == [] and res.rested is not None
    assert (book.best_bid(), book.best_ask()) == (D("100"), D("101"))


def test_cancel_removes_a_resting_order_and_an_unknown_cancel_is_a_no_op():
    book = OrderBook("ABC")
    submit(book, "s1", SELL, 5, "101", 1)
    submit(book, "s2", SELL, 5, "101", 2)
    cancelled = book.cancel("s1")
    assert cancelled is not None and cancelled.remaining == 5 and not cancelled.live
    assert book.cancel("s1") is None
    assert book.cancel("nope") is None
    res = submit(book, "b1", BUY, 7, "101", 3)
    assert [(f.sell_order_id, f.qty) for f in res.fills] == [("s2", 5)]
    assert book.best_ask() is None


def test_restore_in_arrival_order_keeps_time_priority():
    book = OrderBook("ABC")
    orders = [
        RestingOrder("s2", "c", "ABC", SELL, D("100"), 5, 5, 7),
        RestingOrder("s1", "c", "ABC", SELL, D("100"), 5, 3, 4),
    ]
    for o in sorted(orders, key=lambda o: o.arrival):
        book.restore(o)
    res = submit(book, "b1", BUY, 4, "100", 9)
    assert [(f.sell_order_id, f.qty) for f in res.fills] == [("s1", 3), ("s2", 1)]
    assert [(o.order_id, o.remaining) for o in book.resting_orders()] == [("s2", 4)]


def test_bad_input_is_rejected():
    book = OrderBook("ABC")
    with pytest.raises(ValueError):
        submit(book, "x", "hold", 1, "1", 1)
    with pytest.raises(ValueError):
        submit(book, "x", BUY, 0, "1", 1)
    for bad in ("abc", "-1", "0", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            parse_price(bad)


# ------------------------------------------------------------------------------------------ engine
def accepted(
    oid: str, side: str, qty: int, price: str, symbol: str = "ABC", client: str = "c1"
) -> dict[str, Any]:
    return new_event(
        "OrderAccepted",
        order_id=oid,
        client_id=client,
        idempotency_key=oid,
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
    )


def random_history(n: int, seed: int = 7, symbols: tuple[str, ...] = ("ABC", "XYZ")) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    events: list[dict[str, Any]] = []
    live: list[tuple[str, str]] = []
    for i in range(n):
        sym = rnd.choice(symbols)
        if live and rnd.random() < 0.1:
            oid, s = live.pop(rnd.randrange(len(live)))
            events.append(new_event("CancelRequested", order_id=oid, client_id="c", symbol=s))
            continue
        oid = f"o{i}"
        side = rnd.choice((BUY, SELL))
        price = f"{100 + rnd.randint(-5, 5)}.{rnd.randint(0, 99):02d}"
        events.append(accepted(oid, side, rnd.randint(1, 20), price, sym, f"c{rnd.randint(1, 5)}"))
        live.append((oid, sym))
    return events


def strip(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "ts"} for e in outputs]


def test_engine_is_deterministic_and_numbers_trades_per_symbol_without_gaps():
    history = random_history(3000)
    runs = []
    for _ in range(2):
        engine = MatchingEngine()
        out = engine.apply_batch(history, set(), now=1.0)
        runs.append(strip(out.outputs))
    assert runs[0] == runs[1]
    trades = [e for e in runs[0] if e["type"] == "TradeExecuted"]
    assert len(trades) > 100
    for sym in ("ABC", "XYZ"):
        seqs = [t["seq"] for t in trades if t["symbol"] == sym]
        assert seqs == list(range(1, len(seqs) + 1))
        assert all(t["trade_id"] == f"{sym}-{t['seq']}" for t in trades if t["symbol"] == sym)
    assert len({e["event_id"] for e in runs[0]}) == len(runs[0])


def test_engine_split_into_batches_gives_the_same_outputs_as_one_batch():
    history = random_history(2000, seed=3)
    whole = strip(MatchingEngine().apply_batch(history, set(), now=1.0).outputs)
    engine, seen, parts = MatchingEngine(), set(), []
    for i in range(0, len(history), 137):
        parts += strip(engine.apply_batch(history[i : i + 137], seen, now=1.0).outputs)
    assert parts == whole


def test_engine_never_fills_more_than_the_order_qty_and_ignores_a_redelivered_order():
    history = [accepted("s1", SELL, 10, "100"), accepted("b1", BUY, 10, "100")]
    engine, seen = MatchingEngine(), set()
    engine.apply_batch(history, seen, now=1.0)
    out = engine.apply_batch([history[0], accepted("b2", BUY, 10, "100")], seen, now=2.0)
    assert out.duplicates == 1
    assert [e["type"] for e in out.outputs] == ["OrderRested"]


def test_engine_with_the_double_fill_bug_fills_a_redelivered_order_again():
    history = [accepted("s1", SELL, 10, "100"), accepted("b1", BUY, 10, "100")]
    engine, seen = MatchingEngine(dedupe_orders=False), set()
    engine.apply_batch(history, seen, now=1.0)
    out = engine.apply_batch([history[0], accepted("b2", BUY, 10, "100")], seen, now=2.0)
    trades = [e for e in out.outputs if e["type"] == "TradeExecuted"]
    assert [(t["sell_order_id"], t["qty"], t["seq"]) for t in trades] == [("s1", 10, 2)]


def test_engine_cancel_emits_order_cancelled_with_the_remaining_qty_once():
    engine, seen = MatchingEngine(), set()
    engine.apply_batch([accepted("s1", SELL, 10, "100"), accepted("b1", BUY, 4, "100")], seen, now=1.0)
    cancel = new_event("CancelRequested", order_id="s1", client_id="c1", symbol="ABC")
    out = engine.apply_batch([cancel, cancel], seen, now=2.0)
    assert [(e["type"], e["remaining_qty"]) for e in out.outputs] == [("OrderCancelled", 6)]
    assert engine.books["ABC"].best_ask() is None


def test_engine_ignores_malformed_orders():
    engine = MatchingEngine()
    bad = [accepted("x1", "hold", 1, "1"), accepted("x2", BUY, -3, "1"), accepted("x3", BUY, 1, "abc")]
    out = engine.apply_batch(bad, set(), now=1.0)
    assert out.outputs == [] and out.ignored == 3


# ------------------------------------------------------------------------------------------ projection plan
def test_projection_plan_applies_each_event_once_per_projector_and_drops_repeats_in_a_batch():
    out = MatchingEngine().apply_batch(
        [accepted("s1", SELL, 10, "100"), accepted("b1", BUY, 4, "100")], set(), 1.0
    )
    events = out.outputs + out.outputs
    keys = dedupe_keys(events)
    assert len(keys) == len(set(keys)) == 4 + 1  # trade: 4 projectors, rested: market
    _plan, stats = build_plan(events, set(keys), "public")
    assert stats.applied == {"orders": 1, "trades": 1, "market": 2, "positions": 1}
    assert stats.duplicates == 2
    _plan, stats = build_plan(events, None, "public", ProjectionOptions(skip_dedupe=True))
    assert stats.applied["positions"] == 2


def test_rebuild_refuses_bad_arguments_before_touching_anything():
    from paperbroker.projections import rebuild
    from resgate.contract.errors import ConfigError

    good = {"pb.orders": {0: 3}}
    for schema in ("public", "Bad-Name", "x; drop table y", ""):
        with pytest.raises(ConfigError):
            rebuild(None, schema, good, bootstrap="127.0.0.1:1")  # type: ignore[arg-type]
    for ends in ({}, {"t": {"a": 1}}, {"t": {0: -1}}, {"t": [1]}, None):
        with pytest.raises(ConfigError):
            rebuild(None, "replay_x", ends, bootstrap="127.0.0.1:1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        rebuild(None, "replay_x", good, bootstrap="")  # type: ignore[arg-type]
