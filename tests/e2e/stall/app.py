"""A service that stops serving after a partition from its database, while its health check says healthy.

The shape of issue 16's outage, made deterministic: every request goes through one shared database
connection behind a lock, with no statement deadline (a synchronous worker with no timeout). A partition
that swallows bytes (``mode: hang``) catches a query in flight; its answer never comes, so the lock is never
released and no request completes again. ``GET /ready`` opens a fresh connection each time (with a
connect timeout): unhealthy during the partition, healthy as soon as it is lifted. Standard library and
psycopg only; the supervisor gives the port in ``PORT`` and the database in ``DATABASE_URL``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

DSN = os.environ["DATABASE_URL"]
LOCK = threading.Lock()
SHARED: list[psycopg.Connection] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        if code == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path == "/ready":
            try:
                with psycopg.connect(DSN, connect_timeout=1, autocommit=True) as conn:
                    conn.execute("select 1")
            except psycopg.OperationalError:
                self._send(503, {"ready": False})
                return
            self._send(200, {"ready": True})
            return
        with LOCK:  # the one worker: held while its query waits, forever if the answer was swallowed
            try:
                if not SHARED or SHARED[0].closed:
                    SHARED[:] = [psycopg.connect(DSN, autocommit=True)]
                (n,) = SHARED[0].execute("select 1").fetchone()  # type: ignore[misc]
            except psycopg.OperationalError:
                SHARED.clear()
                self._send(503, {"error": "database unavailable"})
                return
        self._send(200, {"n": n})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
