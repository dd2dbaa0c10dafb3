"""Shared helpers for the data-heavy checkers: identifiers, work schemas, COPY streaming and topic ranges.

The integrity and replay checkers never hold a history in Python memory: rows go to Postgres through
COPY in bounded chunks (:class:`CopyBuffer`), and set operations run there. Table and column names come
from the gate config, so everything that names a database object goes through :func:`parse_table_name` /
:func:`check_identifier` (validation, raising ``ConfigError``) and ``psycopg.sql``
(quoting). :func:`consume_until` reads a topic from its earliest offsets up to given end offsets in
bounded batches, for loaders and for rebuild callables alike.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from resgate.contract.errors import ConfigError, GateError

_MAX_IDENT_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by Postgres
_SCHEMA_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

TableName = tuple[str, ...]
"""A table name as ``(table,)`` or ``(schema, table)``."""

EndOffsets = dict[str, dict[int, int]]
"""``{topic: {partition: end_offset}}``: read each partition up to (excluding) its end offset."""


def check_identifier(name: Any, where: str) -> str:
    """Return ``name`` if it is usable as one SQL identifier (any text, quoted later); else ConfigError."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"must be a non-empty string, got {name!r}", where=where)
    if "\x00" in name:
        raise ConfigError("must not contain NUL", where=where)
    if len(name.encode()) > _MAX_IDENT_BYTES:
        raise ConfigError(f"longer than {_MAX_IDENT_BYTES} bytes: {name!r}", where=where)
    return name


