"""The transactional-outbox relay: publishes the gateway's ``outbox`` rows to Kafka, at least once.

It runs as a background task inside every gateway replica. Guarantees:

- **At least once, never "sent" before acknowledged.** A batch is claimed with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` inside a transaction, published with an idempotent aiokafka
  producer (``enable_idempotence=True``, ``acks=all``, key = symbol), and ``sent_at`` is set only for rows
  whose send the broker acknowledged (in that transaction, or in a later cycle's when the ack came after
  ``ack_wait_s``: unacknowledged sends stay "in flight" in memory, so one unavailable partition does not
  stall the others). A crash anywhere before that commit leaves the rows unsent; they are published again
  with the **same** ``event_id`` (it is stored in the row), so consumers dedupe by event id. A failed or
  hung send (``send_timeout_s``) replaces the producer and re-claims every unacknowledged row.
- **Order.** Only one replica relays at a time: the relay holds a session-level advisory lock
  (``pg_try_advisory_lock``) on its own connection; the others stand by and take over within about half a
  second when the holder dies (Postgres releases the lock when the connection drops). Rows are published
  in ``id`` order, so an order's ``OrderAccepted`` always precedes its ``CancelRequested`` on the topic
  (the cancel row is written only after the order row committed). ``SKIP LOCKED`` keeps the claim safe
  even if two relays briefly overlap (e.g. after a network blip of the lock connection).
- **Small batches.** At most ``batch_rows`` rows per claim and the producer's ``max_batch_size`` stays at
  16 KiB, far below a consumer's default ``max_partition_fetch_bytes`` (1 MiB; see NOTES on the mock).
- **Deadlines.** Every database step (taking the lock, one claim-send-mark cycle) must finish within
  ``db_deadline_s`` (:func:`paperbroker.db.bounded`): behind a partition that swallows bytes a query never
  fails on its own, and a relay stuck in one would hold the lock and leave the outbox undrained for good.
  At the deadline the connection is severed (its transaction rolls back, its rows stay unsent) and the
  relay reconnects: it is relaying again within about a second of the path coming back. The session also
  asks the server to drop it when idle in a transaction (:data:`SESSION_OPTIONS`), so a relay cut off
  mid-claim cannot keep its row locks for long.
- **Latency.** Idle polling every ``poll_interval_s`` (20 ms); :meth:`OutboxRelay.wake` lets the local
  gateway cut the wait short after it wrote an outbox row, but claims stay at least ``min_gap_s`` (10 ms)
  apart so that under load rows are published in batches, not one claim transaction per order.

``python -m paperbroker.relay`` runs a standalone relay with the gateway's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from paperbroker import db

log = logging.getLogger("paperbroker.relay")

RELAY_LOCK_KEY = 0x5042_524C  # "PBRL": one active relay per database
CLAIM_SQL = """
SELECT id, topic, key, payload FROM outbox
WHERE sent_at IS NULL AND id <> ALL(%s::bigint[]) ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
MARK_SQL = "UPDATE outbox SET sent_at = clock_timestamp(), attempts = attempts + 1 WHERE id = ANY(%s)"
BUMP_SQL = "UPDATE outbox SET attempts = attempts + 1 WHERE id = ANY(%s)"
# server side: a relay session cut off inside a claim transaction ends (and unlocks) after this long
SESSION_OPTIONS = "-c idle_in_transaction_session_timeout=10s"


