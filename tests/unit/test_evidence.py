"""Evidence layout, JUnit output and DuckDB queries over the same table names as Athena."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from resgate.checks.result import UNKNOWN, CheckResult
from resgate.contract.errors import ConfigError
from resgate.contract.layout import RunKey, find_run, list_runs, stamp_line
from resgate.evidence.junit import junit_xml
from resgate.evidence.query import run_query
from resgate.evidence.store import FolderStore, write_jsonl


def _write_run(root: Path, gate: str, passed: bool) -> RunKey:
    key = RunKey.new(gate)
    w = FolderStore(root, key)
    write_jsonl(
        w,
        "checks",
        [
            CheckResult("integrity", passed, {"lost": 0 if passed else 2}).to_dict(),
            CheckResult("slo", True, {"p95_ms": 12.0}).to_dict(),
        ],
    )
    write_jsonl(
        w, "ledger", [{"ts": 1.0, "op": "submit_order", "outcome": "ok", "latency_ms": 3.0}], stamp=False
    )
    w.write_text(
        "verdicts",
        json.dumps({"gate": gate, "run_id": key.run_id, "result": "PASS" if passed else "FAIL"}) + "\n",
    )
    return key


def test_each_table_has_its_own_folder_and_the_run_folder_holds_the_other_files(tmp_path: Path) -> None:
    key = _write_run(tmp_path, "pb", True)
    FolderStore(tmp_path, key).write_text("report", "# report\n")
    run_dir = tmp_path / f"gate=pb/dt={key.date}/run_id={key.run_id}"
    assert (tmp_path / f"gate=pb/checks/dt={key.date}/run_id={key.run_id}/checks.jsonl").exists()
    assert (tmp_path / f"gate=pb/verdicts/dt={key.date}/run_id={key.run_id}/verdict.json").exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.md"]
    assert find_run(tmp_path, key.run_id) == run_dir
    assert list_runs(tmp_path) == [run_dir]
    assert RunKey.parse(run_dir) == (str(tmp_path), key)


def test_a_run_folder_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="expected dt="):
        RunKey.parse("evidence/gate=pb/ledger/run_id=x")


def test_stamping_a_copied_line_puts_run_id_and_gate_first_once() -> None:
    key = RunKey(gate="pb", date="2025-01-02", run_id="r1")
    stamped = stamp_line(b'{"ts": 1.0, "op": "x"}\n', key)
    assert json.loads(stamped) == {"run_id": "r1", "gate": "pb", "ts": 1.0, "op": "x"}
    assert stamped.endswith(b"\n")
    assert stamp_line(stamped, key) == stamped
    assert json.loads(stamp_line(b"{}\n", key)) == {"run_id": "r1", "gate": "pb"}
    assert stamp_line(b"\n", key) == b"\n"


def test_query_joins_checks_and_verdicts_with_partition_columns(tmp_path: Path) -> None:
    good = _write_run(tmp_path, "pb", True)
    bad = _write_run(tmp_path, "pb", False)
    cols, rows = run_query(
        tmp_path,
        "select v.run_id, v.result, c.counts.lost as lost from verdicts v join checks c using (run_id) "
        "where c.name = 'integrity' order by lost",
    )
    assert cols == ["run_id", "result", "lost"]
    assert rows == [(good.run_id, "PASS", 0), (bad.run_id, "FAIL", 2)]
    _, gates = run_query(tmp_path, "select distinct gate, dt from checks")
    assert gates == [("pb", good.date)]


def test_a_bad_query_is_a_clear_error(tmp_path: Path) -> None:
    _write_run(tmp_path, "pb", True)
    with pytest.raises(ConfigError, match="query failed"):
        run_query(tmp_path, "select nope from checks")


def test_junit_has_one_case_per_check_and_unknown_fails_closed() -> None:
    results = [
        CheckResult("slo", True),
        CheckResult("integrity", False, {"lost": 1}, [{"order_id": "o1"}]),
        CheckResult("replay", UNKNOWN, error="topic truncated"),
    ]
    suite = ET.fromstring(junit_xml("pb", "r1", results).split("\n", 1)[1])
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "2"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["slo"].find("failure") is None
    assert cases["integrity"].find("failure") is not None
    assert "topic truncated" in cases["replay"].find("failure").get("message")
    lenient = ET.fromstring(junit_xml("pb", "r1", results, unknown_is_failure=False).split("\n", 1)[1])
    assert lenient.get("failures") == "1"
    assert lenient.get("skipped") == "1"
