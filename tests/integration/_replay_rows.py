"""Test support: a replay rebuild that writes rows the test chose, and fake topic bounds.

``ROWS`` maps a rebuilt table name to ``(columns, rows)``; :func:`rebuild_rows` (the configured
``callable``) creates each such table in the shadow schema and fills it; ``CALLS`` counts its calls, so a
test can see that a truncated topic stopped the rebuild before it ran. :func:`fake_bounds` returns
``topic_bounds`` replacement with the given ``(earliest, end)`` per partition, so the retention rule is
tested at its exact boundary without filling a real topic past its retention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.sqlutil import CopyBuffer, copy_statement

REBUILD = "tests.integration._replay_rows:rebuild_rows"
ROWS: dict[str, tuple[Sequence[tuple[str, str]], Sequence[Sequence[Any]]]] = {}
CALLS: list[str] = []


def rebuild_rows(conn: psycopg.Connection[Any], schema: str, end_offsets: Any, *, bootstrap: str) -> None:
    """Create ``<schema>.<table>`` for each entry of :data:`ROWS` (columns ``(name, type)``) with its rows."""
    CALLS.append(schema)
    for table, (columns, rows) in ROWS.items():
        create_table(conn, sql.Identifier(schema, table), columns, rows)


def create_table(
    conn: psycopg.Connection[Any],
    ident: sql.Composable,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
) -> None:
    """``CREATE TABLE ident (columns)`` and COPY ``rows`` into it."""
    cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns)
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, cols))
    buf = CopyBuffer()
    for r in rows:
        buf.add(r)
    data = buf.take()
    if data:
        with conn.cursor() as cur, cur.copy(copy_statement(ident, [n for n, _t in columns])) as cp:
            cp.write(data)


def fake_bounds(bounds: dict[str, dict[int, tuple[int, int]]]) -> Callable[..., Any]:
    """A ``topic_bounds(bootstrap, topics, kafka)`` that answers ``bounds`` for the topics asked."""

    def topic_bounds(bootstrap: str, topics: Sequence[str], kafka: Any = None) -> Any:
        return {t: dict(bounds[t]) for t in topics}

    return topic_bounds
