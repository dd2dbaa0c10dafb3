"""The read models of paperbroker and their reference projection logic, parametrised by schema.

Four projectors build four read models from the events (see :data:`READ_MODELS` for tables and keys):
``orders`` → ``rm_orders`` (order blotter), ``trades`` → ``rm_trades`` (trade blotter), ``market`` →
``rm_market`` (best bid/ask and last trade per symbol, with its helper ``rm_market_levels``: resting
quantity per price level) and ``positions`` → ``rm_positions`` (net quantity and cash per client and
symbol). Every change is commutative (sums, GREATEST, "highest seq wins", a status derived from the
row's own numbers), so the result does not depend on how the two topics' partitions interleave: the live
projector and a rebuild that reads the same events in another order end with identical rows.

At-most-once application: :func:`apply_batch` inserts ``(projector, event_id)`` into ``processed_events``
in the same transaction as the change and applies an event to a projector only when that insert was new.
The live projector (:mod:`paperbroker.projector`) may run with seeded bugs through
:class:`ProjectionOptions` (``projector_double_apply`` skips the check; ``projection_drift`` never writes
the cancelled status into ``rm_orders``); :func:`rebuild` always uses the correct logic. Rebuild is the
entry point of the gate's replay check: ``rebuild(conn, schema, end_offsets, *, bootstrap)``, or the
command ``python -m paperbroker.projections rebuild`` with ``RESGATE_REPLAY_DSN``,
``RESGATE_REPLAY_SCHEMA``, ``RESGATE_REPLAY_END_OFFSETS`` (JSON ``{topic: {partition: end}}``) and
``RESGATE_KAFKA_BOOTSTRAP`` (the first three are defined here because this module owns that command).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from psycopg import sql

from paperbroker.events import ORDER_ACCEPTED, ORDER_CANCELLED, ORDER_RESTED, TRADE_EXECUTED, decode
from resgate.contract.env import (
    ENV_KAFKA_BOOTSTRAP,
    ENV_REPLAY_DSN,
    ENV_REPLAY_END_OFFSETS,
    ENV_REPLAY_SCHEMA,
)
from resgate.contract.errors import ConfigError, GateError

log = logging.getLogger("paperbroker.projections")


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
#: Projector names (the ``projector`` column of ``processed_events``) and the events each one applies.
PROJECTOR_EVENTS: dict[str, frozenset[str]] = {
    "orders": frozenset({ORDER_ACCEPTED, TRADE_EXECUTED, ORDER_CANCELLED}),
    "trades": frozenset({TRADE_EXECUTED}),
    "market": frozenset({TRADE_EXECUTED, ORDER_RESTED, ORDER_CANCELLED}),
    "positions": frozenset({TRADE_EXECUTED}),
}
PROJECTORS = tuple(PROJECTOR_EVENTS)

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PRICE_Q = Decimal("0.000001")

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
"""

# The order status derived from the row's own numbers; 'cancelled' is sticky. {qty}/{filled} are SQL.
_STATUS = (
    "CASE WHEN {cur}.status = 'cancelled' THEN 'cancelled' WHEN {qty} IS NULL THEN 'open'"
    " WHEN {filled} >= {qty} THEN 'filled' WHEN {filled} > 0 THEN 'partially_filled' ELSE 'open' END"
)


@dataclass(frozen=True)
class ProjectionOptions:
    """Switches of the live projector. The defaults are the correct logic (what :func:`rebuild` uses)."""

    skip_dedupe: bool = False  # seeded bug projector_double_apply
    drop_cancel_status: bool = False  # seeded bug projection_drift

    @classmethod
    def from_bugs(cls, bugs: Iterable[str]) -> ProjectionOptions:
        """Options for a set of active seeded bug names."""
        b = set(bugs)
        return cls(skip_dedupe="projector_double_apply" in b, drop_cancel_status="projection_drift" in b)


