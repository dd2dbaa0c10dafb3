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
retention), and the book, offsets and outputs move together atomically.

**Leader lease and fencing** (:mod:`paperbroker.lease`). Several replicas run; the one holding the lease
of the symbol group matches, the others are hot standbys polling for it (readiness 503, reason
``standby``). The leader renews its lease every third of ``PB_LEASE_TTL_S`` (default 3 s) on its own
connection; the first renewal that fails or times out, or a local deadline passed (a paused process),
pauses it at once: readiness 503, ``leader`` 0, the session torn down before another batch is matched. A
standby takes the expired lease with the next fencing token and loads the state the last leader
committed. Every write transaction (a batch, an outbox acknowledgement) is fenced by the token at the
store (checked last, just before the commit, so the lease row is locked only for that moment; a session
left idle inside a transaction for the lease's ttl, a leader paused there, is ended by the server so that
it cannot keep a standby from taking over), so a deposed leader that did not notice cannot change the
book, the sequence numbers or the outbox. ``/health`` shows ``leader`` (1/0), ``fencing_token``,
``lease_group`` and ``heartbeat_age_s`` (seconds since the replica last heard from the lease store). The
seeded bug ``unfenced_leader`` skips the store's fence (and the idle-transaction timeout), ignores a
failed or refused renewal and takes a lease renewed within the last :data:`UNFENCED_CHECK_S` seconds to
be still held, so a leader paused past its lease matches again beside its successor until then (split
brain).

