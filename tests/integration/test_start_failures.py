"""A service that cannot start fails the gate's start at once, saying why: the replica, the health check's
last answer, the last lines of its log and where the log is kept. HTTP-only services need no Postgres or
Kafka, so these starts take a second or two."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from resgate.config import load_config
from resgate.contract.errors import GateError
from resgate.runner.local_target import LocalTarget

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

START_LIMIT_S = 10.0


def _config(tmp_path: Path, command: str, health_path: str = "/") -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(
        "gate: {name: web}\n"
        "target:\n"
        "  local:\n"
        "    services:\n"
        "      - name: web\n"
        f"        command: {command}\n"
        "        replicas: 2\n"
        "        expose: true\n"
        f"        health_path: {health_path}\n"
        "        restart_delay_s: 0.2\n"
        "load: {locustfile: locustfile.py}\n"
        "checks: {integrity: false, replay: false}\n"
    )
    return path


def _start(config: Path, tmp_path: Path) -> tuple[str, float, LocalTarget]:
    """Start the config's services; the GateError's text, how long it took, and the (closed) target."""
    cfg = load_config(config)
    target = LocalTarget(
        cfg, "run1", log_dir=tmp_path / "logs", kept_logs=tmp_path / "evidence-logs", say=str
    )
    t0 = time.monotonic()
    with target, pytest.raises(GateError) as exc:
        target.start_infra()
        target.start_services()
    return str(exc.value), time.monotonic() - t0, target


@pytest.fixture
def busy_port() -> Iterator[int]:
    s = socket.create_server(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def test_a_service_that_crashes_at_start_fails_the_start_at_once_with_its_log_lines(tmp_path: Path) -> None:
    cmd = (
        '["${python}", "-c", "import sys; print(\'config error: MISSING_SETTING is not set\'); sys.exit(3)"]'
    )
    message, elapsed, target = _start(_config(tmp_path, cmd), tmp_path)

    assert elapsed < START_LIMIT_S, message
    assert (
        "service web, replica web-0 failed to start: exited 3 times in a row before it was ever healthy"
        in message
    )
    assert "config error: MISSING_SETTING is not set" in message
    assert f"log: {tmp_path / 'evidence-logs' / 'web-0.log'}, last lines:" in message
    assert target.pg is None and target.kafka is None  # HTTP-only, no integrity or replay: no infra


def test_a_port_already_in_use_fails_the_start_with_the_servers_own_words(
    tmp_path: Path, busy_port: int
) -> None:
    cmd = f'["${{python}}", "-m", "http.server", "{busy_port}", "--bind", "127.0.0.1"]'
    message, elapsed, _ = _start(_config(tmp_path, cmd), tmp_path)

    assert elapsed < START_LIMIT_S, message
    assert "before it was ever healthy" in message and "Address already in use" in message
    assert "last health check: GET http://127.0.0.1:" in message and "ConnectionRefusedError" in message


def test_a_wrong_health_path_fails_the_start_with_the_probes_answer(tmp_path: Path) -> None:
    cmd = '["${python}", "-m", "http.server", "${port}", "--bind", "127.0.0.1"]'
    message, elapsed, _ = _start(_config(tmp_path, cmd, health_path="/ready"), tmp_path)

    assert elapsed < START_LIMIT_S, message
    assert "its health check answered HTTP 404" in message and "is health_path right?" in message
    assert "/ready -> HTTP 404" in message


def test_a_stock_server_given_its_port_as_a_placeholder_starts_behind_the_balancer(tmp_path: Path) -> None:
    cmd = '["${python}", "-m", "http.server", "${port}", "--bind", "127.0.0.1"]'
    config = _config(tmp_path, cmd)
    config.write_text(
        config.read_text().replace("expose: true", 'expose: true\n        env: {LISTEN: "127.0.0.1:${port}"}')
    )
    cfg = load_config(config)
    with LocalTarget(cfg, "run1", log_dir=tmp_path / "logs", say=str) as target:
        target.start_infra()
        target.start_services(timeout_s=20)
        assert target.supervisor is not None and len(target.supervisor.healthy_endpoints("web")) == 2
        for r in target.supervisor.replicas("web"):  # ${port} in env is the replica's port too
            environ = Path(f"/proc/{r.pid}/environ").read_bytes().split(b"\0")
            assert f"LISTEN=127.0.0.1:{r.port}".encode() in environ and f"PORT={r.port}".encode() in environ
        with urllib.request.urlopen(f"{target.host}/gate.yaml", timeout=5) as resp:  # served from the
            assert b"gate: {name: web}" in resp.read()  # config file's folder, the services' cwd