@dataclass
class ApplyStats:
    """Counts of one :func:`apply_batch` call (or of a whole rebuild).

    ``applied`` counts events applied per projector, ``duplicates`` events every projector had already
    applied, ``skipped`` events no projector uses (``CancelRequested``) or that are malformed.
    """

    events: int = 0
    applied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROJECTORS, 0))
    duplicates: int = 0
    skipped: int = 0

    def add(self, other: ApplyStats) -> None:
        """Accumulate another batch's counts."""
        self.events += other.events
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        for k, v in other.applied.items():
            self.applied[k] = self.applied.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        """``{events, applied: {projector: n}, duplicates, skipped}``."""
        return {
            "events": self.events,
            "applied": dict(self.applied),
            "duplicates": self.duplicates,
            "skipped": self.skipped,
        }


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


# ------------------------------------------------------------------------------------------ pure part
def _price(value: Any) -> Decimal:
    p = Decimal(str(value))
    if not p.is_finite():
        raise ValueError(f"not a price: {value!r}")
    return p.quantize(_PRICE_Q)


def _valid(ev: Any) -> bool:
    return isinstance(ev, dict) and bool(ev.get("event_id")) and ev.get("type") in _ALL_TYPES


_ALL_TYPES = frozenset().union(*PROJECTOR_EVENTS.values())


