"""The ledger reader's two paths on real Postgres: the same lines COPYed through the compiled path (msgspec)
and through the orjson path alone give the same table, row for row (``EXCEPT ALL`` empty both ways), on a
benchmark-like ledger with the unit tests' hostile lines mixed in, and the same counts."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from typing import Any

import psycopg
import pytest
from psycopg import sql

from resgate.checks.integrity.ledger_rows import COLUMN_TYPES, COLUMNS, COPY_OPTIONS, LedgerRows
from tests.unit.test_integrity_ledger_rows import HOSTILE, KINDS

pytestmark = pytest.mark.integration


def ledger_lines(n: int, seed: int = 3) -> list[bytes]:
    """Submits (retries, indeterminate and rejected attempts), reads and cancels as the benchmark writes
    them, with a hostile line after every 50th."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for k in range(n):
        client, key = f"client-{k % 37}", f"key-{k}"
        sent = {"symbol": f"SYM{k % 9}", "side": "buy" if k % 2 else "sell", "qty": rng.randint(1, 100),
                "price": round(rng.uniform(10, 500), rng.randint(0, 4))}  # fmt: skip
        outcome, status = rng.choice([("ok", 201), ("info", "timeout"), ("fail", 429)])
        ts = 1.7e9 + k / 1000
        rec = {"ts": ts, "op": "submit_order", "client_id": client, "idempotency_key": key, **sent,
               "status": status, "outcome": outcome, "order_id": f"o-{k}", "latency_ms": 1.5}  # fmt: skip
        out.append(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
        if k % 10 == 0:
            read = {"ts": ts, "op": "get_order", "client_id": client, "order_id": f"o-{k}", "status": 200,
                    "outcome": "ok", "order_status": "open", "filled_qty": rng.randint(0, 5)}  # fmt: skip
            out.append(json.dumps(read).encode() + b"\n")
        if k % 25 == 0:
            out.append(json.dumps({"op": "cancel_order", "client_id": client, "order_id": f"o-{k}"}).encode())
        if k % 50 == 0:
            hostile = HOSTILE[(k // 50) % len(HOSTILE)]
            out.append(hostile if isinstance(hostile, bytes) else hostile.encode())
    return out


def load(conn: psycopg.Connection[Any], table: str, lines: list[bytes], compiled: bool) -> dict[str, Any]:
    conn.execute(
        sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(COLUMN_TYPES.get(c, "text")))
                for c in COLUMNS
            ),
        )
    )
    rows = LedgerRows(kinds=KINDS, cap=5, compiled=compiled)
    copy = sql.SQL("COPY {} ({}) FROM STDIN {}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.SQL(COPY_OPTIONS)
    )
    with conn.cursor() as cur, cur.copy(copy) as cp:
        for chunk in rows.csv(0, "ledger.jsonl", lines):
            cp.write(chunk)
    counts = asdict(rows)
    for k in ("compiled", "slow_rows"):
        counts.pop(k)
    return counts


def test_the_compiled_path_and_the_orjson_path_load_the_same_table(pg_dsn: str) -> None:
    lines = ledger_lines(3000)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        compiled = load(conn, "via_compiled", lines, compiled=True)
        plain = load(conn, "via_orjson", lines, compiled=False)
        assert compiled == plain
        for a, b in (("via_compiled", "via_orjson"), ("via_orjson", "via_compiled")):
            q = sql.SQL("SELECT count(*) FROM (TABLE {} EXCEPT ALL TABLE {}) d").format(
                sql.Identifier(a), sql.Identifier(b)
            )
            assert conn.execute(q).fetchone() == (0,)
        (n,) = conn.execute("SELECT count(*) FROM via_compiled").fetchone() or (0,)
    assert n == compiled["submits"] + compiled["cancels"] + compiled["reads"] > 3000
    assert compiled["invalid"] > 0 and compiled["not_utf8"] == 1  # the hostile lines were read
