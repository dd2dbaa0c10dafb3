"""The gateway's order and RFQ intake in Postgres: the idempotency guard, the transactional outbox, quotes.

Intake is one SQL statement (autocommit): a data-modifying CTE inserts the guard row into
``order_idempotency`` (primary key ``(client_id, idempotency_key)``, ``ON CONFLICT DO NOTHING``) and, only
if that row was inserted, the ``orders`` row and the ``outbox`` row with the ``OrderAccepted`` event (the
relay publishes the outbox to Kafka). A conflicting request waits for the winner's commit, then reads the
existing order and compares the body hash: the same body answers the original order, another body is a
409. A cancel writes ``CancelRequested`` to the outbox in the order's own transaction; an RFQ is quoted by
a fixed rule and stored under its optional key. The seeded bugs ``no_idempotency`` (the same writes
without the guard) and ``ack_before_commit`` (an in-memory write-behind buffer, each order written about a
second after it was acknowledged) live here too. :class:`OrderIntake` answers ``(status, JSON body)`` or
raises :class:`~paperbroker.gateway_api.ApiError`; a database failure goes through the replica's
``db_failed`` so its health loop re-probes. Every use of a pooled connection is bounded by
``db_deadline_s`` (:func:`paperbroker.db.bounded`: at the deadline, or at a heal of the database when the
use began before it, the connection is severed, the request answers 503 and the pool replaces the
connection); the seeded bug ``no_db_deadline`` passes ``None``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from paperbroker import db
from paperbroker.events import CANCEL_REQUESTED, ORDER_ACCEPTED, encode, new_event
from paperbroker.gateway_api import ApiError, body_hash, order_json, rfq_json, unavailable
from paperbroker.relay import OutboxRelay

log = logging.getLogger("paperbroker.gateway")

WRITE_BEHIND_INTERVAL_S = 0.1
WRITE_BEHIND_DELAY_S = 1.0  # every acknowledged order stays in memory this long
RFQ_TTL_S = 10.0


# --------------------------------------------------------------------------------------------- SQL
ORDER_COLS = "order_id, client_id, idempotency_key, symbol, side, qty, price, status, created_at, body_hash"
INTAKE_SQL = """
WITH guard AS (
    INSERT INTO order_idempotency (client_id, idempotency_key, order_id, body_hash)
    VALUES (%(client_id)s, %(idempotency_key)s, %(order_id)s, %(body_hash)s)
    ON CONFLICT DO NOTHING
    RETURNING order_id
), o AS (
    INSERT INTO orders (order_id, client_id, idempotency_key, body_hash, symbol, side, qty, price, event_id)
    SELECT guard.order_id, %(client_id)s, %(idempotency_key)s, %(body_hash)s, %(symbol)s, %(side)s,
           %(qty)s, %(price)s, %(event_id)s
    FROM guard
    RETURNING created_at
), ob AS (
    INSERT INTO outbox (event_id, event_type, topic, key, payload, order_id)
    SELECT %(event_id)s, 'OrderAccepted', %(topic)s, %(symbol)s, %(payload)s, %(order_id)s FROM guard
)
SELECT created_at FROM o
"""
# The seeded bug no_idempotency: the same writes without the guard.
INTAKE_NO_GUARD_SQL = """
WITH o AS (
    INSERT INTO orders (order_id, client_id, idempotency_key, body_hash, symbol, side, qty, price, event_id)
    VALUES (%(order_id)s, %(client_id)s, %(idempotency_key)s, %(body_hash)s, %(symbol)s, %(side)s,
            %(qty)s, %(price)s, %(event_id)s)
    RETURNING created_at
), ob AS (
    INSERT INTO outbox (event_id, event_type, topic, key, payload, order_id)
    VALUES (%(event_id)s, 'OrderAccepted', %(topic)s, %(symbol)s, %(payload)s, %(order_id)s)
)
SELECT created_at FROM o
"""
EXISTING_SQL = f"""
SELECT {", ".join("o." + c.strip() for c in ORDER_COLS.split(","))}
FROM order_idempotency i JOIN orders o ON o.order_id = i.order_id
WHERE i.client_id = %s AND i.idempotency_key = %s
"""
GET_ORDER_SQL = f"SELECT {ORDER_COLS} FROM orders WHERE order_id = %s"
RFQ_COLS = (
    "rfq_id, client_id, idempotency_key, symbol, side, qty, reference_price, bid, ask, created_at, "
    "expires_at, body_hash"
)


# ------------------------------------------------------------------------------------------ quotes
def reference_price(symbol: str) -> Decimal:
    """A stable reference price per symbol (10.00 … 500.00), derived from the symbol's CRC32."""
    return Decimal(1000 + zlib.crc32(symbol.encode()) % 49001) / 100


