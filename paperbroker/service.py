"""A tiny asyncio HTTP server for the liveness and readiness probes of the matcher and the projector.

``GET /health`` answers 200 while the process's event loop runs (liveness). ``GET /ready`` answers 200
once the service has loaded its state and is consuming (readiness), 503 before that or while it is
recovering from a lost database or broker; both bodies are JSON with the service's details (lag,
counters, last error). Anything else is 404. Sockets use ``TCP_NODELAY`` and each answer closes the
connection, so a probe costs one round trip. With the ``slow_start`` seeded bug, the caller passes a
``ready_delay_s`` and readiness is withheld that long after the start (the recovery check's target).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthState:
    """Liveness/readiness of one service plus a dict of details shown on both endpoints."""

    def __init__(self, service: str, *, ready_delay_s: float = 0.0) -> None:
        self.service = service
        self.started = time.monotonic()
        self.ready_delay_s = ready_delay_s
        self._ready = False
        self.reason = "starting"
        self.details: dict[str, Any] = {}
        # live figures computed per probe (the matcher's lease: leader, heartbeat age), and a condition
        # readiness also needs at probe time (a leader whose lease deadline passed is not ready at once)
        self.figures: Callable[[], dict[str, Any]] | None = None
        self.ready_check: Callable[[], bool] | None = None

    @property
    def ready(self) -> bool:
        """True when the service said it is ready, the (slow_start) readiness delay has passed and the
        ``ready_check`` (when set) holds now."""
        if not self._ready or time.monotonic() - self.started < self.ready_delay_s:
            return False
        return self.ready_check is None or self.ready_check()

    def set_ready(self) -> None:
        """Mark the service ready."""
        self._ready = True
        self.reason = "ready"

    def set_not_ready(self, reason: str) -> None:
        """Mark the service not ready, with a short reason shown on /ready."""
        self._ready = False
        self.reason = reason

    def body(self) -> dict[str, Any]:
        """The JSON body of both endpoints: ``{service, ready, reason, uptime_s, **details}``."""
        reason = self.reason
        ready = self.ready
        if self._ready and not ready:
            slow = time.monotonic() - self.started < self.ready_delay_s
            reason = "ready delay (slow_start) not over" if slow else "paused: lease not held"
        return {
            "service": self.service,
            "ready": ready,
            "reason": reason,
            "uptime_s": round(time.monotonic() - self.started, 3),
            **self.details,
            **(self.figures() if self.figures is not None else {}),
        }


async def _handle(state: HealthState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
        if path == "/health":
            status, body = 200, {**state.body(), "status": "ok"}
        elif path == "/ready":
            status, body = (200 if state.ready else 503), state.body()
        else:
            status, body = 404, {"error": f"no route {path}"}
        if status != 404 and method not in ("GET", "HEAD"):
            status, body = 405, {"error": f"method {method} not allowed"}
        payload = json.dumps(body, default=str).encode()
        headers = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n"
            + ("Retry-After: 1\r\n" if status == 503 else "")
            + "\r\n"
        ).encode()
        writer.write(headers + (b"" if method == "HEAD" else payload))
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start_health_server(state: HealthState, port: int, host: str = "127.0.0.1") -> asyncio.Server:
    """Start serving /health and /ready on ``host:port`` (port 0 picks one); returns the server."""
    server = await asyncio.start_server(lambda r, w: _handle(state, r, w), host, port)
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    state.details["port"] = bound
    log.info("%s: health server on %s:%s", state.service, host, bound)
    return server


def install_stop_handlers(stop: asyncio.Event, *, on_signal: Callable[[], None] | None = None) -> None:
    """Set ``stop`` on SIGTERM/SIGINT (graceful shutdown of a service's main loop)."""
    loop = asyncio.get_running_loop()

    def _stop() -> None:
        stop.set()
        if on_signal is not None:
            on_signal()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _stop)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; returns True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except TimeoutError:
        return stop.is_set()


def configure_logging(name: str) -> None:
    """Log INFO lines to stderr as ``<time> <name> <level> <message>``."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def consumer_lag(consumer: Any) -> int | None:
    """Total lag (highwater - position) over a consumer's assigned partitions; None when unknown."""
    try:
        assignment = consumer._subscription.subscription.assignment
        total = 0
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            state = assignment.state_value(tp)
            if hw is None or state is None or not state.has_valid_position:
                return None
            total += max(0, hw - state.position)
        return total
    except Exception:  # no assignment yet, rebalancing, ...
        return None


class Worker(Protocol):
    """A long-running service body (the matcher, the projector): runs until ``stop`` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...


async def serve(name: str, settings: Any, make_worker: Callable[[Any, HealthState], Worker]) -> None:
    """Run ``make_worker(settings, health)`` with its health server until SIGTERM/SIGINT.

    Readiness is delayed by ``settings.slow_start_s`` when the ``slow_start`` seeded bug is on.
    """
    delay = settings.slow_start_s if settings.bug("slow_start") else 0.0
    health = HealthState(name, ready_delay_s=delay)
    health.details["bugs"] = sorted(settings.bugs)
    server = await start_health_server(health, settings.port)
    stop = asyncio.Event()
    install_stop_handlers(stop)
    try:
        await make_worker(settings, health).run(stop)
    finally:
        server.close()


def service_main(name: str, make_worker: Callable[[Any, HealthState], Worker]) -> None:
    """Entry point of ``python -m paperbroker.<name>``: logging, settings from the environment, serve."""
    from paperbroker.config import load_settings

    configure_logging(name)
    asyncio.run(serve(name, load_settings(), make_worker))
