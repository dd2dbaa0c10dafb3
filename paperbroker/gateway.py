"""The paperbroker order gateway's HTTP layer: one replica's routes, health and readiness, and its errors.

Run one replica with ``python -m paperbroker.gateway`` (settings from the environment, see
:mod:`paperbroker.config`). Requests are validated by :mod:`paperbroker.gateway_api`, orders and RFQs
are taken by :mod:`paperbroker.gateway_intake` (idempotent intake into Postgres with a transactional
outbox) and published by :mod:`paperbroker.relay`. HTTP API (JSON in and out):

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
- ``GET /stream`` — the market-data feed, a WebSocket (:mod:`paperbroker.feed`).
- ``GET /health`` — liveness (200 while the process serves). ``GET /ready`` — readiness: 200 when the
  database and the broker are reachable and the schema exists (and, with the ``slow_start`` bug, after
  ``PB_SLOW_START_S``), else 503.

The database's state comes from a health loop: a probe every 250 ms while it answers; while it does not, a
fresh probe on a new connection every :data:`DOWN_PROBE_EVERY_S` (a connection attempt begun inside a
partition that swallows bytes never finishes, so the first probe after a heal must be a new one). A
request that finds the database down waits up to :data:`DOWN_WAIT_S` for a probe begun after it arrived:
served when that probe answers, 503 at once when it fails. So nothing sent after a partition heals is
refused on an older verdict (before this, 1-3 % of the requests sent in the 10 s after a 3 s blackhole
were, within 0.3 s of the heal: ``tests/integration/test_paperbroker_partition_heal.py``). The probe that
sees the database answer again also ends the calls and pool connection attempts sent into the outage
(:class:`paperbroker.db.Heals`), which would otherwise hold the pool's slots and workers after the heal.

No response is a bare 500: a catch-all middleware answers 503 + ``Retry-After`` with a JSON body naming
the error. Seeded bugs (``PAPERBROKER_BUGS``): ``no_idempotency`` skips the guard (every retry is a new
order and a new event); ``ack_before_commit`` answers 201 from an in-memory write-behind buffer and writes
each order only about a second later (a SIGKILL loses every order acknowledged in the last second);
``slow_start`` keeps ``/ready`` at 503 for ``PB_SLOW_START_S``; ``no_db_deadline`` waits on the database
as long as it takes (the good build severs a connection after :data:`REQUEST_DEADLINE_S` and answers 503);
``no_connect_timeout`` opens the pool's connections with no connect timeout (and lets an attempt begun in a
partition run on after the heal, see :class:`paperbroker.db.Heals`); ``slow_orders`` answers every
order 50 ms later (a latency regression only a golden profile catches); ``gateway_sheds_after_write``
refuses an order (503) when the outbox is more than :data:`OUTBOX_LAG_LIMIT_S` behind, but checks only
after the order and its event were written (a retry is refused the same way); ``unbounded_queue`` admits
every request and waits for a pooled connection as long as it takes (:mod:`paperbroker.gateway_admission`).

Load shedding: a replica serves at most ``PB_MAX_IN_FLIGHT`` requests at once (default 32) and answers
the next at once with 503 + ``Retry-After`` (``overloaded``); ``/ready`` shows the counters (``admission``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout

from paperbroker import db
from paperbroker.bugs import SLOW_ORDERS_S
from paperbroker.config import Settings, load_settings
from paperbroker.feed import MarketFeed
from paperbroker.gateway_admission import UNBOUNDED_POOL_WAIT_S, Admission
from paperbroker.gateway_api import (
    MAX_BODY_BYTES,
    RETRY_AFTER_S,
    ApiError,
    idempotency_key,
    parse_order,
    parse_rfq,
    parse_uuid,
    read_json,
    unavailable,
)
from paperbroker.gateway_intake import OrderIntake
from paperbroker.relay import OutboxRelay
from resgate.contract.ledger import ATTEMPT_HEADER
from resgate.contract.stream import STREAM_PATH

log = logging.getLogger("paperbroker.gateway")

# Deadlines on the database (paperbroker.db.bounded: the connection is severed when one runs out). A
# request that waits longer on its connection answers 503 + Retry-After: behind a partition that swallows
# bytes a call never fails on its own. The seeded bug no_db_deadline waits as long as it takes.
REQUEST_DEADLINE_S = 3.0
# gateway_sheds_after_write: an order is refused (503) when the outbox's oldest unsent row is older than this
OUTBOX_LAG_LIMIT_S = 1.0
PROBE_DEADLINE_S = 1.0
SCHEMA_DEADLINE_S = 10.0
# While the database is down a fresh probe (on a new connection) starts this often, each bounded by
# PROBE_DEADLINE_S: a connection attempt begun inside a partition that swallows bytes can never finish, so
# waiting for it would report the database down for up to PROBE_DEADLINE_S after the heal.
DOWN_PROBE_EVERY_S = 0.1
# A request that finds the database down waits at most this long (one probe's deadline) for a probe begun
# after it arrived to answer (then it is served) or fail (then 503 at once): no request sent after a heal
# is refused on a verdict older than itself.
DOWN_WAIT_S = PROBE_DEADLINE_S


# ---------------------------------------------------------------------------------------- gateway
class Gateway:
    """One gateway replica: the pool, the relay, the intake, the health state and the handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.monotonic()
        self.topic_orders = settings.topic_orders
        unbounded = settings.bug("unbounded_queue")
        self.admission = Admission(None if unbounded else settings.max_in_flight)
        # calls and connection attempts sent into an outage end at its heal (paperbroker.db.Heals); the
        # seeded bug no_connect_timeout connects as long as it takes, heal or not
        self.heals = db.Heals()
        no_connect_timeout = settings.bug("no_connect_timeout")
        self.pool = db.make_pool(
            settings.dsn,
            min_size=2,
            max_size=8,
            timeout_s=UNBOUNDED_POOL_WAIT_S if unbounded else 1.5,
            connect_timeout_s=None if no_connect_timeout else db.CONNECT_TIMEOUT_S,
            heals=None if no_connect_timeout else self.heals,
        )
        self.relay = OutboxRelay(settings.dsn, settings.kafka_bootstrap, name=settings.replica)
        self.db_ok = False
        self.db_error = "not checked yet"
        self.schema_ready = False
        self._health_wake = asyncio.Event()
        self._health_conn: psycopg.AsyncConnection | None = None
        self._probe_news = asyncio.Event()  # set (and replaced) whenever a probe of a down database ends
        self._failed_probe_started = 0.0  # the start (monotonic) of the latest probe that failed while down
        self._down_probes: set[asyncio.Task[None]] = set()
        self._pool_suspect = False  # a request saw a database error: check the pooled connections
        self._pool_check: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.no_idempotency = settings.bug("no_idempotency")
        self.ack_before_commit = settings.bug("ack_before_commit")
        self.slow_start = settings.bug("slow_start")
        self.retry_stale_copy = settings.bug("gateway_retry_stale_copy")
        self.sheds_after_write = settings.bug("gateway_sheds_after_write")
        self.feed = MarketFeed(
            resend=not settings.bug("feed_no_resend"),
            close_on_restart=not settings.bug("feed_drops_silently"),
        )
        self._feed_stop = asyncio.Event()
        # gateway_retry_stale_copy: each client's last order as this replica parsed it
        self._last_order: dict[str, dict[str, Any]] = {}
        self.intake = OrderIntake(
            self.pool,
            self.relay,
            topic_orders=self.topic_orders,
            no_idempotency=self.no_idempotency,
            ack_before_commit=self.ack_before_commit,
            db_failed=self.db_failed,
            db_deadline_s=None if settings.bug("no_db_deadline") else REQUEST_DEADLINE_S,
            heals=self.heals,
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the pool without waiting for the database, start health, relay (and write-behind)."""
        await self.pool.open(wait=False)
        await self.relay.start()
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        s = self.settings
        feed = self.feed.consume(s.kafka_bootstrap, s.topic_executions, self._feed_stop)
        self._tasks.append(asyncio.create_task(feed, name="feed"))
        watch = self.feed.watch_projector(s.dsn, self._feed_stop)
        self._tasks.append(asyncio.create_task(watch, name="feed-projector-watch"))
        if self.ack_before_commit:
            self._tasks.append(asyncio.create_task(self.intake.write_behind_loop(), name="write-behind"))

    async def stop(self) -> None:
        """Stop background tasks, the relay and the pool."""
        self._feed_stop.set()
        tasks = [*self._tasks, *([self._pool_check] if self._pool_check else []), *self._down_probes]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.ack_before_commit:
            with contextlib.suppress(Exception):
                await self.intake.flush_pending()
        await self.relay.stop()
        if self._health_conn is not None:
            with contextlib.suppress(Exception):
                await self._health_conn.close()
        with contextlib.suppress(Exception):
            await self.pool.close(timeout=2)

    # -- health --------------------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        """Probe the database every 250 ms (at once when a request saw a database error) while it is up;
        while it is down, start a fresh probe every :data:`DOWN_PROBE_EVERY_S` until one answers. Create the
        schema once it answers; purge the pool's dead connections while it does not."""
        while True:
            if self.db_ok:
                ok, err = await self._probe_db()
                if not ok:
                    ok, err = await self._probe_db()  # the probe's connection may have died with a restart
                self._set_db(ok, err)
            else:
                await self._probe_until_up()
            if (not self.db_ok or self._pool_suspect) and (
                self._pool_check is None or self._pool_check.done()
            ):
                self._check_pool_soon()
            if not self.db_ok:
                continue
            self._health_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._health_wake.wait(), 0.25)

    def _set_db(self, ok: bool, err: str) -> None:
        if ok != self.db_ok:
            log.info("%s: database %s %s", self.settings.replica, "up" if ok else "down", err)
        self.db_ok, self.db_error = ok, err

    def _check_pool_soon(self) -> None:
        """Discard connections that died with the server so recovery does not cost failed requests; in the
        background (each connection's check is bounded), so probing goes on meanwhile."""
        self._pool_suspect = False
        self._pool_check = asyncio.create_task(self._check_pool(), name="pool-check")

    async def _check_pool(self) -> None:
        with contextlib.suppress(Exception):
            await self.pool.check()

    async def _probe_until_up(self) -> None:
        """Start a fresh probe (:meth:`_fresh_probe`) now and every :data:`DOWN_PROBE_EVERY_S` until one
        answers (the database is up: returns) or a pool check is due (returns, to start it). Probes still
        running when it returns end on their own deadline and close their connection."""
        while not self.db_ok:
            probe = asyncio.create_task(self._fresh_probe(), name="down-probe")
            self._down_probes.add(probe)
            probe.add_done_callback(self._down_probes.discard)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(probe), DOWN_PROBE_EVERY_S)
            if self._pool_suspect or self._pool_check is None or self._pool_check.done():
                return

    async def _fresh_probe(self) -> None:
        """One probe of a down database on a new connection; the first that answers becomes the health
        connection and marks the database up. Every end is news for the requests waiting on it."""
        started = time.monotonic()
        conn: psycopg.AsyncConnection | None = None
        try:
            conn = await asyncio.wait_for(
                db.connect_async(self.settings.dsn, autocommit=True), PROBE_DEADLINE_S
            )
            async with db.bounded(conn, PROBE_DEADLINE_S, "health probe"):
                await conn.execute("SELECT 1")
            if not self.schema_ready:
                async with db.bounded(conn, SCHEMA_DEADLINE_S, "schema"):
                    await db.ensure_gateway_schema_async(conn)
                self.schema_ready = True
            if not self.db_ok:
                old, self._health_conn, conn = self._health_conn, conn, None
                if old is not None:
                    with contextlib.suppress(Exception):
                        await old.close()
                stranded = self.heals.healed(started)
                self._set_db(True, "")
                log.info(
                    "%s: %d database calls and connection attempts sent into the outage ended",
                    self.settings.replica,
                    stranded,
                )
        except Exception as e:
            if not self.db_ok:
                self._failed_probe_started = max(self._failed_probe_started, started)
                self.db_error = f"{type(e).__name__}: {e}".strip()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            news, self._probe_news = self._probe_news, asyncio.Event()
            news.set()

    async def _probe_db(self) -> tuple[bool, str]:
        """``SELECT 1`` on a dedicated connection (not the pool: a busy pool is not a database outage)."""
        try:
            if self._health_conn is None or self._health_conn.closed:
                # a connection attempt begun inside a partition cannot finish after it heals (its bytes
                # are gone): give it the probe's deadline, so no stale "down" is reported after the heal
                self._health_conn = await asyncio.wait_for(
                    db.connect_async(self.settings.dsn, autocommit=True), PROBE_DEADLINE_S
                )
            async with db.bounded(self._health_conn, PROBE_DEADLINE_S, "health probe"):
                await self._health_conn.execute("SELECT 1")
            if not self.schema_ready:
                async with db.bounded(self._health_conn, SCHEMA_DEADLINE_S, "schema"):
                    await db.ensure_gateway_schema_async(self._health_conn)
                self.schema_ready = True
            return True, ""
        except Exception as e:
            conn, self._health_conn = self._health_conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            return False, f"{type(e).__name__}: {e}".strip()

    async def _database_answers(self) -> None:
        """Return when the database is up; while it is down, wait at most :data:`DOWN_WAIT_S` for a probe
        begun after this call to answer. Raises the 503 ApiError when one failed, or none answered in time."""
        if self.db_ok:
            return
        arrived = time.monotonic()
        deadline = arrived + DOWN_WAIT_S
        while not self.db_ok and self._failed_probe_started < arrived:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._probe_news.wait(), left)
        if not self.db_ok:
            raise unavailable("database", self.db_error or "not reachable")

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
            "admission": self.admission.stats(),
        }

    async def _require_dependencies(self) -> None:
        await self._database_answers()
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
        # consumer_groups: none (the feed reads without a group): the gate's quiesce preflight reads it
        return web.json_response({"status": "alive", "replica": self.settings.replica, "consumer_groups": {}})

    async def ready(self, request: web.Request) -> web.Response:
        state = self.readiness()
        if state["ready"]:
            return web.json_response(state)
        return web.json_response(state, status=503, headers={"Retry-After": RETRY_AFTER_S})

    async def create_order(self, request: web.Request) -> web.Response:
        key = idempotency_key(request)
        assert key is not None
        fields = parse_order(await read_json(request))
        if self.retry_stale_copy:
            fields = self._stale_copy(fields, request.headers.get(ATTEMPT_HEADER))
        await self._require_dependencies()
        if "slow_orders" in self.settings.bugs:
            await asyncio.sleep(SLOW_ORDERS_S)
        status, body = await self.intake.create_order(fields, key)
        if self.sheds_after_write:
            lag = await self.intake.outbox_lag_s()
            if lag > OUTBOX_LAG_LIMIT_S:  # checked after the write: the order and its event are stored
                raise unavailable("broker", f"the event log is {lag:.1f}s behind; retry with the same key")
        return web.json_response(body, status=status)

    def _stale_copy(self, fields: dict[str, Any], attempt: str | None) -> dict[str, Any]:
        """The seeded bug gateway_retry_stale_copy: a retry is rebuilt from the replica's cached copy of the
        client's last order (only the quantity comes from the body). Right when the first attempt reached
        this replica (the copy is its own); stale when it went to a replica that has since failed."""
        client = fields["client_id"]
        cached = self._last_order.get(client)
        self._last_order[client] = fields
        if cached is None or attempt in (None, "", "1"):
            return fields
        return {**cached, "qty": fields["qty"]}

    async def get_order(self, request: web.Request) -> web.Response:
        order_id = parse_uuid(request.match_info["order_id"], "order_id")
        return web.json_response(await self.intake.get_order(order_id))

    async def cancel_order(self, request: web.Request) -> web.Response:
        order_id = parse_uuid(request.match_info["order_id"], "order_id")
        await self._require_dependencies()
        return web.json_response(await self.intake.cancel_order(order_id))

    async def create_rfq(self, request: web.Request) -> web.Response:
        key = idempotency_key(request, required=False)
        fields = parse_rfq(await read_json(request))
        await self._database_answers()
        status, body = await self.intake.create_rfq(fields, key)
        return web.json_response(body, status=status)

    async def get_rfq(self, request: web.Request) -> web.Response:
        rfq_id = parse_uuid(request.match_info["rfq_id"], "rfq_id")
        return web.json_response(await self.intake.get_rfq(rfq_id))


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
    gw = Gateway(settings)
    app = web.Application(
        middlewares=[error_middleware, gw.admission.middleware], client_max_size=MAX_BODY_BYTES
    )
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
    app.router.add_get(STREAM_PATH, gw.feed.handle)
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
