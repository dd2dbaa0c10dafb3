"""The local gate with a distributed load (``load.workers: 2``: one Locust master, two worker processes):
the verdict judges the merged ledger of both parts, and a worker killed mid-run makes the run unknown
(never a pass on partial data), with the worker named in the evidence and no process left behind.

The two runs of ``make test`` are short and target a tiny in-memory order API (``workers/app.py``): no
database, no Kafka. The paperbroker runs (good build and ``no_idempotency`` under a two-worker load) are
part of ``make matrix`` (``RESGATE_MATRIX=1``): a full gate each."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from resgate.contract.layout import table_glob
from tests.e2e.conftest import SHORT_CONFIG, processes_with_marker, run_gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HERE = Path(__file__).with_name("workers")


def workers_config(tmp_path: Path, *, kill_node: str | None = None) -> Path:
    env = {"RESGATE_WAIT_MIN_S": "0.05", "RESGATE_WAIT_MAX_S": "0.1"}
    if kill_node:
        env |= {"RESGATE_TEST_KILL_NODE": kill_node, "RESGATE_TEST_KILL_AFTER_S": "1"}
    doc = {
        "gate": {"name": "distributed-load", "unknown_is_failure": True},
        "target": {
            "environment": "local",
            "local": {
                "services": [
                    {
                        "name": "api",
                        "command": [sys.executable, str(HERE / "app.py")],
                        "health_path": "/ready",
                        "expose": True,
                    }
                ]
            },
        },
        "load": {
            "users": 4,
            "spawn_rate": 4,
            "duration_s": 3,
            "baseline_s": 1,
            "workers": 2,
            "locustfile": str(HERE / "locustfile.py"),
            "env": env,
        },
        "quiesce": {"timeout_s": 10},
        "checks": {
            "slo": {"max_error_ratio": 0.01},
            "recovery": False,
            "retryable": {},
            "integrity": False,
            "replay": False,
        },
    }
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def load_nodes(evidence: Path) -> list[dict]:
    (path,) = evidence.glob("gate=*/dt=*/run_id=*/load_nodes.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_two_worker_load_passes_on_the_merged_ledger_of_both_parts(tmp_path: Path) -> None:
    r = run_gate(workers_config(tmp_path), tmp_path / "ev", timeout=240)
    assert r.exit_code == 0, r.output[-4000:]
    assert r.verdict is not None and r.verdict["result"] == "PASS"
    nodes = load_nodes(tmp_path / "ev")
    assert [n["node"] for n in nodes] == ["w1", "w2"] and all(n["complete"] for n in nodes), nodes
    ledger = next((tmp_path / "ev").glob(table_glob("ledger"))).read_text().splitlines()
    assert len(ledger) == sum(n["records"] for n in nodes) > 0
    assert {json.loads(x)["client_id"].split("-")[0] for x in ledger} == {"cw1", "cw2"}
    # the master's stats (Locust's merge of the workers' histograms) count what the ledger holds
    assert r.checks["slo"]["counts"]["requests"] == len(ledger)
    assert not processes_with_marker(r.marker)


def test_a_worker_killed_mid_run_makes_the_run_unknown_and_is_named(tmp_path: Path) -> None:
    r = run_gate(workers_config(tmp_path, kill_node="w2"), tmp_path / "ev", timeout=240)
    assert r.exit_code == 1, r.output[-4000:]
    assert r.verdict is not None and r.verdict["result"] != "PASS"
    assert set(r.verdict["unknown_checks"]) == {"slo", "retryable"}, r.verdict
    assert "load worker w2" in r.checks["retryable"]["error"]
    by_node = {n["node"]: n for n in load_nodes(tmp_path / "ev")}
    assert by_node["w1"]["complete"] and not by_node["w2"]["complete"]
    assert by_node["w2"]["reason"] == "killed by signal 9"
    assert not processes_with_marker(r.marker)


@pytest.mark.skipif(
    os.environ.get("RESGATE_MATRIX") != "1", reason="full gate runs: RESGATE_MATRIX=1 (make matrix)"
)
@pytest.mark.slow
@pytest.mark.parametrize("bug", ["none", "no_idempotency"])
def test_paperbroker_under_two_workers_passes_the_good_build_and_fails_no_idempotency_on_integrity(
    bug: str, tmp_path: Path
) -> None:
    doc = yaml.safe_load(SHORT_CONFIG.read_text())
    doc["load"]["workers"] = 2
    config = tmp_path / "gate_workers.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {"PAPERBROKER_BUGS": bug} if bug != "none" else {}
    r = run_gate(config, tmp_path / "ev", env=env)
    nodes = load_nodes(tmp_path / "ev")
    assert [n["node"] for n in nodes] == ["w1", "w2"] and all(n["complete"] for n in nodes), nodes
    ledger = next((tmp_path / "ev").glob(table_glob("ledger"))).read_text().splitlines()
    assert len(ledger) == sum(n["records"] for n in nodes) == r.checks["slo"]["counts"]["requests"]
    if bug == "none":
        assert r.exit_code == 0 and r.verdict is not None and r.verdict["result"] == "PASS", r.output[-4000:]
    else:
        assert r.exit_code == 1, r.output[-4000:]
        assert r.checks["integrity"]["valid"] is False and r.checks["integrity"]["counts"]["duplicated"] > 0
    assert not processes_with_marker(r.marker)
