"""The fault proxy on real sockets: each toxic has its effect while on, none when off, and is reverted."""

from __future__ import annotations

import math
import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict

from resgate.local.faultproxy import FaultProxy, proxied_dsn
from resgate.local.toxics import Toxics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := self.request.recv(65536):
            if data.startswith(b"SINK"):  # bulk mode: read everything, answer once
                total = len(data)
                need = int(data[4:20])
                while total < need:
                    total += len(self.request.recv(65536))
                self.request.sendall(b"done")
                continue
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address  # type: ignore[misc]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    p = FaultProxy(echo, toxics=Toxics("test", seed=7))
    p.start()
    yield p
    p.stop()


def _connect(addr: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _rtt_ms(s: socket.socket, n: int = 20) -> list[float]:
    out = []
    for i in range(n):
        msg = f"ping-{i:04d}".encode()
        t0 = time.perf_counter()
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += s.recv(64)
        out.append((time.perf_counter() - t0) * 1000)
        assert got == msg
    return out


def test_an_idle_proxy_passes_bytes_unchanged_and_adds_little(
    proxy: FaultProxy, echo: tuple[str, int]
) -> None:
    with _connect(echo) as d, _connect(proxy.address) as p:
        direct, proxied = statistics.median(_rtt_ms(d, 50)), statistics.median(_rtt_ms(p, 50))
    assert proxied - direct < 1.0, (direct, proxied)


def test_latency_adds_delay_plus_minus_jitter_at_p50_and_is_reverted(proxy: FaultProxy) -> None:
    proxy.toxics.add("lat", "downstream", latency_ms=100, jitter_ms=20)
    with _connect(proxy.address) as s:
        slow = _rtt_ms(s, 15)
        assert 80 <= statistics.median(slow) <= 125, slow
        proxy.toxics.remove("lat")
        assert statistics.median(_rtt_ms(s, 10)) < 10


def test_a_hang_partition_swallows_bytes_keeps_the_connection_and_the_path_recovers(
    proxy: FaultProxy,
) -> None:
    proxy.toxics.add("cut", "both", blackhole=True)
    with _connect(proxy.address, timeout=0.5) as s:
        s.sendall(b"lost")
        with pytest.raises(TimeoutError):
            s.recv(64)  # no answer, no reset: the connection hangs
    proxy.toxics.remove("cut")
    with _connect(proxy.address) as s:
        assert max(_rtt_ms(s, 5)) < 50


def test_a_held_partition_delivers_nothing_until_lifted_then_everything_in_order(proxy: FaultProxy) -> None:
    """``hold`` is TCP across a path that drops every packet and heals before the connection times out:
    the sender retransmits, so what was sent during the partition arrives after it, in order."""
    with _connect(proxy.address) as s:
        assert _rtt_ms(s, 1)
        proxy.toxics.add("cut", "both", hold=True)
        s.sendall(b"one-")
        s.sendall(b"two")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(64)
        assert proxy.toxics.affected_bytes == 7
        proxy.toxics.remove("cut")
        s.settimeout(5)
        got = b""
        while len(got) < 7:
            got += s.recv(64)
        assert got == b"one-two"
        assert _rtt_ms(s, 3)


def test_a_close_during_a_held_partition_reaches_the_server_only_after_the_lift(
    proxy: FaultProxy, echo: tuple[str, int]
) -> None:
    with _connect(proxy.address) as s:
        assert _rtt_ms(s, 1)
        proxy.toxics.add("cut", "both", hold=True)
        s.sendall(b"last")
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.3)
        assert proxy.stats()["connections"] >= 1
        proxy.toxics.remove("cut")
        s.settimeout(5)
        got = b""
        while chunk := s.recv(64):
            got += chunk
        assert got == b"last"  # the echo saw the bytes, then the end of the stream, and closed


def test_a_refuse_partition_resets_open_and_new_connections_until_reverted(proxy: FaultProxy) -> None:
    with _connect(proxy.address) as s:
        _rtt_ms(s, 1)
        proxy.toxics.refuse("cut")
        proxy.toxics.reset()
        with pytest.raises(ConnectionResetError):
            s.sendall(b"x")
            s.recv(64)
    with pytest.raises((ConnectionResetError, BrokenPipeError)), _connect(proxy.address) as s:
        s.sendall(b"x")
        if not s.recv(64):
            raise ConnectionResetError("closed")
    proxy.toxics.remove("cut")
    with _connect(proxy.address) as s:
        assert _rtt_ms(s, 2)


def _bulk_kbps(addr: tuple[str, int], nbytes: int) -> float:
    with _connect(addr, timeout=30) as s:
        payload = b"SINK" + f"{nbytes:016d}".encode() + b"x" * (nbytes - 20)
        t0 = time.perf_counter()
        s.sendall(payload)
        assert s.recv(16) == b"done"
        return nbytes * 8 / 1000 / (time.perf_counter() - t0)


def test_bandwidth_caps_throughput(proxy: FaultProxy) -> None:
    proxy.toxics.add("bw", "upstream", bandwidth_kbps=800)
    kbps = _bulk_kbps(proxy.address, 100_000)
    assert 600 <= kbps <= 900, kbps


def test_packet_loss_throughput_falls_with_loss_like_tcp(proxy: FaultProxy) -> None:
    """Throughput at 5/10/20 % loss: falling, log-log slope between Mathis' -0.5 and Padhye's timeout-bound
    regime (about -1.2 here, RTO = 3 RTT), and within 2x of Padhye's formula."""
    rtt, rto = 4.0, 12.0
    xs, ys = [], []
    for pct in (5, 10, 20):
        proxy.toxics.add("loss", "upstream", loss_percent=pct, rtt_ms=rtt, rto_min_ms=rto)
        kbps = statistics.median(_bulk_kbps(proxy.address, 200_000) for _ in range(3))
        proxy.toxics.remove("loss")
        p = pct / 100
        padhye = (
            1460
            * 8
            / 1000
            / (
                rtt / 1000 * math.sqrt(2 * p / 3)
                + rto / 1000 * min(1, 3 * math.sqrt(3 * p / 8)) * p * (1 + 32 * p * p)
            )
        )
        assert padhye / 2 <= kbps <= padhye * 2, (pct, kbps, padhye)
        xs.append(math.log(p))
        ys.append(math.log(kbps))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    assert ys[0] > ys[1] > ys[2]
    assert -2.0 <= slope <= -0.4, slope


def test_limit_data_closes_after_n_bytes_and_slow_close_delays_the_close(proxy: FaultProxy) -> None:
    proxy.toxics.add("lim", "downstream", limit_bytes=6)
    with _connect(proxy.address) as s:
        s.sendall(b"0123456789")
        got = b""
        while chunk := s.recv(64):
            got += chunk
        assert got == b"012345"
    proxy.toxics.remove("lim")
    proxy.toxics.add("slow", "downstream", slow_close_ms=300)
    with _connect(proxy.address) as s:
        _rtt_ms(s, 1)
        s.shutdown(socket.SHUT_WR)
        t0 = time.perf_counter()
        assert s.recv(64) == b""
        assert time.perf_counter() - t0 >= 0.25


def test_proxied_dsn_keeps_user_and_database() -> None:
    for dsn in (
        "postgresql://postgres@127.0.0.1:5432/db",
        "user=postgres dbname=db host=127.0.0.1 port=5432",
    ):
        out = conninfo_to_dict(proxied_dsn(dsn, ("127.0.0.1", 9)))
        assert out == {"user": "postgres", "dbname": "db", "host": "127.0.0.1", "port": "9"}
