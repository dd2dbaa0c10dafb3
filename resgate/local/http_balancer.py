"""The local Application Load Balancer: an HTTP/1.1 proxy that routes requests, not connections.

:class:`HttpBalancer` is the default balancer in front of a local HTTP service (``balancer: http``). Like an
ALB it keeps each client's keep-alive connection to itself, reads each request whole (head and body;
it answers ``Expect: 100-continue`` itself) before it chooses a target, adds ``X-Forwarded-For``,
``-Proto`` and ``-Port``, sends it to the next healthy replica (round robin) over a pooled keep-alive
connection, and hands the response back. So a client that stalls in the middle of a request, or a
network fault between a client and the service, never holds a replica's worker; a killed replica costs
only the requests it had in flight, and a client's next request goes to a healthy replica.

When no target can take a request it answers as an ALB does (AWS: "Troubleshoot your Application Load
Balancers", HTTP 502/503/504):

* **503 Service Unavailable** — the target group has no target at all (``registered`` returns none). With
  targets that are all unhealthy an ALB *fails open* and routes to all of them; so does this one when
  given ``registered`` (every running replica), so a database outage that fails every replica's health
  check still reaches the service and its own answers (a 503 with Retry-After, or a bare 500);
* **502 Bad Gateway** — every target refused the connection, or the target sent a malformed response;
* **504 Gateway Timeout** — the connection to the target could not be made within ``connect_timeout_s``
  (10 s, as the ALB's), or the target did not start its response within ``response_timeout_s`` (the
  ALB's idle timeout, 60 s by default).

These answers carry ``Server: awselb/2.0`` and a short HTML body, as the ALB's do. Two local differences:
a refused *connect* (the request was never sent) is tried on the next healthy replica before a 502 is
answered, because a killed replica stays in the healthy set for up to a health-check interval; and when
a target dies with a request outstanding (a ``stop_task`` fault's SIGKILL) the client's connection is
reset where an ALB would answer 502. A reset and that 502 mean the same ("the request may or may not
have been applied"), but the ledger and the retryable check count only a reset as indeterminate (fine
for a request with an idempotency key) and a 502 as a server error; and ECS's own stop-task deregisters
and drains a target before it stops it, so on AWS the case is rare. Other clients' connections are
not touched either way. A request with ``Upgrade`` (WebSocket) becomes a byte tunnel once the replica
answers 101.

The client side carries the path's network faults (:mod:`resgate.local.toxics`) exactly as the TCP
balancer does: one :class:`~resgate.local.toxics.Link` per direction between the client's socket and the
HTTP parser, ``toxics.refusing`` resets new connections and ``toxics.reset()`` resets the open ones;
``rate_limit`` makes the balancer answer ``429`` + ``Retry-After`` itself for a share of requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Callable, Sequence

from resgate.contract.errors import ConfigError
from resgate.local.balancer import Backend, Balancer, _nodelay, _reset
from resgate.local.toxics import Link, Toxics

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

_REASONS = {
    400: "Bad Request",
    413: "Payload Too Large",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def alb_error(status: int, *, close: bool = False) -> bytes:
    """The response an ALB sends itself for ``status`` (HTML body, ``Server: awselb/2.0``)."""
    reason = _REASONS[status]
    body = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nServer: awselb/2.0\r\nContent-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


class _ChunkedEnd:
    """Finds where a chunked body ends, fed piece by piece; ``done`` once the last chunk and trailers
    have passed. Raises ValueError on a malformed chunk size."""

    def __init__(self) -> None:
        self.remaining = 0  # bytes of chunk data (+ its CRLF) still to pass
        self.trailer = False
        self.line = b""
        self.done = False

    def feed(self, data: bytes | bytearray, start: int = 0) -> int:
        """Consume ``data[start:]``; returns the offset just past what belongs to the body."""
        i, n = start, len(data)
        while i < n and not self.done:
            if self.remaining:
                take = min(self.remaining, n - i)
                i += take
                self.remaining -= take
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self.line += bytes(data[i:])
                if len(self.line) > MAX_HEAD:
                    raise ValueError("chunk line too long")
                return n
            line = (self.line + bytes(data[i:j])).rstrip(b"\r")
            self.line = b""
            i = j + 1
            if self.trailer:
                self.done = not line
                continue
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size < 0:
                raise ValueError("negative chunk size")
            if size == 0:
                self.trailer = True
            else:
                self.remaining = size + 2
        return i


class _Head:
    """What the balancer needs from a request or response head."""

    __slots__ = ("chunked", "close", "expect_continue", "first", "length", "upgrade", "version")

    def __init__(self, head: bytes) -> None:
        # One lower-cased copy and a find per header of interest: about 5x cheaper than splitting every
        # line, and this runs twice per request.
        low = head.lower()
        eol = head.find(b"\r\n")
        self.first = head[:eol] if eol >= 0 else head
        value = _header(low, b"\r\ncontent-length:")
        self.length: int | None = None
        if value is not None:
            self.length = int(value)
            if self.length < 0:
                raise ValueError("negative Content-Length")
        value = _header(low, b"\r\ntransfer-encoding:")
        self.chunked = value is not None and b"chunked" in value
        self.upgrade = b"\r\nupgrade:" in low
        value = _header(low, b"\r\nexpect:")
        self.expect_continue = value == b"100-continue"
        conn = _header(low, b"\r\nconnection:") or b""
        self.version = b"HTTP/1.0" if b"HTTP/1.0" in self.first else b"HTTP/1.1"
        self.close = b"close" in conn or (self.version == b"HTTP/1.0" and b"keep-alive" not in conn)


def _dropped(transport: asyncio.Transport) -> bool:
    """Whether an idle connection's peer has closed or reset it (its socket is readable with no request
    outstanding: an EOF, a reset, or bytes no request asked for)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _header(low: bytes, key: bytes) -> bytes | None:
    """The stripped value of the first header ``key`` (``b"\\r\\nname:"``) in a lower-cased head."""
    at = low.find(key)
    if at < 0:
        return None
    start = at + len(key)
    return low[start : low.find(b"\r\n", start)].strip()