**Symbol groups** (``PB_SYMBOL_GROUPS``, default 1). With N groups each replica runs N
:class:`GroupMatcher` side by side, one per group, each competing for its own group's lease exactly as
above, so two replicas can each lead a different group and a replica that loses one group's lease keeps
the others. A group's leader reads every orders partition from its group's stored offsets and matches only
its symbols' orders (a symbol's orders all carry the symbol, so its book sees them all, in order); the
group's book, offsets, outbox and published offsets are rows of its own (:mod:`paperbroker.matcher_store`),
and every write is fenced by the group's token. A replica that already leads a group takes another only
once it has seen it free for a whole lease ttl, so a replica leading nothing gets it first and the groups
spread over the replicas (a lone survivor still takes them all). ``/health`` adds ``groups`` (each
group's figures and ``ready``); the top-level figures are those of the first group the replica leads.

Incoming ``OrderAccepted`` events are deduplicated by ``order_id`` (a redelivered or re-published order is
ignored); the ``matcher_double_fill`` seeded bug skips that check, so a redelivered order is matched
again. A ``CancelRequested`` for an order not in the book is ignored. Added fields (allowed by the
contract, see :mod:`paperbroker.events`): ``OrderRested`` carries ``client_id, side, price, qty,
remaining_qty``; ``OrderCancelled`` carries ``side, price``, so the market-snapshot projection needs no
other state. The matcher also commits its consumed offsets to the consumer group
``<prefix>.paperbroker-matcher`` (``paperbroker-matcher`` without a prefix; with several symbol groups,
``paperbroker-matcher.<group>`` per group; best effort, after the publish) so consumer lag is visible to
the usual tools; its own recovery never reads them.

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
from paperbroker.lease import (
    Lease,
    LeaseLost,
    acquire,
    fence,
    group_names,
    group_of,
    lease_free,
    renew,
)
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
    "GroupMatcher",
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
STANDBY_POLL_S = 0.5  # how often a standby tries to take the lease
UNFENCED_CHECK_S = 10.0  # the unfenced_leader bug: a lease renewed within this long is taken as held


# ------------------------------------------------------------------------------------------ the service
class Matcher:
    """The matcher process: one :class:`GroupMatcher` per symbol group (``PB_SYMBOL_GROUPS``, default one),
    all competing for their group's lease side by side, and the process's /health and /ready over them.

    ``/health`` shows, besides the counters, ``groups``: ``{group: {leader, fencing_token,
    heartbeat_age_s, ready}}``, and at the top the figures of the first group this replica leads (of the
    first group when it leads none), so ``leader`` is 1 while it leads any group, ``fencing_token`` and
    ``lease_group`` name one group it leads, and with the default single group the body is what it always
    was. The replica is ready while it matches for some group.
    """

    def __init__(self, settings: Settings, health: HealthState) -> None:
        self.settings = settings
        self.health = health
        self.stats = {"consumed": 0, "published": 0, "duplicates_ignored": 0, "batches": 0, "sessions": 0}
        health.details["stats"] = self.stats
        names = group_names(settings.symbol_groups)
        self.groups = [GroupMatcher(settings, self, name, i, len(names)) for i, name in enumerate(names)]
        # the consumer groups the groups' leaders commit to, named for the gate's quiesce preflight
        health.details["consumer_groups"] = {g.group_id: [settings.topic_orders] for g in self.groups}
        self.acquiring = asyncio.Lock()
        health.figures = self._figures
        health.ready_check = self._leading

    async def run(self, stop: asyncio.Event) -> None:
        """Run every group's sessions until ``stop`` is set."""
        await asyncio.gather(*(g.run(stop) for g in self.groups))

    def sync(self) -> None:
        """Carry the groups' readiness to the process's health: ready while some group is, else with the
        first group's reason."""
        if any(g.state.ready for g in self.groups):
            self.health.set_ready()
        else:
            self.health.set_not_ready(self.groups[0].state.reason)

    def leads_other(self, group: GroupMatcher) -> bool:
        """True when this replica holds the lease of a group other than ``group``."""
        return any(g is not group and g.lease.token is not None for g in self.groups)

    def _leading(self) -> bool:
        """Readiness at probe time: some group ready and leading now (:meth:`GroupMatcher.leading`)."""
        return any(g.state.ready and g.leading() for g in self.groups)

    def _figures(self) -> dict[str, Any]:
        """The live figures of /health: the first led group's (else the first group's) lease figures at
        the top, ``groups`` with every group's, ``lag`` summed over the groups (None when none is known)
        and the ``last_error`` of a group that has one."""
        per = {g.group: g.figures() for g in self.groups}
        first = next((g for g in self.groups if per[g.group]["leader"] == 1), self.groups[0])
        top = {k: v for k, v in per[first.group].items() if k != "ready"}
        lags = [g.state.details.get("lag") for g in self.groups]
        known = [n for n in lags if isinstance(n, int)]
        out: dict[str, Any] = {**top, "groups": per, "lag": sum(known) if known else None}
        errors = [g.state.details["last_error"] for g in self.groups if "last_error" in g.state.details]
        if errors:
            out["last_error"] = errors[0]
        return out


class _GroupState:
    """One group's readiness and details, shaped like the :class:`HealthState` calls the session makes;
    every change is carried to the process's health by :meth:`Matcher.sync`."""

    def __init__(self, owner: Matcher) -> None:
        self.owner = owner
        self.ready = False
        self.reason = "starting"
        self.details: dict[str, Any] = {}

    def set_ready(self) -> None:
        self.ready, self.reason = True, "ready"
        self.owner.sync()

    def set_not_ready(self, reason: str) -> None:
        self.ready, self.reason = False, reason
        self.owner.sync()


class GroupMatcher:
    """The matcher of one symbol group: one session (DB connection, consumer, producer) at a time, rebuilt
    on error, matching only while it holds the group's lease.

    Every group's leader reads every partition of the orders topic from its group's own stored offsets
    and matches only the orders of its group's symbols (:func:`~paperbroker.lease.group_of`); the orders
    of other groups are skipped but their offsets move with the batch, in the group's own rows. So a
    group's state (book, seq, offsets, outbox) is exactly a single-group matcher's over its symbols'
    orders, and a handover of one group is that matcher's handover: nothing lost, nothing matched twice.
    """

    def __init__(self, settings: Settings, owner: Matcher, group: str, index: int, count: int) -> None:
        self.settings = settings
        self.owner = owner
        self.group = group
        self.index = index
        self.count = count
        self.state = _GroupState(owner)
        self.health = self.state  # the session's readiness calls go to the group's state
        self.stats = owner.stats
        self.dedupe = not settings.bug("matcher_double_fill")
        self.round_restored_prices = settings.bug("matcher_restore_rounds_price")
        self.keep_cancelled = settings.bug("matcher_snapshot_keeps_cancelled")
        self.unfenced = settings.bug("unfenced_leader")
        self.lease = Lease(group, settings.replica, settings.lease_ttl_s)
        self.id_scope = "" if count == 1 else group
        self._lost = asyncio.Event()
        self._acting = False  # matching under a token (this session loaded the book and is consuming)
        self._free_since: float | None = None  # when this standby first saw the lease free (spreading)
        prefix = settings.topic_prefix.strip().rstrip(".")
        base = f"{prefix}.paperbroker-matcher" if prefix else "paperbroker-matcher"
        # each group commits its own progress (informational); one group keeps the usual group id
        self.group_id = base if count == 1 else f"{base}.{group}"

    def owns(self, event: dict[str, Any]) -> bool:
        """True when ``event`` (an input event) belongs to this group's symbols."""
        return self.count == 1 or group_of(str(event.get("symbol") or ""), self.count) == self.index

    async def run(self, stop: asyncio.Event) -> None:
        """Run sessions until ``stop`` is set; errors tear the session down and start a new one."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._guarded_session(stop)
                backoff = 0.5
            except LeaseLost as e:  # a standby again at once: the successor needs no backoff of ours
                log.warning("matcher of %s paused (%s); standby", self.group, e)
                self.health.set_not_ready(f"paused: {e}")
                self.health.details["last_error"] = f"LeaseLost: {e}"
                backoff = 0.5
                if await sleep_or_stop(stop, STANDBY_POLL_S):
                    break
            except Exception as e:
                name = type(e).__name__
                log.warning("matcher of %s: session failed (%s: %s); restarting", self.group, name, e)
                self.health.set_not_ready(f"recovering: {type(e).__name__}: {e}")
                self.health.details["last_error"] = f"{type(e).__name__}: {e}"
                if await sleep_or_stop(stop, backoff):
                    break
                backoff = min(backoff * 2, 5.0)

    async def _guarded_session(self, stop: asyncio.Event) -> None:
        """Run one session, cancelled the moment the lease is lost: a leader stuck in a database call
        behind a partition stops there rather than finishing its batch (the fence would refuse it anyway).
        Under the unfenced_leader bug the session is left to notice on its own."""
        self._lost = asyncio.Event()
        session = asyncio.create_task(self._session(stop))
        if self.unfenced:
            await session
            return
        lost = asyncio.create_task(self._lost.wait())
        try:
            await asyncio.wait({session, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if session.done():
            session.result()  # its exception, if any
            return
        session.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(session, timeout=10)
        raise LeaseLost(self.lease.lost_reason or "lease lost")

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.stats["sessions"] += 1
        conn = await psycopg.AsyncConnection.connect(s.dsn, autocommit=True, connect_timeout=5)
        producer: AIOKafkaProducer | None = None
        consumer: AIOKafkaConsumer | None = None
        renewer: asyncio.Task[None] | None = None
        try:
            await ensure_schema_async(conn)
            # A leader stopped inside a transaction (a pause between its fence and its commit) must not
            # hold the lease row's lock past its lease, or no standby could take over: the server ends
            # such a session after the lease's ttl and rolls its write back.
            # (The unfenced_leader bug has neither this nor the fence: its paused writer lives on.)
            if not self.unfenced:
                idle_ms = int(max(self.lease.ttl_s, 2.0) * 1000)
                await conn.execute(f"SET idle_in_transaction_session_timeout = {idle_ms}")
            self.health.set_not_ready("standby")
            if not await self._take_lease(stop):
                return
            renewer = asyncio.create_task(self._renew_lease(stop))
            engine = await load_engine(
                conn,
                dedupe_orders=self.dedupe,
                round_prices=self.round_restored_prices,
                group=self.group,
                id_scope=self.id_scope,
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
            stored = await consumed_offsets(conn, s.topic_orders, self.group)
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            await self._recover_outbox(conn, producer)
            self.health.set_ready()
            self._acting = True
            self.health.details.pop("last_error", None)
            log.info("matcher of %s ready: %d partitions, %d books", self.group, len(tps), len(engine.books))
            while not stop.is_set():
                self._check_lease()
                data = await consumer.getmany(timeout_ms=200, max_records=BATCH_MAX_RECORDS)
                if data:
                    self._check_lease()  # the fetched batch counts as lag until its outputs are published
                    pending = sum(len(v) for v in data.values())
                    self.health.details["lag"] = (consumer_lag(consumer) or 0) + pending
                    await self._process(conn, producer, consumer, engine, data)
                self.health.details["lag"] = consumer_lag(consumer)
        finally:
            self.health.set_not_ready("stopped")
            self._acting = False
            self.lease.release()
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(BaseException):
                    await renewer
            for closer in (consumer, producer):
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(closer.stop(), timeout=5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)

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
                    if isinstance(ev, dict) and self.owns(ev):
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
            rows = await save_batch(
                conn, engine, out, offsets, keep_cancelled=self.keep_cancelled, group=self.group
            )
            if not self.unfenced:  # last: the lease row is share-locked only from here to the commit
                await fence(conn, self.lease.group, self._token())
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
            await mark_sent(
                conn, topic, [r[0] for r in chunk], reached, lease=self._fence_of(), group=self.group
            )
            self.stats["published"] += len(chunk)

    # ------------------------------------------------------------------------------------ the lease
    def leading(self) -> bool:
        """Readiness at probe time: a leader whose lease lapsed is not ready, whatever its loop does
        (under the unfenced_leader bug it goes on as long as its loop has not noticed)."""
        return self.unfenced or self.lease.held()

    def figures(self) -> dict[str, Any]:
        """This group's lease figures (:meth:`Lease.figures`) and ``ready``, ``leader`` being what this
        replica does: 1 while it matches under a token (under the bug, until its loop notices the lease
        is gone)."""
        figures = self.lease.figures()
        if self.unfenced and self._acting and self.lease.token is not None:
            figures.update(leader=1, fencing_token=self.lease.token)
        figures["ready"] = self.state.ready and self.leading()
        return figures

    def _token(self) -> int:
        token = self.lease.token
        if token is None:
            raise LeaseLost("no lease held")
        return token

    def _fence_of(self) -> tuple[str, int] | None:
        """(group, token) that fences a write, or None under the unfenced_leader bug."""
        return None if self.unfenced else (self.lease.group, self._token())

    def _check_lease(self) -> None:
        """Raise :class:`LeaseLost` (the session ends, the replica becomes a standby) once the lease is
        not held; under the unfenced_leader bug only every :data:`UNFENCED_CHECK_S` seconds."""
        now = time.monotonic()
        if self.unfenced:  # the bug: a lease renewed within the last 10 s is taken to be still held
            if now - self.lease.renewed_at > UNFENCED_CHECK_S:
                self.health.set_not_ready("paused: lease lost")
                raise LeaseLost(f"no renewal for {UNFENCED_CHECK_S:g} s")
            return
        if not self.lease.held(now):
            self.health.set_not_ready("paused: lease lost")
            raise LeaseLost(self.lease.lost_reason or "lease deadline passed without a renewal")

    async def _take_lease(self, stop: asyncio.Event) -> bool:
        """Poll for the lease (a standby) until this replica holds it; False when stopped."""
        s = self.settings
        while not stop.is_set():
            started = time.monotonic()
            try:
                # one group of a replica at a time, so each sees what the others already hold
                async with self.owner.acquiring:
                    async with await psycopg.AsyncConnection.connect(
                        s.dsn, autocommit=True, connect_timeout=2
                    ) as lc:
                        token = await asyncio.wait_for(
                            self._try_acquire(lc, started), timeout=self.lease.ttl_s / 2
                        )
                    self.lease.heard()
                    if token is not None:
                        self.lease.granted(token, started)
                        self._free_since = None
                        log.info("lease of %s taken with fencing token %d", self.lease.group, token)
                        return True
            except (psycopg.Error, OSError, TimeoutError) as e:
                log.warning("lease store unreachable (%s: %s)", type(e).__name__, e)
            if await sleep_or_stop(stop, STANDBY_POLL_S):
                return False
        return False

    async def _try_acquire(self, conn: psycopg.AsyncConnection, started: float) -> int | None:
        """:func:`acquire` the group's lease, at once when this replica leads no other group; a replica
        that leads another one takes it only once it has seen it free for a whole ttl, so a replica that
        leads nothing gets it first and the groups spread over the replicas (a lone survivor still takes
        every group, one ttl later)."""
        lease = self.lease
        if not self.owner.leads_other(self):
            return await acquire(conn, lease.group, lease.holder, lease.ttl_s)
        if not await lease_free(conn, lease.group, lease.holder):
            self._free_since = None
            return None
        if self._free_since is None:
            self._free_since = started
        if started - self._free_since < lease.ttl_s:
            return None
        return await acquire(conn, lease.group, lease.holder, lease.ttl_s)

    async def _renew_lease(self, stop: asyncio.Event) -> None:
        """Renew every third of the ttl on a connection of its own; the first failure pauses the leader."""
        s, lease = self.settings, self.lease
        interval = lease.ttl_s / 3
        timeout = lease.ttl_s / 2  # the local deadline (start + ttl) still comes before the store's expiry
        conn: psycopg.AsyncConnection | None = None
        try:
            while not stop.is_set() and lease.token is not None:
                if await sleep_or_stop(stop, interval):
                    return
                started = time.monotonic()
                token = lease.token
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(
                            psycopg.AsyncConnection.connect(s.dsn, autocommit=True, connect_timeout=2),
                            timeout=timeout,
                        )
                    ok = await asyncio.wait_for(
                        renew(conn, lease.group, lease.holder, token, lease.ttl_s), timeout=timeout
                    )
                except (psycopg.Error, OSError, TimeoutError) as e:
                    log.warning("lease renewal failed (%s: %s): pausing", type(e).__name__, e)
                    if self.unfenced:  # the bug: logged, retried at the next tick, matching goes on
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(conn.close(), timeout=1) if conn else None
                        conn = None
                        continue
                    lease.lose(f"renewal failed: {type(e).__name__}: {e}")
                    self._lost.set()
                    return
                lease.heard()
                if not ok and self.unfenced:
                    continue
                if not ok:
                    lease.lose(f"deposed: the lease no longer carries token {token}")
                    log.warning("lease of %s lost to another replica: pausing", lease.group)
                    self._lost.set()
                    return
                if not lease.held():  # the renewal came back after the local deadline (a pause)
                    lease.lose("renewal answered after the lease deadline")
                    self._lost.set()
                    return
                lease.granted(token, started)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=1)

    async def _recover_outbox(self, conn: psycopg.AsyncConnection, producer: AIOKafkaProducer) -> None:
        """Publish what a previous session left in the outbox, skipping events already on the topic."""
        rows = await outbox_rows(conn, self.group)
        if not rows:
            return
        topic = self.settings.topic_executions
        start = await published_offsets(conn, topic, self.group)
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
        await mark_sent(conn, topic, [r[0] for r in rows], ends, lease=self._fence_of(), group=self.group)


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
