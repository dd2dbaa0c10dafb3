"""The local round-robin balancer in front of supervised echo replicas: spreading, failover, reset."""

from __future__ import annotations

import http.client
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from resgate.contract.errors import ConfigError
from resgate.local.balancer import Balancer
from resgate.local.ports import free_port
from resgate.local.replica import ReplicaInfo
from resgate.local.spec import ServiceSpec
from resgate.local.supervisor import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ECHO = [sys.executable, "-m", "resgate.testing.echo_service"]


def _get(port: int, path: str = "/who", timeout_s: float = 2.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as resp:
        assert resp.status == 200
        return resp.read().decode()


def _info(sup: Supervisor, replica_id: str) -> ReplicaInfo:
    return next(r for r in sup.replicas() if r.replica_id == replica_id)


def _dead_port() -> int:
    return free_port()  # free and reserved for this process: nothing listens there


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    spec = ServiceSpec(
        name="echo", command=ECHO, replicas=2, health_url="http://127.0.0.1:{port}/ready", restart_delay_s=0.5
    )
    with Supervisor([spec], log_dir=tmp_path, health_interval_s=0.1, health_timeout_s=0.3) as s:
        assert s.wait_healthy(15)
        yield s


def test_requests_through_the_balancer_reach_both_replicas(sup: Supervisor) -> None:
    with Balancer(0, lambda: sup.healthy_endpoints("echo")) as bal:
        assert bal.port
        seen = [_get(bal.port) for _ in range(6)]
        per_backend = bal.connections_per_backend()
    assert set(seen) == {"echo-0", "echo-1"}
    assert seen[0] != seen[1]  # round robin, not random
    ports = {("127.0.0.1", _info(sup, r).port): r for r in ("echo-0", "echo-1")}
    assert {ports[b]: n for b, n in per_backend.items()} == {"echo-0": 3, "echo-1": 3}


def test_requests_keep_succeeding_when_a_replica_is_killed(tmp_path: Path) -> None:
    spec = ServiceSpec(
        name="echo", command=ECHO, replicas=2, health_url="http://127.0.0.1:{port}/ready", restart_delay_s=1.5
    )
    with (
        Supervisor([spec], log_dir=tmp_path, health_interval_s=0.1, health_timeout_s=0.3) as sup,
        Balancer(0, lambda: sup.healthy_endpoints("echo")) as bal,
    ):
        assert sup.wait_healthy(15) and bal.port
        [victim] = sup.stop_replicas("echo", 50)
        [survivor] = {"echo-0", "echo-1"} - {victim}
        t0 = time.monotonic()
        early_failures = 0
        while len(sup.healthy_endpoints("echo")) != 1 and time.monotonic() - t0 < 3:
            try:  # the window between the kill and the supervisor noticing it (not asserted: a race)
                _get(bal.port)
            except (urllib.error.URLError, ConnectionError):
                early_failures += 1
        noticed_s = time.monotonic() - t0
        assert sup.healthy_endpoints("echo") == [("127.0.0.1", _info(sup, survivor).port)]
        answers = [_get(bal.port) for _ in range(20)]  # any failure raises and fails the test
        assert set(answers) == {survivor}
        assert sup.wait_healthy(10)  # the replacement comes back and gets traffic again
        assert {_get(bal.port) for _ in range(6)} == {"echo-0", "echo-1"}
    print(f"kill noticed after {noticed_s * 1000:.0f} ms; {early_failures} failed requests in that window")


def test_a_refused_backend_is_skipped(sup: Supervisor) -> None:
    live = sup.healthy_endpoints("echo")[0]
    live_id = next(r.replica_id for r in sup.replicas() if r.port == live[1])
    with Balancer(0, lambda: [("127.0.0.1", _dead_port()), live]) as bal:
        assert bal.port
        assert [_get(bal.port) for _ in range(4)] == [live_id] * 4
        assert bal.stats()["connect_failures"] >= 2


def test_without_a_backend_the_client_gets_a_fast_retryable_reset() -> None:
    with Balancer(0, lambda: []) as bal:
        assert bal.port
        t0 = time.monotonic()
        with pytest.raises((ConnectionError, urllib.error.URLError)) as exc:
            _get(bal.port)
        elapsed = time.monotonic() - t0
        assert bal.stats()["no_backend"] == 1
    reason = exc.value.reason if isinstance(exc.value, urllib.error.URLError) else exc.value
    assert isinstance(reason, ConnectionError), repr(reason)
    assert elapsed < 1.0


def test_keep_alive_connections_are_piped_with_low_overhead(sup: Supervisor) -> None:
    n = 2000
    with Balancer(0, lambda: sup.healthy_endpoints("echo")) as bal:
        assert bal.port
        conn = http.client.HTTPConnection("127.0.0.1", bal.port, timeout=5)
        t0 = time.monotonic()
        replicas = set()
        for _ in range(n):
            conn.request("GET", "/who")
            resp = conn.getresponse()
            replicas.add(resp.read())
            assert resp.status == 200
        elapsed = time.monotonic() - t0
        conn.close()
    assert len(replicas) == 1  # one keep-alive connection stays on one backend
    print(f"{n} keep-alive requests through the balancer in {elapsed:.2f}s ({n / elapsed:.0f}/s, one client)")
    assert elapsed < 20


def test_balancer_config_is_validated() -> None:
    with pytest.raises(ConfigError) as exc:
        Balancer(0)
    assert exc.value.where == "backends"
    with pytest.raises(ConfigError) as exc:
        Balancer(70000, lambda: [])
    assert exc.value.where == "listen_port"
