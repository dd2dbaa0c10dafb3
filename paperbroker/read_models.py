"""The read models of paperbroker as tables: their names and keys, their DDL in any schema, and a comparison.

Four read models (``rm_orders`` order blotter, ``rm_trades`` trade blotter, ``rm_market`` best bid/ask
and last trade per symbol, ``rm_positions`` net quantity and cash per client and symbol), the helper
table ``rm_market_levels`` (resting quantity per price level), ``processed_events`` (which projector
applied which event) and ``consumed_offsets`` (each record's topic, partition and offset, the first time
the live projector's group consumed it, in consumption order ``seq``) live in one Postgres schema:
``public`` for the live projector, a shadow schema for
a rebuild. :func:`ensure_schema` creates them idempotently under an advisory lock, so replicas may run
it at once; :func:`compare_schemas` tells whether two schemas hold the same rows (count and an
order-independent checksum per table), which is what the replay check asks of a rebuild.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from resgate.contract.errors import ConfigError

SCHEMA_LOCK_KEY = 0x5042_5052  # "PBPR": serialises concurrent DDL of the read models

#: Read-model tables and their primary-key columns (the replay check compares these).
READ_MODELS: dict[str, tuple[str, ...]] = {
    "rm_orders": ("order_id",),
    "rm_trades": ("trade_id",),
    "rm_market": ("symbol",),
    "rm_positions": ("client_id", "symbol"),
}
#: Helper tables a rebuild also produces (comparable too, but not read models of their own).
AUX_TABLES: dict[str, tuple[str, ...]] = {"rm_market_levels": ("symbol", "side", "price")}

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.rm_orders (
    order_id      text PRIMARY KEY,
    client_id     text,
    symbol        text,
    side          text,
    qty           bigint,
    price         numeric(20, 6),
    filled_qty    bigint NOT NULL DEFAULT 0,
    status        text NOT NULL,
    last_event_ts double precision
);
CREATE TABLE IF NOT EXISTS {s}.rm_trades (
    trade_id       text PRIMARY KEY,
    symbol         text NOT NULL,
    seq            bigint NOT NULL,
    buy_order_id   text NOT NULL,
    sell_order_id  text NOT NULL,
    buy_client_id  text NOT NULL,
    sell_client_id text NOT NULL,
    qty            bigint NOT NULL,
    price          numeric(20, 6) NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.rm_market (
    symbol     text PRIMARY KEY,
    best_bid   numeric(20, 6),
    best_ask   numeric(20, 6),
    last_price numeric(20, 6),
    last_qty   bigint,
    last_seq   bigint
);
CREATE TABLE IF NOT EXISTS {s}.rm_market_levels (
    symbol text NOT NULL,
    side   text NOT NULL,
    price  numeric(20, 6) NOT NULL,
    qty    bigint NOT NULL,
    PRIMARY KEY (symbol, side, price)
);
CREATE TABLE IF NOT EXISTS {s}.rm_positions (
    client_id text NOT NULL,
    symbol    text NOT NULL,
    net_qty   bigint NOT NULL DEFAULT 0,
    cash      numeric(30, 6) NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, symbol)
);
CREATE TABLE IF NOT EXISTS {s}.processed_events (
    projector text NOT NULL,
    event_id  text NOT NULL,
    PRIMARY KEY (projector, event_id)
);
CREATE TABLE IF NOT EXISTS {s}.consumed_offsets (
    seq         bigserial NOT NULL,
    topic       text NOT NULL,
    "partition" int NOT NULL,
    "offset"    bigint NOT NULL,
    PRIMARY KEY (topic, "partition", "offset")
);
"""


# ------------------------------------------------------------------------------------------ schema
def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a plain lower-case identifier; ConfigError otherwise."""
    if not isinstance(schema, str) or not _SCHEMA_RE.match(schema):
        raise ConfigError(f"not a plain schema name: {schema!r}", where="schema")
    return schema


def schema_ddl(schema: str = "public") -> sql.Composed:
    """The idempotent DDL of the read models (and ``processed_events``) in ``schema``."""
    return sql.SQL(DDL).format(s=sql.Identifier(check_schema_name(schema)))


def ensure_schema(conn: psycopg.Connection, schema: str = "public") -> None:
    """Create the read-model tables in ``schema`` if missing (idempotent, concurrency-safe); commits."""
    ddl = schema_ddl(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(ddl)
    if not conn.autocommit:
        conn.commit()


async def ensure_schema_async(conn: psycopg.AsyncConnection, schema: str = "public") -> None:
    """Async :func:`ensure_schema`."""
    ddl = schema_ddl(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        await conn.execute(ddl)
    if not conn.autocommit:
        await conn.commit()


# ------------------------------------------------------------------------------------------ comparison
def table_fingerprint(conn: psycopg.Connection, schema: str, table: str) -> tuple[int, int]:
    """Order-independent ``(row count, sum of hashtext(row text))`` of ``schema.table``."""
    q = sql.SQL("SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {} t").format(
        sql.Identifier(check_schema_name(schema), table)
    )
    row = conn.execute(q).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def compare_schemas(
    conn: psycopg.Connection, live: str, shadow: str, tables: Iterable[str] = READ_MODELS
) -> dict[str, dict[str, Any]]:
    """Compare read models of two schemas: ``{table: {live: (n, sum), shadow: (n, sum), equal: bool}}``."""
    out: dict[str, dict[str, Any]] = {}
    for t in tables:
        a, b = table_fingerprint(conn, live, t), table_fingerprint(conn, shadow, t)
        out[t] = {"live": a, "shadow": b, "equal": a == b}
    return out
