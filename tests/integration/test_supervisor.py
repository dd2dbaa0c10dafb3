"""The local supervisor with real child processes: restarts, hangs, faults by tag, and no orphans ever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resgate.contract.errors import ConfigError
from resgate.local.replica import HEALTHY, UNHEALTHY, ReplicaInfo
from resgate.local.spec import ServiceSpec
from resgate.local.supervisor import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ECHO = [sys.executable, "-m", "resgate.testing.echo_service"]
HEALTH = "http://127.0.0.1:{port}/ready"
REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_until(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _events(sup: Supervisor, replica: str) -> list[str]:
    return [e["event"] for e in sup.timeline() if e["replica"] == replica]


def _info(sup: Supervisor, replica_id: str) -> ReplicaInfo:
    return next(r for r in sup.replicas() if r.replica_id == replica_id)


def _spawning_command(tmp_path: Path) -> list[str]:
    """A service that leaves a grandchild behind (its pid in a file) and then becomes the echo service."""
    return [
        "sh",
        "-c",
        f'sleep 1000 & echo $! > "{tmp_path}/grandchild-$REPLICA_ID"; exec "$@"',
        "sh",
        *ECHO,
    ]


def _grandchildren(tmp_path: Path, n: int) -> list[int]:
    assert _wait_until(lambda: len(list(tmp_path.glob("grandchild-*"))) == n, 10)
    assert _wait_until(lambda: all(p.read_text().strip() for p in tmp_path.glob("grandchild-*")), 5)
    return [int(p.read_text()) for p in sorted(tmp_path.glob("grandchild-*"))]


@pytest.fixture
def echo_sup(tmp_path: Path) -> Iterator[Supervisor]:
    spec = ServiceSpec(name="echo", command=ECHO, replicas=2, health_url=HEALTH, restart_delay_s=0.3)
    with Supervisor([spec], log_dir=tmp_path / "logs", health_interval_s=0.1, health_timeout_s=0.3) as sup:
        assert sup.wait_healthy(15), sup.replicas()
        yield sup


def test_a_killed_replica_is_restarted_and_turns_healthy_again(echo_sup: Supervisor) -> None:
    before = {r.replica_id: r.pid for r in echo_sup.replicas()}
    t0 = time.monotonic()
    killed = echo_sup.stop_replicas("echo", 50)
    assert len(killed) == 1
    victim = killed[0]
    assert _wait_until(lambda: _events(echo_sup, victim)[-1:] == ["restarted"], 5)
    assert echo_sup.wait_healthy(10)
    recovery_s = time.monotonic() - t0

    events = _events(echo_sup, victim)
    assert events == ["started", "healthy", "killed", "exited", "restarted", "healthy"]
    after = {r.replica_id: r for r in echo_sup.replicas()}
    assert after[victim].pid != before[victim] and after[victim].restarts == 1
    assert not _alive(before[victim])
    survivor = next(k for k in before if k != victim)
    assert after[survivor].pid == before[survivor] and after[survivor].restarts == 0
    exited = next(e for e in echo_sup.timeline() if e["replica"] == victim and e["event"] == "exited")
    assert exited["detail"]["signal"] == "SIGKILL"
    print(f"kill -> healthy again in {recovery_s:.2f}s (restart_delay_s=0.3)")


def test_a_hung_replica_turns_unhealthy_and_healthy_again_after_resume(echo_sup: Supervisor) -> None:
    t0 = time.monotonic()
    hung = echo_sup.hang("echo", 50, 2.0)
    assert len(hung) == 1
    victim = hung[0]
    info = {r.replica_id: r for r in echo_sup.replicas()}
    assert info[victim].hung
    assert _wait_until(lambda: _info(echo_sup, victim).state == UNHEALTHY, 4)
    detected_s = time.monotonic() - t0
    other = next(k for k in info if k != victim)
    assert echo_sup.healthy_endpoints("echo") == [("127.0.0.1", info[other].port)]
    assert _wait_until(lambda: _info(echo_sup, victim).state == HEALTHY, 6)
    recovered_s = time.monotonic() - t0

    assert _events(echo_sup, victim) == ["started", "healthy", "hung", "unhealthy", "resumed", "healthy"]
    assert _info(echo_sup, victim).pid == info[victim].pid  # same process, resumed, not restarted
    assert not _info(echo_sup, victim).hung
    print(
        f"hang detected after {detected_s:.2f}s, healthy again {recovered_s:.2f}s after SIGSTOP (2.0s hang)"
    )


def test_faults_select_replicas_by_tags_and_percentage(tmp_path: Path) -> None:
    specs = [
        ServiceSpec(
            name="web", command=["sleep", "1000"], replicas=3, tags={"tier": "web"}, restart_delay_s=60
        ),
        ServiceSpec(
            name="db", command=["sleep", "1000"], replicas=2, tags={"tier": "db"}, restart_delay_s=60
        ),
    ]
    with Supervisor(specs, log_dir=tmp_path, seed=7) as sup:
        assert sup.wait_healthy(5)  # no health_url: healthy once running
        db_pids = {r.pid for r in sup.replicas("db")}
        killed = sup.stop_replicas(None, 34, tags={"tier": "web"})  # ceil(34% of 3) = 2
        assert len(killed) == 2 and all(k.startswith("web-") for k in killed)
        assert _wait_until(lambda: sum(r.state == "stopped" for r in sup.replicas("web")) == 2, 3)
        assert {r.pid for r in sup.replicas("db")} == db_pids
        assert [r.state for r in sup.replicas(tags={"tier": "db"})] == [HEALTHY, HEALTHY]
        assert sup.stop_replicas("db", 0) == []
        assert len(sup.stop_replicas("db", 1)) == 1  # at least one replica as soon as percent > 0


def test_bad_faults_on_a_running_supervisor_change_nothing(echo_sup: Supervisor) -> None:
    pids = [r.pid for r in echo_sup.replicas()]
    before = len(echo_sup.timeline())
    bad: list[tuple[Callable[[], object], str]] = [
        (lambda: echo_sup.stop_replicas("echo", 100.5), "percent"),
        (lambda: echo_sup.hang("echo", 50, -0.1), "duration_s"),
        (lambda: echo_sup.stop_replicas("ech0", 50), "service"),
    ]
    for fault, where in bad:
        with pytest.raises(ConfigError) as exc:
            fault()
        assert exc.value.where == where
    time.sleep(0.3)
    assert [r.pid for r in echo_sup.replicas()] == pids
    assert all(_alive(p) for p in pids if p is not None)
    assert len(echo_sup.timeline()) == before
    assert all(r.state == HEALTHY and not r.hung for r in echo_sup.replicas())


def test_context_manager_exit_leaves_no_process_not_even_grandchildren(tmp_path: Path) -> None:
    spec = ServiceSpec(name="spawner", command=_spawning_command(tmp_path), replicas=2, health_url=HEALTH)
    with Supervisor([spec], log_dir=tmp_path / "logs") as sup:
        assert sup.wait_healthy(15)
        pids = [r.pid for r in sup.replicas()]
        grandchildren = _grandchildren(tmp_path, 2)
        assert all(_alive(p) for p in [*pids, *grandchildren] if p is not None)
        sup.hang("spawner", 50, 30)  # a stopped group must be cleaned up too
        log = sup.log_path("spawner-0").read_text()
        assert "listening on 127.0.0.1" in log  # child output goes to the log file, not to our terminal
    t0 = time.monotonic()
    assert all(not _alive(p) for p in pids if p is not None)
    assert _wait_until(lambda: not any(_alive(p) for p in grandchildren), 3), grandchildren
    print(f"grandchildren gone {time.monotonic() - t0:.2f}s after exit")


def _start_cli(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int], list[int]]:
    cmd = [
        sys.executable,
        "-m",
        "resgate.local.supervise_cli",
        "--name",
        "echo",
        "--replicas",
        "2",
        "--health-url",
        HEALTH,
        "--log-dir",
        str(tmp_path / "logs"),
        "--",
        *_spawning_command(tmp_path),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: dict[str, int] = {}
    healthy: set[str] = set()
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    while len(healthy) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event["event"] == "started":
            pids[event["replica"]] = event["detail"]["pid"]
        elif event["event"] == "healthy":
            healthy.add(event["replica"])
    assert len(healthy) == 2, (proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
    return proc, list(pids.values()), _grandchildren(tmp_path, 2)


def test_sigterm_to_the_supervisor_cli_leaves_no_process(tmp_path: Path) -> None:
    proc, pids, grandchildren = _start_cli(tmp_path)
    try:
        assert all(_alive(p) for p in [*pids, *grandchildren])
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert '"supervisor_exit"' in out
    assert not any(_alive(p) for p in pids)
    assert _wait_until(lambda: not any(_alive(p) for p in grandchildren), 3)
    print(f"CLI shut down {elapsed:.2f}s after SIGTERM")


def test_sigkill_to_the_supervisor_cli_still_leaves_no_process(tmp_path: Path) -> None:
    proc, pids, grandchildren = _start_cli(tmp_path)
    try:
        proc.kill()  # no cleanup code runs: the death signal and the guardian must do it
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    t0 = time.monotonic()
    assert _wait_until(lambda: not any(_alive(p) for p in [*pids, *grandchildren]), 5), (pids, grandchildren)
    print(f"children and grandchildren gone {time.monotonic() - t0:.2f}s after SIGKILL of the supervisor")


def test_a_replica_that_crashes_by_itself_is_restarted(tmp_path: Path) -> None:
    spec = ServiceSpec(name="crashy", command=["sh", "-c", "sleep 0.2; exit 3"], restart_delay_s=0.1)
    with Supervisor([spec], log_dir=tmp_path) as sup:
        assert _wait_until(lambda: sup.replicas()[0].restarts >= 2, 5)
    exits = [e["detail"] for e in sup.timeline() if e["event"] == "exited"]
    assert exits[0]["returncode"] == 3
    assert os.path.isdir(tmp_path)  # a log_dir we were given is kept
