"""Streaming the integrity evidence into the work schema: the client ledger and the event topics, by COPY.

The ledger loader parses each line once in this process with a reader made for the job
(:mod:`~resgate.checks.integrity.ledger_rows`, msgspec) and COPYs only the fields the detectors read, so it
runs at about the speed of a raw COPY of the file (``benchmarks/bench_integrity.py`` measures it); the
topic loader reads each configured topic from its earliest offsets to the end offsets taken at the
start. Neither holds a history in Python memory: data leaves in COPY chunks of at most ~1 MiB. Each
returns counters (records read, malformed ones named ``file:line`` or by offset, with capped examples) for
:func:`resgate.checks.integrity.gather`.
"""

from __future__ import annotations

import json
import math
import os
import queue
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from resgate.checks.integrity.config import AcceptedEvents, CancelEvents, IntegrityConfig, TradeEvents
from resgate.checks.sqlutil import CopyBuffer, copy_statement
from resgate.checks.topics import consume_until
from resgate.contract.errors import ConfigError, GateError
from resgate.sections.kafka import KafkaSettings

LedgerInput = Any
"""A ledger file path, a list of paths, or an iterable of lines (bytes/str), dicts or LedgerRecords."""


def ledger_sources(ledger: LedgerInput) -> list[tuple[str, Iterable[Any], bool]]:
    """``[(label, lines_or_records, is_file)]``: one entry per file, or one for an in-memory iterable."""
    if isinstance(ledger, (str, os.PathLike)):
        return [(os.fspath(ledger), [], True)]
    if (
        isinstance(ledger, (list, tuple))
        and ledger
        and all(
            isinstance(x, os.PathLike) or (isinstance(x, str) and not x.lstrip().startswith("{"))
            for x in ledger
        )
    ):
        return [(os.fspath(x), [], True) for x in ledger]
    if isinstance(ledger, Iterable):
        return [("ledger", ledger, False)]
    raise ConfigError(f"the ledger must be a path, a list of paths or an iterable of records, got {ledger!r}")


@dataclass
class LedgerLoad:
    """What :func:`load_ledger` read: record counts, and the records it could not use (capped examples);
    the reader (:class:`~.ledger_rows.LedgerRows`) counts into these fields as it goes."""

    lines: int = 0
    """Non-blank lines read (records, usable or not)."""
    submits: int = 0
    acked: int = 0
    other_ops: int = 0
    without_key: int = 0
    acked_without_key: list[dict[str, Any]] = field(default_factory=list)
    acked_without_key_count: int = 0
    invalid: int = 0
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)
    cancels: int = 0
    reads: int = 0
    submit_fields: int = 0
    read_fields: int = 0
    not_utf8: int = 0
    """Lines whose undecodable bytes were replaced (U+FFFD) to be read at all."""
    slow_rows: int = 0
    """Rows written field by field (not on the reader's fast path)."""
    timings: dict[str, float] = field(default_factory=dict)


LEDGER_VIEW = (
    "src, line, ts, client_id, ikey, outcome, status, order_id, symbol, side, qty, price",
    "kind = 'submit' AND ikey IS NOT NULL",
)
"""The work ledger ``ledger``: one row per submit attempt that carries an idempotency key (what was sent,
and what the client was told); a view over ``ledger_all``."""

LEDGER_OPS_VIEW = (
    "src, line, ts, kind, client_id, order_id, outcome, status, order_status, filled_qty",
    "kind IN ('cancel', 'read')",
)
"""The work ledger's ``ledger_ops``: cancels (``kind = 'cancel'``) and order reads (``'read'``), with
what a read saw; a view over ``ledger_all``."""

# Statistics over a sample of 3,000 rows (the default target samples 30,000): the planner needs the
# join columns' rough distinct counts and the outcome's frequencies, and a full sample was as long as
# a third of the load.
_STATISTICS_TARGET = 10

# The queued writer sends chunks in pieces of at most 128 KiB (a file's block of lines is one piece or
# two): 16 of them, at most 2 MiB, are in flight.
_QUEUED_CHUNKS = 16


