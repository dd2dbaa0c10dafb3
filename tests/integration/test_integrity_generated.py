"""Generated histories for the integrity checker: clean ones are clean, one injected anomaly is named.

A small model of the system (Jepsen's generators, Hypothesis's ``composite``) builds a consistent history:
clients (some with hostile names: tabs, newlines, backslashes, ``\\N``, quotes, non-ASCII) submit orders
under idempotency keys that other clients reuse, some after indeterminate attempts, some failing for good;
each landed order is an orders row and an accepted event on one of several partitions, sometimes
redelivered; trades (self-trades included) never overfill an order, and each symbol's sequence 1..n is
spread over several partitions of the trade topic, with redeliveries. Some histories lose the oldest trade
events to retention (the retained sequence starts anywhere). Then exactly one anomaly is injected at a
random place, and the detectors must report exactly that kind with exactly the expected count (one per
source that can see it), and nothing at all on the clean history.

All histories of a test share one database, one schema each, checked by the real loaders and detectors
without Kafka (``_integrity_work.detect``), so a hundred histories take seconds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resgate.checks.integrity import check
from resgate.checks.result import UNKNOWN
from resgate.local.postgres import create_database, drop_database
from tests.integration._integrity_work import Event, config_for, create_system_tables, detect

pytestmark = pytest.mark.integration

CLIENTS = ["c0", "c1", "c2", "c\t3", "c\\N", "c'4\"", "c\n5", "klient-ß", "c,6", "c:7"]
KEYS = ["k0", "k1", "k2", "k\\3", "k\t4", "ключ", "k 5", "\\N", "k'6"]
SYMBOLS = ["AAPL", "MSFT", "BRK.B", "ß\tX"]
PARTITIONS = 3
SPARE_PARTITION = PARTITIONS  # injected events that must not sit between the model's own events


@dataclass
class History:
    ledger: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[Event] = field(default_factory=list)
    executions: list[Event] = field(default_factory=list)
    truncated: set[str] = field(default_factory=set)
    next_id: int = 0

    def oid(self) -> str:
        self.next_id += 1
        return f"o{self.next_id}"

    def submit(self, client: str, key: str, outcome: str, oid: str | None = None) -> None:
        rec: dict[str, Any] = {
            "ts": float(len(self.ledger)),
            "op": "submit_order",
            "client_id": client,
            "idempotency_key": key,
            "status": {"ok": 201, "fail": 422, "info": "timeout"}[outcome],
            "outcome": outcome,
        }
        if oid:
            rec["order_id"] = oid
        self.ledger.append(rec)

    def publish(self, events: list[Event], partition: int, event: dict[str, Any]) -> None:
        off = 1 + max((o for p, o, _e in events if p == partition), default=-1)
        events.append((partition, off, event))

    def row(self, client: str, key: str, oid: str, qty: int) -> None:
        self.orders.append({"order_id": oid, "client_id": client, "idempotency_key": key, "qty": qty})

    def accept(self, client: str, key: str, oid: str, qty: int, partition: int) -> dict[str, Any]:
        e = {
            "event_id": str(uuid.uuid4()),
            "type": "OrderAccepted",
            "order_id": oid,
            "client_id": client,
            "idempotency_key": key,
            "qty": qty,
        }
        self.publish(self.accepted, partition, e)
        return e

    def trade(self, tid: str, sym: str, seq: int, buy: str, sell: str, qty: int, partition: int) -> dict:
        row = {"trade_id": tid, "symbol": sym, "seq": seq, "buy_order_id": buy, "sell_order_id": sell}
        row["qty"] = qty
        self.trades.append(row)
        e = {"event_id": str(uuid.uuid4()), "type": "TradeExecuted", **row}
        self.publish(self.executions, partition, e)
        return e


@st.composite
def histories(draw: st.DrawFn) -> History:
    """A consistent history from the model (see the module docstring)."""
    h = History()
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(CLIENTS), st.sampled_from(KEYS)), min_size=1, max_size=14, unique=True
        )
    )
    landed: list[dict[str, Any]] = []
    for client, key in pairs:
        give_up = draw(st.integers(0, 5)) == 0
        for _ in range(draw(st.integers(1 if give_up else 0, 2))):
            h.submit(client, key, draw(st.sampled_from(["info", "fail"])))
        if give_up:
            continue  # given up after failures: nothing landed, nothing acknowledged
        oid, qty = h.oid(), draw(st.integers(1, 30))
        h.submit(client, key, "ok", oid)
        h.row(client, key, oid, qty)
        e = h.accept(client, key, oid, qty, p := draw(st.integers(0, PARTITIONS - 1)))
        if draw(st.booleans()) and draw(st.booleans()):
            h.publish(h.accepted, p, e)  # a redelivery: the same event at a later offset
        landed.append({"oid": oid, "room": qty})
    seqs: dict[str, int] = {}
    for t in range(draw(st.integers(0, 12)) if landed else 0):
        a, b = draw(st.sampled_from(landed)), draw(st.sampled_from(landed))
        room = a["room"] if a is b else min(a["room"], b["room"])  # a self-trade fills its order once
        if room < 1:
            continue
        q = draw(st.integers(1, room))
        a["room"] -= q
        if b is not a:
            b["room"] -= q
        sym = draw(st.sampled_from(SYMBOLS))
        seqs[sym] = seqs.get(sym, 0) + 1
        p = draw(st.integers(0, PARTITIONS - 1))
        e = h.trade(f"t{t}", sym, seqs[sym], a["oid"], b["oid"], q, p)
        if draw(st.integers(0, 3)) == 0:
            h.publish(h.executions, p, e)
    if h.executions and draw(st.integers(0, 3)) == 0:
        # retention: each partition may lose its oldest events (the retained sequences start anywhere)
        drop = {p: draw(st.integers(0, 2)) for p in range(PARTITIONS)}
        kept = [(p, o, e) for p, o, e in h.executions if o >= drop[p]]
        if len(kept) < len(h.executions):
            h.executions = kept
            h.truncated.add("executions")
    return h


INJECTIONS = [
    "lost",
    "lost_in_topic",
    "duplicated",
    "duplicated_in_topic",
    "phantom",
    "phantom_in_topic",
    "recovered",
    "double_fill",
    "orphan_trade",
    "duplicate_trade",
    "seq_gap",
    "seq_duplicate",
    "seq_reorder",
]


def inject(h: History, kind: str, draw: st.DrawFn) -> dict[str, int]:
    """Break ``h`` with one anomaly of ``kind``; return the expected ``{kind: count}``."""
    topic_trades_complete = "executions" not in h.truncated
    traded = {t["buy_order_id"] for t in h.trades} | {t["sell_order_id"] for t in h.trades}
    fresh_client, fresh_key = draw(st.sampled_from(CLIENTS)), "fresh\t" + draw(st.sampled_from(KEYS))

    def big_order() -> str:
        oid = h.oid()
        h.submit(fresh_client, f"big-{oid}", "ok", oid)
        h.row(fresh_client, f"big-{oid}", oid, 1000)
        h.accept(fresh_client, f"big-{oid}", oid, 1000, 0)
        return oid

    if kind == "lost":  # an acknowledged order's row is gone (its event is still there)
        untraded = [o for o in h.orders if o["order_id"] not in traded]
        if untraded:
            h.orders.remove(draw(st.sampled_from(untraded)))
        else:
            oid = h.oid()
            h.submit(fresh_client, fresh_key, "ok", oid)
            h.accept(fresh_client, fresh_key, oid, 1, 1)
        return {"lost": 1}
    if kind == "lost_in_topic":  # an acknowledged order's accepted event is gone (and its redeliveries)
        if h.orders:
            gone = draw(st.sampled_from(h.orders))["order_id"]
            h.accepted = [a for a in h.accepted if a[2]["order_id"] != gone]
        else:
            oid = h.oid()
            h.submit(fresh_client, fresh_key, "ok", oid)
            h.row(fresh_client, fresh_key, oid, 1)
        return {"lost_in_topic": 1}
    if kind in ("duplicated", "duplicated_in_topic"):  # a second order id for a (client, key)
        if not h.orders:
            oid = big_order()
            o = next(o for o in h.orders if o["order_id"] == oid)
        else:
            o = draw(st.sampled_from(h.orders))
        if kind == "duplicated":
            h.row(o["client_id"], o["idempotency_key"], h.oid(), o["qty"])
        else:
            h.accept(o["client_id"], o["idempotency_key"], h.oid(), o["qty"], draw(st.integers(0, 2)))
        return {kind: 1}
    if kind == "phantom":  # a row under a (client, key) nobody submitted
        h.row(fresh_client, fresh_key, h.oid(), 1)
        return {"phantom": 1}
    if kind == "phantom_in_topic":
        h.accept(fresh_client, fresh_key, h.oid(), 1, draw(st.integers(0, 2)))
        return {"phantom_in_topic": 1}
    if kind == "recovered":  # never acknowledged, landed anyway
        oid = h.oid()
        h.submit(fresh_client, fresh_key, "info")
        h.row(fresh_client, fresh_key, oid, 1)
        h.accept(fresh_client, fresh_key, oid, 1, 0)
        return {"recovered": 1}
    sym = "ZZ\\Z"  # injected trades get their own symbol, so they touch no model sequence
    if kind == "double_fill":  # one unit more than an order's quantity
        small = draw(st.sampled_from(h.orders)) if h.orders else None
        if small is None or small["order_id"] in traded:
            oid = h.oid()
            h.submit(fresh_client, fresh_key, "ok", oid)
            h.row(fresh_client, fresh_key, oid, 3)
            h.accept(fresh_client, fresh_key, oid, 3, 0)
            small = {"order_id": oid, "qty": 3}
        self_trade = draw(st.booleans())
        other = small["order_id"] if self_trade else big_order()
        h.trade("x1", sym, 1, small["order_id"], other, small["qty"] + 1, SPARE_PARTITION)
        return {"double_fill": 2}  # the trades table and the trade events
    if kind == "orphan_trade":  # a trade for an order nobody knows (a self-trade or not)
        ghost = "ghost-" + h.oid()
        other = ghost if draw(st.booleans()) else big_order()
        h.trade("x2", sym, 1, other, ghost, 1, SPARE_PARTITION)
        return {"orphan_trade": 2}
    if kind == "duplicate_trade":  # one trade id twice: a second table row, or an event with a new id
        a, b = big_order(), big_order()
        e = h.trade("x3", sym, 1, a, b, 1, SPARE_PARTITION)
        if draw(st.booleans()):
            h.trades.append(dict(h.trades[-1]))
        else:
            h.publish(h.executions, SPARE_PARTITION, {**e, "event_id": str(uuid.uuid4())})
        return {"duplicate_trade": 1}
    a, b = big_order(), big_order()
    if kind == "seq_gap":  # a sequence with a hole, or starting above 1
        start = draw(st.integers(1, 3))
        skip = draw(st.integers(1, 3))
        h.trade("x4", sym, start, a, b, 1, SPARE_PARTITION)
        h.trade("x5", sym, start + skip + 1, a, b, 1, SPARE_PARTITION)
        # the hole is one case; a late start is another (on the table, and on a complete topic)
        per_source = (start > 1) + 1
        return {"seq_gap": per_source * (2 if topic_trades_complete else 1)}
    if kind == "seq_duplicate":
        h.trade("x6", sym, 1, a, b, 1, SPARE_PARTITION)
        h.trade("x7", sym, 1, a, b, 1, SPARE_PARTITION + 1)
        return {"seq_duplicate": 2}
    assert kind == "seq_reorder"
    h.trade("x9", sym, 2, a, b, 1, SPARE_PARTITION)
    h.trade("x8", sym, 1, a, b, 1, SPARE_PARTITION)
    return {"seq_reorder": 1}


@pytest.fixture(scope="module")
def conn(pg_server: Any) -> Iterator[psycopg.Connection[Any]]:
    """One database for every generated history of this module (one schema each)."""
    name = f"gen_{uuid.uuid4().hex[:10]}"
    dsn = create_database(pg_server.dsn, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            yield c
    finally:
        drop_database(pg_server.dsn, name)


def _findings(conn: psycopg.Connection[Any], h: History) -> Any:
    schema = f"h_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    create_system_tables(conn, schema, h.orders, h.trades)
    return detect(
        conn,
        config_for(schema),
        schema,
        ledger=[json.dumps(r) for r in h.ledger],
        accepted=h.accepted,
        trade_events=h.executions,
        truncated=frozenset(h.truncated),
    )


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(h=histories())
def test_a_generated_clean_history_has_no_anomaly(conn: psycopg.Connection[Any], h: History) -> None:
    f = _findings(conn, h)
    assert {k: v.count for k, v in f.kinds.items() if v.count} == {}
    result = check(f)
    assert result.valid == (UNKNOWN if h.truncated else True), result.to_dict()


@settings(SETTINGS, max_examples=80)
@given(h=histories(), kind=st.sampled_from(INJECTIONS), data=st.data())
def test_one_injected_anomaly_is_named_with_its_exact_count_and_nothing_else(
    conn: psycopg.Connection[Any], h: History, kind: str, data: st.DataObject
) -> None:
    expected = inject(h, kind, data.draw)
    f = _findings(conn, h)
    assert {k: v.count for k, v in f.kinds.items() if v.count} == expected
    result = check(f)
    if kind == "recovered":  # allowed by default: only reported
        assert result.valid == (UNKNOWN if h.truncated else True), result.to_dict()
    else:
        assert result.valid is False, result.to_dict()
        assert result.details["violations"] == [kind]