def make_producer(bootstrap: str, *, client_id: str = "paperbroker-relay") -> AIOKafkaProducer:
    """An idempotent producer (acks=all) with small batches, suitable for the relay."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=1,
        max_batch_size=16384,
        request_timeout_ms=10000,
        retry_backoff_ms=100,
    )


@dataclass
class RelayStats:
    """Counters of one relay (exposed by the gateway on /ready)."""

    published: int = 0
    batches: int = 0
    failures: int = 0
    leader: bool = False
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class OutboxRelay:
    """Publishes ``outbox`` rows to Kafka; also owns the producer and the broker health signal."""

    def __init__(
        self,
        dsn: str,
        bootstrap: str,
        *,
        name: str = "relay",
        batch_rows: int = 500,
        poll_interval_s: float = 0.02,
        min_gap_s: float = 0.01,
        send_timeout_s: float = 15.0,
        ack_wait_s: float = 0.5,
        max_inflight: int = 5000,
        broker_check_interval_s: float = 1.0,
        broker_grace_s: float = 3.0,
        db_deadline_s: float | None = 5.0,
    ) -> None:
        self.dsn = dsn
        self.bootstrap = bootstrap
        self.name = name
        self.batch_rows = batch_rows
        self.poll_interval_s = poll_interval_s
        self.min_gap_s = min(min_gap_s, poll_interval_s)
        self.send_timeout_s = send_timeout_s
        self.ack_wait_s = ack_wait_s
        self.max_inflight = max_inflight
        self.db_deadline_s = db_deadline_s
        self._inflight: dict[int, tuple[asyncio.Future[Any], float]] = {}
        self.broker_check_interval_s = broker_check_interval_s
        self.broker_grace_s = broker_grace_s
        self.stats = RelayStats()
        self.producer: AIOKafkaProducer | None = None
        self._broker_ok_at = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_log = 0.0
        self._producer_wake = asyncio.Event()
        self._bg: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background tasks (producer keeper + broker probe, relay loop). Returns at once."""
        self._tasks = [
            asyncio.create_task(self._producer_loop(), name="relay-producer"),
            asyncio.create_task(self._relay_loop(), name="relay-loop"),
        ]

    async def stop(self) -> None:
        """Stop the tasks and the producer (pending acknowledged work is already committed)."""
        self._stopping = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 5)
            self.producer = None

    def wake(self) -> None:
        """Ask the relay loop to poll now (called after an outbox row was committed)."""
        self._wake.set()

    @property
    def broker_ok(self) -> bool:
        """True when the broker answered (metadata or an acknowledged send) within ``broker_grace_s``."""
        return self._broker_ok_at > 0 and time.monotonic() - self._broker_ok_at <= self.broker_grace_s

    # -- producer and broker health ------------------------------------------------------------------
    async def _producer_loop(self) -> None:
        while not self._stopping:
            if self.producer is None:
                producer = make_producer(self.bootstrap, client_id=f"pb-{self.name}")
                try:
                    await asyncio.wait_for(producer.start(), 10)
                except Exception as e:  # broker down at start: keep trying
                    self.stats.last_error = f"producer start: {type(e).__name__}: {e}"
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(producer.stop(), 2)
                    await asyncio.sleep(0.5)
                    continue
                self.producer = producer
                self._broker_ok_at = time.monotonic()
                self._wake.set()
            try:
                await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2.0)
                self._broker_ok_at = time.monotonic()
            except Exception as e:
                self.stats.last_error = f"broker metadata: {type(e).__name__}: {e}"
            self._producer_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._producer_wake.wait(), self.broker_check_interval_s)

    # -- the relay proper ----------------------------------------------------------------------------
    async def _relay_loop(self) -> None:
        while not self._stopping:
            conn: psycopg.AsyncConnection | None = None
            try:
                conn = await db.connect_async(self.dsn, autocommit=True, options=SESSION_OPTIONS)
                while not self._stopping:
                    async with db.bounded(conn, self.db_deadline_s, "relay lock"):
                        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,))
                        row = await cur.fetchone()
                    if row and row[0]:
                        break
                    self.stats.leader = False
                    await asyncio.sleep(0.5)
                self.stats.leader = True
                log.info("%s: relay is active", self.name)
                while not self._stopping:
                    async with db.bounded(conn, self.db_deadline_s, "relay cycle"):
                        n = await self._relay_once(conn)
                    if n >= self.batch_rows:
                        continue  # more waiting: go on at once
                    # coalesce: at most one claim per min_gap_s, so a busy gateway's wake-ups make
                    # batches instead of one claim transaction per order
                    await asyncio.sleep(self.min_gap_s)
                    if not self._wake.is_set():
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.poll_interval_s - self.min_gap_s)
                    self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.stats.failures += 1
                err = f"relay: {type(e).__name__}: {e}"
                if err != self.stats.last_error or time.monotonic() - self._last_log > 5:
                    log.warning("%s: relay error (will retry): %s", self.name, err)
                    self._last_log = time.monotonic()
                self.stats.last_error = err
                await asyncio.sleep(0.2)
            finally:
                self.stats.leader = False
                self._inflight.clear()  # their rows are still unsent in the table: claimed again later
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def _relay_once(self, conn: psycopg.AsyncConnection) -> int:
        """One cycle: claim new rows, send them, wait briefly for acks, mark every acked row sent.

        Sends that are not acknowledged within ``ack_wait_s`` stay in flight (in memory, rows still
        unsent in the table) and are harvested by later cycles, so one unavailable partition does not stall
        the others. Returns how many rows were claimed.
        """
        producer = self.producer
        if producer is None:
            return 0
        inflight = self._inflight
        rows: list[Any] = []
        async with conn.transaction():
            if len(inflight) < self.max_inflight:
                cur = await conn.execute(CLAIM_SQL, (list(inflight), self.batch_rows))
                rows = await cur.fetchall()
                now = time.monotonic()
                sent: list[asyncio.Future[Any]] = []
                for row_id, topic, key, payload in rows:
                    fut = await producer.send(topic, value=payload.encode(), key=key.encode())
                    inflight[row_id] = (fut, now)
                    sent.append(fut)
                if sent:  # wait (briefly) for this cycle's sends only; older ones are harvested if done
                    await asyncio.wait(sent, timeout=self.ack_wait_s)
            if not inflight:
                return 0
            acked: list[int] = []
            failed: list[int] = []
            errors: set[str] = set()
            for row_id, (fut, _) in list(inflight.items()):
                if fut.done():
                    del inflight[row_id]
                    exc = fut.exception()
                    if exc is None:
                        acked.append(row_id)
                    else:
                        failed.append(row_id)
                        errors.add(repr(exc))
            oldest = min((t for _, t in inflight.values()), default=time.monotonic())
            stuck = time.monotonic() - oldest > self.send_timeout_s
            if acked:
                await conn.execute(MARK_SQL, (acked,))
                self._broker_ok_at = time.monotonic()
            if failed:
                await conn.execute(BUMP_SQL, (failed,))
        self.stats.published += len(acked)
        self.stats.batches += 1
        if failed or stuck:
            # a producer whose sends failed or hang may hold expired batches and a broken idempotence
            # sequence: replace it. Every row it did not get acknowledged is still unsent in the table and is
            # claimed again (same event id) by the next cycle.
            self.stats.failures += 1
            self.stats.last_error = f"{len(failed)} sends failed {sorted(errors)[:3]}" + (
                f", {len(inflight)} unacknowledged for > {self.send_timeout_s}s" if stuck else ""
            )
            for fut, _ in inflight.values():
                fut.add_done_callback(_consume_exception)
            inflight.clear()
            self._discard_producer(producer)
            await asyncio.sleep(0.2)
        return len(rows)

    def _discard_producer(self, producer: AIOKafkaProducer) -> None:
        if self.producer is producer:
            self.producer = None
            self._producer_wake.set()
            task = asyncio.create_task(_stop_quietly(producer))
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)


