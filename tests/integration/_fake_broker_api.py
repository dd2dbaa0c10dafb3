"""A small in-process stand-in for paperbroker's order gateway, for load-generator tests (stdlib only).

It implements the API subset the locustfile drives (``POST /orders`` with an in-memory idempotency map,
``GET /orders/{id}``, ``POST /orders/{id}/cancel``, ``POST /rfqs``, ``GET /rfqs/{id}``, ``/health``,
``/ready``) on ``127.0.0.1`` only, with HTTP/1.1 keep-alive and ``TCP_NODELAY``. Fault switches act on
``POST /orders`` and count its requests (retries included): every ``unavailable_every``-th gets
``503`` with ``Retry-After``; every ``drop_every``-th has its connection dropped without a response
(``drop_mode="reset"`` sends a TCP RST, ``"close"`` a plain FIN), either before or after the order is
applied (``drop_after_apply``); every ``stall_every``-th is answered only after ``stall_s`` seconds.
Every ``POST /orders`` that reached the server is kept in :attr:`FakeBrokerAPI.submits` so tests can
compare what the client sent with what its ledger says.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ORDER_PATH = re.compile(r"^/orders/([^/]+)$")
_CANCEL_PATH = re.compile(r"^/orders/([^/]+)/cancel$")
_RFQ_PATH = re.compile(r"^/rfqs/([^/]+)$")


@dataclass(frozen=True)
class Submit:
    """One ``POST /orders`` as the server received it, and what the server did with it.

    ``result`` is one of ``created``, ``replayed`` (same key and body: original returned), ``conflict``
    (same key, other body), ``invalid``, ``unavailable`` (503), ``dropped`` (connection dropped, order
    not applied), ``dropped_after_apply``, ``stalled`` (answered late; applied).
    """

    ts: float
    key: str | None
    body: bytes
    result: str
    order_id: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = (
        True  # TCP_NODELAY: without it every response waits ~40 ms (Nagle + delayed ACK)
    )
    server_version = "fakebroker/1"
    sys_version = ""
    server: FakeBrokerServer

    # ------------------------------------------------------------------ plumbing

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _drop(self, mode: str) -> None:
        """Answer nothing and close the connection (RST for ``reset``, FIN for ``close``)."""
        self.close_connection = True
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.server.mark_reset(self.connection)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def log_message(self, format: str, *args: object) -> None:
        pass

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server
        if path in ("/health", "/ready"):
            self._reply(200, {"status": "ok"})
            return
        if m := _ORDER_PATH.match(path):
            with srv.lock:
                order = srv.orders.get(m.group(1))
                order = dict(order) if order else None
            self._reply(200, order) if order else self._reply(404, {"error": "unknown order"})
            return
        if m := _RFQ_PATH.match(path):
            with srv.lock:
                rfq = srv.rfqs.get(m.group(1))
            self._reply(200, rfq) if rfq else self._reply(404, {"error": "unknown rfq"})
            return
        self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body()
        if path == "/orders":
            self._submit(body)
        elif m := _CANCEL_PATH.match(path):
            self._cancel(m.group(1))
        elif path == "/rfqs":
            self._rfq(body)
        else:
            self._reply(404, {"error": "not found"})

    def _submit(self, body: bytes) -> None:
        srv = self.server
        key = self.headers.get("Idempotency-Key")
        n = next(srv.submit_counter)
        fault = srv.fault_for(n)
        if fault == "unavailable":
            srv.log(key, body, "unavailable", None)
            self._reply(503, {"error": "unavailable"}, {"Retry-After": srv.retry_after})
            return
        if fault == "drop" and not srv.drop_after_apply:
            srv.log(key, body, "dropped", None)
            self._drop(srv.drop_mode)
            return
        try:
            req = json.loads(body)
            order = _validate(req)
        except (ValueError, TypeError) as e:
            srv.log(key, body, "invalid", None)
            self._reply(422 if isinstance(e, TypeError) else 400, {"error": str(e)})
            return
        if not key:
            srv.log(key, body, "invalid", None)
            self._reply(400, {"error": "Idempotency-Key header is required"})
            return
        fingerprint = json.dumps(req, sort_keys=True)
        with srv.lock:
            seen = srv.idempotency.get(key)
            if seen is None:
                order_id = f"o{next(srv.ids)}"
                order.update(order_id=order_id, status="open", filled_qty=0)
                srv.orders[order_id] = order
                srv.idempotency[key] = (fingerprint, order_id)
                status, result = 201, "created"
            elif seen[0] == fingerprint:
                order_id, status, result = seen[1], 200, "replayed"
            else:
                order_id, status, result = seen[1], 409, "conflict"
            payload = dict(srv.orders[order_id])
        if status == 409:
            srv.log(key, body, result, order_id)
            self._reply(409, {"error": "idempotency key reused with another body", "order_id": order_id})
            return
        if fault == "drop":
            srv.log(key, body, "dropped_after_apply", order_id)
            self._drop(srv.drop_mode)
            return
        if fault == "stall":
            srv.log(key, body, "stalled", order_id)
            time.sleep(srv.stall_s)
        else:
            srv.log(key, body, result, order_id)
        try:
            self._reply(status, payload)
        except OSError:  # the client gave up (timeout) and closed the connection
            self.close_connection = True

    def _cancel(self, order_id: str) -> None:
        srv = self.server
        with srv.lock:
            order = srv.orders.get(order_id)
            if order is not None:
                order["status"] = "cancelled"
                order = dict(order)
        self._reply(200, order) if order else self._reply(404, {"error": "unknown order"})

    def _rfq(self, body: bytes) -> None:
        srv = self.server
        try:
            req = json.loads(body)
            if req.get("side") not in ("buy", "sell") or not req.get("symbol"):
                raise ValueError("bad rfq")
        except (ValueError, AttributeError) as e:
            self._reply(400, {"error": str(e)})
            return
        with srv.lock:
            rfq_id = f"r{next(srv.ids)}"
            rfq = {"rfq_id": rfq_id, "symbol": req["symbol"], "side": req["side"], "price": "100.00"}
            srv.rfqs[rfq_id] = rfq
        self._reply(201, rfq)


def _validate(req: Any) -> dict[str, Any]:
    """Check an order body; ValueError -> 400 (malformed), TypeError -> 422 (well-formed but invalid)."""
    if not isinstance(req, dict):
        raise ValueError("body must be a JSON object")
    if not isinstance(req.get("client_id"), str) or not req["client_id"]:
        raise TypeError("client_id is required")
    if not isinstance(req.get("symbol"), str) or not req["symbol"]:
        raise TypeError("symbol is required")
    if req.get("side") not in ("buy", "sell"):
        raise TypeError("side must be buy or sell")
    qty = req.get("qty")
    if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
        raise TypeError("qty must be a positive integer")
    if not isinstance(req.get("price"), str):
        raise TypeError("price must be a decimal string")
    try:
        price = Decimal(req["price"])
    except InvalidOperation:
        raise TypeError("price must be a decimal string") from None
    if not price.is_finite() or price <= 0:
        raise TypeError("price must be > 0")
    return {k: req[k] for k in ("client_id", "symbol", "side", "qty", "price")}


class FakeBrokerServer(ThreadingHTTPServer):
    """The HTTP server and the broker's in-memory state (orders, idempotency map, RFQs, submit log)."""

    daemon_threads = True
    request_queue_size = 256
    block_on_close = False

    def __init__(self, port: int, **switches: Any) -> None:
        self.unavailable_every = int(switches.get("unavailable_every", 0))
        self.retry_after = str(switches.get("retry_after", "1"))
        self.drop_every = int(switches.get("drop_every", 0))
        self.drop_mode = str(switches.get("drop_mode", "reset"))
        self.drop_after_apply = bool(switches.get("drop_after_apply", False))
        self.stall_every = int(switches.get("stall_every", 0))
        self.stall_s = float(switches.get("stall_s", 0.0))
        self.lock = threading.Lock()
        self.submit_counter = itertools.count(1)
        self.ids = itertools.count(1)
        self.orders: dict[str, dict[str, Any]] = {}
        self.rfqs: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, tuple[str, str]] = {}
        self.submits: list[Submit] = []
        self._to_reset: set[int] = set()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:  # skip the reverse DNS lookup of HTTPServer.server_bind
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def fault_for(self, n: int) -> str | None:
        """The fault (``unavailable`` | ``drop`` | ``stall`` | None) for the n-th ``POST /orders``."""
        if self.unavailable_every and n % self.unavailable_every == 0:
            return "unavailable"
        if self.drop_every and n % self.drop_every == 0:
            return "drop"
        if self.stall_every and n % self.stall_every == 0:
            return "stall"
        return None

    def log(self, key: str | None, body: bytes, result: str, order_id: str | None) -> None:
        with self.lock:
            self.submits.append(Submit(time.time(), key, body, result, order_id))

    def mark_reset(self, sock: socket.socket) -> None:
        with self.lock:
            self._to_reset.add(id(sock))

    def shutdown_request(self, request: Any) -> None:
        # A connection marked for reset is closed without shutdown(SHUT_WR), so SO_LINGER=0 sends an RST.
        with self.lock:
            reset = id(request) in self._to_reset
            self._to_reset.discard(id(request))
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients dropping connections mid-request are expected here; no tracebacks on stderr


class FakeBrokerAPI:
    """Run :class:`FakeBrokerServer` on 127.0.0.1 in a background thread; use as a context manager.

    ``url`` is ``http://127.0.0.1:<port>``; the fault switches are the keyword arguments described in the
    module docstring (all off by default).
    """

    def __init__(self, **switches: Any) -> None:
        self.server = FakeBrokerServer(0, **switches)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )

    @property
    def submits(self) -> list[Submit]:
        with self.server.lock:
            return list(self.server.submits)

    def start(self) -> FakeBrokerAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeBrokerAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