def _keep_alive(head: bytes) -> bytes:
    """A response head as HTTP/1.1 without its ``Connection`` / ``Keep-Alive`` headers: a target that
    closes its connection after each response (HTTP/1.0, ``Connection: close``) does not end the client's
    keep-alive connection to the balancer, as it does not behind an ALB."""
    lines = head[:-4].split(b"\r\n")
    first = lines[0]
    if first.startswith(b"HTTP/1.0"):
        first = b"HTTP/1.1" + first[8:]
    kept = [
        ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")
    ]
    return b"\r\n".join([first, *kept]) + b"\r\n\r\n"


class _Upstream(asyncio.Protocol):
    """A keep-alive connection to one replica; carries one request at a time and parses its response."""

    def __init__(self, balancer: HttpBalancer, backend: Backend) -> None:
        self.balancer = balancer
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.client: _Client | None = None  # the client whose request is outstanding
        self.tunnel = False
        self._reset_response(head_only=False)

    def _reset_response(self, *, head_only: bool) -> None:
        self.hbuf = b""
        self.head: _Head | None = None
        self.remaining = 0
        self.chunks: _ChunkedEnd | None = None
        self.until_close = False
        self.sent_any = False
        self.head_only = head_only

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)

    def send(self, client: _Client, request: bytes, *, head_only: bool) -> None:
        self.client = client
        self._reset_response(head_only=head_only)
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:  # bytes with no request outstanding: the connection cannot be trusted
            self.close()
            return
        if self.tunnel:
            client.deliver(data)
            return
        client.response_started()
        while data:
            if self.head is None:
                buf = self.hbuf + data
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        self._bad_response()
                        return
                    self.hbuf = buf
                    return
                raw, data = buf[: end + 4], buf[end + 4 :]
                self.hbuf = b""
                try:
                    head = _Head(raw)
                    status = int(head.first.split(b" ", 2)[1])
                except (ValueError, IndexError):
                    self._bad_response()
                    return
                self.sent_any = True
                if 100 <= status < 200 and status != 101:
                    if status != 100:  # 100 Continue was the balancer's to send (it reads bodies itself)
                        client.deliver(raw)
                    continue  # an interim response: the real one follows
                if status == 101:
                    client.deliver(raw)
                    self.tunnel = True
                    client.start_tunnel(self)
                    if data:
                        client.deliver(data)
                    return
                self.head = head
                if self.head_only or status in (204, 304):
                    self.remaining = 0
                elif head.chunked:
                    self.chunks = _ChunkedEnd()
                elif head.length is not None:
                    self.remaining = head.length
                else:
                    self.until_close = True
                if not self.until_close and (head.close or head.version != b"HTTP/1.1"):
                    raw = _keep_alive(raw)  # the client's connection is the balancer's, not the target's
                client.deliver(raw)
                if not self.until_close and self.chunks is None and self.remaining == 0:
                    self._done(data)
                    return
                continue
            if self.until_close:
                client.deliver(data)
                return
            if self.chunks is not None:
                try:
                    end = self.chunks.feed(data)
                except ValueError:
                    self._bad_response()
                    return
                client.deliver(data[:end])
                if self.chunks.done:
                    self._done(data[end:])
                return
            n = min(self.remaining, len(data))
            client.deliver(data[:n])
            self.remaining -= n
            if self.remaining == 0:
                self._done(data[n:])
            return

    def _done(self, extra: bytes) -> None:
        client, head = self.client, self.head
        self.client = None
        reusable = not extra and head is not None and not head.close and head.version == b"HTTP/1.1"
        if not reusable:
            self.close()
        if client is not None:
            client.response_done(self if reusable else None, must_close=False)

    def _bad_response(self) -> None:
        client = self.client
        self.client = None
        self.close()
        if client is not None:
            client.upstream_failed(self, reset=self.sent_any)

    def eof_received(self) -> bool:
        return False  # close; connection_lost tells the client

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.balancer._forget(self)
        client, self.client = self.client, None
        if client is None:
            return
        if self.tunnel:
            client.end_tunnel()
        elif self.until_close and self.head is not None and exc is None:
            client.response_done(None, must_close=True)
        else:  # the target died (or closed) with the request outstanding: see the module docstring
            self.balancer._stats["targets_lost"] += 1
            client.upstream_failed(self, reset=True)

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.client = None
        if self.transport is not None:
            self.transport.abort()


