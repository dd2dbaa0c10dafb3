"""Proof of effect (issue 22, item 4): a fault that acted on nothing is recorded as such, and the recovery
check then cannot call the run recovered: a kill of a replica that had already exited, and a partition on a
path no request takes, each against the same fault acting on something."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from resgate.checks import recovery as rc
from resgate.checks.result import UNKNOWN
from resgate.config.model import Fault
from resgate.local.faultproxy import FaultProxy
from resgate.local.toxics import Toxics
from resgate.runner.faults import FaultRunner
from tests.integration.test_faultproxy import _connect, echo  # noqa: F401  (the echo server fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class FakeSupervisor:
    """Kills real child processes the way the supervisor does, recording ``killed`` with their pids; a
    replica whose process already exited is not chosen (as ``Supervisor._pick``)."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        self.procs = procs
        self.events: list[dict[str, Any]] = []

    def stop_replicas(self, service: str, percent: float) -> list[str]:
        victims = [rid for rid, p in self.procs.items() if p.poll() is None]
        for rid in victims:
            self.events.append(
                {"ts": time.time(), "replica": rid, "event": "killed", "detail": {"pid": self.procs[rid].pid}}
            )
            self.procs[rid].kill()
        return victims

    def timeline(self) -> list[dict[str, Any]]:
        return list(self.events)


@pytest.fixture
def replica() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _run(target: Any, fault: Fault, until: str) -> list[dict[str, Any]]:
    runner = FaultRunner(target, [fault])  # type: ignore[arg-type]
    runner.start(time.time())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e["event"] == until for e in runner.timeline()):
        time.sleep(0.02)
    runner.join(5)
    return runner.timeline()


def _effect(events: list[dict[str, Any]]) -> dict[str, Any]:
    (effect,) = [e for e in events if e["event"] == "effect"]
    return effect["detail"]


def _recovery(events: list[dict[str, Any]], service: str) -> Any:
    """The recovery check over ``events`` with the service seen healthy before and just after the fault."""
    first, last = events[0]["ts"], events[-1]["ts"]
    health = [{"ts": t, "service": service, "healthy": True} for t in (first - 10, last + 0.1)]
    faults = [e for e in events if e["event"] in rc.FAULT_EVENTS]
    return rc.check(
        rc.evidence_from_run(faults, health),
        rc.RecoveryThresholds(error_ratio_tolerance=None, min_throughput_ratio=None),
    )


def test_a_kill_of_a_replica_that_already_exited_has_no_observed_effect_and_recovery_is_unknown(
    replica,
) -> None:
    replica.kill()
    replica.wait()  # it crashed before the fault: nothing is left to kill
    target = SimpleNamespace(supervisor=FakeSupervisor({"web-0": replica}))
    events = _run(target, Fault("kill-web", "stop_task", 0.0, "web", {"percent": 100.0}), "effect")
    assert _effect(events) == {"observed": False, "evidence": "no live replica of web"}
    r = _recovery(events, "web")
    assert r.valid == UNKNOWN and r.error == "fault kill-web had no observed effect: no live replica of web"


def test_a_kill_of_a_running_replica_observes_its_process_gone(replica) -> None:
    target = SimpleNamespace(supervisor=FakeSupervisor({"web-0": replica}))
    events = _run(target, Fault("kill-web", "stop_task", 0.0, "web", {"percent": 100.0}), "effect")
    effect = _effect(events)
    assert effect["observed"] is True and effect["evidence"].startswith("exited: web-0"), effect
    assert _recovery(events, "web").valid is True


def _partition_target(proxy: FaultProxy) -> SimpleNamespace:
    return SimpleNamespace(
        supervisor=None,
        path=lambda service, dependency: proxy.toxics,
        path_stats=lambda service, dependency: proxy.stats(),
    )


PARTITION = Fault(
    "cut-db",
    "network_partition",
    0.0,
    "web",  # the config names a network fault's service as its target
    {"service": "web", "dependency": "postgres", "direction": "both", "mode": "hang", "duration_s": 0.6},
)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:  # noqa: F811
    p = FaultProxy(echo, toxics=Toxics("web-postgres", seed=1))
    p.start()
    yield p
    p.stop()


def test_a_partition_on_a_path_no_request_takes_has_no_observed_effect(proxy: FaultProxy) -> None:
    events = _run(_partition_target(proxy), PARTITION, "ended")
    effect = _effect(events)
    assert effect["observed"] is False and "no request took this path" in effect["evidence"], effect
    r = _recovery(events, "web")
    assert r.valid == UNKNOWN and "fault cut-db had no observed effect" in r.error


def test_a_partition_on_a_path_a_request_takes_swallows_its_bytes(proxy: FaultProxy) -> None:
    conn = _connect(proxy.address)
    stop = threading.Event()

    def client() -> None:  # a request every 50 ms through the proxy, answers or not
        while not stop.is_set():
            try:
                conn.sendall(b"ping")
            except OSError:
                return
            time.sleep(0.05)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    try:
        events = _run(_partition_target(proxy), PARTITION, "ended")
    finally:
        stop.set()
        t.join(2)
        conn.close()
    effect = _effect(events)
    assert effect["observed"] is True, effect
    assert [e["event"] for e in events] == ["injecting", "injected", "effect", "lifting", "ended"]
    assert _recovery(events, "web").valid is True
