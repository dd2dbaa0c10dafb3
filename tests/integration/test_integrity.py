"""The integrity checker on real Postgres and Kafka: small hand-made histories, one per anomaly kind.

Each test builds a clean world (ledger, orders table, trades table, accepted and trade events), breaks
exactly one thing, and expects the checker to name that kind with a concrete example. The config is the
paperbroker layout, written here as example config: the checker itself knows none of these names.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resgate.checks.integrity import IntegrityConfig, check, gather
from resgate.checks.result import UNKNOWN, CheckResult
from resgate.contract.errors import ConfigError

pytestmark = pytest.mark.integration


def _uid(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


@dataclass
class World:
    """A small trading history: everything consistent until a test changes it."""

    ledger: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (partition, event)
    executions: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def clean(cls, n_orders: int = 8) -> World:
        w = cls()
        for i in range(n_orders):
            client, key, oid = f"c{i % 2}", f"k{i}", _uid(i)
            sym = "AAPL" if i < n_orders // 2 else "MSFT"
            w.ledger.append(_submit(client, key, "ok", 201, oid, ts=100.0 + i))
            w.orders.append(
                {"order_id": oid, "client_id": client, "idempotency_key": key, "qty": 10, "symbol": sym}
            )
            w.accepted.append(
                (0, _event("OrderAccepted", order_id=oid, client_id=client, idempotency_key=key, qty=10))
            )
        # Pair orders i (buy) and i+1 (sell) within a symbol: each trade fills 10 of both.
        seqs: dict[str, int] = {}
        for i in range(0, n_orders, 2):
            sym = w.orders[i]["symbol"]
            seqs[sym] = seqs.get(sym, 0) + 1
            w.add_trade(f"t{i}", sym, seqs[sym], _uid(i), _uid(i + 1), 10)
        w.ledger.append({"ts": 99.0, "op": "get_order", "client_id": "c0", "status": 200, "outcome": "ok"})
        return w

    def add_trade(
        self, tid: str, sym: str, seq: int, buy: str, sell: str, qty: int, *, partition: int | None = None
    ) -> None:
        row = {
            "trade_id": tid,
            "symbol": sym,
            "seq": seq,
            "buy_order_id": buy,
            "sell_order_id": sell,
            "qty": qty,
        }
        self.trades.append(row)
        p = partition if partition is not None else (0 if sym == "AAPL" else 1)
        self.executions.append((p, _event("TradeExecuted", **row)))


def _submit(
    client: str, key: str, outcome: str, status: int | str, oid: str | None, *, ts: float
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "ts": ts,
        "op": "submit_order",
        "client_id": client,
        "idempotency_key": key,
        "status": status,
        "outcome": outcome,
        "latency_ms": 3.0,
    }
    if oid:
        rec["order_id"] = oid
    return rec


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": kind, "ts": 1.0, **fields}


CONFIG = {
    "orders": {"table": "orders", "order_id": "order_id", "client_id": "client_id", "qty": "qty"},
    "trades": {"table": "rm_trades", "order_ids": ["buy_order_id", "sell_order_id"]},
    "accepted_events": {"topic": "<orders>", "type_value": "OrderAccepted"},
    "trade_events": {"topic": "<executions>", "type_value": "TradeExecuted"},
    "examples_cap": 5,
}


async def _produce(bootstrap: str, topic: str, events: list[tuple[int, bytes]], **kw: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **kw)
    await producer.start()
    try:
        for p, value in events:
            await producer.send(topic, value, partition=p)
        await producer.flush()
    finally:
        await producer.stop()


def _run(
    w: World,
    dsn: str,
    bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Any,
    produce_kw: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[CheckResult, dict[str, Any]]:
    orders_topic, exec_topic = new_topic(partitions=2), new_topic(partitions=2)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE TABLE orders (order_id uuid, client_id text, idempotency_key text, qty bigint, "
            "symbol text)"
        )
        c.execute(
            "CREATE TABLE rm_trades (trade_id text, symbol text, seq bigint, buy_order_id uuid, "
            "sell_order_id uuid, qty bigint)"
        )
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO orders VALUES (%(order_id)s, %(client_id)s, %(idempotency_key)s, %(qty)s, "
                "%(symbol)s)",
                w.orders,
            )
            if w.trades:
                cur.executemany(
                    "INSERT INTO rm_trades VALUES (%(trade_id)s, %(symbol)s, %(seq)s, %(buy_order_id)s, "
                    "%(sell_order_id)s, %(qty)s)",
                    w.trades,
                )
    asyncio.run(
        _produce(
            bootstrap,
            orders_topic,
            [(p, json.dumps(e).encode()) for p, e in w.accepted],
            **(produce_kw or {}),
        )
    )
    asyncio.run(_produce(bootstrap, exec_topic, [(p, json.dumps(e).encode()) for p, e in w.executions]))
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(r) + "\n" for r in w.ledger))
    section = json.loads(json.dumps(CONFIG))
    section["accepted_events"]["topic"] = orders_topic
    section["trade_events"]["topic"] = exec_topic
    section.update(overrides)
    config = IntegrityConfig.from_dict(section)
    findings = gather(dsn, config, str(ledger), bootstrap=bootstrap)
    # the work schema is gone afterwards
    with psycopg.connect(dsn) as c:
        left = c.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'resgate_integrity_%'"
        ).fetchone()
    assert left == (0,)
    return check(findings, config.thresholds), findings.to_dict()


def _examples(result: CheckResult, kind: str) -> list[dict[str, Any]]:
    return [e for e in result.examples if e["kind"] == kind]


@pytest.fixture
def run_world(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Any
) -> Callable[..., Any]:
    def go(w: World, **overrides: Any) -> tuple[CheckResult, dict[str, Any]]:
        return _run(w, pg_dsn, kafka_bootstrap, new_topic, tmp_path, **overrides)

    return go


def _only(result: CheckResult, kind: str) -> None:
    """The result is false because of ``kind`` and nothing else."""
    assert result.valid is False, result.to_dict()
    assert result.details["violations"] == [kind], result.to_dict()


def test_a_clean_history_is_valid(run_world: Callable[..., Any]) -> None:
    result, findings = run_world(World.clean())
    assert result.valid is True, result.to_dict()
    assert result.counts["ledger_submits"] == 8
    assert result.counts["orders_rows"] == 8
    assert all(findings["kinds"][k]["count"] == 0 for k in findings["kinds"])
    # the trading invariants and the consumer offsets need sources this world does not configure (tests in
    # test_integrity_trading_invariants.py, test_integrity_event_log.py); every other kind was checked
    trading = {"price_outside_limit", "order_mismatch", "fill_after_cancel", "cancel_still_open",
               "position_not_conserved", "position_mismatch", "non_monotonic_read",
               "unseen_by_projector", "offset_backwards", "offset_skip"}  # fmt: skip
    assert set(findings["not_checked"]) == trading


def test_an_acknowledged_order_missing_from_the_table_is_lost(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.orders = [o for o in w.orders if o["idempotency_key"] != "k3"]
    result, _ = run_world(w)
    # its trade now references an order the table does not have: that is reported too
    assert result.valid is False
    assert result.details["violations"] == ["lost", "orphan_trade"]
    (ex,) = _examples(result, "lost")
    assert (ex["client_id"], ex["idempotency_key"], ex["order_id"]) == ("c1", "k3", _uid(3))
    assert ex["ledger_at"].endswith(":4")


def test_an_acknowledged_order_with_no_accepted_event_is_lost_in_topic(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.accepted = [(p, e) for p, e in w.accepted if e["idempotency_key"] != "k5"]
    result, _ = run_world(w)
    _only(result, "lost_in_topic")
    assert _examples(result, "lost_in_topic")[0]["idempotency_key"] == "k5"


def test_two_orders_for_one_idempotency_key_are_duplicated(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.orders.append({**w.orders[2], "order_id": _uid(1000)})
    # a client retry of the same key is not a duplicate
    w.ledger.append(_submit("c0", "k2", "ok", 201, _uid(2), ts=200.0))
    result, _ = run_world(w)
    _only(result, "duplicated")
    (ex,) = _examples(result, "duplicated")
    assert ex["idempotency_key"] == "k2" and ex["rows"] == 2
    assert sorted(ex["order_ids"]) == sorted([_uid(2), _uid(1000)])


def test_two_accepted_order_ids_for_one_key_are_duplicated_in_topic(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    p, e = w.accepted[4]
    w.accepted.append((1, {**e, "event_id": str(uuid.uuid4()), "order_id": _uid(2000)}))
    w.accepted.append((p, e))  # a redelivery of the same event is not a duplicate
    result, findings = run_world(w)
    _only(result, "duplicated_in_topic")
    (ex,) = _examples(result, "duplicated_in_topic")
    assert ex["idempotency_key"] == "k4" and sorted(ex["order_ids"]) == sorted([_uid(4), _uid(2000)])
    assert any(v == 1 for k, v in findings["stats"].items() if k.startswith("redelivered_events"))


def test_an_order_nobody_submitted_is_a_phantom(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.orders.append(
        {"order_id": _uid(3000), "client_id": "c7", "idempotency_key": "ghost", "qty": 5, "symbol": "AAPL"}
    )
    result, _ = run_world(w)
    _only(result, "phantom")
    (ex,) = _examples(result, "phantom")
    assert (ex["client_id"], ex["idempotency_key"], ex["order_id"]) == ("c7", "ghost", _uid(3000))


def test_an_accepted_event_nobody_submitted_is_a_phantom_in_topic(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.accepted.append(
        (1, _event("OrderAccepted", order_id=_uid(4000), client_id="c7", idempotency_key="ghost", qty=1))
    )
    result, _ = run_world(w)
    _only(result, "phantom_in_topic")
    (ex,) = _examples(result, "phantom_in_topic")
    assert ex["idempotency_key"] == "ghost" and ex["partition"] == 1 and ex["offset"] == 0


def test_an_indeterminate_submit_whose_order_landed_is_recovered_and_allowed(
    run_world: Callable[..., Any],
) -> None:
    w = World.clean()
    w.ledger = [r for r in w.ledger if r.get("idempotency_key") != "k6"]
    w.ledger.append(_submit("c0", "k6", "info", "timeout", None, ts=106.0))
    w.ledger.append(_submit("c0", "k6", "fail", 503, None, ts=107.0))
    # a failed attempt that did not land is neither lost nor recovered
    w.ledger.append(_submit("c1", "k99", "info", "conn_reset", None, ts=108.0))
    result, _ = run_world(w)
    assert result.valid is True, result.to_dict()
    assert result.counts["recovered"] == 1
    (ex,) = _examples(result, "recovered")
    assert ex["idempotency_key"] == "k6" and ex["attempts"] == 2 and ex["prohibited"] is False
    assert sorted(ex["statuses"]) == ["fail:503", "info:timeout"]


def test_trades_above_the_order_quantity_are_a_double_fill(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    # order 0 (qty 10) is filled again by a second trade in the trades table only
    w.trades.append({**w.trades[0], "trade_id": "t-extra", "seq": 3})
    # keep the per-symbol sequence valid: the table now has AAPL 1, 2, 3
    result, _ = run_world(w)
    _only(result, "double_fill")
    exs = _examples(result, "double_fill")
    assert {e["order_id"] for e in exs} == {_uid(0), _uid(1)}
    assert all(e["filled_qty"] == 20 and e["order_qty"] == 10 for e in exs)
    assert "t-extra" in exs[0]["trade_ids"]


def test_one_trade_id_in_two_different_events_is_a_duplicate_trade(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    p, e = w.executions[1]
    w.executions.append((p, e))  # redelivery: same event id, not a duplicate
    w.executions.append((p, {**e, "event_id": str(uuid.uuid4())}))  # re-emitted: a duplicate
    result, findings = run_world(w)
    _only(result, "duplicate_trade")
    (ex,) = _examples(result, "duplicate_trade")
    assert ex["trade_id"] == "t2" and ex["copies"] == 2 and ex["source"].startswith("topic:")
    assert findings["kinds"]["double_fill"]["count"] == 0


def test_one_event_id_carrying_two_contents_of_a_trade_is_a_duplicate_trade(
    run_world: Callable[..., Any],
) -> None:
    w = World.clean()
    p, e = w.executions[1]
    w.executions.append((p, e))  # redelivery: same event id, same content, not a duplicate
    w.executions.append((p, {**e, "qty": e["qty"] + 1}))  # same event id, another fill: two matchers
    result, _ = run_world(w)
    _only(result, "duplicate_trade")
    (ex,) = _examples(result, "duplicate_trade")
    assert ex["trade_id"] == "t2" and ex["copies"] == 2 and ex["source"].startswith("topic:")


def test_one_trade_id_on_two_table_rows_is_a_duplicate_trade(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.trades.append(dict(w.trades[2]))  # the same trade recorded twice by the read model
    result, findings = run_world(w)
    _only(result, "duplicate_trade")
    (ex,) = _examples(result, "duplicate_trade")
    assert ex["trade_id"] == "t4" and ex["copies"] == 2 and ex["source"] == "table:rm_trades"
    assert "positions" not in ex
    # counted once per trade id, so it is not also a double fill or a sequence duplicate
    assert findings["kinds"]["double_fill"]["count"] == 0
    assert findings["kinds"]["seq_duplicate"]["count"] == 0


def test_a_missing_table_or_column_is_a_config_error_before_anything_runs(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE orders (order_id text, client_id text, idempotency_key text)")
    lines = [json.dumps(_submit("a", "x", "ok", 200, "1", ts=1.0))]
    with pytest.raises(ConfigError) as e:
        gather(pg_dsn, IntegrityConfig.from_dict({"orders": {"table": "nope"}}), lines)
    assert e.value.where == "integrity.orders.table"
    with pytest.raises(ConfigError) as e:
        gather(pg_dsn, IntegrityConfig.from_dict({"orders": {"table": "orders"}}), lines)  # qty is missing
    assert e.value.where == "integrity.orders.qty"
    with psycopg.connect(pg_dsn) as c:
        left = c.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'resgate_integrity_%'"
        ).fetchone()
    assert left == (0,)


def test_a_trade_referencing_an_unknown_order_is_an_orphan(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.trades[1]["sell_order_id"] = _uid(5000)
    p, e = w.executions[1]
    w.executions[1] = (p, {**e, "sell_order_id": _uid(5000)})
    result, _ = run_world(w)
    _only(result, "orphan_trade")
    exs = _examples(result, "orphan_trade")
    assert {e["source"].split(":")[0] for e in exs} == {"table", "topic"}
    assert all(e["order_id"] == _uid(5000) and e["trade_id"] == "t2" for e in exs)


def test_a_missing_sequence_number_is_a_gap(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.trades[1]["seq"] = 3  # AAPL: 1, 3
    p, e = w.executions[1]
    w.executions[1] = (p, {**e, "seq": 3})
    result, _ = run_world(w)
    _only(result, "seq_gap")
    ex = _examples(result, "seq_gap")[0]
    assert (ex["symbol"], ex["after_seq"], ex["next_seq"], ex["missing"]) == ("AAPL", 1, 3, 1)


def test_one_sequence_number_on_two_trades_is_a_seq_duplicate(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    w.trades[1]["seq"] = 1  # AAPL: 1, 1
    result, _ = run_world(w, trade_events=None)
    _only(result, "seq_duplicate")
    (ex,) = _examples(result, "seq_duplicate")
    assert (ex["symbol"], ex["seq"], ex["trade_ids"]) == ("AAPL", 1, ["t0", "t2"])


def test_sequence_numbers_out_of_offset_order_are_a_reorder(run_world: Callable[..., Any]) -> None:
    w = World.clean()
    # MSFT trades t4 (seq 1) and t6 (seq 2), published in the opposite order on partition 1
    i4 = next(i for i, (_p, e) in enumerate(w.executions) if e["trade_id"] == "t4")
    i6 = next(i for i, (_p, e) in enumerate(w.executions) if e["trade_id"] == "t6")
    w.executions[i4], w.executions[i6] = w.executions[i6], w.executions[i4]
    result, _ = run_world(w)
    _only(result, "seq_reorder")
    (ex,) = _examples(result, "seq_reorder")
    assert (ex["symbol"], ex["partition"], ex["seq"], ex["previous_seq"]) == ("MSFT", 1, 1, 2)


def test_a_truncated_accepted_topic_gives_unknown_with_the_reason(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Any
) -> None:
    w = World.clean()
    pad = "x" * 10_000
    # 600 x 10 KB events into partition 0: the mock keeps 5 MiB and drops the oldest, among them k0..k7
    w.accepted = w.accepted + [
        (0, _event("Padding", order_id=_uid(10_000 + i), client_id="pad", idempotency_key=f"p{i}", pad=pad))
        for i in range(600)
    ]
    result, findings = _run(
        w, pg_dsn, kafka_bootstrap, new_topic, tmp_path, produce_kw={"max_batch_size": 64 * 1024}
    )
    assert result.valid == UNKNOWN, result.to_dict()
    assert "partition 0 starts at offset" in (result.error or "")
    assert "lost_in_topic" in findings["not_checked"]
    # the table-side checks still ran and found nothing
    assert findings["kinds"]["lost"]["count"] == 0


def test_a_malformed_ledger_line_makes_the_result_unknown(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Any
) -> None:
    w = World.clean()
    w.ledger.append(
        {"ts": 1.0, "op": "submit_order", "client_id": "c0", "idempotency_key": "kz", "outcome": "maybe"}
    )
    result, _ = _run(w, pg_dsn, kafka_bootstrap, new_topic, tmp_path)
    assert result.valid == UNKNOWN
    assert "ledger record(s) could not be read" in (result.error or "")


def test_the_ledger_can_come_from_lines_in_memory(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE o (id text, cli text, ikey text)")
        c.execute("INSERT INTO o VALUES ('1', 'a', 'x')")
    config = IntegrityConfig.from_dict(
        {
            "orders": {
                "table": "o",
                "order_id": "id",
                "client_id": "cli",
                "idempotency_key": "ikey",
                "qty": None,
            }
        }
    )
    lines = (
        json.dumps(r).encode()
        for r in [_submit("a", "x", "ok", 200, "1", ts=1.0), _submit("a", "y", "ok", 200, None, ts=2.0)]
    )
    result = check(gather(pg_dsn, config, lines))
    assert result.valid is False
    assert [(e["kind"], e["idempotency_key"]) for e in result.examples] == [("lost", "y")]


# --- property: random clean histories are valid; one injected anomaly is found and named ----------------

INJECTABLE = [
    "lost",
    "duplicated",
    "phantom",
    "recovered",
    "double_fill",
    "orphan_trade",
    "seq_gap",
    "seq_duplicate",
]


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """A consistent random history: submits with retries, their orders, trades that never overfill."""
    n = draw(st.integers(min_value=2, max_value=20))
    ledger, orders = [], []
    for i in range(n):
        client, key, oid = f"c{draw(st.integers(0, 3))}", f"k{i}", _uid(i)
        for r in range(draw(st.integers(0, 2))):  # indeterminate attempts, then a successful retry
            ledger.append(
                _submit(
                    client,
                    key,
                    "info",
                    draw(st.sampled_from(["timeout", "conn_reset", 503])),
                    None,
                    ts=i + r / 10,
                )
            )
        ledger.append(_submit(client, key, "ok", 201, oid, ts=i + 0.5))
        sym = draw(st.sampled_from(["AAPL", "MSFT", "TSLA"]))
        orders.append(
            {
                "order_id": oid,
                "client_id": client,
                "idempotency_key": key,
                "qty": draw(st.integers(1, 50)),
                "symbol": sym,
            }
        )
    remaining = {o["order_id"]: o["qty"] for o in orders}
    seqs: dict[str, int] = {}
    trades = []
    for t in range(draw(st.integers(0, 12))):
        a, b = draw(st.sampled_from(orders)), draw(st.sampled_from(orders))
        if a is b or a["symbol"] != b["symbol"]:
            continue
        room = min(remaining[a["order_id"]], remaining[b["order_id"]])
        if room < 1:
            continue
        q = draw(st.integers(1, room))
        remaining[a["order_id"]] -= q
        remaining[b["order_id"]] -= q
        seqs[a["symbol"]] = seqs.get(a["symbol"], 0) + 1
        trades.append({"trade_id": f"t{t}", "symbol": a["symbol"], "seq": seqs[a["symbol"]],
                       "buy_order_id": a["order_id"], "sell_order_id": b["order_id"], "qty": q})  # fmt: skip
    return {"ledger": ledger, "orders": orders, "trades": trades}


def _inject(h: dict[str, Any], kind: str | None) -> None:
    ledger, orders, trades = h["ledger"], h["orders"], h["trades"]

    def big(name: str) -> str:
        """A fresh acknowledged order with room for any trade."""
        oid = _uid(10**7 + int(name[1:]))
        ledger.append(_submit("cx", name, "ok", 201, oid, ts=500.0))
        orders.append(
            {"order_id": oid, "client_id": "cx", "idempotency_key": name, "qty": 1000, "symbol": "ZZZ"}
        )
        return oid

    def trade(tid: str, buy: str, sell: str, qty: int, seq: int) -> None:
        trades.append(
            {
                "trade_id": tid,
                "symbol": "ZZZ",
                "seq": seq,
                "buy_order_id": buy,
                "sell_order_id": sell,
                "qty": qty,
            }
        )

    if kind == "lost":
        ledger.append(_submit("c0", "never-stored", "ok", 201, _uid(9_000_001), ts=600.0))
    elif kind == "duplicated":
        orders.append({**orders[0], "order_id": _uid(9_000_002)})
    elif kind == "phantom":
        orders.append(
            {
                "order_id": _uid(9_000_003),
                "client_id": "c9",
                "idempotency_key": "ghost",
                "qty": 1,
                "symbol": "AAPL",
            }
        )
    elif kind == "recovered":
        ledger.append(_submit("c1", "late", "info", "timeout", None, ts=700.0))
        orders.append(
            {
                "order_id": _uid(9_000_004),
                "client_id": "c1",
                "idempotency_key": "late",
                "qty": 1,
                "symbol": "AAPL",
            }
        )
    elif kind == "double_fill":
        small = _uid(9_000_005)
        ledger.append(_submit("cx", "small", "ok", 201, small, ts=800.0))
        orders.append(
            {"order_id": small, "client_id": "cx", "idempotency_key": "small", "qty": 2, "symbol": "ZZZ"}
        )
        trade("x1", small, big("b1"), 3, 1)
    elif kind == "orphan_trade":
        trade("x2", big("b2"), _uid(9_000_006), 1, 1)
    elif kind == "seq_gap":
        b = big("b3")
        trade("x3", b, big("b4"), 1, 1)
        trade("x4", b, big("b5"), 1, 3)
    elif kind == "seq_duplicate":
        b = big("b6")
        trade("x5", b, big("b7"), 1, 1)
        trade("x6", b, big("b8"), 1, 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=histories(), kind=st.sampled_from([None, *INJECTABLE]))
def test_a_random_clean_history_is_valid_and_one_injected_anomaly_is_found_and_named(
    pg_dsn: str, h: dict[str, Any], kind: str | None
) -> None:
    _inject(h, kind)
    schema = f"h_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(
            f"CREATE TABLE {schema}.orders (order_id uuid, client_id text, idempotency_key text, "
            "qty bigint, symbol text)"
        )
        c.execute(
            f"CREATE TABLE {schema}.rm_trades (trade_id text, symbol text, seq bigint, buy_order_id uuid, "
            "sell_order_id uuid, qty bigint)"
        )
        with c.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {schema}.orders VALUES (%(order_id)s, %(client_id)s, %(idempotency_key)s, "
                "%(qty)s, %(symbol)s)",
                h["orders"],
            )
            if h["trades"]:
                cur.executemany(
                    f"INSERT INTO {schema}.rm_trades VALUES (%(trade_id)s, %(symbol)s, %(seq)s, "
                    "%(buy_order_id)s, %(sell_order_id)s, %(qty)s)",
                    h["trades"],
                )
    config = IntegrityConfig.from_dict(
        {"orders": {"table": f"{schema}.orders"}, "trades": {"table": f"{schema}.rm_trades"}}
    )
    result = check(gather(pg_dsn, config, [json.dumps(r) for r in h["ledger"]].__iter__()), config.thresholds)
    if kind in (None, "recovered"):
        assert result.valid is True, result.to_dict()
        assert result.counts["recovered"] == (1 if kind else 0)
    else:
        assert result.valid is False, result.to_dict()
        assert result.details["violations"] == [kind], result.to_dict()
        assert any(e["kind"] == kind for e in result.examples)
