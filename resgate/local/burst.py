"""An overload burst: clients far beyond the target's capacity for a few seconds, open loop, on 127.0.0.1.

:class:`Burst` is the engine of the ``overload`` fault kind. For ``duration_s`` it sends ``POST /orders``
at ``rps`` requests per second whatever the answers (open loop: arrivals do not wait for the service, as
a crowd of new clients does not), each with a fresh ``Idempotency-Key`` and a client deadline of
``timeout_s``, never more than ``max_in_flight`` at once (the machine's budget of sockets; an arrival
beyond it is counted ``not_sent`` and never reaches the target). Every request it sends becomes one line of
the client ledger (``ledger-burst-<pid>.jsonl`` beside Locust's files, merged with them), in the same
vocabulary as the load's (``op: submit_order``, ``name: burst``, the order's fields, ``retry_after``), so
integrity judges the burst's acknowledged orders like every other and the backpressure check reads how
the target answered. A burst client does not retry: its one answer is the evidence.

:meth:`Burst.halt` stops sending at once (the fault's lift, an abort, a gate error); :meth:`Burst.stop`
halts it and waits, at most ``timeout_s`` plus a few seconds, for the requests in flight to end by their own
deadline, so the ledger is complete. Only ``http://127.0.0.1`` and ``http://localhost`` targets are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import secrets
import threading
import time
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from loadgen import DEFAULT_SYMBOLS
from loadgen.ledger import LEDGER_PREFIX, LedgerWriter, outcome_for, parse_retry_after
from loadgen.load_config import DEFAULT_REF_PRICES
from resgate.contract.errors import ConfigError

LEDGER_FILE_PREFIX = f"{LEDGER_PREFIX}-burst"
TICK_S = 0.01
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class BurstSpec:
    """What a burst sends: ``rps`` for ``duration_s``, each request with a ``timeout_s`` deadline, at most
    ``max_in_flight`` at once, from ``clients`` distinct client ids."""

    rps: float
    duration_s: float
    timeout_s: float = 3.0
    max_in_flight: int = 400
    clients: int = 200


def _status_of(exc: BaseException) -> str:
    """The ledger's transport status of a client exception (no HTTP answer came back)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "conn_refused" if isinstance(exc.os_error, ConnectionRefusedError) else "conn_error"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionResetError, BrokenPipeError)):
        return "conn_reset"
    if isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__, ConnectionResetError):
        return "conn_reset"
    return "conn_error"


