"""The ledger plugin alone: a plain locustfile, run headless by ``run_locust``, gets one ledger record per
request, with the status and outcome of what the server did.

The local server answers by path: ``/ok`` 200, ``/busy`` 503 with ``Retry-After: 2``, ``/boom`` 500,
``/drop`` reads the request and resets the connection, ``/orders`` 200 with a JSON order id. One user class
knows nothing about ledgers; another adds domain fields with ``ledger_fields``/``annotate``. Everything
listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadgen.ledger import iter_records
from loadgen.run import run_locust

pytestmark = pytest.mark.integration

LOCUSTFILE = """
import uuid

from locust import FastHttpUser, constant, task

from loadgen.ledger_plugin import annotate, ledger_fields

REFUSED_URL = "{refused_url}"


class PlainUser(FastHttpUser):
    wait_time = constant(0.02)

    @task(4)
    def ok(self):
        self.client.get("/ok")

    @task
    def busy(self):
        self.client.post("/busy", json={{"x": 1}})

    @task
    def boom(self):
        self.client.get("/boom")

    @task
    def drop(self):
        self.client.get("/drop")

    @task
    def refused(self):
        self.client.get(REFUSED_URL, name="refused")


class OrderUser(FastHttpUser):
    wait_time = constant(0.02)

    @task
    def order(self):
        key = uuid.uuid4().hex
        with ledger_fields(client_id="trader-1", idempotency_key=key, symbol="AAPL", qty=5):
            r = self.client.post("/orders", json={{"key": key}}, headers={{"Idempotency-Key": key}})
            if r.status_code == 200:
                annotate(order_id=r.json()["order_id"])
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *_args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        with self.server.lock:
            self.server.seen[path] += 1
        if path == "/drop":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        headers: dict[str, str] = {}
        if path == "/ok":
            code, payload = 200, b'{"ok":true}'
        elif path == "/busy":
            code, payload, headers = 503, b"busy", {"Retry-After": "2"}
        elif path == "/orders":
            key = json.loads(body)["key"]
            with self.server.lock:
                self.server.orders[key] = f"o-{key[:8]}"
            code, payload = 200, json.dumps({"order_id": f"o-{key[:8]}"}).encode()
        else:
            code, payload = 500, b"internal error"
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.orders: dict[str, str] = {}

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    base = tmp_path_factory.mktemp("plugin-run")
    locustfile = base / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(refused_url=f"http://127.0.0.1:{_closed_port()}/nothing"))
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = run_locust(
            f"http://127.0.0.1:{server.server_address[1]}",
            users=4,
            spawn_rate=4,
            duration_s=3,
            ledger_dir=base / "ledger",
            locustfile=locustfile,
        )
        try:
            result = run.wait(timeout=60)
        finally:
            run.stop(grace_s=0)
    finally:
        server.shutdown()
        server.server_close()
    yield SimpleNamespace(
        result=result, records=list(iter_records(result.ledger_path)), seen=server.seen, orders=server.orders
    )


def test_every_request_of_a_plain_locustfile_is_one_ledger_record(plain_run: SimpleNamespace) -> None:
    result, records = plain_run.result, plain_run.records
    assert result.exit_code == 0, Path(result.log_path).read_text()[-2000:]
    assert result.total_requests > 50
    assert len(records) == result.ledger_records == result.total_requests
    per_op = Counter(r["op"] for r in records)
    assert per_op == {e["name"]: e["num_requests"] for e in result.stats}
    # what the server answered, exactly once each (a refused connection never reached it; a reset request
    # may be sent again by the HTTP client itself, which Locust and the ledger count as one request)
    answered = {op: n for op, n in per_op.items() if op not in ("refused", "/drop")}
    assert answered == {op: n for op, n in plain_run.seen.items() if op != "/drop"}
    assert 0 < per_op["/drop"] <= plain_run.seen["/drop"]
    assert per_op["refused"] > 0


@pytest.mark.parametrize(
    ("op", "status", "outcome", "retry_after"),
    [
        ("/ok", 200, "ok", None),
        ("/busy", 503, "fail", 2.0),
        ("/boom", 500, "info", None),
        ("/drop", "conn_reset", "info", None),
        ("refused", "conn_refused", "fail", None),
    ],
)
def test_each_record_carries_the_status_and_outcome_of_what_happened(
    plain_run: SimpleNamespace, op: str, status: int | str, outcome: str, retry_after: float | None
) -> None:
    mine = [r for r in plain_run.records if r["op"] == op]
    assert mine
    assert {(r["status"], r["outcome"], r["retry_after"]) for r in mine} == {(status, outcome, retry_after)}
    assert all(r["latency_ms"] >= 0 and r["ts"] > 0 and r["method"] in ("GET", "POST") for r in mine)
    assert all((r["error"] is None) == (outcome == "ok") for r in mine)


def test_records_follow_the_ledger_contract_with_one_client_id_per_user(plain_run: SimpleNamespace) -> None:
    from resgate.checks.ledger import LedgerRecord

    for i, r in enumerate(plain_run.records):
        LedgerRecord.from_dict(r, where=f"ledger:{i + 1}")
    plain = {r["client_id"] for r in plain_run.records if r["op"] != "/orders"}
    assert 1 <= len(plain) <= 4 and all(c.startswith("u") for c in plain)


def test_a_task_adds_domain_fields_to_the_record_of_the_request_it_made(plain_run: SimpleNamespace) -> None:
    orders = [r for r in plain_run.records if r["op"] == "/orders"]
    assert orders
    for r in orders:
        assert r["client_id"] == "trader-1" and r["symbol"] == "AAPL" and r["qty"] == 5
        assert r["status"] == 200 and r["outcome"] == "ok"
        # learnt from the response, after the request was made
        assert r["order_id"] == plain_run.orders[r["idempotency_key"]]
    assert len({r["idempotency_key"] for r in orders}) == len(orders)