class _Client(asyncio.Protocol):
    """One client connection: reads requests (through the client path's upstream link), one at a time."""

    def __init__(self, balancer: HttpBalancer) -> None:
        self.balancer = balancer
        self.loop = balancer._loop
        self.transport: asyncio.Transport | None = None
        self.up: Link | None = None  # client → balancer bytes, through the path's toxics
        self.down: Link | None = None  # balancer → client bytes
        self.buf = bytearray()
        self.head: _Head | None = None
        self.body_end = 0
        self.chunks: _ChunkedEnd | None = None
        self.chunk_pos = 0
        self.head_len = 0
        self.forwarded = b""
        self.busy = False
        self.ended = False  # the client sent its EOF
        self.closing = False
        self.upstream: _Upstream | None = None
        self.tunnel: _Upstream | None = None
        self.task: asyncio.Task[None] | None = None  # the request being dispatched (for Balancer.stop)
        self.timer: asyncio.TimerHandle | None = None
        self.must_close = False

    # ---- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _nodelay(transport)
        b = self.balancer
        if b.toxics.refusing:
            b._stats["refused"] += 1
            _reset(transport)
            return
        assert self.loop is not None
        t = self.transport
        assert t is not None
        peer = transport.get_extra_info("peername") or ("127.0.0.1", 0)
        self.forwarded = (
            f"X-Forwarded-For: {peer[0]}\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: {b.port}\r\n"
        ).encode()
        self.up = Link(
            self.loop,
            b.toxics,
            "upstream",
            write=self._feed,
            write_eof=self._client_ended,
            close_peer=self._client_ended,
            pause_source=t.pause_reading,
            resume_source=t.resume_reading,
        )
        self.down = Link(
            self.loop,
            b.toxics,
            "downstream",
            write=self._write,
            write_eof=self._close,
            close_peer=self._close,
            pause_source=self._pause_upstream,
            resume_source=self._resume_upstream,
        )

    def data_received(self, data: bytes) -> None:
        if self.up is not None:
            self.up.send(data)

    def eof_received(self) -> bool:
        if self.up is not None:
            self.up.eof()
        return True  # keep the write half open for the outstanding response

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.balancer._pipes.discard(self)  # type: ignore[arg-type]
        for link in (self.up, self.down):
            if link is not None:
                link.cancel()
        self._cancel_timer()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        for up in (self.upstream, self.tunnel):
            if up is not None:
                up.abort()  # its response has nowhere to go
        self.upstream = self.tunnel = None

    def pause_writing(self) -> None:
        self._pause_upstream()

    def resume_writing(self) -> None:
        self._resume_upstream()

    # ---- requests

    def _feed(self, data: bytes) -> None:
        if self.tunnel is not None:
            if self.tunnel.transport is not None:
                self.tunnel.transport.write(data)
            return
        self.buf += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        """Parse the next whole request from the buffer and dispatch it (nothing when incomplete)."""
        if self.busy or self.closing or self.transport is None:
            return
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._answer(400, close=True)
                elif self.ended:
                    self._close_after_output()
                return
            try:
                self.head = _Head(bytes(buf[: end + 4]))
                if len(self.head.first.split(b" ")) != 3:
                    raise ValueError("bad request line")
            except ValueError:
                self._answer(400, close=True)
                return
            self.body_end = self.head_len = end + 4
            if self.head.chunked:
                self.chunks = _ChunkedEnd()
                self.chunk_pos = self.body_end
            elif self.head.length:
                if self.head.length > MAX_BODY:
                    self._answer(413, close=True)
                    return
                self.body_end += self.head.length
            if self.head.expect_continue and len(buf) < self.body_end + (1 if self.head.chunked else 0):
                self.deliver(b"HTTP/1.1 100 Continue\r\n\r\n")  # the balancer reads the body itself
        if self.chunks is not None:
            try:
                self.chunk_pos = self.chunks.feed(buf, self.chunk_pos)
            except ValueError:
                self._answer(400, close=True)
                return
            if not self.chunks.done:
                if len(buf) > MAX_BODY:
                    self._answer(413, close=True)
                elif self.ended:
                    self._close_after_output()
                return
            self.body_end = self.chunk_pos
        elif len(buf) < self.body_end:
            if self.ended:
                self._close_after_output()
            return
        request = bytes(buf[: self.body_end])
        del buf[: self.body_end]
        head = self.head
        self.head, self.chunks = None, None
        self.busy = True
        self.must_close = head.close
        b = self.balancer
        b._stats["requests"] += 1
        limiter = b.rate_limit
        if limiter is not None and limiter.rng.random() * 100 < limiter.percent:
            b._stats["rate_limited"] += 1
            self._send_and_finish(limiter.reply())
            return
        head_only = head.first.startswith(b"HEAD ")
        # As an ALB does: X-Forwarded-For/-Proto/-Port, added before the blank line that ends the head.
        request = request[: self.head_len - 2] + self.forwarded + request[self.head_len - 2 :]
        candidates = b._targets()
        if not candidates:
            b._stats["no_backend"] += 1
            self._answer(503)
            return
        idle = b._idle_connection(candidates[0])
        if idle is not None:  # the usual case, with no task: a pooled connection to the next target
            self._send(idle, candidates[0], request, head_only)
            return
        assert self.loop is not None
        self.task = self.loop.create_task(self._dispatch(candidates, request, head_only))

    def _send(self, up: _Upstream, backend: Backend, request: bytes, head_only: bool) -> None:
        b = self.balancer
        b._per_backend[backend] = b._per_backend.get(backend, 0) + 1
        self.upstream = up
        self._arm_timer()
        up.send(self, request, head_only=head_only)

    async def _dispatch(self, candidates: list[Backend], request: bytes, head_only: bool) -> None:
        b = self.balancer
        timed_out = False
        for backend in candidates:
            try:
                up = await b._connection(backend)
            except TimeoutError:
                b._stats["connect_failures"] += 1
                timed_out = True
                continue
            except OSError:
                b._stats["connect_failures"] += 1
                continue
            if up.transport is None or up.transport.is_closing():
                # The target closed the new connection before the request went out (it was dying): as a
                # refused connect, try the next target. Sending on it raised in this task, and the client's
                # request was never answered (a 3 s client timeout in the tutorial's database blip).
                b._stats["connect_failures"] += 1
                continue
            if self.transport is None:  # the client left while we connected
                b._release(up)
                return
            self._send(up, backend, request, head_only)
            return
        self._answer(504 if timed_out else 502)

    def _arm_timer(self) -> None:
        assert self.loop is not None
        self._cancel_timer()
        self.timer = self.loop.call_later(self.balancer._response_timeout, self._response_timed_out)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _response_timed_out(self) -> None:
        self.timer = None
        up, self.upstream = self.upstream, None
        if up is not None:
            up.abort()
        self.balancer._stats["timeouts"] += 1
        self._answer(504)

    # ---- callbacks from the upstream connection

    def response_started(self) -> None:
        self._cancel_timer()

    def deliver(self, data: bytes) -> None:
        if self.down is not None and data:
            self.down.send(data)

    def response_done(self, reusable: _Upstream | None, *, must_close: bool) -> None:
        self.upstream = None
        if reusable is not None:
            self.balancer._release(reusable)
        self.must_close = self.must_close or must_close
        self._finish()

    def upstream_failed(self, up: _Upstream, *, reset: bool) -> None:
        """The target's answer is lost: reset the client (``reset``, e.g. part of the response is out
        already) or answer 502."""
        self.upstream = None
        self._cancel_timer()
        self.balancer._stats["backend_errors"] += 1
        if reset:
            if self.down is not None:
                self.down.cancel()
            if self.transport is not None:
                _reset(self.transport)
            return
        self._answer(502)

    def start_tunnel(self, up: _Upstream) -> None:
        self.upstream = None
        self.tunnel = up
        self.busy = True
        if self.buf and up.transport is not None:
            up.transport.write(bytes(self.buf))
            self.buf.clear()

    def end_tunnel(self) -> None:
        self.tunnel = None
        self._close_after_output()

    # ---- answering

    def _answer(self, status: int, *, close: bool = False) -> None:
        self.balancer._stats[f"http_{status}"] += 1
        self.must_close = self.must_close or close
        self._send_and_finish(alb_error(status, close=self.must_close))

    def _send_and_finish(self, response: bytes) -> None:
        self.deliver(response)
        self._finish()

    def _finish(self) -> None:
        self._cancel_timer()
        self.busy = False
        self.task = None
        if self.must_close:
            self._close_after_output()
            return
        if self.buf or self.ended:
            self._next_request()

    def _client_ended(self) -> None:
        self.ended = True
        if not self.busy:
            self._next_request()

    def _close_after_output(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.down is not None:
            self.down.close()
        else:
            self._close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _pause_upstream(self) -> None:
        for up in (self.upstream, self.tunnel):
            if up is not None:
                up.pause()

    def _resume_upstream(self) -> None:
        for up in (self.upstream, self.tunnel):
            if up is not None:
                up.resume()

    def abort(self) -> None:
        """RST the client (a reset fault, or the balancer stopping)."""
        for link in (self.up, self.down):
            if link is not None:
                link.cancel()
        if self.transport is not None:
            _reset(self.transport)


class HttpBalancer(Balancer):
    """Round-robin HTTP/1.1 balancer on 127.0.0.1 choosing a healthy backend per request; own thread.

    ``start()`` returns the bound port; ``stop()`` closes the listener, every client connection and every
    pooled backend connection. ``response_timeout_s`` is the ALB's idle timeout (504 after it).
    """

    unit = "requests"

    def __init__(
        self,
        listen_port: int = 0,
        backends: Callable[[], Sequence[Backend]] | None = None,
        *,
        host: str = "127.0.0.1",
        connect_timeout_s: float = 10.0,
        response_timeout_s: float = 60.0,
        name: str = "balancer",
        toxics: Toxics | None = None,
        registered: Callable[[], Sequence[Backend]] | None = None,
    ) -> None:
        super().__init__(
            listen_port, backends, host=host, connect_timeout_s=connect_timeout_s, name=name, toxics=toxics
        )
        if registered is not None and not callable(registered):
            raise ConfigError("must be a callable returning [(host, port), ...]", where="registered")
        self._registered = registered
        if not isinstance(response_timeout_s, int | float) or response_timeout_s <= 0:
            raise ConfigError(f"must be a number > 0, got {response_timeout_s!r}", where="response_timeout_s")
        self._response_timeout = float(response_timeout_s)
        self._idle: dict[Backend, list[_Upstream]] = {}
        self._upstreams: set[_Upstream] = set()
        self._stats.update(
            requests=0,
            timeouts=0,
            targets_lost=0,
            failed_open=0,
            http_502=0,
            http_503=0,
            http_504=0,
            http_400=0,
            http_413=0,
        )

    def stop(self) -> None:
        """Stop listening, reset every client connection, close the backend pool and end the thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._thread is not None:

            async def _close_pool() -> None:
                for up in list(self._upstreams):
                    up.abort()
                self._upstreams.clear()
                self._idle.clear()

            with contextlib.suppress(RuntimeError):
                fut = asyncio.run_coroutine_threadsafe(_close_pool(), loop)
                with contextlib.suppress(Exception):
                    fut.result(timeout=5)
        super().stop()

    def stats(self) -> dict[str, int]:
        """Counters: connections (clients), requests, no_backend (503s), connect_failures, backend_errors,
        targets_lost (clients reset: the target died with their request), failed_open (requests routed
        with no healthy target), timeouts, http_502/503/504
        (answered by the balancer), refused, rate_limited, active clients."""
        return dict(self._stats, active=len(self._pipes))

    def connections_per_backend(self) -> dict[Backend, int]:
        """How many requests were sent to each backend."""
        return dict(self._per_backend)

    # ---- internals (event loop thread)

    def _targets(self) -> list[Backend]:
        """The healthy targets in round-robin order; when none is healthy, every registered one (an ALB
        fails open: with all targets unhealthy it routes to all of them)."""
        healthy = self._candidates()
        if healthy or self._registered is None:
            return healthy
        try:
            every = list(self._registered())
        except Exception:
            self._stats["backend_errors"] += 1
            return []
        if every:
            self._stats["failed_open"] += 1
            start = self._rr % len(every)
            self._rr += 1
            return every[start:] + every[:start]
        return []

    def _new_client(self) -> _Client:  # type: ignore[override]
        client = _Client(self)
        self._pipes.add(client)  # type: ignore[arg-type]
        self._stats["connections"] += 1
        return client

    def _idle_connection(self, backend: Backend) -> _Upstream | None:
        """An idle pooled connection to ``backend``, if there is one still open.

        "Open" is asked of the socket itself, not only of the transport: a target killed a moment ago
        has closed its end (the kernel sent the FIN or RST), but this loop may not have read that yet
        under load, and a request sent on such a connection would reset the client as if the target had
        died with it outstanding. A connection that is readable while idle is closed or broken either way
        (no request is outstanding on it), so it is dropped, as HTTP client pools check a pooled
        connection before they reuse it."""
        idle = self._idle.get(backend)
        while idle:
            up = idle.pop()
            if up.transport is not None and not up.transport.is_closing() and not _dropped(up.transport):
                return up
            if up.transport is not None:
                up.transport.abort()
        return None

    async def _connection(self, backend: Backend) -> _Upstream:
        """An idle pooled connection to ``backend``, or a new one (OSError / TimeoutError when it fails)."""
        up = self._idle_connection(backend)
        if up is not None:
            return up
        loop = self._loop
        assert loop is not None
        up = _Upstream(self, backend)
        await asyncio.wait_for(
            loop.create_connection(lambda: up, backend[0], backend[1]), timeout=self._connect_timeout
        )
        self._upstreams.add(up)
        return up

    def _release(self, up: _Upstream) -> None:
        if up.transport is None or up.transport.is_closing():
            return
        self._idle.setdefault(up.backend, []).append(up)

    def _forget(self, up: _Upstream) -> None:
        self._upstreams.discard(up)
        idle = self._idle.get(up.backend)
        if idle and up in idle:
            idle.remove(up)