class Burst:
    """One running burst against ``host`` (``http://127.0.0.1:<port>``) writing ledger lines to
    ``ledger_dir``; :meth:`start`, then :meth:`stop` (idempotent), :meth:`stats` at any time."""

    def __init__(self, host: str, spec: BurstSpec, ledger_dir: str | Path, *, tag: str = "burst") -> None:
        parts = urlsplit(host)
        if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS:
            raise ConfigError(f"a burst only targets http://127.0.0.1, got {host!r}", where="load.host")
        self.host = host.rstrip("/")
        self.spec = spec
        self.tag = tag
        self.writer = LedgerWriter(ledger_dir, prefix=LEDGER_FILE_PREFIX, flush_every=500)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "not_sent": 0, "in_flight": 0, "peak_in_flight": 0}
        self._by_status: dict[str, int] = {}
        self.started_ts: float | None = None
        self.ended_ts: float | None = None
        self.error: str | None = None

    # -- control -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start sending (in a thread with its own event loop)."""
        self._thread = threading.Thread(target=self._thread_main, name=f"burst-{self.tag}", daemon=True)
        self._thread.start()

    def halt(self) -> None:
        """Send no new request (at once; the ones in flight end by their own deadline)."""
        self._stop.set()

    def stop(self) -> dict[str, Any]:
        """Stop sending now; wait (bounded) for the requests in flight; flush the ledger. Returns
        :meth:`stats`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.spec.timeout_s + 5.0)
        self.writer.flush()
        return self.stats()

    def wait(self) -> dict[str, Any]:
        """Wait for the burst to end on its own (its duration), then :meth:`stop`."""
        if self._thread is not None:
            self._thread.join(self.spec.duration_s + self.spec.timeout_s + 5.0)
        return self.stop()

    def stats(self) -> dict[str, Any]:
        """``{sent, not_sent, in_flight, peak_in_flight, by_status: {status: n}, achieved_rps, error?}``."""
        with self._lock:
            out: dict[str, Any] = {**self._counts, "by_status": dict(self._by_status)}
        if self.started_ts is not None:
            span = (self.ended_ts or time.time()) - self.started_ts
            out["achieved_rps"] = round(out["sent"] / span, 1) if span > 0 else None
        if self.error:
            out["error"] = self.error
        return out

    # -- the loop ----------------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as e:  # the ledger keeps what was sent; the fault timeline records the error
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.writer.flush()

    async def _main(self) -> None:
        spec = self.spec
        timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
        connector = aiohttp.TCPConnector(limit=spec.max_in_flight, force_close=False)
        tasks: set[asyncio.Task[None]] = set()
        numbers = itertools.count(1)
        run = secrets.token_hex(3)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.started_ts = start = time.time()
            due = 0
            while not self._stop.is_set():
                elapsed = time.time() - start
                if elapsed >= spec.duration_s:
                    break
                target = int(elapsed * spec.rps) + 1
                while due < target:
                    due += 1
                    with self._lock:
                        if self._counts["in_flight"] >= spec.max_in_flight:
                            self._counts["not_sent"] += 1
                            continue
                        self._counts["in_flight"] += 1
                        self._counts["sent"] += 1
                        self._counts["peak_in_flight"] = max(
                            self._counts["peak_in_flight"], self._counts["in_flight"]
                        )
                    n = next(numbers)
                    t = asyncio.create_task(self._one(session, f"{self.tag}-{run}-{n % spec.clients}", n))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                await asyncio.sleep(TICK_S)
            self.ended_ts = time.time()
            if tasks:  # each ends by its own deadline
                with contextlib.suppress(Exception):
                    await asyncio.wait(list(tasks), timeout=spec.timeout_s + 1.0)

    async def _one(self, session: aiohttp.ClientSession, client_id: str, n: int) -> None:
        symbol = random.choice(DEFAULT_SYMBOLS)
        ref = Decimal(DEFAULT_REF_PRICES[symbol])
        band = Decimal(str(random.uniform(-1.0, 1.0))) / 100
        body = {
            "client_id": client_id,
            "symbol": symbol,
            "side": random.choice(("buy", "sell")),
            "qty": random.randint(1, 10),
            "price": str((ref * (1 + band)).quantize(_CENT, rounding=ROUND_HALF_UP)),
        }
        key = f"{client_id}-{n}-{secrets.token_hex(4)}"
        record: dict[str, Any] = {
            "ts": time.time(),
            "op": "submit_order",
            "client_id": client_id,
            "idempotency_key": key,
            "name": self.tag,
            "method": "POST",
            "attempt": 1,
            **{k: body[k] for k in ("symbol", "side", "qty")},
            "price": float(body["price"]),  # the ledger's price is a number (the body sends its text)
        }
        t0 = time.perf_counter()
        status: int | str
        try:
            async with session.post(
                f"{self.host}/orders", json=body, headers={"Idempotency-Key": key, "X-Request-Attempt": "1"}
            ) as resp:
                status = resp.status
                data: Any = None
                with contextlib.suppress(Exception):
                    data = await resp.json(content_type=None)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=time.time())
                if retry_after is not None:
                    record["retry_after"] = retry_after
                if isinstance(data, dict):
                    if 200 <= status < 300 and data.get("order_id"):
                        record["order_id"] = str(data["order_id"])
                    elif status >= 400:
                        record["error"] = str(data.get("error") or data.get("message") or "")[:200]
        except Exception as e:
            status = _status_of(e)
            record["error"] = f"{type(e).__name__}: {e}"[:200]
        record["latency_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        record["status"] = status
        record["outcome"] = outcome_for(status)
        self.writer.write(record)
        with self._lock:
            self._counts["in_flight"] -= 1
            self._by_status[str(status)] = self._by_status.get(str(status), 0) + 1
