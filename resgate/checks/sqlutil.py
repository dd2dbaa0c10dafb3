"""Shared database helpers for the data-heavy checkers: work schemas and COPY streaming.

The integrity and replay checkers never hold a history in Python memory: rows go to Postgres through
COPY in bounded chunks (:class:`CopyBuffer`), and set operations run there. Names of database objects are
validated by :mod:`resgate.checks.identifiers` and quoted here with ``psycopg.sql``.
Topics are read by :mod:`resgate.checks.topics`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.identifiers import TableName


def table_ident(name: TableName) -> sql.Identifier:
    """The quoted (possibly schema-qualified) identifier of a table."""
    return sql.Identifier(*name)


def create_schema(conn: psycopg.Connection[Any], name: str) -> None:
    """Create schema ``name`` (it must not exist yet: names are unique per run)."""
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))


def drop_schema(dsn: str, name: str) -> None:
    """Drop schema ``name`` and everything in it, on a connection of its own (safe after errors)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def table_columns(conn: psycopg.Connection[Any], table: TableName) -> list[str] | None:
    """Column names of ``table`` in declaration order, or None when the table does not exist."""
    row = conn.execute("SELECT to_regclass(%s)::oid", [sql.Identifier(*table).as_string(conn)]).fetchone()
    if row is None or row[0] is None:
        return None
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        [row[0]],
    ).fetchall()
    return [r[0] for r in rows]


def column_type(conn: psycopg.Connection[Any], table: TableName, column: str) -> str | None:
    """The SQL type of ``table.column`` as ``format_type`` spells it (``uuid``, ``text``, ``character
    varying(64)``, ...), or None when the table or column does not exist."""
    row = conn.execute(
        "SELECT format_type(atttypid, NULL) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = %s AND attnum > 0 AND NOT attisdropped",
        [sql.Identifier(*table).as_string(conn), column],
    ).fetchone()
    return None if row is None else str(row[0])


# --- COPY in text format, formatted by hand ----------------------------------------------------------
# psycopg's write_row() adapts every value through its dumpers (~15 µs a row here); formatting the text
# format ourselves is several times faster and keeps the loaders close to the raw-COPY floor.

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]").search


def copy_text(value: Any) -> str:
    """One value in COPY text format: ``\\N`` for None, ``t``/``f`` for booleans, escaped text."""
    if type(value) is str:
        return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE(value) else value
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    s = str(value)
    return s.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE(s) else s


class CopyBuffer:
    """Accumulates COPY text-format rows and hands them out in chunks of about ``chunk_bytes``.

    ``add(row)`` returns True when a chunk is ready; ``take()`` returns it and empties the buffer, so memory
    stays bounded by one chunk whatever the number of rows.
    """

    def __init__(self, chunk_bytes: int = 1 << 20) -> None:
        self.chunk_bytes = chunk_bytes
        self.rows = 0
        self._parts: list[str] = []
        self._size = 0

    def add(self, row: Iterable[Any]) -> bool:
        line = "\t".join([copy_text(v) for v in row]) + "\n"
        self._parts.append(line)
        self._size += len(line)
        self.rows += 1
        return self._size >= self.chunk_bytes

    def add_line(self, line: str) -> bool:
        """Add a row already in COPY text format (ending with a newline)."""
        self._parts.append(line)
        self._size += len(line)
        self.rows += 1
        return self._size >= self.chunk_bytes

    def take(self) -> str:
        out = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        return out


def copy_statement(table: sql.Composable, columns: Sequence[str]) -> sql.Composed:
    """``COPY table (cols) FROM STDIN`` (text format) with quoted identifiers."""
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )


def copy_rows(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[str],
    rows: Iterable[Iterable[Any]],
    *,
    chunk_bytes: int = 1 << 20,
) -> int:
    """Stream ``rows`` into ``table`` with COPY in bounded chunks; return the number of rows written."""
    buf = CopyBuffer(chunk_bytes)
    with conn.cursor() as cur, cur.copy(copy_statement(table, columns)) as cp:
        for row in rows:
            if buf.add(row):
                cp.write(buf.take())
        cp.write(buf.take())
    return buf.rows
