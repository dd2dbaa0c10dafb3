"""A small round-robin TCP proxy: the local stand-in for an ALB in front of an ECS service.

``Balancer(listen_port, backends)`` runs an asyncio event loop in its own thread. For each incoming
connection it evaluates ``backends()`` (for example ``lambda: supervisor.healthy_endpoints("gateway")``),
connects to the next backend in round-robin order (trying the following ones if a connect is refused or
times out) and pipes bytes both ways with transport-level flow control, TCP_NODELAY on both sockets.
When no backend can be reached the client connection is reset (RST): a clear, retryable failure, as an
ALB with no healthy target answers 503. A backend that dies mid-connection resets the client too.
Connections are pinned to one backend for their lifetime (keep-alive requests all go there).

The same proxy carries the path's network faults: every byte goes through a
:class:`~resgate.local.toxics.Link` per direction that applies ``self.toxics`` (latency, loss, blackhole,
...; a straight write when none is on), ``toxics.refusing`` resets new connections on accept, and
``rate_limit`` makes the edge answer ``429`` + ``Retry-After`` itself for a share of HTTP requests
(:mod:`resgate.local.httpgate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Sequence

from resgate.contract.errors import ConfigError, GateError
from resgate.local.httpgate import HttpGate, RateLimit
from resgate.local.toxics import Link, Toxics

Backend = tuple[str, int]

_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, timeout 0: close() sends RST instead of FIN


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with RST so the peer sees a connection reset rather than a clean end of stream."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


class _Side(asyncio.Protocol):
    """One end of a proxied connection; forwards what it receives to its peer through ``link``."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.link: Link | None = None  # set once both ends are connected
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.send(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or self.link is None:
            self.pipe.close()
            return False
        if peer.eof:
            self.link.close()  # both halves ended: close once the queued bytes are out (and a slow close)
            return True
        if peer.transport.can_write_eof():
            self.link.eof()  # half-close, keep reading the other direction
            return True
        self.link.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pipe.lost(self, exc)

    # Flow control: when our peer cannot keep up with what we forward, stop reading from our side.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientSide(_Side):
    """The accepted connection: reads nothing until a backend is connected, then pipes through the link
    (and, during a rate-limit spike, through the HTTP gate that answers 429 itself)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        balancer = self.pipe.balancer
        if balancer.toxics.refusing:  # a "refuse" partition: the connection is reset as it arrives
            balancer._stats["refused"] += 1
            _reset(transport)
            return
        transport.pause_reading()  # type: ignore[attr-defined]
        assert balancer._loop is not None
        self.pipe.task = balancer._loop.create_task(balancer._connect_backend(self.pipe))

    def data_received(self, data: bytes) -> None:
        limiter = self.pipe.balancer.rate_limit
        if limiter is None and self.pipe.http is None:
            super().data_received(data)
            return
        if self.pipe.http is None:
            self.pipe.http = HttpGate()
        forward, reply = self.pipe.http.feed(data, limiter)
        if forward and self.link is not None:
            self.link.send(forward)
        if reply and self.peer is not None and self.peer.link is not None:
            self.pipe.balancer._stats["rate_limited"] += reply.count(b"HTTP/1.1 429")
            self.peer.link.send(reply)
        if limiter is None and self.pipe.http.idle():
            self.pipe.http = None


class _Pipe:
    """A client connection and its backend connection."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.client: _Side = _ClientSide(self)
        self.backend: _Side | None = None
        self.closed = False
        self.task: asyncio.Task[None] | None = None  # the backend connect; referenced so it is not GC'd
        self.http: HttpGate | None = None

    def wire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect the two ends through one link per direction (upstream: client → backend)."""
        assert self.backend is not None
        toxics = self.balancer.toxics
        ends = ((self.client, self.backend, "upstream"), (self.backend, self.client, "downstream"))
        for src, dst, direction in ends:
            src.peer = dst
            src.link = Link(
                loop,
                toxics,
                direction,
                write=lambda data, d=dst: d.transport.write(data) if d.transport is not None else None,
                write_eof=lambda d=dst: self._write_eof(d),
                close_peer=self.close,
                pause_source=lambda s=src: s.transport.pause_reading() if s.transport is not None else None,
                resume_source=lambda s=src: s.transport.resume_reading() if s.transport is not None else None,
            )

    def _write_eof(self, side: _Side) -> None:
        if side.transport is not None and side.transport.can_write_eof():
            side.transport.write_eof()
        else:
            self.close()

    def lost(self, side: _Side, exc: Exception | None) -> None:
        other = self.backend if side is self.client else self.client
        if other is not None and other.transport is not None:
            if exc is not None and side is not self.client:
                if side.link is not None:
                    side.link.cancel()
                _reset(other.transport)  # the backend died: the client must see a reset, not a clean end
            elif side.link is not None:
                side.link.close()  # after the bytes still queued (and a slow close)
            else:
                other.transport.close()
        if other is None or other.transport is None:
            self.closed = True
            self.balancer._pipes.discard(self)

    def close(self) -> None:
        for side in (self.client, self.backend):
            if side is not None and side.transport is not None:
                side.transport.close()

    def abort(self) -> None:
        for side in (self.client, self.backend):
            if side is not None:
                if side.link is not None:
                    side.link.cancel()
                if side.transport is not None:
                    _reset(side.transport)


class Balancer:
    """Round-robin TCP proxy on 127.0.0.1 with backends chosen per connection; runs in its own thread.

    ``start()`` returns the bound port; ``stop()`` closes the listener and every proxied connection.
    """

    def __init__(
        self,
        listen_port: int = 0,
        backends: Callable[[], Sequence[Backend]] | None = None,
        *,
        host: str = "127.0.0.1",
        connect_timeout_s: float = 1.0,
        name: str = "balancer",
        toxics: Toxics | None = None,
    ) -> None:
        if backends is None or not callable(backends):
            raise ConfigError("must be a callable returning [(host, port), ...]", where="backends")
        if not isinstance(listen_port, int) or isinstance(listen_port, bool) or not 0 <= listen_port <= 65535:
            raise ConfigError(f"must be a port number 0-65535, got {listen_port!r}", where="listen_port")
        if not isinstance(connect_timeout_s, int | float) or connect_timeout_s <= 0:
            raise ConfigError(f"must be a number > 0, got {connect_timeout_s!r}", where="connect_timeout_s")
        self._listen_port = listen_port
        self._backends = backends
        self._host = host
        self._connect_timeout = float(connect_timeout_s)
        self._name = name
        self._rr = 0
        self._pipes: set[_Pipe] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self._stats = {
            "connections": 0,
            "no_backend": 0,
            "connect_failures": 0,
            "backend_errors": 0,
            "refused": 0,
            "rate_limited": 0,
        }
        self._per_backend: dict[Backend, int] = {}
        # The network faults of the path through this proxy (see resgate.local.toxics), and the edge's
        # rate-limit spike; both off unless a fault sets them.
        self.toxics = toxics if toxics is not None else Toxics(name)
        self.toxics.on_reset(self.reset_connections)
        self.rate_limit: RateLimit | None = None

    # ---- public API

    def __enter__(self) -> Balancer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> int:
        """Bind and start serving in a background thread; returns the listening port."""
        if self._thread is not None:
            assert self.port is not None
            return self.port
        ready = threading.Event()
        error: list[BaseException] = []

        def _run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._new_client, self._host, self._listen_port, backlog=1024)
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as e:
                error.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=_run, name=f"{self._name}-loop", daemon=True)
        self._thread.start()
        ready.wait()
        if error:
            self._thread.join()
            self._thread = None
            raise GateError(
                f"balancer could not listen on {self._host}:{self._listen_port}: {error[0]}"
            ) from error[0]
        assert self.port is not None
        return self.port

    def stop(self) -> None:
        """Stop listening, reset every proxied connection and end the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return

        async def _shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for pipe in list(self._pipes):
                if pipe.task is not None and not pipe.task.done():
                    pipe.task.cancel()
                pipe.abort()
            self._pipes.clear()
            await asyncio.sleep(0)

        with contextlib.suppress(RuntimeError):
            fut = asyncio.run_coroutine_threadsafe(_shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None

    def stats(self) -> dict[str, int]:
        """Counters: connections, no_backend (clients reset: no backend), connect_failures, refused,
        rate_limited (429s answered by the proxy itself), active."""
        return dict(self._stats, active=len(self._pipes))

    def reset_connections(self) -> int:
        """RST every proxied connection now (from any thread); returns how many were open."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return 0

        async def _reset_all() -> int:
            pipes = list(self._pipes)
            for pipe in pipes:
                pipe.abort()
            return len(pipes)

        with contextlib.suppress(RuntimeError):
            fut = asyncio.run_coroutine_threadsafe(_reset_all(), loop)
            with contextlib.suppress(Exception):
                return int(fut.result(timeout=5))
        return 0

    def connections_per_backend(self) -> dict[Backend, int]:
        """How many client connections were piped to each backend (connections are pinned to one)."""
        return dict(self._per_backend)

    # ---- internals (event loop thread)

    def _new_client(self) -> _Side:
        pipe = _Pipe(self)
        self._pipes.add(pipe)
        self._stats["connections"] += 1
        return pipe.client

    def _candidates(self) -> list[Backend]:
        try:
            backends = list(self._backends())
        except Exception:
            self._stats["backend_errors"] += 1
            return []
        if not backends:
            return []
        start = self._rr % len(backends)
        self._rr += 1
        return backends[start:] + backends[:start]

    async def _connect_backend(self, pipe: _Pipe) -> None:
        loop = self._loop
        assert loop is not None
        for host, port in self._candidates():
            if pipe.client.transport is None:
                return
            side = _Side(pipe)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda s=side: s, host, port), timeout=self._connect_timeout
                )
            except OSError:  # includes TimeoutError
                self._stats["connect_failures"] += 1
                continue
            if pipe.client.transport is None or pipe.closed:  # client gone while we connected
                if side.transport is not None:
                    side.transport.close()
                return
            pipe.backend = side
            self._per_backend[(host, port)] = self._per_backend.get((host, port), 0) + 1
            pipe.wire(loop)
            pipe.client.transport.resume_reading()
            return
        self._stats["no_backend"] += 1
        if pipe.client.transport is not None:
            _reset(pipe.client.transport)
