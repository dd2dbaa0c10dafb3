"""The local ALB (``balancer: http``): requests routed one by one, ALB error answers, no pinned backends.

The 502/503/504 answers follow AWS's list of their causes, "Troubleshoot your Application Load Balancers",
section "The load balancer generates an HTTP error"
(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html)
and "How do I troubleshoot Application Load Balancer HTTP 502 errors?" (AWS Knowledge Center): 503 when
the target group has no healthy target, 502 when the connection to the target is refused (RST on
connect) or its response is malformed, 504 when the target does not answer within the idle timeout or
the connection cannot be established in time. A target that dies with the request outstanding resets the
client here (an ALB answers 502; see resgate.local.http_balancer for why).
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from resgate.local.balancer import Balancer
from resgate.local.http_balancer import HttpBalancer
from resgate.local.ports import free_port
from resgate.local.spec import ServiceSpec
from resgate.local.supervisor import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ECHO = [sys.executable, "-m", "resgate.testing.echo_service"]


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    spec = ServiceSpec(
        name="echo", command=ECHO, replicas=2, health_url="http://127.0.0.1:{port}/ready", restart_delay_s=0.5
    )
    with Supervisor([spec], log_dir=tmp_path, health_interval_s=0.1, health_timeout_s=0.3) as s:
        assert s.wait_healthy(15)
        yield s


class _OneAtATime(BaseHTTPRequestHandler):
    """A single-threaded keep-alive backend: one connection at a time, like a synchronous WSGI worker."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30  # a stalled connection holds the worker this long, as gunicorn's sync worker does

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def single_threaded() -> Iterator[tuple[str, int]]:
    server = HTTPServer(("127.0.0.1", 0), _OneAtATime)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield ("127.0.0.1", int(server.server_address[1]))
    server.shutdown()
    server.server_close()


