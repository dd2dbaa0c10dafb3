"""The Athena tables' named queries run unchanged in DuckDB over a local evidence root (the same layout and
table names), and sort by time, not by run id.

Two runs on different days are written the way both conductors write them (``write_jsonl`` for the
timelines and the ledger, ``write_run_files`` for checks and verdict); the later run has the *smaller* run
id, so an order by run id would be wrong.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from infra.evidence_bucket import NAMED_QUERIES
from resgate.checks.compose import verdict
from resgate.checks.result import CheckResult
from resgate.contract.layout import TABLES, RunKey, table_glob
from resgate.evidence.query import run_query
from resgate.evidence.run_files import write_run_files
from resgate.evidence.store import FolderStore, write_jsonl
from resgate.evidence.verdict import verdict_record

pytestmark = pytest.mark.infra

DAY1 = dt.datetime(2025, 3, 1, 10, 0)  # UTC
DAY2 = dt.datetime(2025, 3, 2, 9, 0)  # UTC


def _run(root: Path, run_id: str, start: dt.datetime, *, passed: bool) -> RunKey:
    key = RunKey(gate="paperbroker", date=start.strftime("%Y-%m-%d"), run_id=run_id)
    store = FolderStore(root, key)
    t0 = start.replace(tzinfo=dt.UTC).timestamp()
    write_jsonl(
        store,
        "faults",
        [
            {"ts": t0 + 20, "fault_id": "kill-m", "kind": "kill", "target": "matcher", "event": "injected"},
            {"ts": t0 + 31, "fault_id": "kill-m", "kind": "kill", "target": "matcher", "event": "recovered"},
        ],
    )
    write_jsonl(store, "health", [{"ts": t0 + 21, "service": "matcher", "replica": "0", "event": "down"}])
    write_jsonl(
        store, "stream", [{"ts": t0 + 2, "client_id": "s1", "event": "trade", "symbol": "AAPL", "seq": 1}]
    )
    write_jsonl(
        store,
        "ledger",
        [
            {"ts": t0 + 1, "op": "submit_order", "status": "201", "outcome": "ok", "latency_ms": 3.0},
            {"ts": t0 + 2, "op": "submit_order", "status": "201", "outcome": "ok", "latency_ms": 4.0},
            {"ts": t0 + 3, "op": "submit_order", "status": "503", "outcome": "fail", "latency_ms": 1.0},
        ],
    )
    write_jsonl(store, "load_stats", [{"name": "/orders", "method": "POST", "num_requests": 3}])
    results = [CheckResult("integrity", passed, {"lost": 0 if passed else 2}), CheckResult("slo", True)]
    record = verdict_record(
        key, verdict(results), error=None, started_at=t0, ended_at=t0 + 60, guardrail_tripped=None
    )
    write_run_files(store, results=results, record=record)
    return key


@pytest.fixture
def evidence(tmp_path: Path) -> tuple[Path, RunKey, RunKey]:
    older = _run(tmp_path, "run-b", DAY1, passed=True)
    newer = _run(tmp_path, "run-a", DAY2, passed=False)  # sorts first by id, yet is the latest
    return tmp_path, older, newer


def _query(root: Path, name: str, run_id: str = "") -> tuple[list[str], list[tuple]]:
    return run_query(root, NAMED_QUERIES[name][1].replace("RUN_ID", run_id))


def test_every_table_of_a_run_is_in_its_own_folder_partitioned_by_gate_and_day(evidence):
    root, older, newer = evidence
    for table, file_name in TABLES.items():
        files = sorted(p.relative_to(root).as_posix() for p in root.glob(table_glob(table)))
        assert files == [
            f"gate=paperbroker/{table}/dt={k.date}/run_id={k.run_id}/{file_name}" for k in (older, newer)
        ]


def test_latest_verdicts_come_newest_first_by_start_time(evidence):
    root, older, newer = evidence
    cols, rows = _query(root, "latest-verdicts")
    assert cols == ["started", "run_id", "result", "reason", "failed_checks", "unknown_checks"]
    assert [(r[1], r[2]) for r in rows] == [(newer.run_id, "FAIL"), (older.run_id, "PASS")]
    assert rows[0][0] == DAY2 and rows[1][0] == DAY1
    assert rows[0][4] == ["integrity"]


def test_latest_check_results_group_checks_under_the_newest_run_first(evidence):
    root, older, newer = evidence
    _, rows = _query(root, "latest-check-results")
    assert [(r[1], r[2]) for r in rows] == [
        (newer.run_id, "integrity"),
        (newer.run_id, "slo"),
        (older.run_id, "integrity"),
        (older.run_id, "slo"),
    ]


def test_per_run_queries_see_only_that_run(evidence):
    root, older, newer = evidence
    _, checks = _query(root, "check-results", newer.run_id)
    assert [(r[0], r[1]) for r in checks] == [(newer.run_id, "integrity"), (newer.run_id, "slo")]
    _, outcomes = _query(root, "ledger-outcomes", older.run_id)
    assert outcomes == [("201", "ok", 2), ("503", "fail", 1)]
    _, timeline = _query(root, "fault-timeline", older.run_id)
    assert [r[4] for r in timeline] == ["injected", "recovered"]
    assert timeline[0][0] == DAY1 + dt.timedelta(seconds=20)


def test_recent_faults_span_runs_newest_first(evidence):
    root, older, newer = evidence
    _, rows = _query(root, "recent-faults")
    assert [(r[1], r[5]) for r in rows] == [
        (newer.run_id, "recovered"),
        (newer.run_id, "injected"),
        (older.run_id, "recovered"),
        (older.run_id, "injected"),
    ]


def test_a_new_run_is_queryable_as_soon_as_its_files_are_written(evidence):
    root, _, _ = evidence
    third = _run(root, "run-0", DAY2 + dt.timedelta(hours=1), passed=True)
    _, rows = _query(root, "latest-verdicts")
    assert rows[0][1] == third.run_id
