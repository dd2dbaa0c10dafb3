"""Streaming the integrity evidence into the work schema: the client ledger and the event topics, by COPY.

The ledger loader is the checker's hot loop (one ``json.loads`` and one hand-formatted COPY line a record);
the topic loader reads each configured topic from its earliest offsets to the end offsets taken at the
start. Neither holds a history in Python memory: rows leave in ~1 MiB COPY chunks. Each returns counters
(records read, malformed ones with capped examples) for :func:`resgate.checks.integrity.gather`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.integrity.config import AcceptedEvents, TradeEvents
from resgate.checks.sqlutil import CopyBuffer, copy_statement, copy_text
from resgate.checks.topics import consume_until
from resgate.contract.errors import ConfigError, GateError
from resgate.contract.ledger import OUTCOMES
from resgate.sections.kafka import KafkaSettings

LedgerInput = Any
"""A ledger file path, a list of paths, or an iterable of lines (bytes/str), dicts or LedgerRecords."""

LEDGER_COLUMNS = ("src", "line", "ts", "client_id", "ikey", "outcome", "status", "order_id")


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
    """What :func:`load_ledger` read: record counts, and the records it could not use (capped examples)."""

    lines: int = 0
    submits: int = 0
    acked: int = 0
    other_ops: int = 0
    without_key: int = 0
    acked_without_key: list[dict[str, Any]] = field(default_factory=list)
    acked_without_key_count: int = 0
    invalid: int = 0
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)


def load_ledger(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    ledger: LedgerInput,
    submit_ops: tuple[str, ...],
    cap: int,
) -> LedgerLoad:
    """Stream the ledger's submit records into ``table`` with COPY; count what cannot be matched."""
    stats = LedgerLoad()
    with conn.cursor() as cur, cur.copy(copy_statement(table, LEDGER_COLUMNS)) as cp:
        for src, (label, items, is_file) in enumerate(ledger_sources(ledger)):
            try:
                if is_file:
                    with open(label, encoding="utf-8", errors="replace") as fh:
                        _load_ledger_source(cp.write, src, label, fh, frozenset(submit_ops), cap, stats)
                else:
                    _load_ledger_source(cp.write, src, label, items, frozenset(submit_ops), cap, stats)
            except OSError as e:
                raise GateError(f"cannot read the ledger {label}: {e}") from e
    return stats


def _load_ledger_source(
    write: Callable[[str], Any],
    src: int,
    label: str,
    items: Iterable[Any],
    ops: frozenset[str],
    cap: int,
    stats: LedgerLoad,
) -> None:
    # The hot loop of the integrity check: one json.loads and one hand-formatted COPY line per record,
    # counters in locals, output flushed in ~1 MiB chunks. Keep it lean: it sets the checker's floor.
    loads = json.loads
    text = copy_text
    parts: list[str] = []
    size = 0
    lines = submits = acked = other = without_key = 0
    invalid = stats.invalid_examples

    def bad(lineno: int, reason: str) -> None:
        stats.invalid += 1
        if len(invalid) < cap:
            invalid.append({"where": f"{label}:{lineno}", "reason": reason})

    for lineno, item in enumerate(items, start=1):
        if type(item) is str:
            try:
                d = loads(item)
            except ValueError as e:
                if not item.strip():
                    continue
                bad(lineno, f"not JSON: {e}")
                lines += 1
                continue
        elif isinstance(item, (bytes, bytearray)):
            if not item.strip():
                continue
            try:
                d = loads(item.decode("utf-8", errors="replace"))
            except ValueError as e:
                bad(lineno, f"not JSON: {e}")
                lines += 1
                continue
        elif isinstance(item, Mapping):
            d = item
        elif hasattr(item, "to_dict"):
            d = item.to_dict()
        else:
            bad(lineno, f"not a record: {type(item).__name__}")
            lines += 1
            continue
        lines += 1
        if type(d) is not dict and not isinstance(d, Mapping):
            bad(lineno, "not a JSON object")
            continue
        if d.get("op") not in ops:
            other += 1
            continue
        client = d.get("client_id")
        outcome = d.get("outcome")
        if client is None or client == "" or outcome not in OUTCOMES:
            bad(lineno, "a submit record needs client_id and outcome ok|fail|info")
            continue
        submits += 1
        key = d.get("idempotency_key")
        if key is None or key == "":
            without_key += 1
            if outcome == "ok":
                stats.acked_without_key_count += 1
                if len(stats.acked_without_key) < cap:
                    stats.acked_without_key.append({"where": f"{label}:{lineno}", "client_id": str(client)})
            continue
        if outcome == "ok":
            acked += 1
        ts = d.get("ts")
        if type(ts) is not float and type(ts) is not int:
            ts = None
        line = (
            f"{src}\t{lineno}\t{text(ts)}\t{text(client)}\t{text(key)}\t"
            f"{outcome}\t{text(d.get('status'))}\t{text(d.get('order_id'))}\n"
        )
        parts.append(line)
        size += len(line)
        if size >= 1 << 20:
            write("".join(parts))
            parts.clear()
            size = 0
    if parts:
        write("".join(parts))
    stats.lines += lines
    stats.submits += submits
    stats.acked += acked
    stats.other_ops += other
    stats.without_key += without_key


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
    return ("p", "off", "eid", "trade_id", "symbol", "seq", "qty", *(f"o{i}" for i in range(n_orders)))


def trade_row(src: TradeEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    tid = _getter(src.trade_id)
    sym = _getter(src.symbol) if src.symbol else None
    seq = _getter(src.seq) if src.seq else None
    qty = _getter(src.qty) if src.qty else None
    oids = [_getter(f) for f in src.order_ids]

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        t = _as_text(tid(d))
        if t is None:
            return f"missing {src.trade_id}"
        s = n = q = None
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
        if sym is not None:
            s = _as_text(sym(d))
        return (_as_text(eid(d)) if eid else None, t, s, n, q, *(_as_text(g(d)) for g in oids))

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
