"""The network gate end to end: the good build passes a short network gate (in `make test`); the full
network gate and the network-only seeded bugs run behind the ``network`` marker; Ctrl-C reverts the
proxies' faults and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from resgate.contract.layout import file_of_run, table_glob
from tests.e2e.conftest import SHORT_CONFIG, processes_with_marker, run_gate

ROOT = Path(__file__).resolve().parents[2]
SHORT_NETWORK = Path(__file__).with_name("gate_network_short.yaml")
NETWORK = ROOT / "resgate" / "configs" / "network.yaml"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
# The long runs (minutes each) stay out of `make test`: RESGATE_NETWORK=1 pytest -m network tests/e2e
network = pytest.mark.skipif(
    os.environ.get("RESGATE_NETWORK") != "1", reason="the full network gate: set RESGATE_NETWORK=1"
)

# network-only bug -> the check that must fail on the network gate (both pass the default gate); the
# default gate's matrix of the other bugs is tests/e2e/test_local_gate.py's DETECTION_MATRIX
NETWORK_DETECTION = {
    "no_db_deadline": "recovery",
    "no_connect_timeout": "recovery",
}
RTO_S = 30  # every partition (3, 10, 30 s) is healthy again within this long of its heal


@pytest.mark.network
@network
def test_the_good_build_passes_a_short_network_gate(tmp_path: Path) -> None:
    r = run_gate(SHORT_NETWORK, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    run = next((tmp_path / "ev").glob("gate=*/dt=*/run_id=*"))
    events = [json.loads(line) for line in file_of_run(run, "faults.jsonl").read_text().splitlines()]
    for kind in ("network_partition", "network_latency", "rate_limit_spike"):
        assert {e["event"] for e in events if e["kind"] == kind} >= {"injected", "ended"}, kind
    rows = {f["fault_id"]: f for f in r.checks["recovery"]["details"]["faults"]}
    assert rows["partition-db-3s"]["time_to_healthy_s"] <= 30, rows
    assert not processes_with_marker(r.marker)


@pytest.mark.network
@network
def test_the_good_build_passes_the_network_gate(tmp_path: Path) -> None:
    r = run_gate(NETWORK, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    recovery = r.checks["recovery"]
    assert recovery["details"]["rto_s"] == RTO_S
    rows = {f["fault_id"]: f for f in recovery["details"]["faults"]}
    for name in ("partition-db-3s", "partition-db-10s", "partition-db-30s"):
        row = rows[name]
        assert row["recovered_ts"] is not None, row
        assert row["time_to_detect_s"] is not None and row["time_to_detect_s"] <= RTO_S, row
        assert row["time_to_healthy_s"] <= RTO_S, row  # timed from the heal (lifted_ts)
        assert row["lifted_ts"] == pytest.approx(row["injected_ts"] + float(name.split("-")[-1][:-1]), abs=1)


@pytest.mark.network
@network
@pytest.mark.parametrize("bug", sorted(NETWORK_DETECTION))
def test_each_network_bug_fails_the_network_gate_on_the_check_that_names_it(bug: str, tmp_path: Path) -> None:
    r = run_gate(NETWORK, tmp_path / "ev", env={"PAPERBROKER_BUGS": bug})
    assert r.exit_code == 1, r.output[-4000:]
    assert NETWORK_DETECTION[bug] in r.verdict["failed_checks"], (r.verdict, r.checks)  # type: ignore[index]


@pytest.mark.network
@network
@pytest.mark.parametrize("bug", sorted(NETWORK_DETECTION))
def test_each_network_bug_passes_the_default_gate(bug: str, tmp_path: Path) -> None:
    r = run_gate(SHORT_CONFIG, tmp_path / "ev", env={"PAPERBROKER_BUGS": bug})
    assert r.exit_code == 0, (r.verdict, r.output[-4000:])


@pytest.mark.network
@network
def test_ctrl_c_during_a_partition_reverts_it_and_leaves_nothing_behind(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    env = {**os.environ, "RESGATE_TEST_MARKER": marker}
    cmd = [sys.executable, "-m", "resgate.cli", "run", str(SHORT_NETWORK), "--evidence-root", str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    out = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        out += line
        if "partition-db-3s (network_partition) injected" in line or not line:
            break
    proc.send_signal(signal.SIGINT)
    out += proc.communicate(timeout=120)[0]
    assert "injected" in out, out[-3000:]
    faults = next(tmp_path.glob(table_glob("faults")))
    events = [json.loads(line) for line in faults.read_text().splitlines()]
    assert any(e["fault_id"] == "partition-db-3s" and e["event"] in ("aborted", "ended") for e in events)
    assert not processes_with_marker(f"RESGATE_TEST_MARKER={marker}")