def dedupe_keys(events: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The ``(projector, event_id)`` pairs of a batch, first occurrence only, in batch order."""
    keys: dict[tuple[str, str], None] = {}
    for ev in events:
        if not _valid(ev):
            continue
        for proj, types in PROJECTOR_EVENTS.items():
            if ev["type"] in types:
                keys.setdefault((proj, str(ev["event_id"])), None)
    return list(keys)


Statement = tuple[sql.Composable, list[tuple[Any, ...]]]


def build_plan(
    events: Sequence[dict[str, Any]],
    accept: set[tuple[str, str]] | None,
    schema: str,
    options: ProjectionOptions = ProjectionOptions(),
) -> tuple[list[Statement], ApplyStats]:
    """Turn a batch into SQL statements (``(sql, rows for executemany)``) and the counts.

    ``accept`` is the set of ``(projector, event_id)`` to apply (the new ones); ``None`` applies every
    event (the ``projector_double_apply`` bug), including repeats within the batch. Rows are aggregated per
    key and sorted, so concurrent replicas lock rows in the same order.
    """
    s = sql.Identifier(check_schema_name(schema))
    stats = ApplyStats()
    accepted: dict[str, tuple[Any, ...]] = {}
    fills: dict[str, list[Any]] = {}  # order_id -> [qty, max ts, client, symbol, side]
    cancels: dict[str, list[Any]] = {}  # order_id -> [client, symbol, max ts]
    trades: dict[str, tuple[Any, ...]] = {}
    last: dict[str, tuple[int, Decimal, int]] = {}
    levels: dict[tuple[str, str, Decimal], int] = {}
    market_syms: set[str] = set()
    positions: dict[tuple[str, str], list[Any]] = {}
    once: set[tuple[str, str]] = set()

    def take(proj: str, eid: str) -> bool:
        if accept is None:
            return True
        key = (proj, eid)
        if key not in accept or key in once:
            return False
        once.add(key)
        return True

    for ev in events:
        stats.events += 1
        if not _valid(ev):
            stats.skipped += 1
            continue
        eid, etype = str(ev["event_id"]), ev["type"]
        ts = float(ev.get("ts") or 0.0)
        try:
            if etype == ORDER_ACCEPTED:
                if take("orders", eid):
                    oid = str(ev["order_id"])
                    row = (
                        oid,
                        ev["client_id"],
                        ev["symbol"],
                        ev["side"],
                        int(ev["qty"]),
                        _price(ev["price"]),
                        ts,
                    )
                    prev = accepted.get(oid)
                    accepted[oid] = row if prev is None else (*row[:6], max(prev[6], ts))
                    stats.applied["orders"] += 1
                else:
                    stats.duplicates += 1
            elif etype == TRADE_EXECUTED:
                sym, qty, price = str(ev["symbol"]), int(ev["qty"]), _price(ev["price"])
                buy, sell = str(ev["buy_order_id"]), str(ev["sell_order_id"])
                bc, sc = str(ev["buy_client_id"]), str(ev["sell_client_id"])
                dup = True
                if take("orders", eid):
                    dup = False
                    stats.applied["orders"] += 1
                    for oid, cid, side in ((buy, bc, "buy"), (sell, sc, "sell")):
                        f = fills.setdefault(oid, [0, ts, cid, sym, side])
                        f[0] += qty
                        f[1] = max(f[1], ts)
                if take("trades", eid):
                    dup = False
                    stats.applied["trades"] += 1
                    trades.setdefault(
                        str(ev["trade_id"]),
                        (str(ev["trade_id"]), sym, int(ev["seq"]), buy, sell, bc, sc, qty, price),
                    )
                if take("market", eid):
                    dup = False
                    stats.applied["market"] += 1
                    market_syms.add(sym)
                    seq = int(ev["seq"])
                    if sym not in last or seq > last[sym][0]:
                        last[sym] = (seq, price, qty)
                    maker_side = "sell" if str(ev.get("aggressor_order_id")) == buy else "buy"
                    k = (sym, maker_side, price)
                    levels[k] = levels.get(k, 0) - qty
                if take("positions", eid):
                    dup = False
                    stats.applied["positions"] += 1
                    notional = price * qty
                    for cid, dq, dc in ((bc, qty, -notional), (sc, -qty, notional)):
                        p = positions.setdefault((cid, sym), [0, Decimal(0)])
                        p[0] += dq
                        p[1] += dc
                stats.duplicates += dup
            elif etype == ORDER_RESTED:
                if take("market", eid):
                    sym = str(ev["symbol"])
                    k = (sym, str(ev["side"]), _price(ev["price"]))
                    levels[k] = levels.get(k, 0) + int(ev["remaining_qty"])
                    market_syms.add(sym)
                    stats.applied["market"] += 1
                else:
                    stats.duplicates += 1
            elif etype == ORDER_CANCELLED:
                dup = True
                if take("orders", eid):
                    dup = False
                    stats.applied["orders"] += 1
                    if not options.drop_cancel_status:
                        c = cancels.setdefault(
                            str(ev["order_id"]), [ev.get("client_id"), ev.get("symbol"), ts]
                        )
                        c[2] = max(c[2], ts)
                if take("market", eid):
                    dup = False
                    stats.applied["market"] += 1
                    sym = str(ev["symbol"])
                    market_syms.add(sym)
                    if ev.get("side") is not None and ev.get("price") is not None:
                        k = (sym, str(ev["side"]), _price(ev["price"]))
                        levels[k] = levels.get(k, 0) - int(ev["remaining_qty"])
                stats.duplicates += dup
        except (KeyError, TypeError, ValueError, InvalidOperation) as e:
            log.warning("skipping malformed %s event %s: %s", etype, eid, e)
            stats.skipped += 1

    plan: list[Statement] = []
    if accepted:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_orders AS o (order_id, client_id, symbol, side, qty, price,"
                    " filled_qty, status, last_event_ts) VALUES (%s, %s, %s, %s, %s, %s, 0, 'open', %s)"
                    " ON CONFLICT (order_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
                    " symbol = EXCLUDED.symbol, side = EXCLUDED.side, qty = EXCLUDED.qty,"
                    " price = EXCLUDED.price,"
                    " status = " + _STATUS.format(cur="o", qty="EXCLUDED.qty", filled="o.filled_qty") + ","
                    " last_event_ts = GREATEST(o.last_event_ts, EXCLUDED.last_event_ts)"
                ).format(s=s),
                [accepted[k] for k in sorted(accepted)],
            )
        )
    if fills:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_orders AS o (order_id, client_id, symbol, side, filled_qty, status,"
                    " last_event_ts) VALUES (%s, %s, %s, %s, %s, 'open', %s)"
                    " ON CONFLICT (order_id) DO UPDATE SET filled_qty = o.filled_qty + EXCLUDED.filled_qty,"
                    " status = "
                    + _STATUS.format(cur="o", qty="o.qty", filled="(o.filled_qty + EXCLUDED.filled_qty)")
                    + ", last_event_ts = GREATEST(o.last_event_ts, EXCLUDED.last_event_ts)"
                ).format(s=s),
                [(k, f[2], f[3], f[4], f[0], f[1]) for k, f in sorted(fills.items())],
            )
        )
    if cancels:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_orders AS o (order_id, client_id, symbol, status, last_event_ts)"
                    " VALUES (%s, %s, %s, 'cancelled', %s)"
                    " ON CONFLICT (order_id) DO UPDATE SET status = 'cancelled',"
                    " last_event_ts = GREATEST(o.last_event_ts, EXCLUDED.last_event_ts)"
                ).format(s=s),
                [(k, c[0], c[1], c[2]) for k, c in sorted(cancels.items())],
            )
        )
    if trades:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_trades (trade_id, symbol, seq, buy_order_id, sell_order_id,"
                    " buy_client_id, sell_client_id, qty, price) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (trade_id) DO NOTHING"
                ).format(s=s),
                [trades[k] for k in sorted(trades)],
            )
        )
    if market_syms:
        syms = sorted(market_syms)
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_market (symbol) VALUES (%s) ON CONFLICT (symbol) DO NOTHING"
                ).format(s=s),
                [(x,) for x in syms],
            )
        )
        if last:
            plan.append(
                (
                    sql.SQL(
                        "UPDATE {s}.rm_market SET last_seq = %s, last_price = %s, last_qty = %s"
                        " WHERE symbol = %s AND (last_seq IS NULL OR last_seq < %s)"
                    ).format(s=s),
                    [(v[0], v[1], v[2], k, v[0]) for k, v in sorted(last.items())],
                )
            )
        deltas = [(k[0], k[1], k[2], d) for k, d in sorted(levels.items()) if d != 0]
        if deltas:
            plan.append(
                (
                    sql.SQL(
                        "INSERT INTO {s}.rm_market_levels AS l (symbol, side, price, qty)"
                        " VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (symbol, side, price) DO UPDATE SET qty = l.qty + EXCLUDED.qty"
                    ).format(s=s),
                    deltas,
                )
            )
        plan.append(
            (
                sql.SQL("DELETE FROM {s}.rm_market_levels WHERE symbol = ANY(%s::text[]) AND qty = 0").format(
                    s=s
                ),
                [(syms,)],
            )
        )
        plan.append(
            (
                sql.SQL(
                    "UPDATE {s}.rm_market m SET"
                    " best_bid = (SELECT max(price) FROM {s}.rm_market_levels l"
                    " WHERE l.symbol = m.symbol AND l.side = 'buy' AND l.qty > 0),"
                    " best_ask = (SELECT min(price) FROM {s}.rm_market_levels l"
                    " WHERE l.symbol = m.symbol AND l.side = 'sell' AND l.qty > 0)"
                    " WHERE m.symbol = ANY(%s::text[])"
                ).format(s=s),
                [(syms,)],
            )
        )
    if positions:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_positions AS p (client_id, symbol, net_qty, cash)"
                    " VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (client_id, symbol) DO UPDATE"
                    " SET net_qty = p.net_qty + EXCLUDED.net_qty, cash = p.cash + EXCLUDED.cash"
                ).format(s=s),
                [(k[0], k[1], v[0], v[1]) for k, v in sorted(positions.items())],
            )
        )
    return plan, stats


def _dedupe_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {s}.processed_events (projector, event_id)"
        " SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING RETURNING projector, event_id"
    ).format(s=sql.Identifier(check_schema_name(schema)))


# ------------------------------------------------------------------------------------------ apply (DB)
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def apply_batch(
    conn: psycopg.Connection,
    schema: str,
    events: Sequence[dict[str, Any]],
    options: ProjectionOptions = ProjectionOptions(),
) -> ApplyStats:
    """Apply a batch of decoded events to the read models in ``schema`` in ONE transaction (sync).

    Returns the batch's :class:`ApplyStats`. Retries the transaction on deadlock/serialization failure.
    """
    keys = dedupe_keys(events)
    for attempt in range(5):
        try:
            with conn.transaction(), conn.cursor() as cur:
                fresh: set[tuple[str, str]] | None = None
                if keys:
                    cur.execute(_dedupe_sql(schema), ([k[0] for k in keys], [k[1] for k in keys]))
                    fresh = {(p, e) for p, e in cur.fetchall()}
                accept = None if options.skip_dedupe else (fresh or set())
                plan, stats = build_plan(events, accept, schema, options)
                for stmt, rows in plan:
                    cur.executemany(stmt, rows)
            return stats
        except _RETRYABLE:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def apply_batch_async(
    conn: psycopg.AsyncConnection,
    schema: str,
    events: Sequence[dict[str, Any]],
    options: ProjectionOptions = ProjectionOptions(),
) -> ApplyStats:
    """Async :func:`apply_batch`."""
    keys = dedupe_keys(events)
    for attempt in range(5):
        try:
            async with conn.transaction(), conn.cursor() as cur:
                fresh: set[tuple[str, str]] | None = None
                if keys:
                    await cur.execute(_dedupe_sql(schema), ([k[0] for k in keys], [k[1] for k in keys]))
                    fresh = {(p, e) for p, e in await cur.fetchall()}
                accept = None if options.skip_dedupe else (fresh or set())
                plan, stats = build_plan(events, accept, schema, options)
                for stmt, rows in plan:
                    await cur.executemany(stmt, rows)
            return stats
        except _RETRYABLE:
            if attempt == 4:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------ rebuild
class TruncatedLogError(GateError):
    """The topic no longer holds the full history (earliest offset > 0): a rebuild would be wrong.

    ``partitions`` lists ``(topic, partition, earliest_offset)``.
    """

    def __init__(self, partitions: list[tuple[str, int, int]]) -> None:
        self.partitions = partitions
        super().__init__(f"topic history truncated by retention (earliest offset > 0): {partitions}")


def _normalise_end_offsets(end_offsets: Any) -> dict[str, dict[int, int]]:
    if not isinstance(end_offsets, dict) or not end_offsets:
        raise ConfigError("must be a non-empty {topic: {partition: end_offset}} mapping", where="end_offsets")
    out: dict[str, dict[int, int]] = {}
    for topic, parts in end_offsets.items():
        if not isinstance(topic, str) or not topic or not isinstance(parts, dict):
            raise ConfigError(f"bad entry for topic {topic!r}", where="end_offsets")
        try:
            out[topic] = {int(p): int(o) for p, o in parts.items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"partitions/offsets must be integers: {parts!r}", where=f"end_offsets.{topic}"
            ) from e
        if any(p < 0 or o < 0 for p, o in out[topic].items()):
            raise ConfigError("negative partition or offset", where=f"end_offsets.{topic}")
    return out


async def iter_event_batches(
    bootstrap: str,
    end_offsets: dict[str, dict[int, int]],
    *,
    batch_size: int = 2000,
    timeout_s: float = 600.0,
) -> Any:
    """Async generator of decoded event batches from offset 0 up to ``end_offsets`` (exclusive).

    Uses a plain assigned consumer (no group, nothing committed). Raises :class:`TruncatedLogError` before
    yielding anything when a partition's earliest offset is above 0, and GateError when the topic does
    not reach the requested end within ``timeout_s``. Undecodable records are skipped (counted by caller
    as not events). Memory is bounded by the batch size and the consumer's fetch buffers.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tps = [
        TopicPartition(t, p)
        for t, parts in sorted(end_offsets.items())
        for p, end in sorted(parts.items())
        if end > 0
    ]
    if not tps:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        truncated = [(tp.topic, tp.partition, begins[tp]) for tp in tps if begins[tp] > 0]
        if truncated:
            raise TruncatedLogError(truncated)
        todo: dict[Any, int] = {}
        for tp in tps:
            consumer.seek(tp, 0)
            todo[tp] = end_offsets[tp.topic][tp.partition]
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise GateError(f"rebuild: topics did not reach the end offsets within {timeout_s}s: {todo}")
            data = await consumer.getmany(*todo.keys(), timeout_ms=500, max_records=batch_size)
            batch: list[dict[str, Any]] = []
            for tp, recs in data.items():
                end = todo.get(tp)
                if end is None:
                    continue
                for rec in recs:
                    if rec.offset >= end:
                        break
                    try:
                        ev = decode(rec.value)
                    except ValueError:
                        ev = None
                    batch.append(ev if isinstance(ev, dict) else {})
                if recs and recs[-1].offset + 1 >= end:
                    todo.pop(tp)
                    consumer.pause(tp)
            if batch:
                yield batch
    finally:
        await consumer.stop()