def _request(port: int, path: str = "/who", timeout_s: float = 2.0) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def _stalled_client(port: int) -> socket.socket:
    """A client that sent half a request and then nothing: what a client-side partition leaves behind."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    return s


def test_one_keep_alive_connection_has_its_requests_spread_over_both_replicas(sup: Supervisor) -> None:
    with HttpBalancer(0, lambda: sup.healthy_endpoints("echo")) as bal:
        assert bal.port
        conn = http.client.HTTPConnection("127.0.0.1", bal.port, timeout=5)
        seen = []
        for _ in range(6):
            conn.request("GET", "/who")
            resp = conn.getresponse()
            seen.append(resp.read().decode())
        conn.close()
        stats = bal.stats()
    assert set(seen) == {"echo-0", "echo-1"} and seen[0] != seen[1]
    assert stats["connections"] == 1 and stats["requests"] == 6
    assert sorted(bal.connections_per_backend().values()) == [3, 3]


def test_a_post_body_and_a_chunked_body_reach_the_replica_whole(sup: Supervisor) -> None:
    with HttpBalancer(0, lambda: sup.healthy_endpoints("echo")) as bal:
        assert bal.port
        conn = http.client.HTTPConnection("127.0.0.1", bal.port, timeout=5)
        body = b"x" * 200_000
        conn.request("POST", "/echo", body=body, headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == body
        conn.request("GET", "/who")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read().startswith(b"echo-")
        conn.close()


def test_without_a_healthy_target_the_balancer_answers_503_like_an_alb() -> None:
    with HttpBalancer(0, lambda: []) as bal:
        assert bal.port
        t0 = time.monotonic()
        resp = _request(bal.port)
        elapsed = time.monotonic() - t0
        assert resp.status == 503 and resp.getheader("Server") == "awselb/2.0"
        assert bal.stats()["no_backend"] == 1
    assert elapsed < 1.0


def test_with_every_target_unhealthy_the_balancer_fails_open_to_the_registered_ones(sup: Supervisor) -> None:
    """An ALB routes to all targets when none is healthy (so the service's own answer, e.g. a 503 with
    Retry-After during a database outage, reaches the client); 503 only with no target at all."""
    running = sup.healthy_endpoints("echo")
    with HttpBalancer(0, lambda: [], registered=lambda: running) as bal:
        assert bal.port
        resp = _request(bal.port)
        assert resp.status == 200 and bal.stats()["failed_open"] == 1


def test_a_target_that_closes_after_each_response_keeps_the_clients_connection_alive() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def _http10() -> None:
        for _ in range(3):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            conn.close()

    threading.Thread(target=_http10, daemon=True).start()
    port = server.getsockname()[1]
    try:
        with HttpBalancer(0, lambda: [("127.0.0.1", port)]) as bal:
            assert bal.port
            conn = http.client.HTTPConnection("127.0.0.1", bal.port, timeout=5)
            for _ in range(3):
                conn.request("GET", "/")
                resp = conn.getresponse()
                assert (resp.status, resp.read(), resp.getheader("Connection")) == (200, b"ok", None)
            conn.close()
            assert bal.stats()["connections"] == 1 and bal.stats()["requests"] == 3
    finally:
        server.close()


def test_when_every_target_refuses_the_connection_the_balancer_answers_502() -> None:
    dead = free_port()  # reserved for this process, nothing listens there
    with HttpBalancer(0, lambda: [("127.0.0.1", dead)]) as bal:
        assert bal.port
        assert _request(bal.port).status == 502
        assert bal.stats()["connect_failures"] == 1


def test_a_refused_target_is_skipped_for_the_next_healthy_one(sup: Supervisor) -> None:
    live = sup.healthy_endpoints("echo")[0]
    with HttpBalancer(0, lambda: [("127.0.0.1", free_port()), live]) as bal:
        assert bal.port
        assert [_request(bal.port).status for _ in range(4)] == [200] * 4


def test_a_target_that_dies_with_the_request_outstanding_resets_only_that_client() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def _accept_read_close() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=_accept_read_close, daemon=True).start()
    port = server.getsockname()[1]
    try:
        with HttpBalancer(0, lambda: [("127.0.0.1", port)]) as bal:
            assert bal.port
            with pytest.raises(ConnectionError):
                _request(bal.port)
            assert bal.stats()["targets_lost"] == 1
    finally:
        server.close()


def test_a_pooled_connection_its_target_closed_is_not_reused_even_before_the_loop_saw_the_close() -> None:
    """The zone-loss race: a target killed a moment ago has closed its end of a pooled keep-alive
    connection, but a loaded balancer loop has not read the FIN yet. Taking that connection for the next
    request would reset the client as if the target had died with the request outstanding; the pool asks
    the socket and drops it instead (the request then goes out on a new connection)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def _answer_and_keep_open() -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=_answer_and_keep_open, daemon=True).start()
    backend = ("127.0.0.1", server.getsockname()[1])
    try:
        with HttpBalancer(0, lambda: [backend]) as bal:
            assert bal.port and _request(bal.port).status == 200
            assert bal._loop is not None

            def close_then_take(close: bool) -> object:  # one loop callback: the loop cannot run between
                if close:
                    accepted[0].close()  # the target's end goes (its FIN is on the socket at once)
                up = bal._idle_connection(backend)
                if up is not None:
                    bal._release(up)
                return up

            def on_loop(close: bool) -> object:
                async def call() -> object:
                    return close_then_take(close)

                return asyncio.run_coroutine_threadsafe(call(), bal._loop).result(5)  # type: ignore[arg-type]

            assert on_loop(close=False) is not None  # open: pooled and reused
            assert on_loop(close=True) is None  # closed by the target: dropped, though not yet read
    finally:
        server.close()


def test_a_malformed_response_gives_502() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def _accept_answer_garbage() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        conn.close()

    threading.Thread(target=_accept_answer_garbage, daemon=True).start()
    port = server.getsockname()[1]
    try:
        with HttpBalancer(0, lambda: [("127.0.0.1", port)]) as bal:
            assert bal.port
            resp = _request(bal.port)
            assert resp.status == 502 and resp.getheader("Server") == "awselb/2.0"
    finally:
        server.close()


def test_a_target_that_does_not_answer_within_the_idle_timeout_gives_504() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    port = server.getsockname()[1]
    try:
        with HttpBalancer(0, lambda: [("127.0.0.1", port)], response_timeout_s=0.5) as bal:
            assert bal.port
            t0 = time.monotonic()
            assert _request(bal.port, timeout_s=5).status == 504
            assert 0.5 <= time.monotonic() - t0 < 3
    finally:
        server.close()


def test_a_client_stalled_mid_request_for_5s_does_not_pin_a_single_threaded_backend(
    single_threaded: tuple[str, int],
) -> None:
    """A client cut off in the middle of its request (a 5 s partition on its side) holds nothing behind
    the HTTP balancer: the balancer has not chosen a target yet, so the other clients are served."""
    with HttpBalancer(0, lambda: [single_threaded]) as bal:
        assert bal.port
        stalled = _stalled_client(bal.port)
        t0 = time.monotonic()
        served = 0
        try:
            while time.monotonic() - t0 < 5.0:
                assert _request(bal.port, "/", timeout_s=1.0).status == 200
                served += 1
                time.sleep(0.1)
            stalled.sendall(b"\r\n")  # the partition ends: the stalled request completes too
            stalled.settimeout(5)
            assert stalled.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            stalled.close()
    assert served >= 10


