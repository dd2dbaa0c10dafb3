"""The integrity checker's trading invariants on real Postgres (and Kafka for offset order), at each boundary.

One small, consistent trading world (orders with limits, trades at their limits, a confirmed cancel,
positions, a client's reads); each test breaks exactly one thing by the smallest step that breaks it (a
fill one tick over its limit) and checks the same step short of it (a fill at the limit) passes. The
config is written here as example config: the checker knows none of these names.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from resgate.checks.integrity import IntegrityConfig, check, gather
from resgate.checks.result import CheckResult

pytestmark = pytest.mark.integration

TICK = Decimal("0.000001")


def _oid(n: int) -> str:
    return str(uuid.UUID(int=n))


@dataclass
class Market:
    """Orders 1-4, one AAPL trade at the buy's limit, MSFT order 3 cancelled (confirmed), order 4 open."""

    ledger: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)
    positions: dict[tuple[str, str], int] = field(default_factory=dict)
    executions: list[dict[str, Any]] = field(default_factory=list)  # one partition, in offset order
    states_id_type: str = "text"  # the SQL type of the order states' order id

    @classmethod
    def clean(cls) -> Market:
        m = cls()
        specs = [
            (1, "c0", "AAPL", "buy", 10, "100"),
            (2, "c1", "AAPL", "sell", 10, "99.5"),
            (3, "c0", "MSFT", "buy", 5, "52"),
            (4, "c1", "MSFT", "sell", 5, "51"),
        ]
        for n, client, sym, side, qty, price in specs:
            key = f"k\t{n}é"  # hostile characters survive the raw COPY and Postgres' JSON parse
            sent = {"symbol": sym, "side": side, "qty": qty, "price": float(price)}
            m.ledger.append(_rec("submit_order", client, key, ts=10.0 + n, order_id=_oid(n), **sent))
            m.orders.append(
                {"order_id": _oid(n), "client_id": client, "idempotency_key": key, **sent, "price": price}
            )
            m.states[_oid(n)] = "open"
        m.add_trade("t1", "AAPL", 1, buy=1, sell=2, qty=10, price="100")
        m.states[_oid(1)] = m.states[_oid(2)] = "filled"
        m.positions = {("c0", "AAPL"): 10, ("c1", "AAPL"): -10}
        # c0 cancels order 3: acknowledged, confirmed by the system, cancelled in the blotter
        m.ledger.append(_rec("cancel_order", "c0", "kc3", ts=20.0, order_id=_oid(3), order_status="accepted"))
        m.executions.append(_event("OrderCancelled", order_id=_oid(3), symbol="MSFT"))
        m.states[_oid(3)] = "cancelled"
        # c0 reads order 1 twice: open, then filled
        m.read("c0", 1, ts=30.0, status="open", filled=0)
        m.read("c0", 1, ts=31.0, status="filled", filled=10)
        return m

    def add_trade(self, tid: str, sym: str, seq: int, *, buy: int, sell: int, qty: int, price: str) -> None:
        row = {"trade_id": tid, "symbol": sym, "seq": seq, "buy_order_id": _oid(buy),
               "sell_order_id": _oid(sell), "qty": qty, "price": price}  # fmt: skip
        self.trades.append(row)
        self.executions.append(_event("TradeExecuted", **row))

    def read(self, client: str, n: int, *, ts: float, status: str, filled: int) -> None:
        self.ledger.append(
            _rec("get_order", client, None, ts=ts, order_id=_oid(n), order_status=status, filled_qty=filled)
        )


def _rec(op: str, client: str, key: str | None, *, ts: float, **fields: Any) -> dict[str, Any]:
    return {"ts": ts, "op": op, "client_id": client, "idempotency_key": key, "status": 200,
            "outcome": "ok", "latency_ms": 2.0, **fields}  # fmt: skip


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": kind, "ts": 1.0, **fields}


CONFIG: dict[str, Any] = {
    "orders": {"table": "orders", "symbol": "symbol", "side": "side", "qty": "qty", "price": "price"},
    "trades": {"table": "rm_trades", "price": "price"},
    "order_states": {"table": "rm_orders"},
    "positions": {"table": "rm_positions"},
    "examples_cap": 5,
}