def check_identifiers(names: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """Validate a list of identifiers (no duplicates); return them as a tuple."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"must be a list of names, got {names!r}", where=where)
    out = tuple(check_identifier(n, f"{where}[{i}]") for i, n in enumerate(names))
    if not out and not allow_empty:
        raise ConfigError("must not be empty", where=where)
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ConfigError(f"names listed more than once: {dup}", where=where)
    return out


def parse_table_name(value: Any, where: str) -> TableName:
    """Parse ``"table"``, ``"schema.table"`` or ``[schema, table]`` into a validated tuple."""
    if isinstance(value, str):
        parts: Sequence[Any] = value.split(".")
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        parts = list(value)
    else:
        raise ConfigError(f"must be 'table' or 'schema.table', got {value!r}", where=where)
    if not 1 <= len(parts) <= 2:
        raise ConfigError(f"must be 'table' or 'schema.table', got {value!r}", where=where)
    return tuple(check_identifier(p, where) for p in parts)


def table_ident(name: TableName) -> sql.Identifier:
    """The quoted (possibly schema-qualified) identifier of a table."""
    return sql.Identifier(*name)


def table_label(name: TableName) -> str:
    """A readable ``schema.table`` label for messages and examples."""
    return ".".join(name)


def unique_name(prefix: str, *, where: str = "schema_prefix", tag: str | None = None) -> str:
    """A fresh lower-case identifier ``<prefix>[_<tag>]_<12 hex>`` (fits Postgres' 63-byte limit).

    ``tag`` (e.g. the run id) is reduced to ``[a-z0-9_]`` and shortened so the name says which run made it.
    """
    if not _SCHEMA_PREFIX_RE.match(prefix) or len(prefix) > 30:
        raise ConfigError(
            f"must be a lower-case identifier of at most 30 characters, got {prefix!r}", where=where
        )
    middle = ""
    if tag:
        cleaned = re.sub(r"[^a-z0-9_]+", "_", tag.lower()).strip("_")[:18]
        middle = f"_{cleaned}" if cleaned else ""
    return f"{prefix}{middle}_{uuid.uuid4().hex[:12]}"


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


# --- config sections ---------------------------------------------------------------------------------


class Section:
    """One config mapping: typed getters that raise ConfigError naming the field; unknown keys refused."""

    def __init__(self, d: Any, where: str, known: Iterable[str]) -> None:
        if not isinstance(d, Mapping):
            raise ConfigError(f"must be a mapping, got {type(d).__name__}", where=where)
        unknown = sorted(set(map(str, d)) - set(known))
        if unknown:
            raise ConfigError(f"unknown keys {unknown}; known: {sorted(known)}", where=where)
        self.d = d
        self.where = where

    def at(self, key: str) -> str:
        return f"{self.where}.{key}"

    def ident(self, key: str, default: str | None, *, optional: bool = False) -> str | None:
        if key not in self.d:
            if default is None and not optional:
                raise ConfigError("is required", where=self.at(key))
            return default
        v = self.d[key]
        if v is None and optional:
            return None
        return check_identifier(v, self.at(key))

    def text(self, key: str, default: str | None, *, optional: bool = False) -> str | None:
        if key not in self.d:
            if default is None and not optional:
                raise ConfigError("is required", where=self.at(key))
            return default
        v = self.d[key]
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise ConfigError(f"must be a non-empty string, got {v!r}", where=self.at(key))
        return v

    def number(self, key: str, default: float, *, minimum: float) -> float:
        v = self.d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
            raise ConfigError(f"must be a number >= {minimum:g}, got {v!r}", where=self.at(key))
        return float(v)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        v = self.d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"must be an integer >= {minimum}, got {v!r}", where=self.at(key))
        return v

    def flag(self, key: str, default: bool) -> bool:
        v = self.d.get(key, default)
        if not isinstance(v, bool):
            raise ConfigError(f"must be true or false, got {v!r}", where=self.at(key))
        return v

    def texts(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        v = self.d.get(key, default)
        if isinstance(v, str) or not isinstance(v, Sequence) or not v:
            raise ConfigError(f"must be a non-empty list of strings, got {v!r}", where=self.at(key))
        for i, x in enumerate(v):
            if not isinstance(x, str) or not x:
                raise ConfigError(f"must be a non-empty string, got {x!r}", where=f"{self.at(key)}[{i}]")
        return tuple(v)


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


# --- Reading a topic up to end offsets -------------------------------------------------------------


@dataclass
class TopicRead:
    """Counters :func:`consume_until` fills in when given one: messages and value bytes yielded."""

    messages: int = 0
    bytes: int = 0


async def consume_until(
    bootstrap: str,
    ranges: Mapping[str, Mapping[int, tuple[int, int]]],
    *,
    timeout_s: float = 300.0,
    max_records: int = 5000,
    max_partition_fetch_bytes: int = 1 << 20,
    read: TopicRead | None = None,
) -> AsyncIterator[list[Any]]:
    """Yield batches of aiokafka ``ConsumerRecord`` s, each partition read from ``begin`` to ``end``.

    ``ranges`` is ``{topic: {partition: (begin, end)}}`` (``end`` excluded; from :func:`topic_bounds`,
    typically begin = earliest offset). Records at or beyond ``end`` are not yielded. Memory is bounded by
    the fetch sizes (about partitions x ``max_partition_fetch_bytes`` of prefetched records), not by the
    size of the log; keep producer batches below ``max_partition_fetch_bytes``. Raises
    :class:`GateError` when the range cannot be read within ``timeout_s`` (the message says which
    partitions stopped where).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    targets: dict[Any, int] = {}
    starts: dict[Any, int] = {}
    for topic, parts in ranges.items():
        for p, (begin, end) in parts.items():
            if end > begin:
                tp = TopicPartition(topic, int(p))
                targets[tp] = int(end)
                starts[tp] = int(begin)
    if not targets:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max_partition_fetch_bytes,
        fetch_max_bytes=max(8 << 20, max_partition_fetch_bytes),
    )
    await consumer.start()
    try:
        consumer.assign(list(targets))
        for tp, begin in starts.items():
            consumer.seek(tp, begin)
        remaining = set(targets)
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                progress = []
                for tp in sorted(remaining, key=lambda t: (t.topic, t.partition)):
                    progress.append(
                        f"{tp.topic}[{tp.partition}] at {await consumer.position(tp)}/{targets[tp]}"
                    )
                raise GateError(f"could not read the topics within {timeout_s:.0f}s: {', '.join(progress)}")
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=max_records)
            out: list[Any] = []
            for tp, msgs in batch.items():
                end = targets[tp]
                if not msgs:
                    continue
                if msgs[-1].offset < end - 1:
                    out.extend(msgs)
                    continue
                out.extend(m for m in msgs if m.offset < end)
                remaining.discard(tp)
                consumer.pause(tp)
            for tp in [tp for tp in remaining if not batch.get(tp)]:
                # position() also covers offsets that hold no record (compaction, transaction markers)
                if await consumer.position(tp) >= targets[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if out:
                if read is not None:
                    read.messages += len(out)
                    read.bytes += sum(len(m.value) for m in out if m.value is not None)
                yield out
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
