"""A distributed load's ledger parts: each worker's part is whole only when its completion marker counts
exactly the lines it holds and no signal ended it (``loadgen.run.node_rows``), and a run with a part that
is not whole has no ledger a check may judge (``resgate.evidence.store.ledger``: unknown, never a pass)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.run import node_rows
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import EvidenceMissing
from resgate.contract.layout import RunKey
from resgate.evidence.sources import Sources, run_check
from resgate.evidence.store import FolderStore, incomplete_load_parts, ledger, write_jsonl

RECORD = {"ts": 1.0, "op": "get_order", "client_id": "c", "idempotency_key": None, "status": 200}


def write_part(directory: Path, pid: int, lines: int, marker: int | None) -> None:
    rows = [{**RECORD, "outcome": "ok", "latency_ms": 1.0} for _ in range(lines)]
    (directory / f"ledger-{pid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if marker is not None:
        (directory / f"done-{pid}.json").write_text(json.dumps({"pid": pid, "node": "w", "records": marker}))


def test_a_part_whose_marker_counts_its_lines_is_complete(tmp_path: Path) -> None:
    write_part(tmp_path, 11, lines=3, marker=3)
    (row,) = node_rows(tmp_path, [("w1", 11, 0)])
    assert row == {
        "node": "w1",
        "pid": 11,
        "exit_code": 0,
        "records": 3,
        "marker_records": 3,
        "complete": True,
        "reason": None,
    }


@pytest.mark.parametrize(
    ("lines", "marker", "exit_code", "reason"),
    [
        (3, 4, 0, "its part holds 3 records, the process wrote 4"),
        (4, 3, 0, "its part holds 4 records, the process wrote 3"),
        (3, None, 0, "no completion marker: the process did not shut down cleanly"),
        (3, 3, -9, "killed by signal 9"),
        (3, 3, -1, "killed by signal 1"),
        (3, 3, None, "still running when the load was collected"),
    ],
)
def test_a_part_off_its_marker_by_one_or_without_one_or_from_a_killed_worker_is_incomplete(
    tmp_path: Path, lines: int, marker: int | None, exit_code: int | None, reason: str
) -> None:
    write_part(tmp_path, 12, lines=lines, marker=marker)
    (row,) = node_rows(tmp_path, [("w2", 12, exit_code)])
    assert row["complete"] is False and row["reason"] == reason


def test_a_worker_that_never_wrote_a_part_is_incomplete_with_zero_records(tmp_path: Path) -> None:
    (row,) = node_rows(tmp_path, [("w3", 13, -9)])
    assert (row["records"], row["marker_records"], row["complete"]) == (0, None, False)


def test_an_exit_code_above_zero_with_a_whole_part_loses_no_record(tmp_path: Path) -> None:
    write_part(tmp_path, 14, lines=2, marker=2)
    (row,) = node_rows(tmp_path, [("w1", 14, 2)])
    assert row["complete"] is True and row["exit_code"] == 2


def store_with(tmp_path: Path, nodes: list[dict] | None) -> FolderStore:
    store = FolderStore(tmp_path, RunKey("g", "2026-12-07", "r1"))
    write_jsonl(store, "ledger", [{**RECORD, "outcome": "ok", "latency_ms": 1.0}])
    if nodes is not None:
        write_jsonl(store, "load_nodes", nodes)
    return store


def test_a_run_with_an_incomplete_part_has_no_ledger_to_judge_even_where_it_is_optional(
    tmp_path: Path,
) -> None:
    store = store_with(
        tmp_path,
        [{"node": "w1", "complete": True}, {"node": "w2", "complete": False, "reason": "killed by signal 9"}],
    )
    assert [r["node"] for r in incomplete_load_parts(store)] == ["w2"]
    for required in (True, False):
        with pytest.raises(EvidenceMissing, match=r"load worker w2 \(killed by signal 9\)"):
            ledger(store, required=required)
    result = run_check("retryable", store, None, Sources(run_id="r1"))
    assert result.valid == UNKNOWN and "w2" in (result.error or "")


def test_a_run_whose_parts_are_all_complete_or_that_had_no_workers_reads_its_ledger(tmp_path: Path) -> None:
    for nodes in ([{"node": "w1", "complete": True}, {"node": "w2", "complete": True}], None):
        store = store_with(tmp_path / str(bool(nodes)), nodes)
        assert incomplete_load_parts(store) == []
        assert len(list(ledger(store))) == 1


def test_a_run_without_a_ledger_is_missing_evidence_unless_the_ledger_is_optional(tmp_path: Path) -> None:
    store = FolderStore(tmp_path, RunKey("g", "2026-12-07", "r2"))
    with pytest.raises(EvidenceMissing, match="no client ledger was written"):
        ledger(store)
    assert ledger(store, required=False) == []
