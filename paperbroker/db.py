"""Postgres helpers for the paperbroker gateway: the schema, connections, the async pool and deadlines.

The gateway schema (``gateway_schema.sql``: ``orders``, ``order_idempotency``, ``outbox``, ``rfqs``) is
idempotent and applied under a transaction-level advisory lock, so several replicas (and
``paperbroker.system.init_system``) may apply it at the same time. The async pool is built to survive a
Postgres restart: broken connections are discarded when returned, and :func:`make_pool` opens without
waiting so a gateway can start while the database is still down.

**Deadlines** (:func:`bounded`): a partition that swallows bytes never fails a call on its own, and
neither TCP keepalives nor ``tcp_user_timeout`` notice it when something on the path acknowledges the
bytes (a proxy, a hung server). Cancelling the waiting coroutine is no way out either: psycopg then asks
the server to cancel the query over a new connection and waits for the answer (up to 10 s in psycopg 3.3,
both through the same partition). So at a deadline :func:`sever` shuts the socket down instead
(``shutdown``, asking nothing of the server): the call waiting on it fails at once with
:class:`DeadlineExceeded`, the connection is closed, and the caller reconnects. Every connection also
carries keepalives and ``tcp_user_timeout`` (:data:`TCP_OPTIONS`) for the partitions the kernel can see.

**Heals** (:class:`Heals`): when a database that had stopped answering answers a fresh probe again, a call
or a connection attempt sent before that probe began and still waiting was sent into the outage: in a
partition that swallows bytes it will never get its answer, and until its deadline it holds a pool slot
(or one of the pool's few maintenance workers) while requests sent after the heal wait for one. So at the
heal, a :func:`bounded` block begun before the probe is severed at once (its request answers 503, its
slot is freed and refilled by a new connection), and a pool connection attempt begun before it starts
afresh (:func:`make_pool` with ``heals``). Measured after a 30 s blackhole (benchmarks/resilience
``partition-db-30s``): without this, requests sent up to a second after the heal waited 1.5 s for a
pooled connection and failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("paperbroker.db")

SCHEMA_LOCK_KEY = 0x5042_4757  # "PBGW": serialises concurrent schema creation
CONNECT_TIMEOUT_S = 3
# Kernel-level detection of a dead peer (unacknowledged data, silent keepalives): libpq parameters.
TCP_OPTIONS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms
}


CHECK_DEADLINE_S = 1.0  # a pooled connection's health check (BoundedPool)
MAX_FRESH_STARTS = 3  # a pool connection attempt starts afresh at most this often (one per heal)


class DeadlineExceeded(psycopg.OperationalError):
    """The database did not answer within a deadline; the connection was severed and is unusable."""


def sever(conn: psycopg.AsyncConnection | psycopg.Connection) -> None:
    """Shut ``conn``'s socket down both ways, now, without a word to the server: a call waiting on it
    fails at once (``OperationalError``) and the connection is broken. No-op on a closed connection."""
    if conn.closed:
        return
    with contextlib.suppress(psycopg.Error, OSError, ValueError):
        fd = conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as s:
            s.shutdown(socket.SHUT_RDWR)


class Heals:
    """The heals of one process's database: :meth:`subscribe` a callback for the next heal, and
    :meth:`healed` calls the callbacks subscribed before the probe that saw the database answer again
    began (those after it were sent into a path that already worked). One event loop; not thread-safe."""

    def __init__(self) -> None:
        self._waiting: dict[int, tuple[float, Callable[[], None]]] = {}
        self._keys = itertools.count()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` at the next heal whose probe began after now; returns the unsubscribe call."""
        key = next(self._keys)
        self._waiting[key] = (time.monotonic(), callback)

        def unsubscribe() -> None:
            self._waiting.pop(key, None)

        return unsubscribe

    def healed(self, probe_started: float) -> int:
        """The database answered a probe begun at ``probe_started`` (monotonic) after an outage: call every
        callback subscribed before it; returns how many."""
        stranded = [k for k, (t, _) in self._waiting.items() if t < probe_started]
        for key in stranded:
            _, callback = self._waiting.pop(key)
            callback()
        return len(stranded)


@contextlib.asynccontextmanager
async def bounded(
    conn: psycopg.AsyncConnection,
    seconds: float | None,
    what: str = "database call",
    *,
    heals: Heals | None = None,
) -> AsyncIterator[None]:
    """Bound the database work in the block to ``seconds``: when it runs out, :func:`sever` ``conn`` and
    raise :class:`DeadlineExceeded` (naming ``what``) from the failure that caused. With ``heals``, the same
    at a heal of the database (the block was sent into the outage). ``None``: no deadline, nor heal."""
    if seconds is None:
        yield
        return
    fired: str | None = None

    def fire(why: str) -> None:
        nonlocal fired
        if fired is None:
            fired = why
            sever(conn)

    handle = asyncio.get_running_loop().call_later(seconds, fire, f"no answer within {seconds:g}s")
    unsubscribe = heals.subscribe(lambda: fire("sent into an outage that has healed")) if heals else None
    try:
        yield
    except psycopg.Error as e:
        if fired:
            raise DeadlineExceeded(f"{what}: {fired}, connection closed") from e
        raise
    finally:
        handle.cancel()
        if unsubscribe is not None:
            unsubscribe()
    if fired:  # the block finished without touching the severed connection again
        raise DeadlineExceeded(f"{what}: {fired}, connection closed")


