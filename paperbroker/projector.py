"""The live paperbroker projector: one process running all four projectors over both topics.

Run as ``python -m paperbroker.projector`` (settings from :mod:`paperbroker.config`; /health and /ready on
``$PORT``). One consumer group (``<prefix>.paperbroker-projector``) subscribes to the orders and the
executions topics; each ``getmany`` batch is applied to the read models in the ``public`` schema in ONE
database transaction by :func:`paperbroker.projections.apply_batch_async` (which records
``(projector, event_id)`` in ``processed_events`` in that same transaction and applies only events that
were new), and the batch's Kafka offsets are committed only AFTER the database commit. A crash between
the two redelivers the batch, and the dedupe makes the redelivery a no-op. Several replicas may run in
the group: changes are commutative and rows are locked in a fixed order. Seeded bugs (from
``PAPERBROKER_BUGS`` only): ``projector_double_apply`` skips the processed-event check,
``projection_drift`` never writes the cancelled status into ``rm_orders``, ``projector_skips_backlog``
skips a partition it consumed before to its end after a restart. Each batch's record positions go into
``consumed_offsets`` in the batch's transaction (the gate's ``offset_backwards`` / ``offset_skip``).
Each session, once its database connection is open, announces itself to the market-data feed (a
Postgres ``NOTIFY``, :func:`paperbroker.feed.announce_projector_session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from paperbroker.config import Settings
from paperbroker.events import decode
from paperbroker.feed import announce_projector_session
from paperbroker.projection_apply import apply_batch_async
from paperbroker.projection_plan import ApplyStats, ProjectionOptions
from paperbroker.read_models import ensure_schema_async
from paperbroker.service import (
    HealthState,
    consumer_lag,
    service_main,
    sleep_or_stop,
)

log = logging.getLogger("paperbroker.projector")

LIVE_SCHEMA = "public"
BATCH_MAX_RECORDS = 2000
SESSION_TIMEOUT_MS = 6000


def group_id_for(settings: Settings) -> str:
    """The consumer group of the projector for this deployment's topic prefix."""
    prefix = settings.topic_prefix.strip().rstrip(".")
    return f"{prefix}.paperbroker-projector" if prefix else "paperbroker-projector"


