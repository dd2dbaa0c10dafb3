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
deadline, so the ledger is complete.

:class:`BurstProcess` runs the same burst in a child process (``python -m resgate.local.burst``), as the
gate does: in the gate's own process it would share one interpreter lock with the local load balancer,
and each would starve the other (measured: 190 of 600 requests per second sent, 299 of 709 timed out in
the client while the gateways answered the load in 185 ms). SIGTERM halts it; it reports its
:meth:`Burst.stats` in a JSON file, rewritten every ``STATS_EVERY_S`` and at its end. Only
``http://127.0.0.1`` and ``http://localhost`` targets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
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
STATS_EVERY_S = 0.5
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
                    t = asyncio.create_task(
                        self._one(session, f"{self.tag}-{run}-{n % spec.clients}", n, time.time())
                    )
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                await asyncio.sleep(TICK_S)
            self.ended_ts = time.time()
            if tasks:  # each ends by its own deadline
                with contextlib.suppress(Exception):
                    await asyncio.wait(list(tasks), timeout=spec.timeout_s + 1.0)

    async def _one(self, session: aiohttp.ClientSession, client_id: str, n: int, sent_ts: float) -> None:
        """One request, recorded with ``ts`` its arrival (when it was due and handed to the loop: on a busy
        machine the task may run later, and it belongs to the burst, not to the time after it) and
        ``latency_ms`` from its send."""
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
            "ts": sent_ts,
            "op": "submit_order",
            "client_id": client_id,
            "idempotency_key": key,
            "name": self.tag,
            "method": "POST",
            "attempt": 1,
            **{k: body[k] for k in ("symbol", "side", "qty")},
            "price": float(body["price"]),  # the ledger's price is a number (the body sends its text)
        }
        t0 = time.perf_counter()  # the response time counts from the send (a late task is the client's lag)
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


# ----------------------------------------------------------------------------------- in a child process
class BurstProcess:
    """A :class:`Burst` in a child process: :meth:`start`, :meth:`halt` (SIGTERM: no new request),
    :meth:`stop` (halt, then wait, bounded by the deadline, for its exit; SIGKILL after that), :meth:`stats`
    (its last stats file). The same arguments as :class:`Burst`."""

    def __init__(self, host: str, spec: BurstSpec, ledger_dir: str | Path, *, tag: str = "burst") -> None:
        Burst(host, spec, ledger_dir, tag=tag)  # validates the host before anything starts
        self.host, self.spec, self.tag = host, spec, tag
        self.ledger_dir = Path(ledger_dir)
        self.stats_path = self.ledger_dir / f".{tag}-stats.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn ``python -m resgate.local.burst`` with this burst's arguments."""
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        s = self.spec
        args = [sys.executable, "-m", "resgate.local.burst", "--host", self.host, "--rps", f"{s.rps:g}"]
        args += ["--duration-s", f"{s.duration_s:g}", "--timeout-s", f"{s.timeout_s:g}"]
        args += ["--max-in-flight", str(s.max_in_flight), "--clients", str(s.clients), "--tag", self.tag]
        args += ["--ledger-dir", str(self.ledger_dir), "--stats", str(self.stats_path)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_sending(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the child has sent its first request; False when it exited
        or the time ran out first (a busy machine can take seconds to start a Python process)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.stats().get("sent", 0) > 0:
                return True
            if self.proc is None or self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def halt(self) -> None:
        """No new request from now on (SIGTERM); the ones in flight end by their deadline."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> dict[str, Any]:
        """Halt, wait at most the deadline plus 5 s for the child to flush and exit (then SIGKILL)."""
        self.halt()
        if self.proc is not None:
            try:
                self.proc.wait(self.spec.timeout_s + 5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """The child's last :meth:`Burst.stats` (``{}`` before its first report)."""
        try:
            return dict(json.loads(self.stats_path.read_text()))
        except (OSError, ValueError):
            return {}


def _write_stats(burst: Burst, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(burst.stats()))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m resgate.local.burst``: run one burst until its duration ends or SIGTERM, then wait for
    the requests in flight, flush the ledger and write the final stats."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", required=True)
    p.add_argument("--rps", type=float, required=True)
    p.add_argument("--duration-s", type=float, required=True)
    p.add_argument("--timeout-s", type=float, default=3.0)
    p.add_argument("--max-in-flight", type=int, default=400)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--tag", default="burst")
    p.add_argument("--ledger-dir", required=True)
    p.add_argument("--stats", required=True)
    a = p.parse_args(argv)
    spec = BurstSpec(a.rps, a.duration_s, a.timeout_s, a.max_in_flight, a.clients)
    burst = Burst(a.host, spec, a.ledger_dir, tag=a.tag)
    signal.signal(signal.SIGTERM, lambda *_: burst.halt())
    stats = Path(a.stats)
    burst.start()
    assert burst._thread is not None
    while burst._thread.is_alive():
        _write_stats(burst, stats)
        burst._thread.join(0.05 if not burst.stats()["sent"] else STATS_EVERY_S)
    burst.stop()
    _write_stats(burst, stats)
    return 0 if burst.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
