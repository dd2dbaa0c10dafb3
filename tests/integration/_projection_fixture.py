"""A tiny projection for the replay tests: account balances from deposit/withdrawal events.

Events (JSON): ``{event_id, type: "Deposited" | "Withdrawn", account, currency, amount}``. The read model
``balances(account PK, currency, balance, deposits, withdrawals)`` is built by streaming the events into
a staging table with COPY and aggregating in SQL (so it is order-independent and holds nothing in Python
memory). Variants, as rebuild callables ``fn(conn, schema, end_offsets, *, bootstrap)``:

- :func:`rebuild_correct` — the real projection;
- :func:`rebuild_drops_eur` — forgets a row class: accounts held in EUR are missing;
- :func:`rebuild_drops_currency` — forgets a field: ``currency`` stays NULL.

Run as a command (``python _projection_fixture.py <variant>``) it reads the replay environment variables;
the variant ``fail`` exits 3 with a message on stderr, ``hang`` sleeps forever.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.sqlutil import CopyBuffer
from resgate.checks.topics import consume_until

DDL = (
    "CREATE TABLE IF NOT EXISTS {t} (account text PRIMARY KEY, currency text, balance numeric NOT NULL, "
    "deposits bigint NOT NULL, withdrawals bigint NOT NULL)"
)


def create_table(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL(DDL).format(t=sql.Identifier(schema, "balances")))


def _project(
    conn: psycopg.Connection[Any],
    schema: str,
    end_offsets: dict[str, dict[int, int]],
    bootstrap: str,
    *,
    skip_currency: str | None = None,
    keep_currency: bool = True,
) -> None:
    create_table(conn, schema)
    stage = sql.Identifier(schema, "_events")
    conn.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE {} (event_id text, type text, account text, currency text, amount numeric)"
        ).format(stage)
    )

    async def load() -> None:
        buf = CopyBuffer()
        ranges = {t: {int(p): (0, int(e)) for p, e in ps.items()} for t, ps in end_offsets.items()}
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {} (event_id, type, account, currency, amount) FROM STDIN").format(stage)
            ) as cp,
        ):
            async for batch in consume_until(bootstrap, ranges):
                for m in batch:
                    e = json.loads(m.value.decode())
                    if e.get("currency") == skip_currency:
                        continue
                    if buf.add((e["event_id"], e["type"], e["account"], e["currency"], e["amount"])):
                        cp.write(buf.take())
            cp.write(buf.take())

    asyncio.run(load())
    currency = sql.SQL("min(currency)") if keep_currency else sql.SQL("NULL")
    # Redelivered events (same event_id) count once.
    conn.execute(
        sql.SQL(
            "INSERT INTO {t} SELECT account, {cur}, "
            "sum(CASE type WHEN 'Deposited' THEN amount ELSE -amount END), "
            "count(*) FILTER (WHERE type = 'Deposited'), count(*) FILTER (WHERE type = 'Withdrawn') "
            "FROM (SELECT DISTINCT ON (event_id) * FROM {s}) e GROUP BY account"
        ).format(t=sql.Identifier(schema, "balances"), s=stage, cur=currency)
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(stage))


def rebuild_correct(conn: psycopg.Connection[Any], schema: str, end_offsets: Any, *, bootstrap: str) -> None:
    _project(conn, schema, end_offsets, bootstrap)


def rebuild_drops_eur(
    conn: psycopg.Connection[Any], schema: str, end_offsets: Any, *, bootstrap: str
) -> None:
    _project(conn, schema, end_offsets, bootstrap, skip_currency="EUR")


def rebuild_drops_currency(
    conn: psycopg.Connection[Any], schema: str, end_offsets: Any, *, bootstrap: str
) -> None:
    _project(conn, schema, end_offsets, bootstrap, keep_currency=False)


def rebuild_raises(conn: psycopg.Connection[Any], schema: str, end_offsets: Any, *, bootstrap: str) -> None:
    raise RuntimeError("projection exploded on event 42")


VARIANTS = {
    "correct": rebuild_correct,
    "drops_eur": rebuild_drops_eur,
    "drops_currency": rebuild_drops_currency,
}


def main(argv: list[str]) -> int:
    variant = argv[0] if argv else "correct"
    if variant == "fail":
        print("balances projector: cannot parse event at offset 7", file=sys.stderr)
        return 3
    if variant == "hang":
        time.sleep(3600)
        return 0
    env = os.environ
    ends = {
        t: {int(p): int(o) for p, o in ps.items()}
        for t, ps in json.loads(env["RESGATE_REPLAY_END_OFFSETS"]).items()
    }
    with psycopg.connect(env["RESGATE_REPLAY_DSN"], autocommit=False) as conn:
        VARIANTS[variant](conn, env["RESGATE_REPLAY_SCHEMA"], ends, bootstrap=env["RESGATE_KAFKA_BOOTSTRAP"])
        conn.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
