"""Integration tests of paperbroker's database deadlines behind a partition that swallows bytes.

A :class:`resgate.local.faultproxy.FaultProxy` sits between the client and the embedded Postgres; its
``blackhole`` toxic is the ``hang`` partition (bytes are acknowledged and dropped, the connection stays
open), which no socket option notices. :func:`paperbroker.db.bounded` must end the call at its deadline
without asking the server anything, and the outbox relay must drain again once the path is back.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from paperbroker import db
from paperbroker.relay import OutboxRelay
from paperbroker.system import GatewayProcess, init_system
from resgate.local.faultproxy import FaultProxy, dsn_address, proxied_dsn
from resgate.local.toxics import Toxics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def hang_path(pg_dsn: str) -> Iterator[tuple[str, Toxics]]:
    """(DSN through a fault proxy, its toxics)."""
    toxics = Toxics("pg", seed=1)
    proxy = FaultProxy(dsn_address(pg_dsn), toxics=toxics, name="pg-proxy")
    proxy.start()
    try:
        yield proxied_dsn(pg_dsn, proxy.address), toxics
    finally:
        toxics.clear()
        proxy.stop()


def test_a_bounded_call_behind_a_hang_partition_fails_at_its_deadline_and_closes_the_connection(
    hang_path: tuple[str, Toxics],
) -> None:
    dsn, toxics = hang_path

    async def scenario() -> tuple[float, bool, type[BaseException] | None]:
        conn = await db.connect_async(dsn, autocommit=True)
        await conn.execute("SELECT 1")
        toxics.add("hang", blackhole=True)
        t0 = time.monotonic()
        caught: type[BaseException] | None = None
        try:
            async with db.bounded(conn, 0.5, "probe"):
                await conn.execute("SELECT 1")
        except db.DeadlineExceeded as e:
            caught = type(e)
        took = time.monotonic() - t0
        closed = conn.closed
        await conn.close()
        return took, closed, caught

    took, closed, caught = asyncio.run(scenario())
    assert caught is db.DeadlineExceeded
    assert 0.5 <= took < 1.5, took  # no cancel request, no wait for the server
    assert closed


def test_a_bounded_call_that_answers_in_time_is_untouched(pg_dsn: str) -> None:
    async def scenario() -> int:
        async with await db.connect_async(pg_dsn, autocommit=True) as conn:
            async with db.bounded(conn, 5.0):
                cur = await conn.execute("SELECT 41 + 1")
                row = await cur.fetchone()
            await asyncio.sleep(0.1)
            cur = await conn.execute("SELECT 1")  # the connection is still usable after the block
            await cur.fetchone()
            assert row is not None
            return int(row[0])

    assert asyncio.run(scenario()) == 42


def test_no_deadline_leaves_the_call_alone(pg_dsn: str) -> None:
    async def scenario() -> None:
        async with await db.connect_async(pg_dsn, autocommit=True) as conn, db.bounded(conn, None):
            await conn.execute("SELECT pg_sleep(0.2)")

    asyncio.run(scenario())


def test_the_relay_drains_the_outbox_again_after_a_hang_partition(
    pg_dsn: str, hang_path: tuple[str, Toxics], kafka_bootstrap: str, new_topic
) -> None:
    dsn, toxics = hang_path
    topic = new_topic(partitions=3)
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        db.ensure_gateway_schema(c)

    def add_rows(n: int) -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            for i in range(n):
                c.execute(
                    "INSERT INTO outbox (event_id, event_type, topic, key, payload)"
                    " VALUES (gen_random_uuid(), 'Test', %s, %s, %s)",
                    (topic, f"k{i % 3}", '{"type": "Test"}'),
                )

    def unsent() -> int:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            row = c.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
            assert row is not None
            return int(row[0])

    async def wait_drained(timeout_s: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if await asyncio.to_thread(unsent) == 0:
                return time.monotonic() - t0
            await asyncio.sleep(0.1)
        left = await asyncio.to_thread(unsent)
        raise AssertionError(f"outbox not drained within {timeout_s}s: {left} unsent")

    async def scenario() -> float:
        relay = OutboxRelay(dsn, kafka_bootstrap, name="t", db_deadline_s=1.0)
        await relay.start()
        try:
            await asyncio.to_thread(add_rows, 20)
            await wait_drained(20)
            toxics.add("hang", blackhole=True)  # the relay's next claim is swallowed
            await asyncio.sleep(0.5)
            await asyncio.to_thread(add_rows, 20)
            await asyncio.sleep(2.0)
            toxics.remove("hang")
            return await wait_drained(20)
        finally:
            await relay.stop()

    drained_after_heal_s = asyncio.run(scenario())
    assert drained_after_heal_s < 10, drained_after_heal_s


def _post_order(url: str, key: str, timeout_s: float) -> int:
    """POST one order; its HTTP status, or 0 when no answer came within ``timeout_s``."""
    body = {"client_id": "c-deadline", "symbol": "AAPL", "side": "buy", "qty": 1, "price": "100.00"}
    req = urllib.request.Request(
        f"{url}/orders",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def test_a_gateway_behind_a_hang_partition_answers_503_within_its_deadline_and_takes_orders_after_it(
    pg_dsn: str, hang_path: tuple[str, Toxics], kafka: Any
) -> None:
    dsn, toxics = hang_path
    prefix = f"t{uuid.uuid4().hex[:10]}"
    init_system(pg_dsn, kafka.bootstrap, prefix, kafka=kafka)
    with GatewayProcess(dsn=dsn, bootstrap=kafka.bootstrap, topic_prefix=prefix) as gw:
        assert _post_order(gw.url, "k-before", 10) == 201
        toxics.add("hang", blackhole=True)
        t0 = time.monotonic()
        during = [_post_order(gw.url, f"k-during-{i}", 10) for i in range(3)]
        took = time.monotonic() - t0
        assert during == [503, 503, 503], during
        assert took < 3 * 5.0, took  # pool wait (1.5 s) + the request deadline (3 s) at most, each
        toxics.remove("hang")
        deadline = time.monotonic() + 15
        status = 0
        while time.monotonic() < deadline and status != 201:
            status = _post_order(gw.url, "k-after", 5)
            time.sleep(0.2)
        assert status == 201, f"no order taken within 15 s of the heal (last status {status})"
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            for _ in range(100):  # the relay publishes again: the outbox drains
                row = c.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
                if row is not None and row[0] == 0:
                    break
                time.sleep(0.1)
            assert row is not None and row[0] == 0, f"{row} outbox rows unsent 10 s after the heal"
