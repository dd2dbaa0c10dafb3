"""The paperbroker order gateway: idempotent HTTP order intake with a transactional outbox to Kafka.

Run one replica with ``python -m paperbroker.gateway`` (settings from the environment, see
:mod:`paperbroker.config`). HTTP API (JSON in and out):

- ``POST /orders`` — body ``{client_id, symbol, side, qty, price}``, header ``Idempotency-Key`` required.
  201 + the order (with ``order_id``) when created; 200 + the original order on a retry with the same key
  and the same body; 409 when the key was used with a different body; 400 (malformed JSON, missing
  header) / 422 (a field is invalid) with ``field`` naming it; 503 + ``Retry-After`` when the database or
  the broker is unavailable.
- ``GET /orders/{id}`` — the order (200) or 404.
- ``POST /orders/{id}/cancel`` — writes a ``CancelRequested`` event; idempotent (200 every time), 404 for
  an unknown order.
- ``POST /rfqs`` — body ``{client_id, symbol, qty, side?}`` (header ``Idempotency-Key`` optional) →
  201 + a quote ``{rfq_id, bid, ask, reference_price, expires_at, ...}``; ``GET /rfqs/{id}``.
- ``GET /health`` — liveness (200 while the process serves). ``GET /ready`` — readiness: 200 when the
  database and the broker are reachable and the schema exists (and, with the ``slow_start`` bug, after
  ``PB_SLOW_START_S``), else 503.

Intake is one SQL statement (autocommit): a data-modifying CTE inserts the guard row into
``order_idempotency`` (primary key ``(client_id, idempotency_key)``, ``ON CONFLICT DO NOTHING``) and, only
if that row was inserted, the ``orders`` row and the ``outbox`` row with the ``OrderAccepted`` event. A
conflicting request waits for the winner's commit, then reads the existing order and compares the body
hash. No response is a bare 500: a catch-all middleware answers 503 + ``Retry-After`` with a JSON body
naming the error.

Seeded bugs (``PAPERBROKER_BUGS``): ``no_idempotency`` skips the guard (every retry is a new order and a
new event); ``ack_before_commit`` answers 201 from an in-memory write-behind buffer and writes each order only
about a second later (a SIGKILL loses every order acknowledged in the last second); ``slow_start``
keeps ``/ready`` at 503 for ``PB_SLOW_START_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout

from paperbroker import db
from paperbroker.config import Settings, load_settings
from paperbroker.events import CANCEL_REQUESTED, ORDER_ACCEPTED, encode, new_event
from paperbroker.relay import OutboxRelay

log = logging.getLogger("paperbroker.gateway")

RETRY_AFTER_S = "1"
MAX_BODY_BYTES = 64 * 1024
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")
MAX_QTY = 1_000_000_000
MAX_PRICE = Decimal("1000000000")
PRICE_QUANTUM = Decimal("0.000001")
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


# ------------------------------------------------------------------------------------------ errors
class ApiError(Exception):
    """An error with an HTTP status and a JSON body ``{error, message, field?}``."""

    def __init__(self, status: int, error: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.field:
            body["field"] = self.field
        headers = {"Retry-After": RETRY_AFTER_S} if self.status in (429, 503) else None
        return web.json_response(body, status=self.status, headers=headers)


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming the invalid field."""
    return ApiError(422, "invalid_field", f"{field}: {message}", field=field)


def unavailable(what: str, detail: str) -> ApiError:
    """A 503 (with Retry-After) saying which dependency is unavailable."""
    return ApiError(503, f"{what}_unavailable", f"{what} unavailable: {detail}; retry with the same key")


# ------------------------------------------------------------------------------------- validation
def _require_str(body: dict[str, Any], field: str, pattern: re.Pattern[str], hint: str) -> str:
    value = body.get(field)
    if value is None:
        raise invalid(field, "is required")
    if not isinstance(value, str) or not pattern.match(value):
        raise invalid(field, f"must be {hint}")
    return value


