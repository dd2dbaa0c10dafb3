"""The phases table and the golden profile through the run store, as both conductors write and read them:
``write_run_files`` writes ``phases.jsonl`` and the per-phase table in report.md; ``resgate baseline set``
records a passing run as the gate's golden profile; the SLO check of a later run (``run_check``, the
function the local runner and the SLO Lambda call) compares its phases with it.

The acceptance case: with a golden profile set, a build that adds 50 ms to every order fails the
regression check naming the phase and the figure, while its absolute thresholds pass; without a golden
profile the check says "no baseline" and is not failed by it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest

from resgate import cli
from resgate.checks.compose import verdict
from resgate.checks.registry import parse_thresholds
from resgate.checks.result import CheckResult
from resgate.contract.layout import RunKey, golden_key
from resgate.evidence.golden import profile_of_run, read_golden
from resgate.evidence.query import run_query
from resgate.evidence.run_files import write_run_files
from resgate.evidence.sources import Sources, run_check
from resgate.evidence.store import FolderStore, write_jsonl
from resgate.evidence.verdict import verdict_record

GATE = "paperbroker"
SLO = {"p95_ms": 500, "p99_ms": 1000, "phases": {"steady": {"max_error_ratio": 0.05}}}


def _write_run(root: Path, run_id: str, day: int, *, extra_ms: float = 0.0, seed: int = 1) -> FolderStore:
    """A 60 s run at 20 requests/s with a gateway kill at 20 s (every request fails until 23 s)."""
    key = RunKey(gate=GATE, date=f"2026-12-{day:02d}", run_id=run_id)
    store = FolderStore(root, key)
    t0 = dt.datetime(2026, 12, day, 10, tzinfo=dt.UTC).timestamp()
    rnd = random.Random(seed)
    ledger = []
    for i in range(1200):
        ts = t0 + i * 0.05
        failed = t0 + 20 <= ts < t0 + 23
        ms = rnd.uniform(5.0, 30.0) + extra_ms
        ledger.append(
            {
                "ts": ts,
                "op": "submit_order",
                "client_id": "c1",
                "idempotency_key": f"k{i}",
                "status": "503" if failed else "201",
                "outcome": "fail" if failed else "ok",
                "latency_ms": ms,
            }
        )
    write_jsonl(store, "ledger", ledger)
    write_jsonl(
        store,
        "faults",
        [
            {
                "ts": t0 + 20,
                "fault_id": "kill-gateway",
                "kind": "stop_task",
                "target": "gateway",
                "event": "injected",
            }
        ],
    )
    write_jsonl(
        store,
        "health",
        [
            {"ts": t0, "service": "gateway", "replica": "0", "event": "healthy"},
            {"ts": t0 + 20.01, "service": "gateway", "replica": "0", "event": "killed"},
            {"ts": t0 + 23, "service": "gateway", "replica": "0", "event": "healthy"},
        ],
    )
    hist: dict[str, int] = {}
    for r in ledger:
        b = str(round(r["latency_ms"]))
        hist[b] = hist.get(b, 0) + 1
    write_jsonl(
        store,
        "load_stats",
        [
            {
                "name": "/orders",
                "method": "POST",
                "num_requests": len(ledger),
                "num_failures": sum(r["outcome"] != "ok" for r in ledger),
                "response_times": hist,
            }
        ],
    )
    return store


def _judge_and_close(store: FolderStore) -> CheckResult:
    result = run_check(
        "slo",
        store,
        parse_thresholds("slo", SLO, "checks.slo"),
        Sources(run_id=store.key.run_id, duration_s=60.0),
    )
    record = verdict_record(
        store.key, verdict([result]), error=None, started_at=0.0, ended_at=60.0, guardrail_tripped=None
    )
    write_run_files(store, results=[result], record=record)
    return result


def test_a_run_writes_its_phases_table_and_the_report_shows_the_error_ratio_rise_and_return(tmp_path):
    store = _write_run(tmp_path, "run-1", 1)
    result = _judge_and_close(store)
    assert result.valid is True
    assert result.counts["golden"] == "no baseline"  # reported, not judged, not a failure
    _cols, rows = run_query(
        tmp_path, "SELECT key, error_ratio FROM phases WHERE run_id = 'run-1' ORDER BY start_ts, key"
    )
    ratios = dict(rows)
    assert ratios["baseline"] == 0.0 and ratios["recovery:kill-gateway"] == 0.0
    assert ratios["during:kill-gateway"] == 1.0
    report = store.read_text("report")
    assert "## Phases" in report
    assert "| during:kill-gateway | stop_task | 3 | 60 | 1 |" in report
    assert "no baseline, not judged" in report


def test_a_golden_profile_can_only_be_taken_from_a_passing_run(tmp_path):
    store = _write_run(tmp_path, "run-1", 1)
    write_run_files(
        store,
        results=[CheckResult("slo", False)],
        record=verdict_record(
            store.key,
            verdict([CheckResult("slo", False)]),
            error=None,
            started_at=0.0,
            ended_at=1.0,
            guardrail_tripped=None,
        ),
    )
    with pytest.raises(Exception, match="only a passing run"):
        profile_of_run(store)
    assert cli.main(["baseline", "set", "run-1", "--root", str(tmp_path)]) == 2
    assert read_golden(store) is None


def test_a_50_ms_slower_build_fails_the_regression_naming_the_phase_while_absolute_limits_pass(
    tmp_path, capsys
):
    _judge_and_close(_write_run(tmp_path, "run-1", 1))
    assert cli.main(["baseline", "set", "latest", "--root", str(tmp_path)]) == 0
    assert (tmp_path / golden_key(GATE)).is_file()
    assert cli.main(["baseline", "show", "--root", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "golden profile of gate paperbroker: run run-1" in shown and "| steady |" in shown

    same = _judge_and_close(_write_run(tmp_path, "run-2", 2, seed=2))
    assert same.valid is True, same.examples
    assert same.counts["golden"] == "run-1" and same.counts["phases_regressed"] == 0

    slow = _judge_and_close(_write_run(tmp_path, "run-3", 3, extra_ms=50.0, seed=3))
    assert slow.valid is False
    assert not [e for e in slow.examples if e["kind"] != "regression"]  # the absolute limits pass
    regressed = {e["phase"]: e for e in slow.examples}
    assert set(regressed) >= {"baseline", "steady"}
    assert "p95_ms" in regressed["steady"]["metrics"]
    assert regressed["steady"]["baseline_run_id"] == "run-1"
    assert regressed["steady"]["p95_ms_delta"] > 40
    assert slow.details["golden"]["baseline_run_id"] == "run-1"
    report = FolderStore(tmp_path, RunKey(GATE, "2026-12-03", "run-3"), create=False).read_text("report")
    assert "- steady: p95" in report and "REGRESSED" in report


def test_a_malformed_golden_profile_fails_closed_with_the_file_named(tmp_path):
    store = _write_run(tmp_path, "run-1", 1)
    path = tmp_path / golden_key(GATE)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"gate": GATE, "run_id": "x", "recorded_at": 1.0, "phases": [{"key": 1}]}))
    with pytest.raises(Exception) as e:
        read_golden(store)
    assert str(path) in str(e.value)