def _prepare_shadow(conn: psycopg.Connection, schema: str) -> None:
    if check_schema_name(schema) == "public":
        raise ConfigError("refusing to rebuild into the live schema 'public'", where="schema")
    ensure_schema(conn, schema)
    tables = [*READ_MODELS, *AUX_TABLES, "processed_events"]
    with conn.transaction():
        conn.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables))
        )


async def _rebuild_async(
    conn: psycopg.Connection,
    schema: str,
    end_offsets: dict[str, dict[int, int]],
    bootstrap: str,
    batch_size: int,
    timeout_s: float,
) -> dict[str, Any]:
    from aiokafka.errors import KafkaError

    total = ApplyStats()
    batches = 0
    t0 = time.monotonic()
    try:
        batches_in = iter_event_batches(bootstrap, end_offsets, batch_size=batch_size, timeout_s=timeout_s)
        async with contextlib.aclosing(batches_in):  # stops the consumer even when applying fails
            async for batch in batches_in:
                total.add(apply_batch(conn, schema, batch))  # always the correct logic
                batches += 1
    except KafkaError as e:
        raise GateError(f"rebuild: Kafka error reading {sorted(end_offsets)}: {type(e).__name__}: {e}") from e
    if not conn.autocommit:
        conn.commit()
    return {
        "schema": schema,
        "batches": batches,
        "elapsed_s": round(time.monotonic() - t0, 3),
        "end_offsets": {t: {str(p): o for p, o in parts.items()} for t, parts in end_offsets.items()},
        **total.as_dict(),
    }