def test_with_the_tcp_balancer_a_stalled_client_pins_the_single_threaded_backend(
    single_threaded: tuple[str, int],
) -> None:
    """``balancer: tcp`` (an NLB, or direct clients) keeps the old behaviour: the connection is piped to
    the backend as it arrives, so the stalled client holds the only worker and the others time out."""
    with Balancer(0, lambda: [single_threaded]) as bal:
        assert bal.port
        stalled = _stalled_client(bal.port)
        try:
            with pytest.raises(TimeoutError):
                _request(bal.port, "/", timeout_s=1.0)
        finally:
            stalled.close()


def _served_after_a_5s_partition(bal: Balancer) -> bool:
    """A client's request is swallowed by a 5 s hang partition of the client path (the client keeps
    waiting); once it heals, is another client served within a second?"""
    assert bal.port
    cut = socket.create_connection(("127.0.0.1", bal.port), timeout=10)
    try:
        bal.toxics.add("partition", "upstream", blackhole=True)
        cut.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(5.0)
        bal.toxics.remove("partition")
        try:
            return _request(bal.port, "/", timeout_s=1.0).status == 200
        except TimeoutError:
            return False
    finally:
        cut.close()


def test_after_a_5s_client_side_partition_the_http_balancer_serves_at_once(
    single_threaded: tuple[str, int],
) -> None:
    """The swallowed request never reached the HTTP balancer whole, so no backend worker waits for it."""
    with HttpBalancer(0, lambda: [single_threaded]) as bal:
        assert _served_after_a_5s_partition(bal)


def test_after_a_5s_client_side_partition_the_tcp_balancer_leaves_the_worker_pinned(
    single_threaded: tuple[str, int],
) -> None:
    """``balancer: tcp`` piped the cut client's connection to the only worker when it connected; the
    worker still waits for that request after the partition heals (until the client gives up)."""
    with Balancer(0, lambda: [single_threaded]) as bal:
        assert not _served_after_a_5s_partition(bal)


def test_a_hang_partition_on_the_client_side_swallows_requests_without_touching_the_replicas(
    sup: Supervisor,
) -> None:
    with HttpBalancer(0, lambda: sup.healthy_endpoints("echo")) as bal:
        assert bal.port
        bal.toxics.add("partition", "upstream", blackhole=True)
        with pytest.raises(TimeoutError):
            _request(bal.port, timeout_s=0.5)
        assert bal.stats()["requests"] == 0  # nothing reached the balancer's HTTP side
        bal.toxics.remove("partition")
        assert _request(bal.port).status == 200


def test_a_websocket_upgrade_becomes_a_tunnel_to_one_replica() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def _upgrade_then_echo() -> None:
        conn, _ = server.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        while data := conn.recv(4096):
            conn.sendall(data.upper())
        conn.close()

    threading.Thread(target=_upgrade_then_echo, daemon=True).start()
    port = server.getsockname()[1]
    try:
        with HttpBalancer(0, lambda: [("127.0.0.1", port)]) as bal:
            assert bal.port
            c = socket.create_connection(("127.0.0.1", bal.port), timeout=5)
            c.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(4096)
            assert head.startswith(b"HTTP/1.1 101")
            c.sendall(b"frame")
            assert c.recv(4096) == b"FRAME"
            c.close()
    finally:
        server.close()


def test_the_target_gets_x_forwarded_headers_and_a_continue_is_answered_by_the_balancer() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def _capture() -> None:
        conn, _ = server.accept()
        buf = b""
        while not buf.endswith(b"hello"):
            buf += conn.recv(4096)
        seen.append(buf)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=_capture, daemon=True).start()
    port = server.getsockname()[1]
    try:
        with HttpBalancer(0, lambda: [("127.0.0.1", port)]) as bal:
            assert bal.port
            c = socket.create_connection(("127.0.0.1", bal.port), timeout=5)
            c.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            assert c.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
            c.sendall(b"hello")
            assert c.recv(4096).startswith(b"HTTP/1.1 200 OK")
            c.close()
    finally:
        server.close()
    head = seen[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"X-Forwarded-For: 127.0.0.1" in head and b"X-Forwarded-Proto: http" in head
    assert f"X-Forwarded-Port: {bal.port}".encode() in head