async def read_topic_events_async(
    bootstrap: str, topic: str, *, timeout_s: float = 20.0
) -> list[dict[str, Any]]:
    """Read a topic from the beginning up to its current end; return the decoded events in partition
    order, each with ``_partition`` and ``_offset`` added. Raises TimeoutError after ``timeout_s``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from paperbroker.events import decode

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            if loop.time() > deadline:
                raise TimeoutError(f"topic {topic!r} not found on {bootstrap}")
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []

        async def behind() -> bool:
            for tp in tps:
                if await consumer.position(tp) < end[tp]:
                    return True
            return False

        while await behind():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"reading {topic!r}: end offsets {end} not reached in {timeout_s}s")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < end[tp]:
                        out.append({**decode(m.value), "_partition": tp.partition, "_offset": m.offset})
        return out
    finally:
        await consumer.stop()


def read_topic_events(bootstrap: str, topic: str, *, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Synchronous :func:`read_topic_events_async` (for tests and the benchmark)."""
    return asyncio.run(read_topic_events_async(bootstrap, topic, timeout_s=timeout_s))


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 5)


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


async def _main() -> None:
    from paperbroker.config import load_settings

    settings = load_settings()
    relay = OutboxRelay(settings.dsn, settings.kafka_bootstrap, name=settings.replica or "relay")
    await relay.start()
    try:
        await asyncio.Event().wait()
    finally:
        await relay.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