def rebuild(
    conn: psycopg.Connection,
    schema: str,
    end_offsets: dict[str, dict[int, int]],
    *,
    bootstrap: str,
    batch_size: int = 2000,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Rebuild the read models into ``schema`` from offset 0 to ``end_offsets`` ({topic: {partition: end}}).

    ``conn`` is a synchronous psycopg connection to the database that will hold the shadow schema. The
    schema's tables are created (or emptied) first; ``public`` is refused. Events are streamed in batches
    and applied with the reference logic (never the seeded bugs), deduplicated by event id within the
    rebuild (``<schema>.processed_events``). Returns ``{schema, batches, elapsed_s, end_offsets, events,
    applied: {projector: n}, duplicates, skipped}``. Raises :class:`TruncatedLogError` when retention
    dropped the beginning of a partition, ConfigError on bad arguments, GateError when the topics do not
    reach the end offsets within ``timeout_s``. Safe to call from a thread that runs an event loop (the
    Kafka reads then run in a helper thread).
    """
    ends = _normalise_end_offsets(end_offsets)
    if not bootstrap:
        raise ConfigError("Kafka bootstrap servers are required", where="bootstrap")
    _prepare_shadow(conn, schema)
    coro_args = (conn, schema, ends, bootstrap, batch_size, timeout_s)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_rebuild_async(*coro_args))
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["result"] = asyncio.run(_rebuild_async(*coro_args))
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=worker, name="pb-rebuild", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


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


# ------------------------------------------------------------------------------------------ command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperbroker.projections rebuild``: rebuild into RESGATE_REPLAY_SCHEMA; prints JSON stats.

    Exit codes: 0 done, 2 could not run (bad/missing settings, truncated log, unreachable services).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s projections %(levelname)s %(message)s")
    if args != ["rebuild"]:
        print("usage: python -m paperbroker.projections rebuild", file=sys.stderr)
        return 2
    try:
        env = os.environ
        dsn = env.get(ENV_REPLAY_DSN) or ""
        schema = env.get(ENV_REPLAY_SCHEMA) or ""
        bootstrap = env.get(ENV_KAFKA_BOOTSTRAP) or ""
        for name, value in (
            (ENV_REPLAY_DSN, dsn),
            (ENV_REPLAY_SCHEMA, schema),
            (ENV_KAFKA_BOOTSTRAP, bootstrap),
        ):
            if not value:
                raise ConfigError("is not set", where=name)
        try:
            ends = json.loads(env.get(ENV_REPLAY_END_OFFSETS) or "")
        except ValueError as e:
            raise ConfigError(f"not JSON: {e}", where=ENV_REPLAY_END_OFFSETS) from e
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            result = rebuild(conn, schema, ends, bootstrap=bootstrap)
    except (ConfigError, GateError, psycopg.Error) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), file=sys.stderr)
        return 2
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