class _QueuedWriter(QueuedLibpqWriter):
    """psycopg's queued COPY writer (a thread sends one chunk while this one parses the next) with a short
    queue, so a server slower than the reader holds the reader back instead of the queue growing (the
    benchmark's flat peak RSS from 100k to 1M lines is what shows the short queue holds)."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        super().__init__(cursor)
        if not isinstance(self.__dict__.get("_queue"), queue.Queue):  # a private attribute: fail loudly
            raise GateError(
                "psycopg's QueuedLibpqWriter keeps no '_queue' (a psycopg upgrade?): the ledger COPY's queue"
                " cannot be bounded; pin psycopg as constraints.txt does"
            )
        self._queue = queue.Queue(maxsize=_QUEUED_CHUNKS)


def load_ledger(
    conn: psycopg.Connection[Any],
    schema: str,
    ledger: LedgerInput,
    config: IntegrityConfig,
    cap: int,
) -> LedgerLoad:
    """Load the ledger into the work tables ``ledger`` (submits) and ``ledger_ops`` (cancels and reads).

    One pass, one path for a file, a list of files and an in-memory iterable (locally and in the Lambda
    alike): each line is parsed once in this process by :class:`~.ledger_rows.LedgerRows` (msgspec) and
    only the fields the detectors read go to ``ledger_all`` in one COPY (CSV in chunks of at most ~1 MiB; a
    file's, one per 128 KiB block of lines; so memory stays flat), while Postgres takes the previous chunks
    (sent by a thread of psycopg's queued writer, at most 2 MiB ahead). A file is read as bytes (lines
    split on ``\n``;
    undecodable bytes replaced and counted). A line that is not a JSON object, or a submit with no client
    or no valid outcome, is counted and named ``file:line`` in ``invalid_examples``; blank lines are
    skipped but keep their numbers. ``ledger_all`` is then analysed on its join columns.
    """
    from resgate.checks.integrity.ledger_rows import COLUMN_TYPES, COLUMNS, COPY_OPTIONS, LedgerRows

    table = sql.Identifier(schema, "ledger_all")
    conn.execute(
        sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(
            table,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(COLUMN_TYPES.get(c, "text")))
                for c in COLUMNS
            ),
        )
    )
    kinds = {op: "submit" for op in config.submit_ops}
    kinds.update({op: "cancel" for op in config.cancel_ops})
    kinds.update({op: "read" for op in config.read_ops})
    rows = LedgerRows(kinds=kinds, cap=cap)
    t0 = time.perf_counter()
    copy = sql.SQL("COPY {} ({}) FROM STDIN {}").format(
        table, sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.SQL(COPY_OPTIONS)
    )
    with conn.cursor() as cur, cur.copy(copy, writer=_QueuedWriter(cur)) as cp:
        for src, (label, items, is_file) in enumerate(ledger_sources(ledger)):
            if not is_file:
                for chunk in rows.csv(src, label, items):
                    cp.write(chunk)
                continue
            try:
                with open(label, "rb") as fh:
                    for chunk in rows.csv(src, label, fh):
                        cp.write(chunk)
            except OSError as e:
                raise GateError(f"cannot read the ledger {label}: {e}") from e
    t1 = time.perf_counter()
    w = lambda name: sql.Identifier(schema, name)  # noqa: E731
    for name, (cols, where) in (("ledger", LEDGER_VIEW), ("ledger_ops", LEDGER_OPS_VIEW)):
        conn.execute(
            sql.SQL("CREATE VIEW {} AS SELECT {} FROM {} WHERE {}").format(
                w(name), sql.SQL(cols), table, sql.SQL(where)
            )
        )
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL default_statistics_target = {}").format(_STATISTICS_TARGET))
        conn.execute(sql.SQL("ANALYZE {} (kind, client_id, ikey, outcome, order_id)").format(table))
    t2 = time.perf_counter()
    rows.timings.update(ledger_copy_s=t1 - t0, ledger_analyze_s=t2 - t1)
    return rows


# --- topics -----------------------------------------------------------------------------------------


def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    if "." not in path:
        return lambda d: d.get(path)
    parts = path.split(".")

    def get(d: Mapping[str, Any]) -> Any:
        cur: Any = d
        for p in parts:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(p)
        return cur

    return get


def _as_text(v: Any) -> str | None:
    if v is None or v == "" or isinstance(v, (dict, list, bool)):
        return None
    return str(v)


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None


def _as_number(v: Any) -> str | None:
    """A finite number as text for a numeric column, or None."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return v.strip() if math.isfinite(f) else None
    return None


ACCEPTED_COLUMNS = ("p", "off", "eid", "order_id", "client_id", "ikey", "qty")


def accepted_row(src: AcceptedEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    oid, cli, key = _getter(src.order_id), _getter(src.client_id), _getter(src.idempotency_key)
    qty = _getter(src.qty) if src.qty else None

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        o, c, k = _as_text(oid(d)), _as_text(cli(d)), _as_text(key(d))
        if o is None or c is None or k is None:
            return f"missing {src.order_id}, {src.client_id} or {src.idempotency_key}"
        q = None
        if qty is not None:
            raw = qty(d)
            q = _as_number(raw)
            if raw is not None and q is None:
                return f"{src.qty} is not a number: {raw!r}"
        return (_as_text(eid(d)) if eid else None, o, c, k, q)

    return row


def trade_columns(n_orders: int) -> tuple[str, ...]:
    return (
        "p",
        "off",
        "eid",
        "trade_id",
        "symbol",
        "seq",
        "qty",
        "price",
        *(f"o{i}" for i in range(n_orders)),
    )


CANCEL_COLUMNS = ("p", "off", "eid", "order_id")


def cancel_row(src: CancelEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    oid = _getter(src.order_id)

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        o = _as_text(oid(d))
        if o is None:
            return f"missing {src.order_id}"
        return (_as_text(eid(d)) if eid else None, o)

    return row


def trade_row(src: TradeEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    tid = _getter(src.trade_id)
    sym = _getter(src.symbol) if src.symbol else None
    seq = _getter(src.seq) if src.seq else None
    qty = _getter(src.qty) if src.qty else None
    price = _getter(src.price) if src.price else None
    oids = [_getter(f) for f in src.order_ids]

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        t = _as_text(tid(d))
        if t is None:
            return f"missing {src.trade_id}"
        s = n = q = pr = None
        if seq is not None:
            raw = seq(d)
            n = _as_int(raw)
            if raw is not None and n is None:
                return f"{src.seq} is not an integer: {raw!r}"
        if qty is not None:
            raw = qty(d)
            q = _as_number(raw)
            if raw is not None and q is None:
                return f"{src.qty} is not a number: {raw!r}"
        if price is not None:
            raw = price(d)
            pr = _as_number(raw)
            if raw is not None and pr is None:
                return f"{src.price} is not a number: {raw!r}"
        if sym is not None:
            s = _as_text(sym(d))
        return (_as_text(eid(d)) if eid else None, t, s, n, q, pr, *(_as_text(g(d)) for g in oids))

    return row


@dataclass
class TopicLoad:
    """What :func:`load_topic` read from one topic: events, those of the configured type, malformed ones."""

    topic: str
    events: int = 0
    matched: int = 0
    malformed: int = 0
    malformed_examples: list[dict[str, Any]] = field(default_factory=list)


async def load_topic(
    dsn: str,
    bootstrap: str,
    table: sql.Composable,
    columns: tuple[str, ...],
    topic: str,
    type_field: str | None,
    type_value: str | None,
    ranges: Mapping[int, tuple[int, int]],
    make_row: Callable[[Mapping[str, Any]], tuple[Any, ...] | str],
    *,
    timeout_s: float,
    cap: int,
    kafka: KafkaSettings | None = None,
) -> TopicLoad:
    """Stream one topic's matching events into ``table`` (``p, off, ...``) with COPY."""
    stats = TopicLoad(topic)
    type_get = _getter(type_field) if type_field and type_value is not None else None
    loads = json.loads
    buf = CopyBuffer()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn, conn.cursor() as cur, cur.copy(copy_statement(table, columns)) as cp:
        async for batch in consume_until(bootstrap, {topic: ranges}, timeout_s=timeout_s, kafka=kafka):
            for m in batch:
                stats.events += 1
                try:  # decode first: json.loads(bytes) sniffs the encoding and is about 2x slower
                    d = loads(m.value.decode()) if m.value is not None else None
                except (ValueError, UnicodeDecodeError):
                    d = None
                if not isinstance(d, dict):
                    row: tuple[Any, ...] | str = "not a JSON object"
                elif type_get is not None and type_get(d) != type_value:
                    continue
                else:
                    row = make_row(d)
                if isinstance(row, str):
                    stats.malformed += 1
                    if len(stats.malformed_examples) < cap:
                        stats.malformed_examples.append(
                            {"topic": topic, "partition": m.partition, "offset": m.offset, "reason": row}
                        )
                    continue
                stats.matched += 1
                if buf.add((m.partition, m.offset, *row)):
                    await cp.write(buf.take())
        await cp.write(buf.take())
    return stats
