"""Every network, edge and zone fault kind is reverted when the gate stops early: on Ctrl-C (a real gate in a
subprocess gets SIGINT while all the faults are on) and on an error inside the gate (an exception in the
gate's load loop while they are on). Both runs are the gate's own :meth:`GateRun.run` on echo service
replicas behind the balancer, with the session's Postgres behind the service's fault proxy and Locust as
the load.

The gate reverts faults in ``cleanup`` before it stops the target, so the paths can be probed in between:
:class:`ProbedGateRun` probes them just before the target is closed (the effect must be gone) and the test
then checks that no process of the run is left behind.

A third test holds an injection open while the gate aborts: that fault must be lifted as well.

Run as a script (``python -m tests.integration.test_network_kinds_revert CONFIG EVIDENCE PROBE_JSON``) it
is the gate of the Ctrl-C test.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

import resgate.runner.gate as gate_module
from resgate.config.schema import load_config_text
from resgate.contract.constants import EXIT_CANNOT_RUN
from resgate.contract.env import ENV_KAFKA_BOOTSTRAP, ENV_PG_DSN
from resgate.contract.layout import table_glob
from resgate.local.toxics import Toxics
from resgate.runner.faults import FaultRunner
from resgate.runner.gate import GateRun
from resgate.runner.local_target import LocalTarget
from resgate.runner.progress import Progress

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "docs" / "tutorial" / "locustfile.py"  # plain Locust: GET /items, POST /items

# Every kind at once, held for a minute: only the gate's cleanup can lift them within the test.
CONFIG = f"""
gate: {{name: network-revert}}
target:
  local:
    services:
      - name: web
        command: ["${{python}}", -m, resgate.testing.echo_service]
        replicas: 2
        expose: true
        zones: [a, b]
        env: {{APP_DSN: "${{pg.dsn}}"}}
        health_path: /ready
        restart_delay_s: 0.2
load: {{users: 2, spawn_rate: 10, duration_s: 60, baseline_s: 0, locustfile: {LOCUSTFILE}}}
faults:
  - {{name: partition-db, kind: network_partition, between: [web, postgres], mode: refuse, duration_s: 60,
     at_s: 0}}
  - {{name: partition-hang, kind: network_partition, mode: hang, duration_s: 60, at_s: 0}}
  - {{name: partition-kafka, kind: network_partition, between: [web, kafka], mode: refuse, duration_s: 60,
     at_s: 0}}
  - {{name: latency-kafka, kind: network_latency, between: [web, kafka], delay_ms: 1000, duration_s: 60,
     at_s: 0}}
  - {{name: latency, kind: network_latency, delay_ms: 500, duration_s: 60, at_s: 0}}
  - {{name: loss, kind: packet_loss, percent: 30, duration_s: 60, at_s: 0}}
  - {{name: bandwidth, kind: bandwidth, kbps: 50, duration_s: 60, at_s: 0}}
  - {{name: reset, kind: connection_reset, duration_s: 60, at_s: 0}}
  - {{name: spike, kind: rate_limit_spike, percent: 100, duration_s: 60, at_s: 0}}
  - {{name: zone-a, kind: zone_loss, zone: a, at_s: 0}}
guardrails: {{max_error_ratio: 1.0, max_p95_ms: 600000, window_s: 1, consecutive_windows: 1000}}
checks:
  slo: {{enabled: false}}
  recovery: {{enabled: false}}
  retryable: {{enabled: false}}
  integrity: {{enabled: false}}
  replay: {{enabled: false}}
