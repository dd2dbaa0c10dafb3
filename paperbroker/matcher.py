"""The paperbroker matcher: consumes the orders topic, matches per symbol, emits executions exactly once.

Run as ``python -m paperbroker.matcher`` (settings from :mod:`paperbroker.config`; /health and /ready on
``$PORT``). :class:`MatchingEngine` is the pure part (books from :mod:`paperbroker.book`, per-symbol trade
``seq``, deterministic ids); :class:`Matcher` is the process around it.

**Recovery design: snapshot + offsets in Postgres, with a matcher outbox** (not a replay of the whole
orders log). Each consumed batch is applied to the in-memory books and then, in ONE transaction, the
matcher writes the changed resting orders (``matcher_resting``, one row per resting order, so the write is
proportional to the change, not to the book), the per-symbol next ``seq`` (``matcher_symbols``), the
arrival counter (``matcher_meta``), the order ids it has seen (``matcher_seen_orders``), the next offset
of every consumed partition (``matcher_offsets``) and the output events (``matcher_outbox``). Only after
that commit are the outbox events published (idempotent aiokafka producer, key = symbol, ``acks=all``);
once the broker acknowledged them they are deleted from the outbox together with the next offset
reached on each executions partition (``matcher_published``). A restart (or any error: the session is
torn down and rebuilt) loads the snapshot, seeks the consumer to the stored offsets and, before it
publishes what is left in the outbox, reads the executions topic from ``matcher_published`` to its end
and skips every outbox event whose ``event_id`` is already there (event ids are deterministic: uuid5 of
the trade id / of the resting order's arrival number). So a crash between commit and publish, between
publish and ack, or between ack and delete neither loses nor duplicates an event, and since the outbox is
published in id order and the topic is partitioned by symbol, each symbol's ``seq`` arrives 1, 2, 3, ...
with no gap. Why this and not rebuilding state by replaying the orders topic: start-up time stays
bounded by the size of the book rather than by the length of the log (and the log may be truncated by
retention), and the book, offsets and outputs move together atomically. A session-level Postgres
advisory lock keeps a second replica idle (a hot standby) while one is active.

Incoming ``OrderAccepted`` events are deduplicated by ``order_id`` (a redelivered or re-published order is
ignored); the ``matcher_double_fill`` seeded bug skips that check, so a redelivered order is matched
again. A ``CancelRequested`` for an order not in the book is ignored. Added fields (allowed by the
contract, see :mod:`paperbroker.events`): ``OrderRested`` carries ``client_id, side, price, qty,
remaining_qty``; ``OrderCancelled`` carries ``side, price``, so the market-snapshot projection needs no
other state. The matcher also commits its consumed offsets to the consumer group
``<prefix>.paperbroker-matcher`` (``paperbroker-matcher`` without a prefix; best effort, after the
publish) so consumer lag is visible to the usual tools; its own recovery never reads them.

Ordering: outbox rows are sent in chunks of :data:`PUBLISH_CHUNK` and a chunk is sent only after the
previous one was acknowledged, so a failed producer batch cannot be overtaken by a later one of the same
partition; retriable broker errors are retried by the idempotent producer without reordering (a broker
outage stalls publishing rather than reordering it), and a non-retriable error restarts the session,
whose recovery republishes exactly the missing events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from paperbroker.book import SIDES, OrderBook, RestingOrder, parse_price
from paperbroker.config import Settings
from paperbroker.events import (
    CANCEL_REQUESTED,
    ORDER_ACCEPTED,
    ORDER_CANCELLED,
    ORDER_RESTED,
    TRADE_EXECUTED,
    decode,
    encode,
)
from paperbroker.service import (
    HealthState,
    consumer_lag,
    service_main,
    sleep_or_stop,
)

log = logging.getLogger("paperbroker.matcher")

#: Namespace of the matcher's deterministic event ids (uuid5).
EVENT_NAMESPACE = uuid.UUID("5f0c6f1e-2a57-4b8e-9c1d-7e0b7a1c2d3e")
#: Advisory lock keys: schema creation (transaction-level) and the single active matcher (session-level).
SCHEMA_LOCK_KEY = 0x5042_4D53  # "PBMS"
ACTIVE_LOCK_KEY = 0x5042_4D41  # "PBMA"
BATCH_MAX_RECORDS = 2000
PUBLISH_CHUNK = 500  # ~150 KB per partition: one producer batch, so a failed batch cannot be overtaken

MATCHER_DDL = """
CREATE TABLE IF NOT EXISTS matcher_meta (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    next_arrival bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS matcher_symbols (
    symbol text PRIMARY KEY,
    next_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS matcher_resting (
    arrival bigint PRIMARY KEY,
    order_id text NOT NULL,
    client_id text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    price text NOT NULL,
    qty bigint NOT NULL,
    remaining bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS matcher_offsets (
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS matcher_seen_orders (
    order_id text PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS matcher_outbox (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    key text NOT NULL,
    payload bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS matcher_published (
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


# ------------------------------------------------------------------------------------------ pure engine
def trade_event_id(trade_id: str) -> str:
    """Deterministic event id of a trade."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"trade:{trade_id}"))


@dataclass
class BatchOutcome:
    """The result of applying a batch: events to publish (in order) and the state that changed."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    new_order_ids: list[str] = field(default_factory=list)
    changed: dict[int, RestingOrder] = field(default_factory=dict)
    seq_symbols: set[str] = field(default_factory=set)
    ignored: int = 0
    duplicates: int = 0


class MatchingEngine:
    """All books plus the per-symbol trade sequence and the arrival counter; deterministic and pure.

    ``dedupe_orders=False`` is the ``matcher_double_fill`` seeded bug.
    """

    def __init__(self, *, dedupe_orders: bool = True) -> None:
        self.dedupe_orders = dedupe_orders
        self.books: dict[str, OrderBook] = {}
        self.next_seq: dict[str, int] = {}
        self.next_arrival = 1

    def book(self, symbol: str) -> OrderBook:
        """The book of ``symbol`` (created empty on first use)."""
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = OrderBook(symbol)
        return b

    def restore(self, orders: Iterable[RestingOrder]) -> None:
        """Put persisted resting orders back; they must come in arrival order."""
        for o in orders:
            self.book(o.symbol).restore(o)

    def apply_batch(self, events: Iterable[dict[str, Any]], seen: set[str], now: float) -> BatchOutcome:
        """Apply input events in order. ``seen`` holds order ids already processed (updated in place).

        Returns a :class:`BatchOutcome` with the output events ({event_id, type, ts, ...}) in emission order.
        """
        out = BatchOutcome()
        for ev in events:
            etype = ev.get("type")
            if etype == ORDER_ACCEPTED:
                self._accept(ev, seen, now, out)
            elif etype == CANCEL_REQUESTED:
                self._cancel(ev, now, out)
            else:
                out.ignored += 1
        return out

    def _accept(self, ev: dict[str, Any], seen: set[str], now: float, out: BatchOutcome) -> None:
        order_id = str(ev.get("order_id") or "")
        if not order_id:
            out.ignored += 1
            return
        if order_id in seen:
            out.duplicates += 1
            if self.dedupe_orders:
                return
        else:
            seen.add(order_id)
            out.new_order_ids.append(order_id)
        try:
            symbol = str(ev["symbol"])
            side = str(ev["side"])
            qty = int(ev["qty"])
            price = parse_price(ev["price"])
            client_id = str(ev["client_id"])
            if not symbol or side not in SIDES or qty <= 0 or isinstance(ev["qty"], bool):
                raise ValueError("bad symbol/side/qty")
        except (KeyError, TypeError, ValueError) as e:
            log.warning("ignoring malformed OrderAccepted %s: %s", ev.get("event_id"), e)
            out.ignored += 1
            return
        arrival = self.next_arrival
        self.next_arrival += 1
        book = self.book(symbol)
        res = book.submit(
            order_id=order_id, client_id=client_id, side=side, qty=qty, price=price, arrival=arrival
        )
        for f in res.fills:
            seq = self.next_seq.get(symbol, 1)
            self.next_seq[symbol] = seq + 1
            trade_id = f"{symbol}-{seq}"
            out.outputs.append(
                {
                    "event_id": trade_event_id(trade_id),
                    "type": TRADE_EXECUTED,
                    "ts": now,
                    "trade_id": trade_id,
                    "symbol": symbol,
                    "seq": seq,
                    "buy_order_id": f.buy_order_id,
                    "sell_order_id": f.sell_order_id,
                    "buy_client_id": f.buy_client_id,
                    "sell_client_id": f.sell_client_id,
                    "qty": f.qty,
                    "price": str(f.price),
                    "aggressor_order_id": f.aggressor_order_id,
                }
            )
            out.seq_symbols.add(symbol)
        for m in res.makers:
            out.changed[m.arrival] = m
        if res.rested is not None:
            r = res.rested
            out.changed[r.arrival] = r
            out.outputs.append(
                {
                    "event_id": str(uuid.uuid5(EVENT_NAMESPACE, f"rested:{r.arrival}")),
                    "type": ORDER_RESTED,
                    "ts": now,
                    "order_id": r.order_id,
                    "symbol": symbol,
                    "client_id": r.client_id,
                    "side": r.side,
                    "price": str(r.price),
                    "qty": r.qty,
                    "remaining_qty": r.remaining,
                }
            )

    def _cancel(self, ev: dict[str, Any], now: float, out: BatchOutcome) -> None:
        symbol = ev.get("symbol")
        order_id = ev.get("order_id")
        book = self.books.get(str(symbol)) if symbol else None
        order = book.cancel(str(order_id)) if book is not None and order_id else None
        if order is None:
            out.ignored += 1  # unknown, already filled or already cancelled: nothing to do
            return
        out.changed[order.arrival] = order
        out.outputs.append(
            {
                "event_id": str(uuid.uuid5(EVENT_NAMESPACE, f"cancelled:{order.arrival}")),
                "type": ORDER_CANCELLED,
                "ts": now,
                "order_id": order.order_id,
                "client_id": order.client_id,
                "symbol": order.symbol,
                "remaining_qty": order.remaining,
                "side": order.side,
                "price": str(order.price),
            }
        )


# ------------------------------------------------------------------------------------------ persistence
def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the matcher's tables if missing (idempotent, safe to run concurrently); commits."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(MATCHER_DDL)
    if not conn.autocommit:
        conn.commit()


async def ensure_schema_async(conn: psycopg.AsyncConnection) -> None:
    """Async :func:`ensure_schema`."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        await conn.execute(MATCHER_DDL)
    if not conn.autocommit:
        await conn.commit()


async def load_engine(conn: psycopg.AsyncConnection, *, dedupe_orders: bool) -> MatchingEngine:
    """Rebuild a :class:`MatchingEngine` from the snapshot tables."""
    engine = MatchingEngine(dedupe_orders=dedupe_orders)
    cur = await conn.execute("SELECT next_arrival FROM matcher_meta WHERE id = 1")
    row = await cur.fetchone()
    engine.next_arrival = int(row[0]) if row else 1
    cur = await conn.execute("SELECT symbol, next_seq FROM matcher_symbols")
    engine.next_seq = {s: int(n) for s, n in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT arrival, order_id, client_id, symbol, side, price, qty, remaining FROM matcher_resting"
        " ORDER BY arrival"
    )
    async for arrival, oid, cid, sym, side, price, qty, rem in cur:
        engine.book(sym).restore(RestingOrder(oid, cid, sym, side, Decimal(price), qty, rem, arrival))
    return engine


async def _save_batch(
    conn: psycopg.AsyncConnection,
    engine: MatchingEngine,
    out: BatchOutcome,
    offsets: dict[tuple[str, int], int],
) -> list[tuple[int, str, str, bytes]]:
    """Write one batch's state and outbox (caller holds the transaction); returns the outbox rows."""
    cur = conn.cursor()
    if out.new_order_ids:
        await cur.execute(
            "INSERT INTO matcher_seen_orders (order_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (out.new_order_ids,),
        )
    live = [o for o in out.changed.values() if o.live and o.remaining > 0]
    gone = [a for a, o in out.changed.items() if not (o.live and o.remaining > 0)]
    if live:
        await cur.execute(
            "INSERT INTO matcher_resting (arrival, order_id, client_id, symbol, side, price, qty, remaining)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT (arrival) DO UPDATE SET remaining = EXCLUDED.remaining",
            (
                [o.arrival for o in live],
                [o.order_id for o in live],
                [o.client_id for o in live],
                [o.symbol for o in live],
                [o.side for o in live],
                [str(o.price) for o in live],
                [o.qty for o in live],
                [o.remaining for o in live],
            ),
        )
    if gone:
        await cur.execute("DELETE FROM matcher_resting WHERE arrival = ANY(%s::bigint[])", (gone,))
    if out.seq_symbols:
        syms = sorted(out.seq_symbols)
        await cur.execute(
            "INSERT INTO matcher_symbols (symbol, next_seq) SELECT * FROM unnest(%s::text[], %s::bigint[])"
            " ON CONFLICT (symbol) DO UPDATE SET next_seq = EXCLUDED.next_seq",
            (syms, [engine.next_seq[s] for s in syms]),
        )
    await cur.execute(
        "INSERT INTO matcher_meta (id, next_arrival) VALUES (1, %s)"
        " ON CONFLICT (id) DO UPDATE SET next_arrival = EXCLUDED.next_arrival",
        (engine.next_arrival,),
    )
    if offsets:
        keys = sorted(offsets)
        await cur.execute(
            "INSERT INTO matcher_offsets (topic, partition, next_offset)"
            " SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[])"
            " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            ([k[0] for k in keys], [k[1] for k in keys], [offsets[k] for k in keys]),
        )
    rows: list[tuple[int, str, str, bytes]] = []
    if out.outputs:
        eids = [e["event_id"] for e in out.outputs]
        keys_ = [e["symbol"] for e in out.outputs]
        payloads = [encode(e) for e in out.outputs]
        await cur.execute(
            "INSERT INTO matcher_outbox (event_id, key, payload)"
            " SELECT e, k, p FROM unnest(%s::text[], %s::text[], %s::bytea[])"
            " WITH ORDINALITY AS u(e, k, p, n)"
            " ORDER BY n RETURNING id, event_id",
            (eids, keys_, payloads),
        )
        ids = {eid: i for i, eid in await cur.fetchall()}
        rows = [(ids[e], e, k, p) for e, k, p in zip(eids, keys_, payloads, strict=True)]
    return rows


# ------------------------------------------------------------------------------------------ the service
class Matcher:
    """The matcher process: one session (DB connection, consumer, producer) at a time, rebuilt on error."""

    def __init__(self, settings: Settings, health: HealthState) -> None:
        self.settings = settings
        self.health = health
        self.dedupe = not settings.bug("matcher_double_fill")
        prefix = settings.topic_prefix.strip().rstrip(".")
        self.group_id = f"{prefix}.paperbroker-matcher" if prefix else "paperbroker-matcher"
        self.stats = {"consumed": 0, "published": 0, "duplicates_ignored": 0, "batches": 0, "sessions": 0}
        self.health.details["stats"] = self.stats

    async def run(self, stop: asyncio.Event) -> None:
        """Run sessions until ``stop`` is set; errors tear the session down and start a new one."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 0.5
            except Exception as e:
                log.warning("matcher session failed (%s: %s); restarting", type(e).__name__, e)
                self.health.set_not_ready(f"recovering: {type(e).__name__}: {e}")
                self.health.details["last_error"] = f"{type(e).__name__}: {e}"
                if await sleep_or_stop(stop, backoff):
                    break
                backoff = min(backoff * 2, 5.0)

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.stats["sessions"] += 1
        conn = await psycopg.AsyncConnection.connect(s.dsn, autocommit=True, connect_timeout=5)
        producer: AIOKafkaProducer | None = None
        consumer: AIOKafkaConsumer | None = None
        try:
            await ensure_schema_async(conn)
            self.health.set_not_ready("waiting for the active-matcher lock")
            while True:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (ACTIVE_LOCK_KEY,))
                row = await cur.fetchone()
                if row and row[0]:
                    break
                if await sleep_or_stop(stop, 1.0):
                    return
            engine = await load_engine(conn, dedupe_orders=self.dedupe)
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
                max_batch_size=256 * 1024,
                request_timeout_ms=15000,
            )
            await producer.start()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=s.kafka_bootstrap,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=4 * 1024 * 1024,
            )
            await consumer.start()
            parts = await _wait_partitions(consumer, s.topic_orders, stop)
            if parts is None:
                return
            tps = [TopicPartition(s.topic_orders, p) for p in sorted(parts)]
            consumer.assign(tps)
            cur = await conn.execute(
                "SELECT partition, next_offset FROM matcher_offsets WHERE topic = %s", (s.topic_orders,)
            )
            stored = {int(p): int(o) for p, o in await cur.fetchall()}
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            await self._recover_outbox(conn, producer)
            self.health.set_ready()
            self.health.details.pop("last_error", None)
            log.info("matcher ready: %d partitions, %d books", len(tps), len(engine.books))
            while not stop.is_set():
                data = await consumer.getmany(timeout_ms=200, max_records=BATCH_MAX_RECORDS)
                if data:  # the fetched batch counts as lag until its outputs are published
                    pending = sum(len(v) for v in data.values())
                    self.health.details["lag"] = (consumer_lag(consumer) or 0) + pending
                    await self._process(conn, producer, consumer, engine, data)
                self.health.details["lag"] = consumer_lag(consumer)
        finally:
            self.health.set_not_ready("stopped")
            for closer in (consumer, producer):
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(closer.stop(), timeout=5)
            with contextlib.suppress(Exception):
                await conn.close()

    async def _process(
        self,
        conn: psycopg.AsyncConnection,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        engine: MatchingEngine,
        data: dict[TopicPartition, list[Any]],
    ) -> None:
        events: list[dict[str, Any]] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp in sorted(data, key=lambda t: (t.topic, t.partition)):
            for rec in data[tp]:
                offsets[(tp.topic, tp.partition)] = rec.offset + 1
                try:
                    ev = decode(rec.value)
                    if isinstance(ev, dict):
                        events.append(ev)
                except ValueError:
                    log.warning("undecodable record at %s[%d]@%d", tp.topic, tp.partition, rec.offset)
        accepted = [
            str(e["order_id"]) for e in events if e.get("type") == ORDER_ACCEPTED and e.get("order_id")
        ]
        async with conn.transaction():
            seen: set[str] = set()
            if accepted:
                cur = await conn.execute(
                    "SELECT order_id FROM matcher_seen_orders WHERE order_id = ANY(%s::text[])", (accepted,)
                )
                seen = {r[0] for r in await cur.fetchall()}
            out = engine.apply_batch(events, seen, time.time())
            rows = await _save_batch(conn, engine, out, offsets)
        self.stats["consumed"] += len(events)
        self.stats["batches"] += 1
        self.stats["duplicates_ignored"] += out.duplicates if self.dedupe else 0
        if rows:
            await self._publish(conn, producer, rows)
        with contextlib.suppress(Exception):  # informational only (lag for the usual tools)
            await consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})

    async def _publish(
        self,
        conn: psycopg.AsyncConnection,
        producer: AIOKafkaProducer,
        rows: list[tuple[int, str, str, bytes]],
    ) -> None:
        """Publish outbox rows in order, wait for the acks, then delete them and record the offsets."""
        topic = self.settings.topic_executions
        for i in range(0, len(rows), PUBLISH_CHUNK):
            chunk = rows[i : i + PUBLISH_CHUNK]
            futs = [await producer.send(topic, value=p, key=k.encode()) for _id, _e, k, p in chunk]
            metas = await asyncio.gather(*futs)
            reached: dict[int, int] = {}
            for m in metas:
                reached[m.partition] = max(reached.get(m.partition, 0), m.offset + 1)
            await self._mark_sent(conn, [r[0] for r in chunk], reached)
            self.stats["published"] += len(chunk)

    async def _mark_sent(
        self, conn: psycopg.AsyncConnection, ids: list[int], reached: dict[int, int]
    ) -> None:
        topic = self.settings.topic_executions
        async with conn.transaction():
            await conn.execute("DELETE FROM matcher_outbox WHERE id = ANY(%s::bigint[])", (ids,))
            if reached:
                parts = sorted(reached)
                await conn.execute(
                    "INSERT INTO matcher_published (topic, partition, next_offset)"
                    " SELECT %s, p, o FROM unnest(%s::int[], %s::bigint[]) AS u(p, o)"
                    " ON CONFLICT (topic, partition) DO UPDATE"
                    " SET next_offset = GREATEST(matcher_published.next_offset, EXCLUDED.next_offset)",
                    (topic, parts, [reached[p] for p in parts]),
                )

    async def _recover_outbox(self, conn: psycopg.AsyncConnection, producer: AIOKafkaProducer) -> None:
        """Publish what a previous session left in the outbox, skipping events already on the topic."""
        cur = await conn.execute("SELECT id, event_id, key, payload FROM matcher_outbox ORDER BY id")
        rows = [(int(i), e, k, bytes(p)) for i, e, k, p in await cur.fetchall()]
        if not rows:
            return
        topic = self.settings.topic_executions
        cur = await conn.execute(
            "SELECT partition, next_offset FROM matcher_published WHERE topic = %s", (topic,)
        )
        start = {int(p): int(o) for p, o in await cur.fetchall()}
        present, ends = await read_event_ids(self.settings.kafka_bootstrap, topic, start)
        todo = [r for r in rows if r[1] not in present]
        log.info(
            "outbox recovery: %d pending, %d already on %s, republishing %d",
            len(rows),
            len(rows) - len(todo),
            topic,
            len(todo),
        )
        if todo:
            await self._publish(conn, producer, todo)
        await self._mark_sent(conn, [r[0] for r in rows], ends)


async def _wait_partitions(consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event) -> set[int] | None:
    """Wait (until stop) for the topic's partitions to be known; None when stopped."""
    while not stop.is_set():
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        with contextlib.suppress(Exception):
            await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await sleep_or_stop(stop, 0.5)
    return None


async def read_event_ids(
    bootstrap: str, topic: str, start: dict[int, int], *, timeout_s: float = 60.0
) -> tuple[set[str], dict[int, int]]:
    """Read ``topic`` from ``start`` ({partition: offset}; beginning where absent) to its current end.

    Returns ``(event ids found, {partition: end offset})``. Only the ids are kept, so the memory is
    proportional to the unacknowledged window, not to the topic.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        never = asyncio.Event()
        parts = await asyncio.wait_for(_wait_partitions(consumer, topic, never), timeout=timeout_s)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        if not tps:
            return set(), {}
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        todo = {}
        for tp in tps:
            first = max(start.get(tp.partition, begins[tp]), begins[tp])
            if first < ends[tp]:
                consumer.seek(tp, first)
                todo[tp] = ends[tp]
            else:
                consumer.pause(tp)
        found: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading the tail of {topic} took longer than {timeout_s}s")
            data = await consumer.getmany(*todo.keys(), timeout_ms=200, max_records=5000)
            for tp, recs in data.items():
                for rec in recs:
                    if rec.offset < todo.get(tp, -1):
                        with contextlib.suppress(ValueError, TypeError, AttributeError):
                            found.add(str(decode(rec.value).get("event_id")))
                if recs and recs[-1].offset + 1 >= todo.get(tp, 0):
                    todo.pop(tp, None)
                    consumer.pause(tp)
        return found, {tp.partition: ends[tp] for tp in tps}
    finally:
        await consumer.stop()


def main() -> None:
    """Entry point of ``python -m paperbroker.matcher``."""
    service_main("matcher", Matcher)


if __name__ == "__main__":
    main()
