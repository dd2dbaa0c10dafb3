"""Locust distributed on this machine (``run_locust(workers=N)``): one master and N worker processes
over ZeroMQ on 127.0.0.1, against a fake order gateway; each worker writes its own ledger part, the
master's stats count every request of the merged ledger, and an early stop ends every process. (A worker
killed mid-run is proven end to end in ``tests/e2e/test_distributed_load.py``.) Every wait is bounded."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loadgen.ledger import count_records, iter_records, part_files
from loadgen.run import LocustResult, run_locust
from loadgen.stats import read_live
from resgate.contract.errors import ConfigError
from tests.integration._fake_broker_api import FakeBrokerAPI

pytestmark = pytest.mark.integration

LOAD_ENV = {"RESGATE_WAIT_MIN_S": "0", "RESGATE_WAIT_MAX_S": "0.05", "RESGATE_NETWORK_TIMEOUT_S": "2"}


def alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def two_worker_run(ledger_dir: Path) -> LocustResult:
    # every 5th order answered after 0.8 s: requests are still in flight when the run ends
    with FakeBrokerAPI(stall_every=5, stall_s=0.8) as api:
        run = run_locust(
            api.url,
            users=10,
            spawn_rate=10,
            duration_s=3,
            ledger_dir=ledger_dir,
            # no think time: a master that quits without its workers' final reports (Locust's headless
            # master exits half a second after its quit message) prints fewer requests than the ledger holds
            env={**LOAD_ENV, "RESGATE_WAIT_MAX_S": "0"},
            workers=2,
            stop_timeout_s=1,
        )
        try:
            result = run.wait(timeout=90)
        finally:
            result = run.stop()
    assert not alive(run.pgid) and not any(alive(w.pid) for w in run.workers)
    return result


def test_two_workers_write_one_complete_ledger_part_each_and_the_merge_holds_every_record(
    tmp_path: Path,
) -> None:
    result = two_worker_run(tmp_path)
    assert result.exit_code == 0, result.log_path.read_text()[-2000:]
    assert [n["node"] for n in result.nodes] == ["w1", "w2"]
    assert all(n["complete"] for n in result.nodes), result.nodes
    parts = part_files(tmp_path)
    assert len(parts) == 2 and all(n["records"] > 0 for n in result.nodes)
    assert (
        result.ledger_records
        == sum(count_records(p) for p in parts)
        == sum(n["records"] for n in result.nodes)
    )
    # the master's --json is Locust's bucket-by-bucket merge of the workers' histograms: same requests
    assert result.total_requests == result.ledger_records
    nodes = {r["client_id"].split("-")[0] for r in iter_records(result.ledger_path)}
    assert nodes == {"cw1", "cw2"}


@pytest.mark.parametrize(("workers", "where"), [(5, "load.workers"), (-1, "load.workers")])
def test_more_workers_than_users_or_a_negative_count_is_refused_before_anything_starts(
    tmp_path: Path, workers: int, where: str
) -> None:
    with pytest.raises(ConfigError) as e:
        run_locust(
            "http://127.0.0.1:9", users=4, spawn_rate=1, duration_s=1, ledger_dir=tmp_path, workers=workers
        )
    assert e.value.where == where
    assert not list(tmp_path.iterdir())


def test_stopping_a_distributed_load_early_ends_every_process_and_keeps_every_part_whole(
    tmp_path: Path,
) -> None:
    with FakeBrokerAPI() as api:
        run = run_locust(
            api.url, users=4, spawn_rate=4, duration_s=60, ledger_dir=tmp_path, env=LOAD_ENV, workers=2
        )
        try:
            deadline = time.monotonic() + 60
            while sum(p["requests"] for p in read_live(tmp_path)) < 20:
                assert run.running and time.monotonic() < deadline, run.log_path.read_text()[-2000:]
                time.sleep(0.1)
        finally:
            result = run.stop()  # the gate's cleanup path: guardrail abort, Ctrl-C, an error
    assert result.stopped and not alive(run.pgid) and not any(alive(w.pid) for w in run.workers)
    assert all(n["complete"] for n in result.nodes), result.nodes
    assert result.ledger_records == sum(n["records"] for n in result.nodes) > 0
