"""The real locustfile in the open model (``RESGATE_ARRIVAL_RATE``): paced traders against a fake order
gateway on 127.0.0.1, every ledger record timed from its send and from its intended start."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadgen.ledger import iter_records
from loadgen.run import run_locust
from tests.integration._fake_broker_api import FakeBrokerAPI

pytestmark = pytest.mark.integration


def test_a_paced_load_records_the_intended_start_of_every_request(tmp_path: Path) -> None:
    env = {"RESGATE_ARRIVAL_RATE": "40", "RESGATE_USERS": "2", "RESGATE_NETWORK_TIMEOUT_S": "2"}
    with FakeBrokerAPI(stall_every=8, stall_s=0.5) as api:
        run = run_locust(api.url, users=2, spawn_rate=2, duration_s=3, ledger_dir=tmp_path, env=env)
        try:
            result = run.wait(timeout=60)
        finally:
            result = run.stop()
    records = list(iter_records(result.ledger_path))
    assert len(records) > 20, result.log_path.read_text()[-2000:]
    for r in records:
        assert r["intended_ts"] <= r["ts"] + 1e-6
        assert r["intended_latency_ms"] >= r["latency_ms"] - 1e-3
    # a request held up by a 0.5 s stall delays its user's next intended starts: some are sent late
    assert any(r["intended_latency_ms"] - r["latency_ms"] > 100 for r in records)
