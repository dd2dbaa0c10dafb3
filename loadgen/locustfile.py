"""Locust traffic for an order gateway: traders that submit, cancel, quote and read, with a client ledger.

``TraderUser`` (a ``FastHttpUser``) has a unique ``client_id`` and mostly submits limit orders on a small
set of symbols at prices within a band around a reference, so buys and sells cross and trades happen;
it also cancels its own open orders, asks for RFQs and reads orders and RFQs back. Every order carries a
fresh ``Idempotency-Key``. A request that times out, loses its connection or gets 429/502/503/504 is
retried (at most ``RESGATE_MAX_ATTEMPTS`` attempts, pausing for ``Retry-After`` or an exponential backoff,
capped) with the **same** key and the **same** body bytes: that is what exercises the target's
idempotency. Retries stop as soon as the load is stopping.

Every attempt is one Locust request (``catch_response``: a 2xx is a success, anything else a failure)
and one line of the client ledger in ``$RESGATE_LEDGER_DIR/ledger-<pid>.jsonl`` (fields: ``ts`` attempt
start, ``op``, ``client_id``, ``idempotency_key``, ``order_id``, ``status``, ``outcome``, ``latency_ms`` as
Locust measured it, ``attempt``, ``symbol``, ``side``, ``qty``, ``price`` (a number), ``retry_after``,
``error``, and ``rfq_id`` for RFQs). An attempt cut off by the load stopping is recorded too, as
``conn_error``/``info``, so the ledger and Locust's counts always agree. Each process also writes
``live-<pid>.jsonl`` once a second (see :mod:`loadgen.stats`). Buffers are written every second and on
``test_stop``, ``quitting``, ``quit`` and interpreter exit.

Configuration is by environment only (names in :mod:`loadgen`), so the same file runs locally and on
Fargate: ``RESGATE_LEDGER_DIR``, ``RESGATE_SYMBOLS``, ``RESGATE_REF_PRICES``, ``RESGATE_PRICE_BAND_PCT``,
``RESGATE_MAX_QTY``, ``RESGATE_CONNECT_TIMEOUT_S``, ``RESGATE_NETWORK_TIMEOUT_S``,
``RESGATE_MAX_ATTEMPTS``, ``RESGATE_RETRY_AFTER_CAP_S``, ``RESGATE_BACKOFF_BASE_S``, ``RESGATE_WAIT_MIN_S``,
``RESGATE_WAIT_MAX_S``, ``RESGATE_LOAD_NODE``, ``RESGATE_LEDGER_FLUSH_RECORDS``; the target is Locust's
``--host`` (or ``LOCUST_HOST``).
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import random
import secrets
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import gevent
from gevent import GreenletExit
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING, MasterRunner
from locust.user.task import LOCUST_STATE_STOPPING

try:
    import loadgen
except ImportError:
    loadgen = None  # type: ignore[assignment]
if loadgen is None or getattr(loadgen, "__file__", None) is None:
    # Not importable, or only as a namespace package (an editable install made before loadgen had an
    # __init__.py): import the package this file belongs to.
    sys.modules.pop("loadgen", None)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import loadgen

from loadgen.ledger import (
    LEDGER_PREFIX,
    LIVE_PREFIX,
    LedgerWriter,
    is_retryable,
    outcome_for,
    parse_retry_after,
    transport_status,
)
from loadgen.stats import LiveWindow
from resgate.contract import env
from resgate.contract.errors import ConfigError

log = logging.getLogger("resgate.loadgen")

DEFAULT_REF_PRICES = {"AAPL": "190.00", "MSFT": "420.00", "GOOG": "170.00", "AMZN": "185.00"}
ERROR_SNIPPET = 200
CLOSED_ORDER_STATES = frozenset({"filled", "cancelled", "canceled", "rejected"})
_CENT = Decimal("0.01")


# --------------------------------------------------------------------------------------------- config


def _env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"must be a number, got {raw!r}", where=name) from None
    if not v >= minimum or v == float("inf"):
        raise ConfigError(f"must be a finite number >= {minimum:g}, got {raw!r}", where=name)
    return v


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ConfigError(f"must be an integer, got {raw!r}", where=name) from None
    if v < minimum:
        raise ConfigError(f"must be >= {minimum}, got {raw!r}", where=name)
    return v


@dataclass(frozen=True)
class LoadConfig:
    """The locustfile's settings, read from the environment by :meth:`from_env`."""

    ledger_dir: Path
    symbols: tuple[str, ...]
    ref_prices: dict[str, Decimal]
    price_band_pct: float
    max_qty: int
    connect_timeout_s: float
    network_timeout_s: float
    max_attempts: int
    retry_after_cap_s: float
    backoff_base_s: float
    wait_min_s: float
    wait_max_s: float
    node: str
    flush_every: int
    resend_ratio: float
    conn_max_age_s: float

    @classmethod
    def from_env(cls) -> LoadConfig:
        """Read and validate the ``RESGATE_*`` variables; raises ``ConfigError`` naming the variable."""
        raw_dir = os.environ.get(env.ENV_LEDGER_DIR, "").strip()
        ledger_dir = Path(raw_dir) if raw_dir else Path(tempfile.gettempdir()) / "resgate-load"
        symbols = tuple(
            s.strip().upper() for s in os.environ.get(env.ENV_SYMBOLS, "").split(",") if s.strip()
        ) or tuple(loadgen.DEFAULT_SYMBOLS)
        refs = {s: Decimal(DEFAULT_REF_PRICES.get(s, "100.00")) for s in symbols}
        for item in os.environ.get(env.ENV_REF_PRICES, "").split(","):
            if not item.strip():
                continue
            sym, sep, price = item.partition("=")
            try:
                value = Decimal(price.strip())
                ok = bool(sep) and value.is_finite() and value > 0
            except ArithmeticError:
                ok = False
            if not ok:
                raise ConfigError(f"expected SYMBOL=price (> 0), got {item!r}", where=env.ENV_REF_PRICES)
            refs[sym.strip().upper()] = value
        wait_min = _env_float(env.ENV_WAIT_MIN_S, 0.1)
        wait_max = _env_float(env.ENV_WAIT_MAX_S, max(0.5, wait_min))
        if wait_max < wait_min:
            raise ConfigError(f"must be >= {env.ENV_WAIT_MIN_S} ({wait_min:g})", where=env.ENV_WAIT_MAX_S)
        band = _env_float(env.ENV_PRICE_BAND_PCT, 1.0)
        if band >= 50:
            raise ConfigError("must be < 50 (percent)", where=env.ENV_PRICE_BAND_PCT)
        return cls(
            ledger_dir=ledger_dir,
            symbols=symbols,
            ref_prices=refs,
            price_band_pct=band,
            max_qty=_env_int(env.ENV_MAX_QTY, 100),
            connect_timeout_s=_env_float(env.ENV_CONNECT_TIMEOUT_S, 2.0, minimum=0.01),
            network_timeout_s=_env_float(env.ENV_NETWORK_TIMEOUT_S, 3.0, minimum=0.01),
            max_attempts=_env_int(env.ENV_MAX_ATTEMPTS, 4),
            retry_after_cap_s=_env_float(env.ENV_RETRY_AFTER_CAP_S, 2.0),
            backoff_base_s=_env_float(env.ENV_BACKOFF_BASE_S, 0.1),
            wait_min_s=wait_min,
            wait_max_s=wait_max,
            node=os.environ.get(env.ENV_LOAD_NODE, "").strip() or secrets.token_hex(3),
            flush_every=_env_int(env.ENV_LEDGER_FLUSH_RECORDS, 2000),
            resend_ratio=min(1.0, _env_float(env.ENV_RESEND_RATIO, 0.02)),
            conn_max_age_s=_env_float(env.ENV_CONN_MAX_AGE_S, 2.0),
        )