def _qty(body: dict[str, Any], field: str = "qty") -> int:
    value = body.get(field)
    if value is None:
        raise invalid(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, "must be a positive integer")
    try:
        d = Decimal(str(value))
    except InvalidOperation as e:
        raise invalid(field, "must be a positive integer") from e
    if not d.is_finite() or d != d.to_integral_value() or d <= 0 or d > MAX_QTY:
        raise invalid(field, f"must be a positive integer up to {MAX_QTY}")
    return int(d)


def _price(body: dict[str, Any], field: str = "price") -> Decimal:
    value = body.get(field)
    if value is None:
        raise invalid(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, "must be a positive decimal number")
    try:
        d = Decimal(str(value))
    except InvalidOperation as e:
        raise invalid(field, "must be a positive decimal number") from e
    if not d.is_finite() or d <= 0 or d > MAX_PRICE:
        raise invalid(field, f"must be a positive decimal number up to {MAX_PRICE}")
    if d != d.quantize(PRICE_QUANTUM):
        raise invalid(field, "must have at most 6 decimal places")
    return d


def _side(body: dict[str, Any], *, required: bool = True) -> str | None:
    value = body.get("side")
    if value is None:
        if required:
            raise invalid("side", "is required")
        return None
    if value not in ("buy", "sell"):
        raise invalid("side", 'must be "buy" or "sell"')
    return str(value)


def price_str(d: Decimal) -> str:
    """Canonical decimal string of a price: no exponent, no trailing zeros (``"101.5"``, ``"100"``)."""
    s = format(d.normalize(), "f")
    return s