async def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, json.dumps(e).encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()


def _load(m: Market, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE TABLE orders (order_id text, client_id text, idempotency_key text, symbol text, "
            "side text, qty bigint, price numeric(20, 6))"
        )
        c.execute(
            "CREATE TABLE rm_trades (trade_id text, symbol text, seq bigint, buy_order_id text, "
            "sell_order_id text, qty bigint, price numeric(20, 6))"
        )
        c.execute(f"CREATE TABLE rm_orders (order_id {m.states_id_type} PRIMARY KEY, status text)")
        c.execute("CREATE TABLE rm_positions (client_id text, symbol text, net_qty bigint)")
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO orders VALUES (%(order_id)s, %(client_id)s, %(idempotency_key)s, %(symbol)s, "
                "%(side)s, %(qty)s, %(price)s)",
                m.orders,
            )
            cur.executemany(
                "INSERT INTO rm_trades VALUES (%(trade_id)s, %(symbol)s, %(seq)s, %(buy_order_id)s, "
                "%(sell_order_id)s, %(qty)s, %(price)s)",
                m.trades,
            )
            cur.executemany("INSERT INTO rm_orders VALUES (%s, %s)", list(m.states.items()))
            cur.executemany(
                "INSERT INTO rm_positions VALUES (%s, %s, %s)",
                [(c_, s, n) for (c_, s), n in m.positions.items()],
            )


@pytest.fixture
def judge(pg_dsn: str, tmp_path: Any) -> Callable[..., tuple[CheckResult, dict[str, Any]]]:
    """``judge(market, **config_overrides) -> (result, findings)`` over tables and a ledger file only."""

    def go(m: Market, **overrides: Any) -> tuple[CheckResult, dict[str, Any]]:
        _load(m, pg_dsn)
        ledger = tmp_path / "ledger.jsonl"
        lines = (r if isinstance(r, str) else json.dumps(r) for r in m.ledger)
        ledger.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        section = copy.deepcopy(CONFIG)
        section.update(overrides)
        config = IntegrityConfig.from_dict(section)
        findings = gather(pg_dsn, config, str(ledger))
        return check(findings, config.thresholds), findings.to_dict()

    return go


def _only(result: CheckResult, *kinds: str) -> list[dict[str, Any]]:
    assert result.valid is False, result.to_dict()
    assert result.details["violations"] == sorted(kinds), result.to_dict()
    return [e for e in result.examples if e["kind"] == kinds[0]]


def test_the_clean_market_is_valid_and_every_trading_kind_was_checked(judge: Callable[..., Any]) -> None:
    result, findings = judge(Market.clean())
    assert result.valid is True, result.to_dict()
    for kind in ("price_outside_limit", "order_mismatch", "cancel_still_open", "position_not_conserved",
                 "position_mismatch", "non_monotonic_read"):  # fmt: skip
        assert findings["kinds"][kind]["count"] == 0, kind
    assert "fill_after_cancel" in findings["not_checked"]  # needs the trades topic


def test_a_buy_filled_one_tick_above_its_limit_is_outside_the_limit(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.trades[0]["price"] = str(Decimal("100") + TICK)  # the sell's limit (99.5) still holds
    (ex,) = _only(judge(m)[0], "price_outside_limit")
    assert ex["order_id"] == _oid(1) and ex["side"] == "buy"
    assert Decimal(str(ex["trade_price"])) == Decimal("100.000001") and ex["limit_price"] == 100


def test_a_sell_filled_one_tick_below_its_limit_is_outside_the_limit(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.trades[0]["price"] = str(Decimal("99.5") - TICK)
    (ex,) = _only(judge(m)[0], "price_outside_limit")
    assert ex["order_id"] == _oid(2) and ex["side"] == "sell"


def test_a_sell_filled_exactly_at_its_limit_is_within_it(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.trades[0]["price"] = "99.5"
    assert judge(m)[0].valid is True


def test_an_order_stored_one_tick_off_the_price_sent_is_a_mismatch(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.orders[3]["price"] = str(Decimal("51") - TICK)
    (ex,) = _only(judge(m)[0], "order_mismatch")
    assert ex["order_id"] == _oid(4) and ex["fields"] == ["price"]
    assert ex["sent"]["price"] == 51 and ex["ledger_at"].endswith(":4")


def test_an_order_stored_with_the_other_side_is_a_mismatch(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.orders[3]["side"] = "buy"
    (ex,) = _only(judge(m)[0], "order_mismatch")
    assert ex["fields"] == ["side"] and ex["stored"]["side"] == "buy"


def test_a_price_stored_as_the_same_number_written_differently_is_no_mismatch(
    judge: Callable[..., Any],
) -> None:
    m = Market.clean()
    m.ledger[3]["price"] = "51.000000"  # the column stores 51.000000; the client sent 51
    assert judge(m)[0].valid is True


def test_two_clients_sending_different_orders_under_one_key_are_no_mismatch(
    judge: Callable[..., Any],
) -> None:
    m = Market.clean()
    shared = m.ledger[2]["idempotency_key"]  # c0's key for order 3 (MSFT buy 5 @ 52)
    m.ledger[3]["idempotency_key"] = m.orders[3]["idempotency_key"] = shared  # c1's order 4: MSFT sell 5 @ 51
    assert judge(m)[0].valid is True


def _price_not_sent() -> Market:
    """Order 4 stored at price 1 while its submit carried no price (NULL in the ledger): the join's
    prefilter (``l.f <> o.f``, NULL there) must leave the price out exactly as the per-field test does."""
    m = Market.clean()
    del m.ledger[3]["price"]
    m.orders[3]["price"] = "1"
    return m


def test_a_price_the_client_did_not_send_is_not_compared(judge: Callable[..., Any]) -> None:
    assert judge(_price_not_sent())[0].valid is True


def test_beside_a_price_not_sent_a_side_stored_otherwise_is_a_mismatch_of_the_side_alone(
    judge: Callable[..., Any],
) -> None:
    m = _price_not_sent()
    m.orders[3]["side"] = "buy"
    (ex,) = _only(judge(m)[0], "order_mismatch")
    assert ex["fields"] == ["side"] and "price" not in ex["sent"]


def _timed_out(m: Market, i: int, **fields: Any) -> dict[str, Any]:
    """An indeterminate attempt (a timeout) of ledger record ``i``'s key, before it, with ``fields``."""
    return {**m.ledger[i], "outcome": "info", "status": "timeout", "ts": m.ledger[i]["ts"] - 0.5, **fields}


def test_a_timed_out_attempt_with_another_price_is_a_mismatch_beside_its_matching_retry(
    judge: Callable[..., Any],
) -> None:
    """The submit join leaves an indeterminate attempt unjoined (only ok attempts meet their order there):
    order_mismatch compares those on its own, and names that attempt's line."""
    m = Market.clean()
    m.ledger.append(_timed_out(m, 3, price=float(Decimal("51") + TICK)))
    (ex,) = _only(judge(m)[0], "order_mismatch")
    assert ex["order_id"] == _oid(4) and ex["fields"] == ["price"]
    assert ex["ledger_at"].endswith(f":{len(m.ledger)}")


def test_a_timed_out_attempt_with_the_same_fields_is_no_mismatch(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.ledger.append(_timed_out(m, 3))
    assert judge(m)[0].valid is True


def test_an_order_only_a_timeout_ever_sent_is_compared_with_that_attempt(judge: Callable[..., Any]) -> None:
    """A key with no ok attempt at all (the order recovered): its one attempt is the only thing sent."""
    m = Market.clean()
    m.ledger[3] = _timed_out(m, 3, side="buy")
    result, findings = judge(m)
    (ex,) = _only(result, "order_mismatch")
    assert ex["order_id"] == _oid(4) and ex["fields"] == ["side"] and ex["sent"]["side"] == "buy"
    assert findings["kinds"]["recovered"]["count"] == 1


def test_an_order_only_a_timeout_sent_with_the_same_fields_is_only_recovered(
    judge: Callable[..., Any],
) -> None:
    m = Market.clean()
    m.ledger[3] = _timed_out(m, 3)
    result, findings = judge(m)
    assert result.valid is True, result.to_dict()
    assert findings["kinds"]["recovered"]["count"] == 1 and findings["kinds"]["order_mismatch"]["count"] == 0


def test_a_refused_attempt_with_other_fields_is_no_mismatch(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.ledger.append({**m.ledger[3], "price": 52.0, "outcome": "fail", "status": 409, "ts": 40.0})
    assert judge(m)[0].valid is True


def test_an_acknowledged_cancel_whose_order_is_still_open_is_found(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.states[_oid(3)] = "open"
    (ex,) = _only(judge(m)[0], "cancel_still_open")
    assert ex["order_id"] == _oid(3) and ex["status"] == "open" and ex["ledger_at"].endswith(":5")


@pytest.mark.parametrize("id_type", ["uuid", "character varying(40)", "character(36)"])
def test_a_cancel_still_open_is_found_whatever_the_type_of_the_order_states_id(
    judge: Callable[..., Any], id_type: str
) -> None:
    """The ledger's id (text) is read in a uuid or varchar column's own type, a char column's id as text."""
    m = Market.clean()
    m.states_id_type = id_type
    m.states[_oid(3)] = "open"
    (ex,) = _only(judge(m)[0], "cancel_still_open")
    assert ex["order_id"] == _oid(3) and ex["status"] == "open"


@pytest.mark.parametrize("written", ["braces", "no_hyphens", "not_a_uuid"])
def test_a_cancel_whose_id_is_not_a_uuids_own_text_matches_no_uuid_order(
    judge: Callable[..., Any], written: str
) -> None:
    """An order id matches when its text equals the ledger's: a text Postgres would read as the same uuid
    but is not its text (braces, no hyphens) matches none, and neither does (nor fails the check) a text
    that is no uuid at all."""
    m = Market.clean()
    m.states_id_type = "uuid"
    m.states[_oid(3)] = "open"
    texts = {"braces": "{" + _oid(3) + "}", "no_hyphens": uuid.UUID(_oid(3)).hex, "not_a_uuid": "order-3"}
    m.ledger[4]["order_id"] = texts[written]
    result = judge(m)[0]
    assert result.valid is True and "cancel_still_open" in result.counts, result.to_dict()


def test_a_cancelled_order_that_filled_first_is_not_still_open(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.states[_oid(3)] = "filled"
    assert judge(m)[0].valid is True


def test_a_failed_cancel_whose_order_is_open_is_no_anomaly(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.ledger[4]["outcome"], m.ledger[4]["status"] = "fail", 404
    m.states[_oid(3)] = "open"
    assert judge(m)[0].valid is True


def test_a_position_one_over_the_fills_on_both_sides_is_a_mismatch_but_conserved(
    judge: Callable[..., Any],
) -> None:
    m = Market.clean()
    m.positions = {("c0", "AAPL"): 11, ("c1", "AAPL"): -11}
    examples = _only(judge(m)[0], "position_mismatch")
    assert {(e["client_id"], e["position"], e["fills"]) for e in examples} == {
        ("c0", 11, 10),
        ("c1", -11, -10),
    }


def test_a_position_one_over_on_one_side_is_not_conserved(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.positions[("c0", "AAPL")] = 11
    result, _ = judge(m)
    _only(result, "position_mismatch", "position_not_conserved")
    (ex,) = [e for e in result.examples if e["kind"] == "position_not_conserved"]
    assert ex == {"kind": "position_not_conserved", "prohibited": True, "source": "table:rm_positions",
                  "symbol": "AAPL", "net_qty": 1, "clients": 2}  # fmt: skip


def test_a_missing_position_row_counts_as_zero(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    del m.positions[("c1", "AAPL")]
    result, _ = judge(m)
    _only(result, "position_mismatch", "position_not_conserved")


def test_filled_quantity_read_shrinking_by_one_is_a_non_monotonic_read(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.read("c0", 1, ts=32.0, status="filled", filled=9)
    (ex,) = _only(judge(m)[0], "non_monotonic_read")
    assert ex["filled_qty"] == 9 and ex["previous_max_filled"] == 10


def test_an_order_read_open_after_filled_is_a_non_monotonic_read(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.read("c0", 1, ts=32.0, status="open", filled=10)
    (ex,) = _only(judge(m)[0], "non_monotonic_read")
    assert ex["status"] == "open" and ex["was_terminal"] is True


def test_reading_the_same_filled_quantity_again_is_monotonic(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.read("c0", 1, ts=32.0, status="filled", filled=10)
    assert judge(m)[0].valid is True


def test_another_client_reading_less_is_not_this_clients_regression(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.read("c1", 1, ts=32.0, status="open", filled=0)
    assert judge(m)[0].valid is True


def test_kinds_whose_sources_are_not_configured_are_not_checked_never_passed(
    judge: Callable[..., Any],
) -> None:
    m = Market.clean()
    m.ledger = [r for r in m.ledger if r["op"] != "get_order"]
    result, findings = judge(
        m, orders={"table": "orders"}, trades={"table": "rm_trades"}, order_states=None, positions=None
    )
    assert result.valid is True
    for kind in ("price_outside_limit", "cancel_still_open", "position_mismatch", "position_not_conserved",
                 "non_monotonic_read", "fill_after_cancel"):  # fmt: skip
        assert kind in findings["not_checked"], kind
        assert kind not in findings["kinds"]
    # qty is configured by default, so the stored quantity is still compared with what was sent
    assert findings["kinds"]["order_mismatch"]["count"] == 0


# --- on the trades topic: offsets order a fill against the order's confirmed cancel ---------------------


def _with_topic(m: Market, dsn: str, bootstrap: str, topic: str, tmp_path: Any) -> tuple[CheckResult, Any]:
    _load(m, dsn)
    asyncio.run(_produce(bootstrap, topic, m.executions))
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(r) + "\n" for r in m.ledger), encoding="utf-8")
    section = copy.deepcopy(CONFIG)
    section["trade_events"] = {"topic": topic, "type_value": "TradeExecuted", "price": "price"}
    section["cancel_events"] = {"topic": topic, "type_value": "OrderCancelled"}
    config = IntegrityConfig.from_dict(section)
    findings = gather(dsn, config, str(ledger), bootstrap=bootstrap)
    return check(findings, config.thresholds), findings.to_dict()


def test_a_fill_after_the_orders_confirmed_cancel_is_found_one_offset_later(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Any
) -> None:
    m = Market.clean()
    m.add_trade("t2", "MSFT", 1, buy=3, sell=4, qty=5, price="51")  # right after OrderCancelled(3)
    m.states[_oid(4)] = "filled"
    m.positions.update({("c0", "MSFT"): 5, ("c1", "MSFT"): -5})
    result, findings = _with_topic(m, pg_dsn, kafka_bootstrap, new_topic(partitions=1), tmp_path)
    (ex,) = _only(result, "fill_after_cancel")
    assert ex["order_id"] == _oid(3) and ex["trade_offset"] == ex["cancel_offset"] + 1
    assert findings["kinds"]["position_mismatch"]["count"] == 0  # positions checked against the topic


def test_a_fill_just_before_the_orders_confirmed_cancel_is_no_anomaly(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Any
) -> None:
    m = Market.clean()
    cancel = m.executions.pop()  # the fill comes first, then the cancel of what remained
    m.add_trade("t2", "MSFT", 1, buy=3, sell=4, qty=5, price="51")
    m.executions.append(cancel)
    m.states[_oid(4)] = "filled"
    m.positions.update({("c0", "MSFT"): 5, ("c1", "MSFT"): -5})
    result, findings = _with_topic(m, pg_dsn, kafka_bootstrap, new_topic(partitions=1), tmp_path)
    assert result.valid is True, result.to_dict()
    assert findings["kinds"]["fill_after_cancel"]["count"] == 0
    assert findings["kinds"]["price_outside_limit"]["count"] == 0


def test_a_malformed_ledger_line_is_counted_and_named_by_file_and_line(judge: Callable[..., Any]) -> None:
    m = Market.clean()
    m.ledger.insert(2, "{not json")  # type: ignore[arg-type]
    m.ledger.insert(3, [1, 2])  # type: ignore[arg-type]
    # written as lines: the string as it is, the list as JSON
    result, findings = judge(m)
    assert findings["stats"]["ledger_records"] == len(m.ledger)
    assert "2 ledger record(s) could not be read" in (result.error or ""), result.to_dict()
    assert "ledger.jsonl:3: not JSON" in result.error and "ledger.jsonl:4: not a JSON object" in result.error


def test_a_utf8_ledger_with_blank_lines_keeps_its_line_numbers(pg_dsn: str, tmp_path: Any) -> None:
    m = Market.clean()
    m.orders[3]["price"] = "50"
    _load(m, pg_dsn)
    lines = [json.dumps(r, ensure_ascii=False) for r in m.ledger]
    lines.insert(1, "")
    lines.insert(2, "   ")
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("\n".join(lines), encoding="utf-8")  # no newline after the last line
    config = IntegrityConfig.from_dict(CONFIG)
    findings = gather(pg_dsn, config, str(ledger))
    assert "ledger_lines_not_utf8" not in findings.stats
    assert findings.stats["ledger_records"] == len(m.ledger)
    (ex,) = findings.kinds["order_mismatch"].examples
    assert ex["ledger_at"] == f"{ledger}:6" and ex["idempotency_key"] == "k\t4é"


def test_a_ledger_line_with_bytes_that_are_not_utf8_is_read_with_them_replaced_and_still_judged(
    pg_dsn: str, tmp_path: Any
) -> None:
    m = Market.clean()
    m.orders[3]["price"] = "50"
    _load(m, pg_dsn)
    ledger = tmp_path / "ledger.jsonl"
    body = b"".join(json.dumps(r).encode() + b"\n" for r in m.ledger)
    ledger.write_bytes(b'{"op": "get_order", "client_id": "\xff"}\n' + body)
    findings = gather(pg_dsn, IntegrityConfig.from_dict(CONFIG), str(ledger))
    assert findings.stats["ledger_lines_not_utf8"] == 1
    (ex,) = findings.kinds["order_mismatch"].examples
    assert ex["ledger_at"] == f"{ledger}:5"


# --- on the accepted-events topic: every event the projector should have applied -------------------------


@pytest.mark.parametrize("missing", [None, 2], ids=["all_seen", "one_unseen"])
def test_an_accepted_event_the_projector_never_recorded_is_unseen(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Any, missing: int | None
) -> None:
    m = Market.clean()
    events = [
        _event(
            "OrderAccepted",
            order_id=o["order_id"],
            client_id=o["client_id"],
            idempotency_key=o["idempotency_key"],
            qty=o["qty"],
        )
        for o in m.orders
    ]
    topic = new_topic(partitions=1)
    asyncio.run(_produce(kafka_bootstrap, topic, events))
    _load(m, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE processed_events (projector text, event_id text)")
        # another projector's row for an event counts as seen: the event reached the projector
        rows = [
            ("orders" if i % 2 else "market", e["event_id"]) for i, e in enumerate(events) if i != missing
        ]
        c.cursor().executemany("INSERT INTO processed_events VALUES (%s, %s)", rows)
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(r) + "\n" for r in m.ledger), encoding="utf-8")
    section = copy.deepcopy(CONFIG)
    section["accepted_events"] = {"topic": topic, "type_value": "OrderAccepted"}
    section["projected_events"] = {"table": "processed_events"}
    config = IntegrityConfig.from_dict(section)
    result = check(gather(pg_dsn, config, str(ledger), bootstrap=kafka_bootstrap), config.thresholds)
    if missing is None:
        assert result.valid is True, result.to_dict()
        assert result.counts["unseen_by_projector"] == 0
    else:
        (ex,) = _only(result, "unseen_by_projector")
        assert ex["event_id"] == events[missing]["event_id"] and ex["offset"] == missing
