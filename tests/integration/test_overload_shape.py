"""The overload load shape on real Locust: the load's own users multiplied by a factor for a window, then
back to the base, with the shape's user counts over time, its fault rows and a complete ledger.

One headless run (``run_locust``, the ledger hook, ``RESGATE_LOAD_SHAPE`` with one step: 2 users × 3 from
3 s for 4 s, an 11-s run) against a local server whose every answer takes 0.2 s, so the extra users are
mid-request when the step ends: the ledger must still hold one record for every request the server saw.
Everything listens on 127.0.0.1; the run is bounded (about 15 s).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadgen.ledger import iter_records
from loadgen.run import run_locust
from loadgen.upload import upload_results
from resgate.contract.env import ENV_LOAD_SHAPE
from resgate.contract.shape import SHAPE_FILE, ShapeStep, encode_steps, samples, timeline_rows

pytestmark = pytest.mark.integration

LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class SteadyUser(FastHttpUser):
    wait_time = constant(0.1)

    @task
    def ok(self):
        self.client.get("/ok")
"""
BASE_USERS, FACTOR, AT_S, HOLD_S, RUN_S = 2, 3.0, 3.0, 4.0, 11


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        time.sleep(0.2)
        with self.server.lock:
            self.server.answered += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.answered = 0

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@pytest.fixture(scope="module")
def shaped_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    base = tmp_path_factory.mktemp("shape-run")
    locustfile = base / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    step = ShapeStep(name="surge", at_s=AT_S, duration_s=HOLD_S, factor=FACTOR, target="gateway")
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = run_locust(
            f"http://127.0.0.1:{server.server_address[1]}",
            users=BASE_USERS,
            spawn_rate=BASE_USERS,
            duration_s=RUN_S,
            ledger_dir=base / "ledger",
            locustfile=locustfile,
            env={ENV_LOAD_SHAPE: encode_steps([step])},
            stop_timeout_s=3,
        )
        try:
            result = run.wait(timeout=RUN_S + 40)
        finally:
            run.stop(grace_s=0)
    finally:
        server.shutdown()
        server.server_close()
    lines = list(iter_records(base / "ledger" / SHAPE_FILE))
    yield SimpleNamespace(
        result=result,
        records=list(iter_records(result.ledger_path)),
        answered=server.answered,
        samples=samples(lines),
        rows=timeline_rows(lines),
    )


def test_the_shape_multiplies_the_users_for_its_window_and_returns_to_the_base(
    shaped_run: SimpleNamespace,
) -> None:
    assert shaped_run.result.exit_code == 0, Path(shaped_run.result.log_path).read_text()[-2000:]
    rows = {r["event"]: r for r in shaped_run.rows}
    assert [r["event"] for r in shaped_run.rows] == ["injecting", "injected", "effect", "lifting", "ended"]
    assert rows["injecting"]["detail"] == {
        "factor": FACTOR,
        "base_users": BASE_USERS,
        "users": 6,
        "duration_s": HOLD_S,
    }
    assert rows["effect"]["detail"]["observed"] is True
    # Locust ticks the shape once a second: the window holds for duration_s, give or take a tick
    assert HOLD_S - 1.5 <= rows["lifting"]["ts"] - rows["injecting"]["ts"] <= HOLD_S + 1.5
    by_time = [(s["ts"], s["users"], s["target_users"]) for s in shaped_run.samples]
    before = [u for ts, u, _ in by_time if ts < rows["injecting"]["ts"] and u > 0]
    held = [u for ts, u, _ in by_time if rows["injected"]["ts"] <= ts < rows["lifting"]["ts"]]
    after = [u for ts, u, target in by_time if ts >= rows["ended"]["ts"] and target is not None]
    assert set(before) == {BASE_USERS}
    assert held and set(held) == {6}
    assert after and set(after) == {BASE_USERS}
    assert max(u for _, u, _ in by_time) == 6


def test_every_request_of_the_extra_users_is_in_the_ledger(shaped_run: SimpleNamespace) -> None:
    records = shaped_run.records
    assert len(records) == shaped_run.result.total_requests == shaped_run.answered
    assert {r["outcome"] for r in records} == {"ok"}
    assert len({r["client_id"] for r in records}) == 6  # the base users and the four extra ones


def test_the_load_task_uploads_the_shapes_lines_to_the_runs_folder(shaped_run: SimpleNamespace) -> None:
    """On Fargate the entrypoint uploads the load's files (``loadgen.upload``): the shape's lines go to
    the run's folder, where the timeline Lambda reads them (``load_shape``)."""
    uploaded: dict[str, str] = {}

    class _S3:
        def upload_file(self, path: str, bucket: str, key: str, ExtraArgs: dict[str, str]) -> None:
            uploaded[key] = Path(path).name

    prefix = "s3://evidence/root/gate=surge/dt=2026-12-07/run_id=r1/"
    keys = upload_results(shaped_run.result, prefix, s3_client=_S3())
    assert "root/gate=surge/dt=2026-12-07/run_id=r1/load_shape.jsonl" in keys
    assert uploaded["root/gate=surge/dt=2026-12-07/run_id=r1/load_shape.jsonl"] == SHAPE_FILE
