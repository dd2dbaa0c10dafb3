"""Integration test: a gateway under a stream of requests serves at once when a Postgres blackhole heals.

The network rehearsal (tests/rehearsal) judges a fault from its lift: after FIS's 3 s
``aws:ecs:task-network-blackhole-port`` on the gateway's Postgres port, the requests sent in the 10 s after
the lift must fail no more often than before the fault. Here a real gateway replica
(:class:`paperbroker.system.GatewayProcess`) talks to the embedded Postgres through a
:class:`resgate.local.faultproxy.FaultProxy`; a few clients send orders and read them back (as the load's
traders do, with the load's 3 s client timeout) while the proxy swallows every byte toward Postgres for
3 s (``blackhole`` upstream: the egress blackhole FIS runs), and the requests sent after the heal are
counted. Two smaller tests pin what a heal ends (:class:`paperbroker.db.Heals`): a call sent into the
blackhole, and a pool connection attempt begun in it, neither of which could ever get its answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from paperbroker import db
from paperbroker.system import GatewayProcess, init_system
from resgate.local.faultproxy import FaultProxy, dsn_address, proxied_dsn
from resgate.local.toxics import Toxics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CLIENTS = 12
CLIENT_TIMEOUT_S = 3.0  # the load's network timeout (loadgen.load_config)
PAUSE_S = 0.05  # between one client's requests
WARM_S = 2.0
BLACKHOLE_S = 3.0
AFTER_S = 10.0


@dataclass(frozen=True)
class Sent:
    """One request: when it was sent and answered (monotonic seconds), what, and its HTTP status (0: no
    answer within the client timeout, or the connection failed)."""

    start: float
    end: float
    what: str
    status: int
    error: str = ""


@pytest.fixture
def pg_path(pg_dsn: str) -> Iterator[tuple[str, Toxics]]:
    """(DSN through a fault proxy, its toxics)."""
    toxics = Toxics("pg", seed=1)
    proxy = FaultProxy(dsn_address(pg_dsn), toxics=toxics, name="pg-proxy")
    proxy.start()
    try:
        yield proxied_dsn(pg_dsn, proxy.address), toxics
    finally:
        toxics.clear()
        proxy.stop()


async def _client(n: int, url: str, stop_at: float, out: list[Sent]) -> None:
    """Send an order, read the last order taken back (a read asks the pool for a connection even while
    the database is down, as the load's traders' reads do), pause; until ``stop_at``. Every request is
    recorded."""
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        i, last = 0, ""
        while time.monotonic() < stop_at:
            i += 1
            body = {"client_id": f"c{n}", "symbol": "AAPL", "side": "buy", "qty": 1, "price": "100.00"}
            headers = {"Idempotency-Key": f"k{n}-{i}-{uuid.uuid4().hex[:6]}"}
            status, order = await _send(session, "POST", f"{url}/orders", out, json=body, headers=headers)
            last = str(order.get("order_id") or "") if status == 201 else last
            if last:
                await _send(session, "GET", f"{url}/orders/{last}", out)
            await asyncio.sleep(PAUSE_S)


async def _send(
    session: aiohttp.ClientSession, method: str, url: str, out: list[Sent], **kw: Any
) -> tuple[int, dict[str, Any]]:
    t0 = time.monotonic()
    status, body, error = 0, {}, ""
    try:
        async with session.request(method, url, **kw) as r:
            status = r.status
            raw = await r.read()
            body = json.loads(raw) if raw else {}
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        error = f"{type(e).__name__}: {e}"
    if status not in (0, 200, 201):
        error = str(body.get("message", ""))
    out.append(Sent(t0, time.monotonic(), method, status, error))
    return status, body


def _run_through_blackhole(url: str, toxics: Toxics) -> tuple[float, list[Sent]]:
    """Clients for WARM_S, a blackhole toward Postgres for BLACKHOLE_S, clients for AFTER_S after it;
    returns (the heal's monotonic time, every request)."""
    out: list[Sent] = []

    async def scenario() -> float:
        stop_at = time.monotonic() + WARM_S + BLACKHOLE_S + AFTER_S
        clients = [asyncio.create_task(_client(n, url, stop_at, out)) for n in range(CLIENTS)]
        await asyncio.sleep(WARM_S)
        toxics.add("blackhole", "upstream", blackhole=True)
        await asyncio.sleep(BLACKHOLE_S)
        toxics.remove("blackhole")
        healed = time.monotonic()
        await asyncio.gather(*clients)
        return healed

    healed = asyncio.run(scenario())
    return healed, out


def test_a_gateway_fails_almost_no_request_sent_in_the_10s_after_a_3s_postgres_blackhole_heals(
    pg_dsn: str, pg_path: tuple[str, Toxics], kafka: Any, tmp_path: Path
) -> None:
    """Measured on 2026-12-07 with 6 and 12 clients (1,800 to 3,700 requests after the heal): before the
    fix 27, 49, 32 and 73 requests failed (1.0 to 3.3 %), every one a 503 "database unavailable:
    TimeoutError" within 0.3 s of the heal: the health probe's connection attempt, begun inside the
    partition, could not finish after it, so the replica refused requests on a stale "down". After it, 0 in
    each run. The bound leaves room for a loaded machine (a fresh connection slower than a probe's
    deadline) and is still half the recovery check's 1 % tolerance."""
    dsn, toxics = pg_path
    prefix = f"t{uuid.uuid4().hex[:10]}"
    init_system(pg_dsn, kafka.bootstrap, prefix, kafka=kafka)
    log = tmp_path / "gateway.log"
    with GatewayProcess(dsn=dsn, bootstrap=kafka.bootstrap, topic_prefix=prefix, log_path=str(log)) as gw:
        healed, sent = _run_through_blackhole(gw.url, toxics)
    before = [s for s in sent if s.end < healed - BLACKHOLE_S]
    after = [s for s in sent if healed <= s.start < healed + AFTER_S]
    failed = [s for s in after if s.status not in (200, 201)]
    first_ok = min((s.start - healed for s in after if s.status in (200, 201)), default=None)
    why = Counter((s.status, s.error) for s in failed)
    late = max((round(s.start - healed, 2) for s in failed), default=None)
    print(
        f"before the blackhole: {len(before)} requests, {sum(s.status not in (200, 201) for s in before)} "
        f"failed; sent in the {AFTER_S:g} s after the heal: {len(failed)} of {len(after)} failed "
        f"(the last sent {late} s after the heal: {dict(why)}); first ok sent {first_ok} s after the heal"
    )
    assert before and all(s.status in (200, 201) for s in before), before
    assert len(after) >= 200, len(after)
    assert len(failed) * 200 <= len(after), (dict(why), log.read_text()[-4000:])


def test_a_call_sent_into_a_blackhole_ends_at_the_heal_not_at_its_deadline(
    pg_path: tuple[str, Toxics],
) -> None:
    """Its bytes are gone: waiting for its 3 s deadline would hold a pool slot after the heal."""
    dsn, toxics = pg_path

    async def scenario() -> tuple[float, str, bool]:
        heals = db.Heals()
        conn = await db.connect_async(dsn, autocommit=True)
        toxics.add("blackhole", "upstream", blackhole=True)

        async def call() -> str:
            try:
                async with db.bounded(conn, 3.0, "request", heals=heals):
                    await conn.execute("SELECT 1")
            except db.DeadlineExceeded as e:
                return str(e)
            return "answered"

        task = asyncio.create_task(call())
        await asyncio.sleep(0.3)
        toxics.remove("blackhole")
        t0 = time.monotonic()
        heals.healed(probe_started=time.monotonic())
        why = await task
        took = time.monotonic() - t0
        closed = conn.closed
        await conn.close()
        return took, why, closed

    took, why, closed = asyncio.run(scenario())
    assert why == "request: sent into an outage that has healed, connection closed"
    assert took < 1.0, took
    assert closed


def test_a_pool_connection_attempt_begun_in_a_blackhole_starts_afresh_at_the_heal(
    pg_path: tuple[str, Toxics],
) -> None:
    """libpq's connect timeout (3 s here) would end it only long after the heal; the fresh start answers
    at once, and the connection works."""
    dsn, toxics = pg_path

    async def scenario() -> tuple[float, int]:
        heals = db.Heals()
        cls = db.heal_aware_connection(heals)
        toxics.add("blackhole", "upstream", blackhole=True)
        task = asyncio.create_task(cls.connect(dsn, autocommit=True, connect_timeout=db.CONNECT_TIMEOUT_S))
        await asyncio.sleep(0.3)
        assert not task.done()
        toxics.remove("blackhole")
        t0 = time.monotonic()
        heals.healed(probe_started=time.monotonic())
        conn = await task
        took = time.monotonic() - t0
        async with conn:
            cur = await conn.execute("SELECT 7")
            row = await cur.fetchone()
        assert row is not None
        return took, int(row[0])

    took, seven = asyncio.run(scenario())
    assert seven == 7
    assert took < 1.0, took