def gateway_schema_sql() -> str:
    """Return the text of ``paperbroker/gateway_schema.sql``."""
    return resources.files("paperbroker").joinpath("gateway_schema.sql").read_text(encoding="utf-8")


def ensure_gateway_schema(conn: psycopg.Connection) -> None:
    """Create the gateway tables if missing, on a synchronous connection; commits."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(gateway_schema_sql())
    if not conn.autocommit:
        conn.commit()


async def ensure_gateway_schema_async(conn: psycopg.AsyncConnection) -> None:
    """Create the gateway tables if missing, on an async connection; commits."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        await conn.execute(gateway_schema_sql())
    if not conn.autocommit:
        await conn.commit()


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a synchronous connection with a short connect timeout and :data:`TCP_OPTIONS`."""
    return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, **TCP_OPTIONS)


async def connect_async(dsn: str, *, autocommit: bool = False, **params: object) -> psycopg.AsyncConnection:
    """Open an async connection with a short connect timeout, :data:`TCP_OPTIONS` and ``params`` (more
    libpq parameters, e.g. ``options``)."""
    return await psycopg.AsyncConnection.connect(
        dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, **{**TCP_OPTIONS, **params}
    )


def wait_for_db(dsn: str, timeout_s: float = 30.0) -> None:
    """Block until ``SELECT 1`` succeeds on ``dsn``; raise TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.Error as e:
            last = e
            time.sleep(0.2)
    raise TimeoutError(f"database not reachable within {timeout_s}s: {last}")


class BoundedPool(AsyncConnectionPool):
    """An AsyncConnectionPool whose :meth:`check` gives each idle connection :data:`CHECK_DEADLINE_S` to
    answer (:func:`bounded`): behind a partition the check discards it instead of hanging."""

    @staticmethod
    async def check_connection(conn: psycopg.AsyncConnection) -> None:
        async with bounded(conn, CHECK_DEADLINE_S, "pool check"):
            await AsyncConnectionPool.check_connection(conn)


def heal_aware_connection(heals: Heals) -> type[psycopg.AsyncConnection]:
    """An AsyncConnection class whose ``connect`` starts afresh (at most :data:`MAX_FRESH_STARTS` times)
    when the database heals while it connects: an attempt begun inside a partition that swallows bytes
    never finishes, and the pool's maintenance workers (three) would wait on it up to the connect timeout
    while requests sent after the heal wait for a connection."""

    class HealAwareConnection(psycopg.AsyncConnection):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            for _ in range(MAX_FRESH_STARTS):
                restart = asyncio.Event()
                attempt = asyncio.ensure_future(super().connect(conninfo, **kwargs))
                waiter = asyncio.ensure_future(restart.wait())
                unsubscribe = heals.subscribe(restart.set)
                try:
                    await asyncio.wait({attempt, waiter}, return_when=asyncio.FIRST_COMPLETED)
                except BaseException:
                    attempt.cancel()
                    raise
                finally:
                    waiter.cancel()
                    unsubscribe()
                if attempt.done():
                    return attempt.result()
                attempt.cancel()  # sent into the outage: its bytes are gone
                log.info("a connection attempt begun before the database healed starts afresh")
            return await super().connect(conninfo, **kwargs)

    return HealAwareConnection


def make_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeout_s: float = 2.0,
    connect_timeout_s: int | None = CONNECT_TIMEOUT_S,
    heals: Heals | None = None,
) -> AsyncConnectionPool:
    """Build (not open) an AsyncConnectionPool for the gateway; its connections are in autocommit mode.

    ``timeout_s`` bounds how long a request waits for a connection, so a database outage turns into a
    quick 503 rather than a hung request. Open it with ``await pool.open(wait=False)``.
    ``connect_timeout_s=None`` leaves libpq's default (the seeded bug ``no_connect_timeout``). With
    ``heals``, a connection attempt begun before a heal starts afresh at it (:func:`heal_aware_connection`).
    """
    kwargs: dict[str, object] = {"autocommit": True, **TCP_OPTIONS}
    if connect_timeout_s is not None:
        kwargs["connect_timeout"] = connect_timeout_s
    return BoundedPool(
        dsn,
        connection_class=heal_aware_connection(heals) if heals is not None else psycopg.AsyncConnection,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        open=False,
        kwargs=kwargs,
        # give up a failed (re)connection quickly: the pool then shrinks and grows again on demand, so
        # recovery after a Postgres restart is not delayed by a long exponential backoff
        reconnect_timeout=2.0,
        max_idle=60,
        name="paperbroker",
    )
