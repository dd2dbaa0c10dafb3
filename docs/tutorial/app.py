"""The tutorial's service (docs/TUTORIAL.md): a tiny HTTP service that is not paperbroker.

Items in Postgres (``DATABASE_URL``): ``GET /items`` counts them, ``POST /items`` adds one (``201`` with its
id; the same ``Idempotency-Key`` again gives the same item, ``200``), ``GET /ready`` says whether it can
reach the database (the supervisor's health check, so an outage shows in the service's health). While the
database is down the good service answers ``503`` with ``Retry-After: 1``; with
``APP_BUG=500_when_db_down`` it answers a bare ``500`` instead, the bug the gate's retryable check must
catch. Standard library and psycopg only; the supervisor gives the port in ``PORT``.
"""

from __future__ import annotations

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

DSN = os.environ["DATABASE_URL"]
BUG = os.environ.get("APP_BUG", "").strip()
SCHEMA = (
    "create table if not exists items"
    " (id bigserial primary key, name text not null, idempotency_key text unique)"
)


def db() -> psycopg.Connection:
    return psycopg.connect(DSN, connect_timeout=1, autocommit=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:
        pass

    def _send(self, code: int, body: dict | None = None, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _db_down(self) -> None:
        if BUG == "500_when_db_down":
            self._send(500)
        else:
            self._send(503, {"error": "database unavailable"}, {"Retry-After": "1"})

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"ok": True})
            return
        if self.path == "/ready":  # ready = can reach its database, so an outage shows in its health
            try:
                with db() as conn:
                    conn.execute("select 1")
            except psycopg.OperationalError:
                self._send(503, {"ready": False}, {"Retry-After": "1"})
                return
            self._send(200, {"ready": True})
            return
        if self.path != "/items":
            self._send(404, {"error": "not found"})
            return
        try:
            with db() as conn:
                (n,) = conn.execute("select count(*) from items").fetchone()
        except psycopg.OperationalError:
            self._db_down()
            return
        self._send(200, {"items": n})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if self.path != "/items":
            self._send(404, {"error": "not found"})
            return
        key = self.headers.get("Idempotency-Key")
        try:
            with db() as conn:
                row = conn.execute(
                    "insert into items (name, idempotency_key) values (%s, %s)"
                    " on conflict (idempotency_key) do nothing returning id",
                    (str(body.get("name", "")), key),
                ).fetchone()
                if row is None:  # the same key again: the item it created, not a second one
                    row = conn.execute("select id from items where idempotency_key = %s", (key,)).fetchone()
                    self._send(200, {"id": row[0]})
                    return
        except psycopg.OperationalError:
            self._db_down()
            return
        self._send(201, {"id": row[0]})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> None:
    try:
        with db() as conn:
            conn.execute(SCHEMA)
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
        pass  # the other replica created it at the same moment
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