def body_hash(fields: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the validated fields (so ``10.50`` and ``"10.5"`` hash the same)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_order(body: Any) -> dict[str, Any]:
    """Validate an order body; return canonical fields ``{client_id, symbol, side, qty, price}``."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "body: must be a JSON object", field="body")
    price = _price(body)
    return {
        "client_id": _require_str(body, "client_id", CLIENT_ID_RE, "1-64 characters [A-Za-z0-9_.:-]"),
        "symbol": _require_str(body, "symbol", SYMBOL_RE, "1-16 characters, upper-case letters/digits/.-"),
        "side": _side(body),
        "qty": _qty(body),
        "price": price_str(price),
    }


def parse_rfq(body: Any) -> dict[str, Any]:
    """Validate an RFQ body; return ``{client_id, symbol, side (or None), qty}``."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "body: must be a JSON object", field="body")
    return {
        "client_id": _require_str(body, "client_id", CLIENT_ID_RE, "1-64 characters [A-Za-z0-9_.:-]"),
        "symbol": _require_str(body, "symbol", SYMBOL_RE, "1-16 characters, upper-case letters/digits/.-"),
        "side": _side(body, required=False),
        "qty": _qty(body),
    }


def idempotency_key(request: web.Request, *, required: bool = True) -> str | None:
    """The ``Idempotency-Key`` header (1-128 printable characters); 400 naming it when missing/invalid."""
    key = request.headers.get("Idempotency-Key")
    if key is None or key == "":
        if required:
            raise ApiError(
                400, "missing_header", "Idempotency-Key: header is required", field="Idempotency-Key"
            )
        return None
    if len(key) > 128 or not key.isprintable():
        raise ApiError(
            400,
            "invalid_header",
            "Idempotency-Key: must be 1-128 printable characters",
            field="Idempotency-Key",
        )
    return key


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; 400 naming ``body`` when it is missing or malformed."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"body: larger than {MAX_BODY_BYTES} bytes", field="body")
    raw = await request.read()
    if not raw:
        raise ApiError(400, "invalid_body", "body: a JSON object is required", field="body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_body", f"body: not valid JSON ({e})", field="body") from e


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """A UUID path parameter; 400 naming the field when malformed."""
    try:
        return uuid.UUID(value)
    except ValueError as e:
        raise ApiError(400, "invalid_id", f"{field}: not a UUID", field=field) from e


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


# --------------------------------------------------------------------------------------- rendering
def _iso(ts: dt.datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def order_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of an order row."""
    price = row["price"]
    return {
        "order_id": str(row["order_id"]),
        "client_id": row["client_id"],
        "idempotency_key": row["idempotency_key"],
        "symbol": row["symbol"],
        "side": row["side"],
        "qty": int(row["qty"]),
        "price": price_str(price) if isinstance(price, Decimal) else str(price),
        "status": row["status"],
        "created_at": _iso(row.get("created_at")),
    }


def rfq_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of an RFQ row."""
    expires = row["expires_at"]
    return {
        "rfq_id": str(row["rfq_id"]),
        "client_id": row["client_id"],
        "symbol": row["symbol"],
        "side": row["side"],
        "qty": int(row["qty"]),
        "reference_price": str(row["reference_price"]),
        "bid": str(row["bid"]),
        "ask": str(row["ask"]),
        "created_at": _iso(row["created_at"]),
        "expires_at": _iso(expires),
        "expired": expires <= dt.datetime.now(dt.UTC),
    }


def _row(cur_desc: Any, values: tuple[Any, ...]) -> dict[str, Any]:
    return {c.name: v for c, v in zip(cur_desc, values, strict=True)}


# ---------------------------------------------------------------------------------------- gateway
class Gateway:
    """One gateway replica: the pool, the relay, the health state and the handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.monotonic()
        self.topic_orders = settings.topic_orders
        self.pool = db.make_pool(settings.dsn, min_size=2, max_size=8, timeout_s=1.5)
        self.relay = OutboxRelay(settings.dsn, settings.kafka_bootstrap, name=settings.replica)
        self.db_ok = False
        self.db_error = "not checked yet"
        self.schema_ready = False
        self._health_wake = asyncio.Event()
        self._health_conn: psycopg.AsyncConnection | None = None
        self._pool_suspect = False  # a request saw a database error: check the pooled connections
        self._tasks: list[asyncio.Task[None]] = []
        self.no_idempotency = settings.bug("no_idempotency")
        self.ack_before_commit = settings.bug("ack_before_commit")
        self.slow_start = settings.bug("slow_start")
        # ack_before_commit: acknowledged but not yet durable orders, by (client_id, key) and by id.
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._pending_by_id: dict[str, dict[str, Any]] = {}
        self._flush_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the pool without waiting for the database, start health, relay (and write-behind)."""
        await self.pool.open(wait=False)
        await self.relay.start()
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        if self.ack_before_commit:
            self._tasks.append(asyncio.create_task(self._write_behind_loop(), name="write-behind"))

    async def stop(self) -> None:
        """Stop background tasks, the relay and the pool."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.ack_before_commit:
            with contextlib.suppress(Exception):
                await self._flush_pending()
        await self.relay.stop()
        if self._health_conn is not None:
            with contextlib.suppress(Exception):
                await self._health_conn.close()
        with contextlib.suppress(Exception):
            await self.pool.close(timeout=2)

    # -- health --------------------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        """Probe the database every 250 ms (at once when a request saw a database error); create the
        schema once it answers; purge the pool's dead connections while it does not."""
        while True:
            ok, err = await self._probe_db()
            if not ok:
                ok, err = await self._probe_db()  # the probe's connection may have died with a restart
            if ok != self.db_ok:
                log.info("%s: database %s %s", self.settings.replica, "up" if ok else "down", err)
            self.db_ok, self.db_error = ok, err
            if not ok or self._pool_suspect:
                # discard connections that died with the server so recovery does not cost failed requests
                self._pool_suspect = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.pool.check(), 2)
            self._health_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._health_wake.wait(), 0.25)

    async def _probe_db(self) -> tuple[bool, str]:
        """``SELECT 1`` on a dedicated connection (not the pool: a busy pool is not a database outage)."""
        try:
            if self._health_conn is None or self._health_conn.closed:
                self._health_conn = await asyncio.wait_for(
                    db.connect_async(self.settings.dsn, autocommit=True), 3
                )
            await asyncio.wait_for(self._health_conn.execute("SELECT 1"), 1.0)
            if not self.schema_ready:
                await db.ensure_gateway_schema_async(self._health_conn)
                self.schema_ready = True
            return True, ""
        except Exception as e:
            conn, self._health_conn = self._health_conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            return False, f"{type(e).__name__}: {e}".strip()

    def readiness(self) -> dict[str, Any]:
        """The readiness state ``{ready, database, broker, schema, slow_start_remaining_s, relay}``."""
        remaining = 0.0
        if self.slow_start:
            remaining = max(0.0, self.settings.slow_start_s - (time.monotonic() - self.started_at))
        broker = self.relay.broker_ok
        ready = self.db_ok and self.schema_ready and broker and remaining <= 0
        return {
            "ready": ready,
            "replica": self.settings.replica,
            "database": self.db_ok,
            "database_error": self.db_error or None,
            "schema": self.schema_ready,
            "broker": broker,
            "slow_start_remaining_s": round(remaining, 3),
            "relay": {
                "leader": self.relay.stats.leader,
                "published": self.relay.stats.published,
                "failures": self.relay.stats.failures,
                "last_error": self.relay.stats.last_error or None,
            },
        }

    def _require_dependencies(self) -> None:
        if not self.db_ok:
            raise unavailable("database", self.db_error or "not reachable")
        if not self.schema_ready:
            raise unavailable("database", "schema not ready")
        if not self.relay.broker_ok:
            raise unavailable("broker", self.relay.stats.last_error or "not reachable")

    def db_failed(self, e: BaseException) -> ApiError:
        """Turn a database exception into a 503 and ask the health loop to re-probe (and check the pool)."""
        if not isinstance(e, PoolTimeout):  # a timeout only means every connection is busy
            self._pool_suspect = True
            self._health_wake.set()
        return unavailable("database", f"{type(e).__name__}: {e}".strip())

    # -- handlers ------------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "replica": self.settings.replica})

    async def ready(self, request: web.Request) -> web.Response:
        state = self.readiness()
        if state["ready"]:
            return web.json_response(state)
        return web.json_response(state, status=503, headers={"Retry-After": RETRY_AFTER_S})

    async def create_order(self, request: web.Request) -> web.Response:
        key = idempotency_key(request)
        assert key is not None
        fields = parse_order(await read_json(request))
        bhash = body_hash(fields)
        self._require_dependencies()
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
            async with self.pool.connection() as conn:
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
            return web.json_response(order_json(row), status=201)
        return self._replay_response(existing_row, bhash, fields["client_id"], key)

    def _replay_response(
        self, existing: dict[str, Any] | None, bhash: str, client_id: str, key: str
    ) -> web.Response:
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
        return web.json_response(order_json(existing), status=200)

    # seeded bug ack_before_commit: acknowledge from memory, write later
    async def _create_order_write_behind(self, params: dict[str, Any]) -> web.Response:
        ck = (params["client_id"], params["idempotency_key"])
        pending = self._pending.get(ck)
        if pending is None:
            try:
                async with self.pool.connection() as conn:
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
            return web.json_response(order_json(row), status=201)
        return self._replay_response(pending, params["body_hash"], *ck)

    async def _write_behind_loop(self) -> None:
        while True:
            await asyncio.sleep(WRITE_BEHIND_INTERVAL_S)
            try:
                await self._flush_pending(older_than_s=WRITE_BEHIND_DELAY_S)
            except Exception as e:
                log.warning("write-behind flush failed (will retry): %s", e)

    async def _flush_pending(self, older_than_s: float = 0.0, order_id: str | None = None) -> None:
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

    async def get_order(self, request: web.Request) -> web.Response:
        order_id = parse_uuid(request.match_info["order_id"], "order_id")
        pending = self._pending_by_id.get(str(order_id))
        if pending is not None:
            return web.json_response(order_json(pending))
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(GET_ORDER_SQL, (order_id,))
                row = await cur.fetchone()
                desc = cur.description
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        if row is None:
            raise ApiError(404, "order_not_found", f"order_id: no order {order_id}", field="order_id")
        return web.json_response(order_json(_row(desc, row)))

    async def cancel_order(self, request: web.Request) -> web.Response:
        order_id = parse_uuid(request.match_info["order_id"], "order_id")
        self._require_dependencies()
        if str(order_id) in self._pending_by_id:
            await self._flush_pending(order_id=str(order_id))
        try:
            async with self.pool.connection() as conn, conn.transaction():
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
        return web.json_response(order_json(row))

    async def create_rfq(self, request: web.Request) -> web.Response:
        key = idempotency_key(request, required=False)
        fields = parse_rfq(await read_json(request))
        bhash = body_hash(fields)
        if not self.db_ok:
            raise unavailable("database", self.db_error or "not reachable")
        ref, bid, ask = quote(fields["symbol"], fields["qty"])
        rfq_id = uuid.uuid4()
        try:
            async with self.pool.connection() as conn:
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
                    return web.json_response(rfq_json(_row(cur.description, created)), status=201)
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
        return web.json_response(rfq_json(existing), status=200)

    async def get_rfq(self, request: web.Request) -> web.Response:
        rfq_id = parse_uuid(request.match_info["rfq_id"], "rfq_id")
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(f"SELECT {RFQ_COLS} FROM rfqs WHERE rfq_id = %s", (rfq_id,))
                found = await cur.fetchone()
                desc = cur.description
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise self.db_failed(e) from e
        if found is None:
            raise ApiError(404, "rfq_not_found", f"rfq_id: no RFQ {rfq_id}", field="rfq_id")
        return web.json_response(rfq_json(_row(desc, found)))