class Projector:
    """The projector process: one session (DB connection + group consumer) at a time, rebuilt on error."""

    def __init__(self, settings: Settings, health: HealthState) -> None:
        self.settings = settings
        self.health = health
        self.options = ProjectionOptions.from_bugs(settings.bugs)
        self.totals = ApplyStats()
        self._resumed: set[TopicPartition] = set()
        self._skipped_to: dict[TopicPartition, int] = {}
        self.health.details["stats"] = self.totals.as_dict()
        self.health.details["consumer_groups"] = {
            group_id_for(settings): [settings.topic_orders, settings.topic_executions]
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Run sessions until ``stop`` is set; errors tear the session down and start a new one."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 0.5
            except Exception as e:
                log.warning("projector session failed (%s: %s); restarting", type(e).__name__, e)
                self.health.set_not_ready(f"recovering: {type(e).__name__}: {e}")
                self.health.details["last_error"] = f"{type(e).__name__}: {e}"
                if await sleep_or_stop(stop, backoff):
                    break
                backoff = min(backoff * 2, 5.0)

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.settings
        conn = await psycopg.AsyncConnection.connect(s.dsn, autocommit=True, connect_timeout=5)
        consumer: AIOKafkaConsumer | None = None
        try:
            await ensure_schema_async(conn, LIVE_SCHEMA)
            await announce_projector_session(conn)  # the feed replicas start their subscribers over
            consumer = AIOKafkaConsumer(
                bootstrap_servers=s.kafka_bootstrap,
                group_id=group_id_for(s),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=4 * 1024 * 1024,
                max_poll_interval_ms=120_000,
                # A SIGKILLed member blocks its partitions until its session times out (the librdkafka
                # mock does not honour static membership): 6 s is the smallest value real brokers accept
                # by default (group.min.session.timeout.ms) and makes a restart ready in about 11 s.
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=1000,
            )
            consumer.subscribe([s.topic_orders, s.topic_executions])
            self._resumed = set()
            await consumer.start()
            self.health.set_ready()
            self.health.details.pop("last_error", None)
            log.info("projector ready (group %s, bugs %s)", group_id_for(s), sorted(s.bugs))
            while not stop.is_set():
                data = await consumer.getmany(timeout_ms=200, max_records=BATCH_MAX_RECORDS)
                if data:  # the fetched batch counts as lag until it is committed
                    pending = sum(len(v) for v in data.values())
                    self.health.details["lag"] = (consumer_lag(consumer) or 0) + pending
                    await self._apply(conn, consumer, data)
                self.health.details["lag"] = consumer_lag(consumer)
        finally:
            self.health.set_not_ready("stopped")
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), timeout=5)
            with contextlib.suppress(Exception):
                await conn.close()

    async def _apply(
        self, conn: psycopg.AsyncConnection, consumer: AIOKafkaConsumer, data: dict[TopicPartition, list[Any]]
    ) -> None:
        events: list[dict[str, Any]] = []
        offsets: dict[TopicPartition, int] = {}
        positions: list[tuple[str, int, int]] = []
        if self.settings.bug("projector_skips_backlog"):
            data = {tp: await self._skip_backlog(conn, consumer, tp, recs) for tp, recs in data.items()}
        for tp, recs in data.items():
            for rec in recs:
                positions.append((tp.topic, tp.partition, rec.offset))
                try:
                    ev = decode(rec.value)
                except ValueError:
                    ev = None
                events.append(ev if isinstance(ev, dict) else {})
            if recs:
                offsets[tp] = recs[-1].offset + 1
        for tp, end in self._skipped_to.items():
            offsets[tp] = max(offsets.get(tp, 0), end)
        self._skipped_to = {}
        stats = await apply_batch_async(conn, LIVE_SCHEMA, events, self.options, positions)  # DB commit first
        self.totals.add(stats)
        self.health.details["stats"] = self.totals.as_dict()
        try:
            await consumer.commit(offsets)  # ... then the offsets
        except Exception as e:  # a rebalance: the batch will be redelivered and deduplicated
            log.warning("offset commit failed (%s: %s); events will be redelivered", type(e).__name__, e)

    async def _skip_backlog(
        self, conn: psycopg.AsyncConnection, consumer: AIOKafkaConsumer, tp: TopicPartition, recs: list[Any]
    ) -> list[Any]:
        """Seeded bug ``projector_skips_backlog``: the first batch of a partition this projector consumed
        before (it restarted) drops every record below the partition's end offset at that moment, to be
        "ready" sooner, and seeks and commits past them; what arrived while it was down is never applied."""
        if tp in self._resumed:
            return recs
        self._resumed.add(tp)
        cur = await conn.execute(
            sql.SQL(
                'SELECT EXISTS (SELECT 1 FROM {}.consumed_offsets WHERE topic = %s AND "partition" = %s)'
            ).format(sql.Identifier(LIVE_SCHEMA)),
            (tp.topic, tp.partition),
        )
        row = await cur.fetchone()
        if not (row and row[0]):
            return recs
        end = (await consumer.end_offsets([tp]))[tp]
        kept = [r for r in recs if r.offset >= end]
        if len(kept) < len(recs):
            log.warning("seeded bug projector_skips_backlog: %s skipped to offset %d", tp, end)
            self._skipped_to[tp] = end
            consumer.seek(tp, max(end, recs[-1].offset + 1))  # past what was fetched beyond this batch too
        return kept


def main() -> None:
    """Entry point of ``python -m paperbroker.projector``."""
    service_main("projector", Projector)


if __name__ == "__main__":
    main()
