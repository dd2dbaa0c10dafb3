"""Generated trading histories: a clean one is valid; one injected anomaly of a trading kind is named alone.

The model: clients (shared across keys, with hostile characters in their keys) submit limit orders; a buy
and a sell of one symbol whose limits cross trade at a price inside both limits; positions are the signed
sums of the fills; some resting orders are cancelled (acknowledged, then cancelled in the blotter); each
client reads its orders back with a non-decreasing filled quantity. Exactly one anomaly is then injected
at a random place and the checker must name exactly its kind (a one-sided position bump is both
``position_mismatch`` and ``position_not_conserved``: the one anomaly breaks two invariants).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resgate.checks.integrity import IntegrityConfig, check, gather

pytestmark = pytest.mark.integration

TICK = Decimal("0.000001")
KEY_CHARS = st.text(alphabet=st.sampled_from("ab\t\\\"'é😀 ,;\x7f"), min_size=1, max_size=6)

# injected kind -> the violations the checker must report (exactly)
INJECTIONS: dict[str, list[str]] = {
    "price_outside_limit": ["price_outside_limit"],
    "order_mismatch": ["order_mismatch"],
    "cancel_still_open": ["cancel_still_open"],
    "position_mismatch": ["position_mismatch"],
    "position_not_conserved": ["position_mismatch", "position_not_conserved"],
    "non_monotonic_read": ["non_monotonic_read"],
}


def _oid(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def _op(op: str, o: dict[str, Any], ts: float, **fields: Any) -> dict[str, Any]:
    """A cancel or a read of order ``o`` by its client, answered 200."""
    return {"ts": ts, "op": op, "client_id": o["client_id"], "idempotency_key": None, "status": 200,
            "outcome": "ok", "latency_ms": 1.0, "order_id": o["order_id"], **fields}  # fmt: skip


@st.composite
def markets(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=2, max_value=14))
    ledger: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    for i in range(n):
        client = f"c{draw(st.integers(0, 2))}"
        key = f"{draw(KEY_CHARS)}#{i}"  # unique per order, hostile characters around it
        side = "buy" if i % 2 == 0 else "sell"
        price = Decimal(draw(st.integers(9_000, 11_000))) / 100
        o = {"order_id": _oid(i), "client_id": client, "idempotency_key": key, "symbol": "AAPL",
             "side": side, "qty": draw(st.integers(1, 20)), "price": price}  # fmt: skip
        orders.append(o)
        ledger.append({"ts": float(i), "op": "submit_order", "client_id": client, "idempotency_key": key,
                       "status": 201, "outcome": "ok", "latency_ms": 1.0, "order_id": o["order_id"],
                       "symbol": "AAPL", "side": side, "qty": o["qty"], "price": float(price)})  # fmt: skip
    filled = {o["order_id"]: 0 for o in orders}
    trades: list[dict[str, Any]] = []
    buys, sells = [o for o in orders if o["side"] == "buy"], [o for o in orders if o["side"] == "sell"]
    for b in buys:
        for s in sells:
            room = min(b["qty"] - filled[b["order_id"]], s["qty"] - filled[s["order_id"]])
            if b["price"] < s["price"] or room < 1:
                continue
            q = draw(st.integers(1, room))
            px = draw(st.sampled_from([b["price"], s["price"]]))  # the maker's price: inside both limits
            filled[b["order_id"]] += q
            filled[s["order_id"]] += q
            trades.append({"trade_id": f"t{len(trades)}", "symbol": "AAPL", "seq": len(trades) + 1,
                           "buy_order_id": b["order_id"], "sell_order_id": s["order_id"], "qty": q,
                           "price": px})  # fmt: skip
    states: dict[str, str] = {}
    for o in orders:
        f = filled[o["order_id"]]
        states[o["order_id"]] = "filled" if f == o["qty"] else ("partially_filled" if f else "open")
        if f < o["qty"] and draw(st.booleans()):  # cancel what rests: acknowledged, then cancelled
            ledger.append(_op("cancel_order", o, 100.0))
            states[o["order_id"]] = "cancelled"
        for r, seen in enumerate(sorted({0, f})):  # reads never go backwards
            ledger.append(_op("get_order", o, 200.0 + r, order_status="open", filled_qty=seen))
    positions: dict[tuple[str, str], int] = {}
    by_id = {o["order_id"]: o for o in orders}
    for t in trades:
        for oid, sign in ((t["buy_order_id"], 1), (t["sell_order_id"], -1)):
            k = (by_id[oid]["client_id"], "AAPL")
            positions[k] = positions.get(k, 0) + sign * t["qty"]
    return {"ledger": ledger, "orders": orders, "trades": trades, "states": states, "positions": positions}


def _inject(m: dict[str, Any], kind: str | None, pick: int) -> None:
    orders, trades = m["orders"], m["trades"]
    if kind == "price_outside_limit":
        b, s = orders[0], orders[1]  # a buy and a sell: a trade of nothing, one tick over the buy's limit
        trades.append({"trade_id": "tx", "symbol": "AAPL", "seq": len(trades) + 1, "qty": 0,
                       "buy_order_id": b["order_id"], "sell_order_id": s["order_id"],
                       "price": b["price"] + TICK})  # fmt: skip
    elif kind == "order_mismatch":
        o = orders[pick % len(orders)]
        o["price"] += TICK if o["side"] == "buy" else -TICK  # still inside every trade's limit
    elif kind == "cancel_still_open":
        o = orders[pick % len(orders)]
        m["ledger"].append(_op("cancel_order", o, 150.0))
        m["states"][o["order_id"]] = "open"
    elif kind in ("position_mismatch", "position_not_conserved"):
        clients = sorted({o["client_id"] for o in orders})
        a = clients[pick % len(clients)]
        m["positions"][(a, "AAPL")] = m["positions"].get((a, "AAPL"), 0) + 1
        if kind == "position_mismatch":  # moved between two clients: still conserved
            other = f"{a}-other"
            m["positions"][(other, "AAPL")] = m["positions"].get((other, "AAPL"), 0) - 1
    elif kind == "non_monotonic_read":
        o = orders[pick % len(orders)]
        m["ledger"].append(_op("get_order", o, 300.0, order_status="filled", filled_qty=1))
        m["ledger"].append(_op("get_order", o, 301.0, order_status="open", filled_qty=0))


def _load(dsn: str, schema: str, m: dict[str, Any]) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(f"CREATE TABLE {schema}.orders (order_id uuid, client_id text, idempotency_key text, "
                  "symbol text, side text, qty bigint, price numeric(20, 6))")  # fmt: skip
        c.execute(f"CREATE TABLE {schema}.rm_trades (trade_id text, symbol text, seq bigint, "
                  "buy_order_id uuid, sell_order_id uuid, qty bigint, price numeric(20, 6))")  # fmt: skip
        c.execute(f"CREATE TABLE {schema}.rm_orders (order_id text, status text)")
        c.execute(f"CREATE TABLE {schema}.rm_positions (client_id text, symbol text, net_qty bigint)")
        with c.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {schema}.orders VALUES (%(order_id)s, %(client_id)s, %(idempotency_key)s, "
                "%(symbol)s, %(side)s, %(qty)s, %(price)s)",
                m["orders"],
            )
            if m["trades"]:
                cur.executemany(
                    f"INSERT INTO {schema}.rm_trades VALUES (%(trade_id)s, %(symbol)s, %(seq)s, "
                    "%(buy_order_id)s, %(sell_order_id)s, %(qty)s, %(price)s)",
                    m["trades"],
                )
            cur.executemany(f"INSERT INTO {schema}.rm_orders VALUES (%s, %s)", list(m["states"].items()))
            rows = [(c_, s, n) for (c_, s), n in m["positions"].items()]
            if rows:
                cur.executemany(f"INSERT INTO {schema}.rm_positions VALUES (%s, %s, %s)", rows)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=markets(), kind=st.sampled_from([None, *INJECTIONS]), pick=st.integers(0, 100))
def test_a_random_market_is_valid_and_one_injected_trading_anomaly_is_named_alone(
    pg_dsn: str, m: dict[str, Any], kind: str | None, pick: int
) -> None:
    _inject(m, kind, pick)
    schema = f"m_{uuid.uuid4().hex[:10]}"
    _load(pg_dsn, schema, m)
    config = IntegrityConfig.from_dict(
        {
            "orders": {"table": f"{schema}.orders", "symbol": "symbol", "side": "side", "price": "price"},
            "trades": {"table": f"{schema}.rm_trades", "price": "price"},
            "order_states": {"table": f"{schema}.rm_orders"},
            "positions": {"table": f"{schema}.rm_positions"},
        }
    )
    result = check(gather(pg_dsn, config, iter([json.dumps(r) for r in m["ledger"]])), config.thresholds)
    if kind is None:
        assert result.valid is True, result.to_dict()
    else:
        assert result.valid is False, result.to_dict()
        assert result.details["violations"] == INJECTIONS[kind], result.to_dict()