# ----------------------------------------------------------------------------------------- the app
APP_KEY = web.AppKey("gateway", Gateway)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes JSON; anything unexpected is a 503 + Retry-After that names the exception."""
    try:
        return await handler(request)
    except ApiError as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return web.json_response(
            {
                "error": e.reason.lower().replace(" ", "_"),
                "message": f"{request.method} {request.path}: {e.reason}",
            },
            status=e.status,
        )
    except asyncio.CancelledError:
        raise
    except (psycopg.OperationalError, PoolTimeout) as e:
        return unavailable("database", f"{type(e).__name__}: {e}".strip()).response()
    except Exception as e:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response(
            {
                "error": "internal_error",
                "message": f"unexpected {type(e).__name__} while handling {request.method} {request.path}: "
                f"{e}; the request may be retried with the same Idempotency-Key",
            },
            status=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )


def build_app(settings: Settings) -> web.Application:
    """The aiohttp application of one gateway replica (started/stopped with the app)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    gw = Gateway(settings)
    app[APP_KEY] = gw

    async def lifecycle(_app: web.Application) -> Any:
        await gw.start()
        yield
        await gw.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/orders", gw.create_order)
    app.router.add_get("/orders/{order_id}", gw.get_order)
    app.router.add_post("/orders/{order_id}/cancel", gw.cancel_order)
    app.router.add_post("/rfqs", gw.create_rfq)
    app.router.add_get("/rfqs/{rfq_id}", gw.get_rfq)
    app.router.add_get("/health", gw.health)
    app.router.add_get("/ready", gw.ready)
    return app


def main() -> None:
    """Entry point of ``python -m paperbroker.gateway``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    settings = load_settings()
    log.info(
        "gateway %s on %s:%s bugs=%s topic=%s",
        settings.replica,
        settings.host,
        settings.port,
        sorted(settings.bugs),
        settings.topic_orders,
    )
    # aiohttp sets TCP_NODELAY on every accepted connection (BaseProtocol.connection_made).
    web.run_app(
        build_app(settings), host=settings.host, port=settings.port, access_log=None, print=None, backlog=1024
    )


if __name__ == "__main__":
    main()