"""
HELD = [
    "partition-db",
    "partition-hang",
    "partition-kafka",
    "latency-kafka",
    "latency",
    "loss",
    "bandwidth",
    "reset",
    "spike",
]
ALL = [*HELD, "zone-a"]
# The zone's replica (web-0) is SIGKILLed; until the supervisor has reaped it the balancer may still pick
# its port and a connection accepted by the dying process is reset: that is the zone loss itself, which has
# nothing to revert (the supervisor restarts the replica). The gate is stopped only once it was reaped.
ZONE_REPLICA_GONE = "web-0: exited"


def _address(target: LocalTarget) -> tuple[str, int]:
    host, port = target.host.removeprefix("http://").split(":")
    return host, int(port)


def _app_dsn(target: LocalTarget) -> str | None:
    """The proxied DSN the service was given, from a live replica's environment (None if none is up)."""
    assert target.supervisor is not None
    for r in target.supervisor.replicas("web"):
        try:
            env = Path(f"/proc/{r.pid}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for v in env:  # a zombie's environment reads empty: try the next replica
            if v.startswith(b"APP_DSN="):
                return v.split(b"=", 1)[1].decode()
    return None


def _attempt(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the error it raised as a string (a probe reports, the test judges)."""
    try:
        return fn()
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def probe(target: LocalTarget, kafka_wait_s: float = 3.0) -> dict[str, Any]:
    """What the paths do now: a GET (status, seconds), a 100 kB upload (kbit/s) through the balancer, a
    connection to Postgres through the service's proxy, one event produced to Kafka by a new client
    (seconds), and which toxics / rate limit are set."""

    def get() -> list[Any]:
        conn = http.client.HTTPConnection(*_address(target), timeout=1.5)
        try:
            t0 = time.perf_counter()
            conn.request("GET", "/items")
            resp = conn.getresponse()
            resp.read()
            return [resp.status, time.perf_counter() - t0]
        finally:
            conn.close()

    def upload() -> float:
        conn = http.client.HTTPConnection(*_address(target), timeout=3)
        try:
            body = b"x" * 100_000
            t0 = time.perf_counter()
            conn.request("POST", "/items", body=body)
            resp = conn.getresponse()
            assert resp.read() == body
            return 800 / (time.perf_counter() - t0)
        finally:
            conn.close()

    def db() -> bool:
        dsn = _app_dsn(target)
        assert dsn is not None and dsn != target.dsn
        with psycopg.connect(dsn, connect_timeout=1.5) as conn:
            return conn.execute("select 1").fetchone() == (1,)

    def kafka() -> float:
        producer = Producer({"bootstrap.servers": target.bootstrap, "linger.ms": 0, "log_level": 0})
        t0 = time.perf_counter()
        producer.produce("network-revert", b"x")
        assert producer.flush(kafka_wait_s) == 0, f"not delivered in {kafka_wait_s} s"
        return time.perf_counter() - t0

    assert target.balancer is not None
    return {
        "get": _attempt(get),
        "upload_kbps": _attempt(upload),
        "db": _attempt(db),
        "kafka_s": _attempt(kafka),
        "toxics": {f"{s}->{d}": tox.active() for (s, d), tox in target.paths.items()},
        "rate_limit": target.balancer.rate_limit is not None,
        "balancer": target.balancer.stats(),
        "replicas": [(r.replica_id, r.state) for r in target.supervisor.replicas()]
        if target.supervisor
        else [],
    }


class ProbedGateRun(GateRun):
    """The gate, probing the paths (``self.probes["at_close"]``) after its cleanup reverted the faults and
    just before the target is stopped."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.probes: dict[str, dict[str, Any]] = {}

    def start_target(self) -> None:
        super().start_target()
        target = self.target
        assert target is not None
        close = target.close

        def probe_then_close() -> None:
            try:
                self.probes["at_close"] = probe(target)
                self.probes["at_close"]["timeline"] = self.faults.timeline() if self.faults else []
            finally:
                close()

        target.close = probe_then_close  # type: ignore[method-assign]


def _assert_reverted(probes: dict[str, Any]) -> None:
    at_close = probes["at_close"]
    assert isinstance(at_close["get"], list), at_close
    status, seconds = at_close["get"]
    assert status == 200 and seconds < 0.5, at_close  # no partition, reset, 429 or 2 x 500 ms latency
    assert at_close["upload_kbps"] > 2000, at_close  # no 50 kbit/s cap, no 30 % loss
    assert at_close["db"] is True, at_close  # the service's database path is open again
    assert isinstance(at_close["kafka_s"], float), at_close
    assert at_close["kafka_s"] < 1.0, at_close  # brokers up, no 1 s round trips (a new client needs several)
    assert at_close["toxics"] == {"web->clients": [], "web->postgres": []}, at_close
    assert at_close["rate_limit"] is False
    events = {(e["fault_id"], e["event"]) for e in at_close["timeline"]}
    for name in ALL:
        assert (name, "injected") in events, at_close["timeline"]
    for name in HELD:  # each held fault was lifted by the cleanup, not by its (60 s) timer
        assert (name, "aborted") in events and (name, "ended") not in events, at_close["timeline"]
    assert not [e for e in at_close["timeline"] if e["event"] == "error"]


def _processes_with(marker: str) -> list[tuple[int, str]]:
    from tests.e2e.conftest import processes_with_marker

    return processes_with_marker(marker)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_a_gate_error_while_every_kind_is_on_reverts_them_all_before_the_target_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_server: Any
) -> None:
    monkeypatch.setenv(ENV_PG_DSN, pg_server.dsn)  # the session's Postgres: a database of the run's own
    monkeypatch.delenv(ENV_KAFKA_BOOTSTRAP, raising=False)  # embedded Kafka: its brokers carry the faults
    marker = uuid.uuid4().hex
    monkeypatch.setenv("RESGATE_TEST_MARKER", marker)  # inherited by the replicas, Postgres and Locust
    cfg = load_config_text(CONFIG, "network-revert.yaml")
    gate = ProbedGateRun(cfg, evidence_root=str(tmp_path), progress=Progress(quiet=True))
    real_start_load = gate_module.start_load

    def start_load(*args: Any, **kw: Any) -> Any:
        load = real_start_load(*args, **kw)
        running = load.running

        def running_until_all_faults_are_on() -> bool:
            done = {e["fault_id"] for e in gate.faults.timeline()} if gate.faults else set()
            sup = gate.target.supervisor if gate.target else None
            reaped = sup is not None and any(
                (e["replica"], e["event"]) == ("web-0", "exited") for e in sup.timeline()
            )
            if done >= set(ALL) and reaped:
                assert gate.target is not None
                gate.probes["during"] = probe(gate.target, kafka_wait_s=0.5)
                raise RuntimeError("a bug in the gate's load loop")
            return running()

        load.running = running_until_all_faults_are_on
        return load

    monkeypatch.setattr(gate_module, "start_load", start_load)
    outcome = gate.run()

    assert outcome.exit_code == EXIT_CANNOT_RUN
    assert "RuntimeError: a bug in the gate's load loop" in outcome.verdict["reason"], outcome.verdict
    during = gate.probes["during"]
    assert all(isinstance(during[k], str) for k in ("get", "db", "kafka_s")), during  # the paths are cut
    assert during["rate_limit"] is True and len(during["toxics"]["web->clients"]) == 5, during
    _assert_reverted(gate.probes)
    assert gate.target is not None and gate.target.balancer is not None
    assert gate.target.balancer.port is not None and _refused(gate.target.balancer.port)
    assert not _processes_with(f"RESGATE_TEST_MARKER={marker}")


def test_ctrl_c_while_every_kind_is_on_reverts_them_all_and_leaves_no_process(
    tmp_path: Path, pg_server: Any
) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG)
    probe_out = tmp_path / "probe.json"
    marker = uuid.uuid4().hex
    env = {**os.environ, "RESGATE_TEST_MARKER": marker, "PYTHONPATH": str(ROOT), ENV_PG_DSN: pg_server.dsn}
    env.pop(ENV_KAFKA_BOOTSTRAP, None)  # embedded Kafka: its brokers carry the faults
    cmd = [sys.executable, "-m", "tests.integration.test_network_kinds_revert", str(config), str(tmp_path)]
    proc = subprocess.Popen(
        [*cmd, str(probe_out)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    out, port, injected, reaped = "", None, set(), False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not (injected == set(ALL) and reaped):
            line = proc.stdout.readline()
            if not line:
                break
            out += line
            if "target ready at http://127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
            for name in ALL:
                if f"fault {name} (" in line and ") injected" in line:
                    injected.add(name)
            reaped = reaped or ZONE_REPLICA_GONE in line
        assert injected == set(ALL) and reaped, out[-3000:]
        proc.send_signal(signal.SIGINT)
        out += proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_CANNOT_RUN, out[-3000:]
    assert "interrupted by SIGINT" in out, out[-3000:]
    _assert_reverted(json.loads(probe_out.read_text()))
    faults = [json.loads(x) for f in tmp_path.glob(table_glob("faults")) for x in f.read_text().splitlines()]
    assert {e["fault_id"] for e in faults if e["event"] == "aborted"} == set(HELD), faults  # the evidence
    assert port is not None and _refused(port)
    assert not _processes_with(f"RESGATE_TEST_MARKER={marker}")


class _SlowPath(Toxics):
    """A path whose injection blocks until released: the window in which an abort can arrive."""

    def __init__(self) -> None:
        super().__init__("slow")
        self.entered, self.release = threading.Event(), threading.Event()

    def add(self, name: str, direction: str = "both", **values: Any) -> None:
        self.entered.set()
        assert self.release.wait(5)
        super().add(name, direction, **values)


def test_a_fault_still_being_injected_when_the_gate_aborts_is_reverted_too() -> None:
    """A guardrail trip (or Ctrl-C) can land while the runner is injecting a fault: that fault must not stay
    on for its whole duration after the abort reverted the others."""
    fault = next(f for f in load_config_text(CONFIG, "network-revert.yaml").faults if f.name == "latency")
    path = _SlowPath()
    runner = FaultRunner(SimpleNamespace(supervisor=None, path=lambda s, d: path), [fault])  # type: ignore[arg-type]
    runner.start(time.time())
    assert path.entered.wait(5)
    runner.abort("guardrail: test")  # the injection is under way
    path.release.set()
    runner.join(5)
    assert path.active() == [], runner.timeline()
    assert [e["event"] for e in runner.timeline()] == [
        "injecting",
        "injected",
        "effect",
        "lifting",
        "aborted",
    ]


def _main(config: str, evidence_root: str, probe_out: str) -> int:
    """The gate of the Ctrl-C test: run it, write the probes, exit with its code."""
    cfg = load_config_text(Path(config).read_text(), config)
    gate = ProbedGateRun(cfg, evidence_root=evidence_root)
    outcome = gate.run()
    Path(probe_out).write_text(json.dumps(gate.probes))
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:4]))
