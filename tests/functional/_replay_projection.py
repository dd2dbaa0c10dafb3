"""A tiny read model for the replay Lambda's tests: ``orders_rm(order_id, client_id, qty)`` from the
``OrderAccepted`` events of a topic, one row per order id (redeliveries count once).

``rebuild(conn, schema, end_offsets, *, bootstrap)`` is the rebuild callable the replay checker calls; it
reads every partition from offset 0 to its end offset.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.topics import consume_until

DDL = (
    "CREATE TABLE IF NOT EXISTS {} (order_id text PRIMARY KEY, client_id text NOT NULL, qty bigint NOT NULL)"
)


def create_table(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL(DDL).format(sql.Identifier(schema, "orders_rm")))


def apply(conn: psycopg.Connection[Any], schema: str, events: list[dict[str, Any]]) -> None:
    """Project events into ``<schema>.orders_rm``."""
    rows = [(e["order_id"], e["client_id"], e["qty"]) for e in events if e.get("type") == "OrderAccepted"]
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT (order_id) DO NOTHING").format(
                sql.Identifier(schema, "orders_rm")
            ),
            rows,
        )


def rebuild(
    conn: psycopg.Connection[Any], schema: str, end_offsets: dict[str, dict[int, int]], *, bootstrap: str
) -> None:
    create_table(conn, schema)
    ranges = {t: {int(p): (0, int(e)) for p, e in ps.items()} for t, ps in end_offsets.items()}

    async def read() -> list[dict[str, Any]]:
        out = []
        async for batch in consume_until(bootstrap, ranges, timeout_s=60):
            out.extend(json.loads(m.value) for m in batch)
        return out

    apply(conn, schema, asyncio.run(read()))
