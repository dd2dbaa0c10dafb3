"""A tiny HTTP service for tests of the supervisor and the balancer (stdlib only).

``python -m resgate.testing.echo_service`` listens on 127.0.0.1:$PORT and answers ``GET /health`` (liveness,
always 200) and ``GET /ready`` (200 once ``ECHO_READY_DELAY_S`` seconds have passed since start, 503
before); any other ``GET`` gets 200 with the replica id (``$REPLICA_ID``) as a text body, and ``POST``
echoes its body back. Every response carries ``X-Replica-Id``. HTTP/1.1 keep-alive, TCP_NODELAY, no access
log (it would only slow a load test down).
"""

from __future__ import annotations

import os
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_STARTED = time.monotonic()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY on every accepted connection
    server_version = "echo/1"
    sys_version = ""

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Replica-Id", self.server.replica_id)  # type: ignore[attr-defined]
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._reply(200, b"ok")
        elif path == "/ready":
            ready = time.monotonic() - _STARTED >= self.server.ready_delay_s  # type: ignore[attr-defined]
            self._reply(200 if ready else 503, b"ready" if ready else b"starting")
        else:
            self._reply(200, self.server.replica_id.encode())  # type: ignore[attr-defined]

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        self._reply(200, body, self.headers.get("Content-Type") or "application/octet-stream")

    def log_message(self, format: str, *args: object) -> None:
        pass


class EchoServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that skips the reverse DNS lookup in ``server_bind`` and has a deeper backlog."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int, replica_id: str, ready_delay_s: float) -> None:
        self.replica_id = replica_id
        self.ready_delay_s = ready_delay_s
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


def main() -> int:
    """Serve until killed; returns an exit code (2 when $PORT is missing or invalid)."""
    try:
        port = int(os.environ["PORT"])
    except (KeyError, ValueError):
        print("echo_service: set PORT to the port to listen on", file=sys.stderr)
        return 2
    replica_id = os.environ.get("REPLICA_ID", "echo")
    delay = float(os.environ.get("ECHO_READY_DELAY_S", "0") or 0)
    with EchoServer(port, replica_id, delay) as server:
        print(f"echo_service {replica_id} listening on 127.0.0.1:{port}", flush=True)
        server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