def quote(symbol: str, qty: int) -> tuple[Decimal, Decimal, Decimal]:
    """The quoting rule: ``(reference, bid, ask)``; half-spread 5 bps + 5 bps per started 1,000 shares,
    capped at 100 bps."""
    ref = reference_price(symbol)
    bps = min(100, 5 + 5 * ((qty + 999) // 1000))
    half = ref * Decimal(bps) / Decimal(10_000)
    cent = Decimal("0.01")
    bid = (ref - half).quantize(cent, rounding=ROUND_HALF_UP)
    ask = (ref + half).quantize(cent, rounding=ROUND_HALF_UP)
    if bid <= 0:
        bid = cent
    return ref, bid, ask


def _row(cur_desc: Any, values: tuple[Any, ...]) -> dict[str, Any]:
    return {c.name: v for c, v in zip(cur_desc, values, strict=True)}


# ------------------------------------------------------------------------------------------ intake
OUTBOX_LAG_SQL = (
    "SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8 FROM outbox WHERE sent_at IS NULL"
)


class OrderIntake:
    """The orders and RFQs of one gateway replica in Postgres (and, with ``ack_before_commit``, in memory)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        relay: OutboxRelay,
        *,
        topic_orders: str,
        no_idempotency: bool,
        ack_before_commit: bool,
        db_failed: Callable[[BaseException], ApiError],
        db_deadline_s: float | None = None,
        heals: db.Heals | None = None,
    ) -> None:
        self.pool = pool
        self.db_deadline_s = db_deadline_s
        self.heals = heals
        self.relay = relay
        self.topic_orders = topic_orders
        self.no_idempotency = no_idempotency
        self.ack_before_commit = ack_before_commit
        self.db_failed = db_failed
        # ack_before_commit: acknowledged but not yet durable orders, by (client_id, key) and by id.
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._pending_by_id: dict[str, dict[str, Any]] = {}
        self._flush_lock = asyncio.Lock()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection whose use in the block is bounded by ``db_deadline_s`` (and by a heal of the
        database, when the block began before it)."""
        async with (
            self.pool.connection() as conn,
            db.bounded(conn, self.db_deadline_s, "request", heals=self.heals),
        ):
            yield conn

    # -- orders --------------------------------------------------------------------------------------
    async def create_order(self, fields: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
        """Take a validated order under ``key``: ``(201, order)`` when new, ``(200, original)`` on a retry
        with the same body; ApiError 409 when the key came with another body, 503 when the database fails."""
        bhash = body_hash(fields)
        order_id = str(uuid.uuid4())
        event = new_event(ORDER_ACCEPTED, order_id=order_id, idempotency_key=key, **fields)
        params = {
            **fields,
            "idempotency_key": key,
            "order_id": order_id,
            "body_hash": bhash,
            "event_id": event["event_id"],
            "topic": self.topic_orders,
            "payload": encode(event).decode(),
        }
        if self.ack_before_commit:
            return await self._create_order_write_behind(params)
        sql = INTAKE_NO_GUARD_SQL if self.no_idempotency else INTAKE_SQL
        try:
            async with self._connection() as conn:
                cur = await conn.execute(sql, params)
                created = await cur.fetchone()
                if created is None:
                    cur = await conn.execute(EXISTING_SQL, (fields["client_id"], key))
                    existing = await cur.fetchone()
                    existing_row = _row(cur.description, existing) if existing else None
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        if created is not None:
            self.relay.wake()
            row = {**params, "status": "accepted", "created_at": created[0]}
            return 201, order_json(row)
        return self._replay_response(existing_row, bhash, fields["client_id"], key)

    async def outbox_lag_s(self) -> float:
        """Seconds since the oldest outbox row still unsent was written (0 when none is)."""
        try:
            async with self._connection() as conn:
                cur = await conn.execute(OUTBOX_LAG_SQL)
                row = await cur.fetchone()
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        return float(row[0]) if row and row[0] is not None else 0.0

    def _replay_response(
        self, existing: dict[str, Any] | None, bhash: str, client_id: str, key: str
    ) -> tuple[int, dict[str, Any]]:
        if existing is None:  # cannot happen: the guard row and the order commit together
            raise unavailable("database", f"idempotency record for ({client_id}, {key}) has no order")
        if existing["body_hash"] != bhash:
            raise ApiError(
                409,
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was already used by client {client_id!r} with a different body "
                f"(order {existing['order_id']})",
                field="Idempotency-Key",
            )
        return 200, order_json(existing)

    # seeded bug ack_before_commit: acknowledge from memory, write later
    async def _create_order_write_behind(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ck = (params["client_id"], params["idempotency_key"])
        pending = self._pending.get(ck)
        if pending is None:
            try:
                async with self._connection() as conn:
                    cur = await conn.execute(EXISTING_SQL, ck)
                    existing = await cur.fetchone()
                    existing_row = _row(cur.description, existing) if existing else None
            except (psycopg.OperationalError, PoolTimeout) as e:
                raise self.db_failed(e) from e
            if existing_row is not None:
                return self._replay_response(existing_row, params["body_hash"], *ck)
            row = {**params, "status": "accepted", "created_at": dt.datetime.now(dt.UTC)}
            row["_acked_at"] = time.monotonic()
            self._pending[ck] = row
            self._pending_by_id[row["order_id"]] = row
            return 201, order_json(row)
        return self._replay_response(pending, params["body_hash"], *ck)

    async def write_behind_loop(self) -> None:
        """Write each pending order once it is :data:`WRITE_BEHIND_DELAY_S` old (runs until cancelled)."""
        while True:
            await asyncio.sleep(WRITE_BEHIND_INTERVAL_S)
            try:
                await self.flush_pending(older_than_s=WRITE_BEHIND_DELAY_S)
            except Exception as e:
                log.warning("write-behind flush failed (will retry): %s", e)

    async def flush_pending(self, older_than_s: float = 0.0, order_id: str | None = None) -> None:
        """Write the pending orders acknowledged at least ``older_than_s`` ago (all of them with 0), or
        only ``order_id`` (a cancel needs its order durable; the others keep waiting)."""
        async with self._flush_lock:
            cutoff = time.monotonic() - older_than_s
            batch = [
                r
                for r in self._pending.values()
                if r["_acked_at"] <= cutoff and (order_id is None or r["order_id"] == order_id)
            ]
            if not batch:
                return
            async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.executemany(INTAKE_SQL, batch)
            for row in batch:
                self._pending.pop((row["client_id"], row["idempotency_key"]), None)
                self._pending_by_id.pop(row["order_id"], None)
            self.relay.wake()

    async def get_order(self, order_id: uuid.UUID) -> dict[str, Any]:
        """The order's JSON (a pending one from memory); ApiError 404 when there is no such order."""
        pending = self._pending_by_id.get(str(order_id))
        if pending is not None:
            return order_json(pending)
        try:
            async with self._connection() as conn:
                cur = await conn.execute(GET_ORDER_SQL, (order_id,))
                row = await cur.fetchone()
                desc = cur.description
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        if row is None:
            raise ApiError(404, "order_not_found", f"order_id: no order {order_id}", field="order_id")
        return order_json(_row(desc, row))

    async def cancel_order(self, order_id: uuid.UUID) -> dict[str, Any]:
        """Request the cancel of an accepted order (``CancelRequested`` into the outbox, once); returns the
        order's JSON every time; ApiError 404 for an unknown order."""
        if str(order_id) in self._pending_by_id:
            await self.flush_pending(order_id=str(order_id))
        try:
            async with self._connection() as conn, conn.transaction():
                cur = await conn.execute(GET_ORDER_SQL + " FOR UPDATE", (order_id,))
                found = await cur.fetchone()
                if found is None:
                    raise ApiError(404, "order_not_found", f"order_id: no order {order_id}", field="order_id")
                row = _row(cur.description, found)
                if row["status"] == "accepted":
                    event = new_event(
                        CANCEL_REQUESTED,
                        order_id=str(order_id),
                        client_id=row["client_id"],
                        symbol=row["symbol"],
                    )
                    await conn.execute(
                        "UPDATE orders SET status = 'cancel_requested',"
                        " cancel_requested_at = clock_timestamp() WHERE order_id = %s",
                        (order_id,),
                    )
                    await conn.execute(
                        "INSERT INTO outbox (event_id, event_type, topic, key, payload, order_id)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        (
                            event["event_id"],
                            CANCEL_REQUESTED,
                            self.topic_orders,
                            row["symbol"],
                            encode(event).decode(),
                            order_id,
                        ),
                    )
                    row["status"] = "cancel_requested"
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        self.relay.wake()
        return order_json(row)

    # -- RFQs ----------------------------------------------------------------------------------------
    async def create_rfq(self, fields: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        """Quote and store a validated RFQ: ``(201, quote)`` when new, ``(200, original)`` on a retry with
        the same key and body; ApiError 409 when the key came with another body."""
        bhash = body_hash(fields)
        ref, bid, ask = quote(fields["symbol"], fields["qty"])
        rfq_id = uuid.uuid4()
        try:
            async with self._connection() as conn:
                cur = await conn.execute(
                    f"INSERT INTO rfqs (rfq_id, client_id, idempotency_key, body_hash, symbol, side, qty,"
                    f" reference_price, bid, ask, expires_at)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    f" clock_timestamp() + make_interval(secs => %s))"
                    f" ON CONFLICT DO NOTHING RETURNING {RFQ_COLS}",
                    (rfq_id, fields["client_id"], key, bhash, fields["symbol"], fields["side"], fields["qty"],
                     ref, bid, ask, RFQ_TTL_S),
                )  # fmt: skip
                created = await cur.fetchone()
                if created is not None:
                    return 201, rfq_json(_row(cur.description, created))
                cur = await conn.execute(
                    f"SELECT {RFQ_COLS} FROM rfqs WHERE client_id = %s AND idempotency_key = %s",
                    (fields["client_id"], key),
                )
                found = await cur.fetchone()
                existing = _row(cur.description, found) if found else None
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        if existing is None:
            raise unavailable("database", "RFQ conflict without a stored RFQ")
        if existing["body_hash"] != bhash:
            raise ApiError(
                409,
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was already used for another RFQ",
                field="Idempotency-Key",
            )
        return 200, rfq_json(existing)

    async def get_rfq(self, rfq_id: uuid.UUID) -> dict[str, Any]:
        """The RFQ's JSON; ApiError 404 when there is no such RFQ."""
        try:
            async with self._connection() as conn:
                cur = await conn.execute(f"SELECT {RFQ_COLS} FROM rfqs WHERE rfq_id = %s", (rfq_id,))
                found = await cur.fetchone()
                desc = cur.description
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        if found is None:
            raise ApiError(404, "rfq_not_found", f"rfq_id: no RFQ {rfq_id}", field="rfq_id")
        return rfq_json(_row(desc, found))