CONFIG = LoadConfig.from_env()
LEDGER = LedgerWriter(CONFIG.ledger_dir, prefix=LEDGER_PREFIX, flush_every=CONFIG.flush_every)
LIVE_FILE = LedgerWriter(CONFIG.ledger_dir, prefix=LIVE_PREFIX, flush_every=1_000_000)
LIVE = LiveWindow()
_USER_NUMBERS = itertools.count(1)


# --------------------------------------------------------------------------------------------- process hooks


class _Ticker:
    """Once a second: write the finished live windows and the buffered ledger lines of this process."""

    def __init__(self) -> None:
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self.greenlet is None or self.greenlet.dead:
            LIVE.start(time.time())
            self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(1.0 - (time.time() % 1.0) + 0.01)  # just after each second boundary
            try:
                write_live(final=False)
                LEDGER.flush()
            except Exception:
                log.exception("writing the ledger / live stats failed")

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None


TICKER = _Ticker()


def write_live(*, final: bool) -> None:
    """Append this process's finished live windows (all of them when ``final``) to its live file."""
    LIVE_FILE.write_many(LIVE.drain(time.time(), final=final))
    LIVE_FILE.flush()


def flush_all(**_kw: Any) -> None:
    """Write everything this process has buffered (idempotent; safe to call from any event)."""
    try:
        LEDGER.flush()
        LIVE_FILE.flush()
    except Exception:
        log.exception("flushing the ledger failed")


