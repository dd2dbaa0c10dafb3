"""Shared database helpers for the data-heavy checkers: work schemas, COPY streaming and topic ranges.

The integrity and replay checkers never hold a history in Python memory: rows go to Postgres through
COPY in bounded chunks (:class:`CopyBuffer`), and set operations run there. Names of database objects are
validated by :mod:`resgate.checks.identifiers` and quoted here with ``psycopg.sql``. :func:`consume_until`
reads a topic from its earliest offsets up to given end offsets in bounded batches, for loaders and for
rebuild callables alike.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.identifiers import TableName
from resgate.contract.errors import GateError


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
