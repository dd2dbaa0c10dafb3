"""The seeded bugs that break a trading invariant, each specified by the property it breaks (on) and keeps
(off), on the component it changes, against a real Postgres (and a real gateway process for the gateway's):

- ``positions_double_count``: a redelivered trade moves a position once (off) vs twice (on).
- ``matcher_restore_rounds_price``: a restarted matcher's book keeps each resting limit (off) vs rounds it
  to a whole unit (on).
- ``matcher_snapshot_keeps_cancelled``: a restarted matcher's book holds no cancelled order (off) vs puts
  it back (on).
- ``gateway_retry_stale_copy``: a retry is stored with the fields it carried (off) vs from the replica's
  copy of the client's previous order (on).
- ``gateway_sheds_after_write``: while the outbox lags, an order is answered 201 and its retry 200 (off)
  vs both refused with 503 though the order was written (on: an aborted read once the event is read).

The gate failing each one on its integrity kind is proven end to end in tests/e2e/test_trading_bugs.py.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from paperbroker import matcher_store, read_models
from paperbroker.config import topic_names
from paperbroker.projection_apply import apply_batch
from paperbroker.projection_plan import ProjectionOptions
from paperbroker.system import GatewayProcess, init_system
from resgate.contract.ledger import ATTEMPT_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ON_OFF = pytest.mark.parametrize("bug_on", [False, True], ids=["bug_off", "bug_on"])


def _trade() -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": "TradeExecuted", "ts": 1.0, "trade_id": "t1",
            "symbol": "AAPL", "seq": 1, "buy_order_id": "o1", "sell_order_id": "o2", "buy_client_id": "c0",
            "sell_client_id": "c1", "qty": 10, "price": "100", "aggressor_order_id": "o2"}  # fmt: skip


@ON_OFF
def test_positions_double_count_moves_a_position_again_on_a_redelivered_trade(
    pg_dsn: str, bug_on: bool
) -> None:
    options = ProjectionOptions.from_bugs({"positions_double_count"} if bug_on else set())
    trade = _trade()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        read_models.ensure_schema(conn)
        apply_batch(conn, "public", [trade], options)
        apply_batch(conn, "public", [trade], options)  # redelivered: the same event id again
        positions = dict(conn.execute("SELECT client_id, net_qty FROM rm_positions").fetchall())
        trades = conn.execute("SELECT count(*) FROM rm_trades").fetchone()
    assert trades == (1,)  # the other projections still dedupe
    assert positions == ({"c0": 20, "c1": -20} if bug_on else {"c0": 10, "c1": -10})


@ON_OFF
def test_matcher_restore_rounds_price_rounds_each_restored_limit_to_a_whole_unit(
    pg_dsn: str, bug_on: bool
) -> None:
    async def restore() -> dict[str, Decimal]:
        conn = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
        async with conn:
            await matcher_store.ensure_schema_async(conn)
            await conn.execute(
                "INSERT INTO matcher_resting VALUES (1, 'b1', 'c0', 'AAPL', 'buy', '100.62', 5, 5), "
                "(2, 's1', 'c1', 'AAPL', 'sell', '100.37', 5, 5)"
            )
            engine = await matcher_store.load_engine(conn, dedupe_orders=True, round_prices=bug_on)
        book = engine.book("AAPL")
        return {o.order_id: o.price for o in book.resting_orders()}

    prices = asyncio.run(restore())
    if bug_on:  # a buy above its limit, a sell below its limit, once anything crosses them
        assert prices == {"b1": Decimal(101), "s1": Decimal(100)}
    else:
        assert prices == {"b1": Decimal("100.62"), "s1": Decimal("100.37")}


@ON_OFF
def test_matcher_snapshot_keeps_cancelled_puts_a_cancelled_order_back_after_a_restart(
    pg_dsn: str, bug_on: bool
) -> None:
    accepted = {"event_id": "e1", "type": "OrderAccepted", "ts": 1.0, "order_id": "b1", "client_id": "c0",
                "idempotency_key": "k1", "symbol": "AAPL", "side": "buy", "qty": 5,
                "price": "100"}  # fmt: skip
    cancel = {"event_id": "e2", "type": "CancelRequested", "ts": 2.0, "order_id": "b1", "client_id": "c0",
              "symbol": "AAPL"}  # fmt: skip

    async def restart_after_cancel() -> list[str]:
        conn = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
        async with conn:
            await matcher_store.ensure_schema_async(conn)
            engine = await matcher_store.load_engine(conn, dedupe_orders=True)
            for ev in (accepted, cancel):  # two batches: the order rests, then its cancel is applied
                out = engine.apply_batch([ev], set(), 1.0)
                await matcher_store.save_batch(conn, engine, out, {}, keep_cancelled=bug_on)
            restarted = await matcher_store.load_engine(conn, dedupe_orders=True)
        return [o.order_id for o in restarted.book("AAPL").resting_orders()]

    assert asyncio.run(restart_after_cancel()) == (["b1"] if bug_on else [])


@pytest.fixture
def system(pg_dsn: str, kafka: Any) -> Iterator[dict[str, Any]]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    init_system(pg_dsn, kafka.bootstrap, prefix, kafka=kafka)
    yield {"dsn": pg_dsn, "bootstrap": kafka.bootstrap, "prefix": prefix, "topics": topic_names(prefix)}


def _post(url: str, key: str, body: dict[str, Any], attempt: int) -> int:
    req = urllib.request.Request(
        f"{url}/orders",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key, ATTEMPT_HEADER: str(attempt)},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@ON_OFF
def test_gateway_retry_stale_copy_stores_a_retry_from_the_clients_previous_order(
    system: dict[str, Any], bug_on: bool
) -> None:
    first = {"client_id": "c1", "symbol": "IBM", "side": "sell", "qty": 5, "price": "99.5"}
    retried = {"client_id": "c1", "symbol": "MSFT", "side": "buy", "qty": 7, "price": "101.25"}
    bugs = "gateway_retry_stale_copy" if bug_on else ""
    with GatewayProcess(
        dsn=system["dsn"], bootstrap=system["bootstrap"], topic_prefix=system["prefix"], bugs=bugs
    ) as gw:
        assert _post(gw.url, "k1", first, attempt=1) == 201
        # the second order's first attempt went to a replica that died; this is its retry
        assert _post(gw.url, "k2", retried, attempt=2) == 201
    with psycopg.connect(system["dsn"]) as conn:
        row = conn.execute(
            "SELECT symbol, side, qty, price FROM orders WHERE idempotency_key = 'k2'"
        ).fetchone()
    if bug_on:
        assert row == ("IBM", "sell", 7, Decimal("99.5"))  # only the quantity came from the body
    else:
        assert row == ("MSFT", "buy", 7, Decimal("101.25"))


@ON_OFF
def test_gateway_sheds_after_write_refuses_an_order_it_already_wrote_while_the_outbox_lags(
    system: dict[str, Any], bug_on: bool
) -> None:
    order = {"client_id": "c1", "symbol": "IBM", "side": "buy", "qty": 5, "price": "99.5"}
    bugs = "gateway_sheds_after_write" if bug_on else ""
    with psycopg.connect(system["dsn"], autocommit=True) as lag:
        # an outbox row written 5 s ago that the relay cannot claim (it skips locked rows): the outbox lags
        lag.execute(
            "INSERT INTO outbox (event_id, event_type, topic, key, payload, created_at) "
            "VALUES (%s, 'Probe', %s, 'k', '{}', clock_timestamp() - interval '5 seconds')",
            (str(uuid.uuid4()), system["topics"].orders),
        )
        with lag.transaction():
            lag.execute("SELECT 1 FROM outbox WHERE event_type = 'Probe' FOR UPDATE")
            with GatewayProcess(
                dsn=system["dsn"], bootstrap=system["bootstrap"], topic_prefix=system["prefix"], bugs=bugs
            ) as gw:
                statuses = [_post(gw.url, "k1", order, attempt=n) for n in (1, 2)]
        stored = lag.execute("SELECT count(*) FROM orders WHERE idempotency_key = 'k1'").fetchone()
    assert stored == (1,)  # written either way, and once
    assert statuses == ([503, 503] if bug_on else [201, 200])
