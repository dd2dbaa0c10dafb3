"""A tiny order API for the distributed-load gate test: the routes the bundled locustfile's traders use,
each answered at once from memory (standard library only, no database: the test is about the load, not the
target). The supervisor gives the port in ``PORT``."""

from __future__ import annotations

import itertools
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDS = itertools.count(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._send(200, {"ready": True})
        elif self.path.startswith("/orders/"):
            self._send(200, {"order_id": self.path.rsplit("/", 1)[-1], "status": "open", "filled_qty": 0})
        else:
            self._send(200, {"rfq_id": self.path.rsplit("/", 1)[-1], "status": "quoted"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        n = next(IDS)
        if self.path == "/orders":
            self._send(200, {"order_id": f"o{n}", "status": "open"})
        elif self.path.endswith("/cancel"):
            self._send(200, {"order_id": self.path.split("/")[2], "status": "cancelled"})
        else:
            self._send(200, {"rfq_id": f"r{n}", "price": "100.00"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


if __name__ == "__main__":
    Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