@events.request.add_listener
def _on_request(response_time: float = 0.0, exception: BaseException | None = None, **_kw: Any) -> None:
    if TICKER.greenlet is None:
        TICKER.start()
    LIVE.add(time.time(), response_time, exception is not None)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):  # a master makes no requests of its own
        CONFIG.ledger_dir.mkdir(parents=True, exist_ok=True)
        TICKER.start()


@events.test_stop.add_listener
def _on_test_stop(**_kw: Any) -> None:
    TICKER.stop()
    try:
        write_live(final=True)
    except Exception:
        log.exception("writing live stats failed")
    flush_all()


events.quitting.add_listener(flush_all)
events.quit.add_listener(flush_all)
atexit.register(flush_all)


# --------------------------------------------------------------------------------------------- the user


@dataclass
class Attempt:
    """What one request attempt came to (also what was written to the ledger)."""

    status: int | str
    outcome: str
    data: Any = None
    retry_after: float | None = None


def _header(resp: Any, name: str) -> str | None:
    headers = getattr(resp, "headers", None)
    if not headers:
        return None
    value = headers.get(name)
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _snippet(content: bytes | None) -> str:
    if not content:
        return ""
    return content[:ERROR_SNIPPET].decode("utf-8", errors="replace")


class TraderUser(FastHttpUser):
    """A trader with its own ``client_id``: orders (most traffic), cancels, RFQs and reads, with retries."""

    wait_time = between(CONFIG.wait_min_s, CONFIG.wait_max_s)
    connection_timeout = CONFIG.connect_timeout_s
    network_timeout = CONFIG.network_timeout_s
    max_retries = 0  # retries are ours (same key, recorded); the HTTP client must never resend on its own
    concurrency = 1  # one request at a time per trader

    def on_start(self) -> None:
        self.client_id = f"c{CONFIG.node}-{next(_USER_NUMBERS)}"
        self.seq = 0
        self.open_orders: deque[str] = deque(maxlen=50)
        self.known_orders: deque[str] = deque(maxlen=100)
        self.rfq_ids: deque[str] = deque(maxlen=20)
        self.conn_opened = time.monotonic()

    # -------------------------------------------------------------- tasks

    @task(70)
    def submit_order(self) -> None:
        symbol = random.choice(CONFIG.symbols)
        ref = CONFIG.ref_prices[symbol]
        band = Decimal(str(random.uniform(-CONFIG.price_band_pct, CONFIG.price_band_pct))) / 100
        price = max(_CENT, (ref * (1 + band)).quantize(_CENT, rounding=ROUND_HALF_UP))
        body = {
            "client_id": self.client_id,
            "symbol": symbol,
            "side": random.choice(("buy", "sell")),
            "qty": random.randint(1, CONFIG.max_qty),
            "price": str(price),
        }
        key = self._new_key()
        result = self._call("submit_order", "POST", "/orders", body=body, key=key)
        order_id = result.data.get("order_id") if isinstance(result.data, dict) else None
        if result.outcome == "ok" and random.random() < CONFIG.resend_ratio:
            # The same order again, same key and bytes: an idempotent gateway answers with the original.
            self._call("submit_order", "POST", "/orders", body=body, key=key, extra={"resend": True})
        if result.outcome == "ok" and order_id:
            self.known_orders.append(str(order_id))
            if str(result.data.get("status", "open")).lower() not in CLOSED_ORDER_STATES:
                self.open_orders.append(str(order_id))

    @task(10)
    def cancel_order(self) -> None:
        if not self.open_orders:
            self.submit_order()
            return
        order_id = self.open_orders.popleft() if random.random() < 0.5 else self.open_orders.pop()
        self._call(
            "cancel_order", "POST", f"/orders/{order_id}/cancel", key=self._new_key(), order_id=order_id
        )

    @task(8)
    def rfq(self) -> None:
        body = {
            "client_id": self.client_id,
            "symbol": random.choice(CONFIG.symbols),
            "side": random.choice(("buy", "sell")),
            "qty": random.randint(1, CONFIG.max_qty),
        }
        result = self._call("rfq", "POST", "/rfqs", body=body, key=self._new_key())
        if result.outcome == "ok" and isinstance(result.data, dict) and result.data.get("rfq_id"):
            self.rfq_ids.append(str(result.data["rfq_id"]))

    @task(8)
    def get_order(self) -> None:
        if not self.known_orders:
            self.submit_order()
            return
        order_id = random.choice(self.known_orders)
        self._call("get_order", "GET", f"/orders/{order_id}", order_id=order_id)

    @task(4)
    def get_rfq(self) -> None:
        if not self.rfq_ids:
            self.rfq()
            return
        rfq_id = random.choice(self.rfq_ids)
        self._call("get_rfq", "GET", f"/rfqs/{rfq_id}", extra={"rfq_id": rfq_id})

    # -------------------------------------------------------------- requests, retries, ledger

    def _new_key(self) -> str:
        self.seq += 1
        return f"{self.client_id}-{self.seq}-{secrets.token_hex(4)}"

    def _stopping(self) -> bool:
        runner = self.environment.runner
        return self._state == LOCUST_STATE_STOPPING or (
            runner is not None and runner.state in (STATE_STOPPING, STATE_CLEANUP, STATE_STOPPED)
        )

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short steps; False (at once) when the load is stopping."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stopping():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            gevent.sleep(min(0.1, left))

    def _call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        order_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Attempt:
        """Make a client request with retries; every attempt is recorded. Returns the last attempt.

        Once the load is stopping no new request is started (``StopUser`` ends this user); an attempt
        already in flight is finished and recorded, and no retry follows it.
        """
        if self._stopping():
            raise StopUser()
        # serialised once: every attempt sends the very same bytes under the same key
        payload = json.dumps(body, separators=(",", ":")) if body is not None else None
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        fields: dict[str, Any] = dict(extra or {})
        if body is not None:
            for f in ("symbol", "side", "qty"):
                if f in body:
                    fields[f] = body[f]
            if "price" in body:
                fields["price"] = float(body["price"])
        attempt = 0
        while True:
            attempt += 1
            result = self._attempt(op, method, path, payload, headers, key, order_id, attempt, fields)
            if result.outcome == "ok" and isinstance(result.data, dict) and result.data.get("order_id"):
                order_id = str(result.data["order_id"])
            if not is_retryable(result.status) or attempt >= CONFIG.max_attempts:
                return result
            if result.retry_after is not None:
                delay = min(result.retry_after, CONFIG.retry_after_cap_s)
            else:
                delay = random.uniform(
                    0, min(CONFIG.backoff_base_s * 2 ** (attempt - 1), CONFIG.retry_after_cap_s)
                )
            if not self._pause(delay):
                return result

    def _recycle_connection(self) -> None:
        """Close this trader's connection once it is ``conn_max_age_s`` old; the next request opens a new
        one (between requests, so no request is ever cut off by it)."""
        if CONFIG.conn_max_age_s <= 0:
            return
        now = time.monotonic()
        if now - self.conn_opened >= CONFIG.conn_max_age_s:
            self.client.client.close()
            self.conn_opened = now

    def _attempt(
        self,
        op: str,
        method: str,
        path: str,
        payload: str | None,
        headers: dict[str, str],
        key: str | None,
        order_id: str | None,
        attempt: int,
        fields: dict[str, Any],
    ) -> Attempt:
        """One request: report it to Locust (success iff 2xx) and write its ledger line."""
        self._recycle_connection()
        start = time.time()
        t0 = time.perf_counter()
        resp = None
        try:
            with self.client.request(
                method, path, data=payload, headers=headers, name=op, catch_response=True
            ) as resp:
                try:
                    result, error = self._classify(resp)
                except Exception as e:  # never lose the record of an attempt that was made
                    result, error = (
                        Attempt("conn_error", "info"),
                        f"unclassified response: {e!r}"[:ERROR_SNIPPET],
                    )
                if result.outcome == "ok":
                    resp.success()
                else:
                    resp.failure(f"{result.status}: {error}" if error else str(result.status))
                latency_ms = float(resp.request_meta.get("response_time") or 0.0)
                start = float(resp.request_meta.get("start_time") or start)
        except (GreenletExit, Exception) as e:
            if resp is not None:  # already reported by the with-block; nothing was lost
                raise
            # The attempt never came back: the load stopped (GreenletExit) or the client broke. The request
            # may have reached the server, so it is recorded as indeterminate, in the ledger and in Locust.
            latency_ms = (time.perf_counter() - t0) * 1000
            killed = isinstance(e, GreenletExit)
            error = (
                "load stopped mid-request"
                if killed
                else f"client error: {type(e).__name__}: {e}"[:ERROR_SNIPPET]
            )
            result = Attempt("conn_error", "info")
            self.environment.events.request.fire(
                request_type=method,
                name=op,
                response_time=latency_ms,
                response_length=0,
                response=None,
                context={},
                exception=RuntimeError(error),
                start_time=start,
                url=path,
            )
            self._record(op, start, key, order_id, result, latency_ms, attempt, fields, error)
            if killed:
                raise
            return result
        data = result.data
        if isinstance(data, dict) and data.get("order_id") and op == "submit_order":
            order_id = str(data["order_id"])
        if op == "rfq" and isinstance(data, dict) and data.get("rfq_id"):
            fields = {**fields, "rfq_id": str(data["rfq_id"])}
        self._record(op, start, key, order_id, result, latency_ms, attempt, fields, error)
        return result

    @staticmethod
    def _classify(resp: Any) -> tuple[Attempt, str | None]:
        """The attempt's status, outcome, decoded body and Retry-After, and an error text for failures."""
        code = int(resp.status_code or 0)
        exc = resp.request_meta.get("exception")
        if code == 0:
            status: int | str = transport_status(getattr(resp, "error", None) or exc)
            err = getattr(resp, "error", None) or exc
            return Attempt(status, outcome_for(status)), f"{type(err).__name__}: {err}"[:ERROR_SNIPPET]
        if exc is not None and getattr(exc, "response", None) is None and 200 <= code < 300:
            # headers said 2xx but the body never arrived whole: whether it was applied is unknown
            return Attempt("conn_reset", "info"), f"HTTP {code} with a broken body: {exc}"[:ERROR_SNIPPET]
        content = resp.content
        retry_after = parse_retry_after(_header(resp, "Retry-After"), now=time.time())
        outcome = outcome_for(code)
        data: Any = None
        error: str | None = None
        if outcome == "ok":
            try:
                data = json.loads(content) if content else None
            except ValueError:
                error = f"unparseable body: {_snippet(content)}"
        else:
            error = f"HTTP {code}: {_snippet(content)}"
        return Attempt(code, outcome, data, retry_after), error

    def _record(
        self,
        op: str,
        ts: float,
        key: str | None,
        order_id: str | None,
        result: Attempt,
        latency_ms: float,
        attempt: int,
        fields: dict[str, Any],
        error: str | None,
    ) -> None:
        rec: dict[str, Any] = {
            "ts": round(ts, 6),
            "op": op,
            "client_id": self.client_id,
            "idempotency_key": key,
            "order_id": order_id,
            "status": result.status,
            "outcome": result.outcome,
            "latency_ms": round(latency_ms, 3),
            "attempt": attempt,
            "retry_after": result.retry_after,
            "error": error,
        }
        rec.update(fields)
        LEDGER.write(rec)
