"""The paperbroker matcher process: consumes the orders topic, matches per symbol, emits executions once.

Run as ``python -m paperbroker.matcher`` (settings from :mod:`paperbroker.config`; /health and /ready on
``$PORT``). :class:`Matcher` is the consumer/producer loop around the pure
:class:`~paperbroker.matching.MatchingEngine` (books, per-symbol trade ``seq``, deterministic ids) and
its state in Postgres (:mod:`paperbroker.matcher_store`); ``MatchingEngine`` and ``ensure_schema`` can
still be imported from here.

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
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from paperbroker.config import Settings
from paperbroker.events import ORDER_ACCEPTED, decode
from paperbroker.matcher_store import (
    MATCHER_DDL,
    consumed_offsets,
    ensure_schema,
    ensure_schema_async,
    load_engine,
    mark_sent,
    outbox_rows,
    published_offsets,
    save_batch,
    seen_orders,
    try_active_lock,
)
from paperbroker.matching import EVENT_NAMESPACE, BatchOutcome, MatchingEngine, trade_event_id
from paperbroker.service import (
    HealthState,
    consumer_lag,
    service_main,
    sleep_or_stop,
)

__all__ = [
    "EVENT_NAMESPACE",
    "MATCHER_DDL",
    "BatchOutcome",
    "Matcher",
    "MatchingEngine",
    "ensure_schema",
    "ensure_schema_async",
    "load_engine",
    "main",
    "read_event_ids",
    "trade_event_id",
]

log = logging.getLogger("paperbroker.matcher")

BATCH_MAX_RECORDS = 2000
PUBLISH_CHUNK = 500  # ~150 KB per partition: one producer batch, so a failed batch cannot be overtaken


# ------------------------------------------------------------------------------------------ the service
class Matcher:
    """The matcher process: one session (DB connection, consumer, producer) at a time, rebuilt on error."""

    def __init__(self, settings: Settings, health: HealthState) -> None:
        self.settings = settings
        self.health = health
        self.dedupe = not settings.bug("matcher_double_fill")
        self.round_restored_prices = settings.bug("matcher_restore_rounds_price")
        self.keep_cancelled = settings.bug("matcher_snapshot_keeps_cancelled")
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
                if await try_active_lock(conn):
                    break
                if await sleep_or_stop(stop, 1.0):
                    return
            engine = await load_engine(
                conn, dedupe_orders=self.dedupe, round_prices=self.round_restored_prices
            )
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
            stored = await consumed_offsets(conn, s.topic_orders)
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
                seen = await seen_orders(conn, accepted)
            out = engine.apply_batch(events, seen, time.time())
            rows = await save_batch(conn, engine, out, offsets, keep_cancelled=self.keep_cancelled)
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
            await mark_sent(conn, topic, [r[0] for r in chunk], reached)
            self.stats["published"] += len(chunk)

    async def _recover_outbox(self, conn: psycopg.AsyncConnection, producer: AIOKafkaProducer) -> None:
        """Publish what a previous session left in the outbox, skipping events already on the topic."""
        rows = await outbox_rows(conn)
        if not rows:
            return
        topic = self.settings.topic_executions
        start = await published_offsets(conn, topic)
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
        await mark_sent(conn, topic, [r[0] for r in rows], ends)


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
