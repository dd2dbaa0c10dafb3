"""Postgres helpers for the paperbroker gateway: the schema, connections and the async pool.

The gateway schema (``gateway_schema.sql``: ``orders``, ``order_idempotency``, ``outbox``, ``rfqs``) is
idempotent and applied under a transaction-level advisory lock, so several replicas (and
``paperbroker.system.init_system``) may apply it at the same time. The async pool is built to survive a
Postgres restart: broken connections are discarded when returned, and :func:`make_pool` opens without
waiting so a gateway can start while the database is still down.
"""

from __future__ import annotations

import time
from importlib import resources

import psycopg
from psycopg_pool import AsyncConnectionPool

SCHEMA_LOCK_KEY = 0x5042_4757  # "PBGW": serialises concurrent schema creation
CONNECT_TIMEOUT_S = 3


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
    """Open a synchronous connection with a short connect timeout."""
    return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)


async def connect_async(dsn: str, *, autocommit: bool = False) -> psycopg.AsyncConnection:
    """Open an async connection with a short connect timeout."""
    return await psycopg.AsyncConnection.connect(
        dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S
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


def make_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeout_s: float = 2.0,
    connect_timeout_s: int | None = CONNECT_TIMEOUT_S,
) -> AsyncConnectionPool:
    """Build (not open) an AsyncConnectionPool for the gateway; its connections are in autocommit mode.

    ``timeout_s`` bounds how long a request waits for a connection, so a database outage turns into a
    quick 503 rather than a hung request. Open it with ``await pool.open(wait=False)``.
    ``connect_timeout_s=None`` leaves libpq's default (the seeded bug ``no_connect_timeout``).
    """
    kwargs: dict[str, object] = {"autocommit": True}
    if connect_timeout_s is not None:
        kwargs["connect_timeout"] = connect_timeout_s
    return AsyncConnectionPool(
        dsn,
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
