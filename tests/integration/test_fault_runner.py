"""The fault runner injects on schedule, records the timeline, and reverts or skips faults on abort."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from resgate.config.schema import Fault
from resgate.local.postgres import EmbeddedPostgres
from resgate.local.spec import ServiceSpec
from resgate.local.supervisor import Supervisor
from resgate.runner.faults import FaultRunner

pytestmark = pytest.mark.integration

ECHO = [sys.executable, "-m", "resgate.testing.echo_service"]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[SimpleNamespace]:
    spec = ServiceSpec(
        name="api", command=ECHO, replicas=2, health_url="http://127.0.0.1:{port}/ready", restart_delay_s=0.3
    )
    with Supervisor([spec], log_dir=tmp_path, health_interval_s=0.1) as sup, EmbeddedPostgres() as pg:
        assert sup.wait_healthy(15)
        yield SimpleNamespace(supervisor=sup, pg=pg, kafka=None, bootstrap="")


def _events(runner: FaultRunner, fault_id: str) -> list[str]:
    return [e["event"] for e in runner.timeline() if e["fault_id"] == fault_id]


def _wait(cond, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_faults_are_injected_on_schedule_and_timed_ones_end(target: SimpleNamespace) -> None:
    faults = [
        Fault("kill", "stop_task", 0.2, "api", {"percent": 50.0}),
        Fault("blip", "db_blip", 0.4, None, {"duration_s": 1.0}),
    ]
    runner = FaultRunner(target, faults)  # type: ignore[arg-type]
    t0 = time.time()
    runner.start(t0)
    assert _wait(
        lambda: _events(runner, "blip") == ["injecting", "injected", "effect", "lifting", "ended"], 15
    )
    starting, kill, effect = [e for e in runner.timeline() if e["fault_id"] == "kill"]
    assert (starting["event"], kill["event"], effect["event"]) == ("injecting", "injected", "effect")
    assert effect["detail"]["observed"] is True  # the killed replica's process was seen gone
    assert len(kill["detail"]["replicas"]) == 1
    assert kill["ts"] >= starting["ts"] and starting["ts"] - t0 >= 0.2
    # Postgres stopping takes a while: it starts before the fault is in effect, the lift before it is done
    blip = {e["event"]: e for e in runner.timeline() if e["fault_id"] == "blip"}
    assert blip["injecting"]["ts"] <= blip["injected"]["ts"] <= blip["lifting"]["ts"] <= blip["ended"]["ts"]
    assert blip["injecting"]["detail"] == {"duration_s": 1.0}
    assert blip["effect"]["detail"]["observed"] is True  # Postgres refused a connection
    with psycopg.connect(target.pg.dsn, connect_timeout=3) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_abort_skips_pending_faults_and_reverts_active_ones(target: SimpleNamespace) -> None:
    faults = [
        Fault("blip", "db_blip", 0.1, None, {"duration_s": 60.0}),
        Fault("late-kill", "stop_task", 30.0, "api", {"percent": 100.0}),
    ]
    runner = FaultRunner(target, faults)  # type: ignore[arg-type]
    runner.start(time.time())
    assert _wait(lambda: "effect" in _events(runner, "blip"), 10)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(target.pg.dsn, connect_timeout=2)
    runner.abort("guardrail: error ratio 80% > 50%")
    runner.join(5)
    assert _events(runner, "blip") == ["injecting", "injected", "effect", "lifting", "aborted"]
    skipped = [e for e in runner.timeline() if e["fault_id"] == "late-kill"]
    assert [e["event"] for e in skipped] == ["skipped"]
    assert "guardrail" in skipped[0]["detail"]["reason"]
    # the outage was reverted at once, not after its 60 s
    with psycopg.connect(target.pg.dsn, connect_timeout=3) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert all(r.state == "healthy" for r in target.supervisor.replicas())


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_an_abort_during_a_hang_resumes_the_hung_replica_at_once(target: SimpleNamespace) -> None:
    runner = FaultRunner(target, [Fault("freeze", "hang", 0.0, "api", {"percent": 50.0, "duration_s": 60.0})])  # type: ignore[arg-type]
    runner.start(time.time())
    assert _wait(lambda: "effect" in _events(runner, "freeze"), 10)
    (hung_id,) = next(e for e in runner.timeline() if e["event"] == "injected")["detail"]["replicas"]
    pid = next(r.pid for r in target.supervisor.replicas() if r.replica_id == hung_id)
    assert _wait(lambda: _process_state(pid) == "T", 5)  # stopped by SIGSTOP
    runner.abort("guardrail: p95 9000 ms > 5000 ms")
    runner.join(5)
    assert _events(runner, "freeze") == ["injecting", "injected", "effect", "lifting", "aborted"]
    freeze_effect = next(e for e in runner.timeline() if e["event"] == "effect")
    assert freeze_effect["detail"]["observed"] is True  # the hung replica was seen stopped (T)
    # resumed now, not after its 60 s: running or sleeping again, and healthy
    assert _wait(lambda: _process_state(pid) in ("R", "S"), 5), _process_state(pid)
    assert _wait(lambda: all(r.state == "healthy" for r in target.supervisor.replicas()), 10)


def test_a_failed_injection_is_recorded_not_raised(target: SimpleNamespace) -> None:
    # No Kafka here: the broker fault cannot act and says so in the timeline.
    runner = FaultRunner(
        target, [Fault("down", "kafka_broker_down", 0.0, None, {"broker": 1, "duration_s": 1.0})]
    )  # type: ignore[arg-type]
    runner.start(time.time())
    runner.join(5)
    events = runner.timeline()
    assert [e["event"] for e in events] == ["skipped"]
    assert "external" in events[0]["detail"]["reason"] or "Kafka" in events[0]["detail"]["reason"]


def test_an_unknown_or_invalid_fault_is_recorded_as_an_error_and_touches_no_process(
    target: SimpleNamespace,
) -> None:
    # The gate config rejects these up front; the runner must still not act on them if one slips through.
    sup = target.supervisor
    pids = [r.pid for r in sup.replicas()]
    before = len(sup.timeline())
    faults = [
        Fault("explode", "explode", 0.0, "api", {"percent": 50.0}),
        Fault("too-many", "stop_task", 0.0, "api", {"percent": 100.5}),
        Fault("negative", "hang", 0.0, "api", {"percent": 50.0, "duration_s": -0.1}),
        Fault("typo", "stop_task", 0.0, "ap1", {"percent": 50.0}),
    ]
    runner = FaultRunner(target, faults)  # type: ignore[arg-type]
    runner.start(time.time())
    runner.join(5)
    # an injection that started (the call to the supervisor) and failed says both
    started = [e["fault_id"] for e in runner.timeline() if e["event"] == "injecting"]
    assert started == ["too-many", "negative", "typo"]
    events = [e for e in runner.timeline() if e["event"] != "injecting"]
    assert [(e["fault_id"], e["event"]) for e in events] == [(f.name, "error") for f in faults]
    assert "no local implementation" in events[0]["detail"]["error"]
    assert all("ConfigError" in e["detail"]["error"] for e in events[1:])
    time.sleep(0.3)
    assert [r.pid for r in sup.replicas()] == pids
    assert len(sup.timeline()) == before
    assert all(r.state == "healthy" and not r.hung for r in sup.replicas())
