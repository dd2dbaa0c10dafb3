"""A ``leader_loss`` with ``mode: partition`` through the gate's own path: each replica of its target gets a
fault proxy of its own in front of Postgres (its ``${pg.dsn}``), and the fault holds only the leader's.

A real :class:`~resgate.runner.local_target.LocalTarget` (two echo replicas under the supervisor, the
session's Postgres) and the :class:`~resgate.runner.faults.FaultRunner`; the echo service shows no leader
figure, so the leader is named for the runner here (finding it from /health is tested in
tests/unit/test_leader_loss_fault.py, the whole handover in tests/integration/test_matcher_lease.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from resgate.config.schema import GateConfig, load_config_text
from resgate.contract.env import ENV_PG_DSN
from resgate.runner import faults as faults_module
from resgate.runner.faults import FaultRunner
from resgate.runner.local_target import LocalTarget

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CONFIG = """
gate: {name: leader-partition-wiring}
target:
  local:
    services:
      - name: web
        command: ["${python}", -m, resgate.testing.echo_service]
        replicas: 2
        env: {APP_DSN: "${pg.dsn}"}
        health_path: /ready
load: {duration_s: 60, baseline_s: 0}
faults:
  - {name: cut-leader, kind: leader_loss, mode: partition, target: web, duration_s: 1.5, observe_s: 1,
     at_s: 0}
"""


@pytest.fixture
def target(pg_server: Any, tmp_path: Path) -> Iterator[tuple[GateConfig, LocalTarget]]:
    cfg = load_config_text(CONFIG, "wiring.yaml")
    with (
        pytest.MonkeyPatch.context() as mp,
        LocalTarget(cfg, "wiring", log_dir=tmp_path / "logs", say=lambda _: None) as t,
    ):
        mp.setenv(ENV_PG_DSN, pg_server.dsn)
        t.start_infra()
        t.start_services(timeout_s=20)
        yield cfg, t


def _app_dsn(target: LocalTarget, replica: int) -> str:
    assert target.supervisor is not None
    pid = target.supervisor.replicas("web")[replica].pid
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"APP_DSN="))


def test_each_replica_reaches_postgres_through_its_own_proxy_and_the_partition_holds_only_the_leaders(
    target: tuple[GateConfig, LocalTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, t = target
    dsns = [_app_dsn(t, 0), _app_dsn(t, 1)]
    proxies = [t.replica_path("web-0", "postgres"), t.replica_path("web-1", "postgres")]
    assert all(p is not None for p in proxies) and len(set(dsns)) == 2 and t.dsn not in dsns
    assert [f"port={p.address[1]}" in d for p, d in zip(proxies, dsns, strict=True)] == [True, True]  # type: ignore[union-attr]
    monkeypatch.setattr(faults_module, "find_leader", lambda sup, service: ("web-0", 7))
    leader, standby = (psycopg.connect(d, connect_timeout=3, autocommit=True) for d in dsns)
    with leader, standby:
        runner = FaultRunner(t, cfg.faults)
        runner.start(time.time())
        deadline = time.monotonic() + 5
        while not any(e["event"] == "injected" for e in runner.timeline()) and time.monotonic() < deadline:
            time.sleep(0.02)
        answered: list[float] = []
        query = threading.Thread(target=lambda: (leader.execute("select 1"), answered.append(time.time())))
        sent = time.time()
        query.start()
        assert standby.execute("select 1").fetchone() == (1,)  # the standby's path is untouched
        query.join(timeout=10)
        runner.join(timeout=10)
        runner.revert_all()
    events = {e["event"]: e for e in runner.timeline()}
    injected, ended = events["injected"], events["ended"]
    assert injected["detail"]["leader"] == "web-0" and injected["detail"]["between"] == ["web-0", "postgres"]
    # the leader's query was held until the lift, then answered (nothing was lost: TCP across a heal)
    assert answered and answered[0] >= ended["ts"] - 0.1 and answered[0] - sent >= 1.0, (sent, answered)
    effect = events["effect"]["detail"]
    assert effect["observed"] is True and "held while partitioned" in effect["evidence"], effect
    assert proxies[0].toxics.active() == [] and proxies[1].toxics.affected_bytes == 0  # type: ignore[union-attr]
