"""A distributed load's ledger parts: each worker's part (its client ledger, and its stream ledger when it
ran market-data subscribers) is whole only when its completion marker counts exactly the lines it holds
and no signal ended it (``loadgen.run.node_rows``), and a run with a part that is not whole has no ledger a
check may judge (``resgate.evidence.store.ledger``, and for the stream ledger the streaming check's
evidence: unknown, never a pass). The master's record of its workers' heartbeats keeps a worker it found
missing missing (``loadgen.ledger.seen_state``) and gives each row the time its worker was last seen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.ledger import MISSING, seen_state
from loadgen.run import node_rows
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.contract.layout import RunKey
from resgate.evidence.builders import streaming_evidence
from resgate.evidence.sources import Sources, run_check
from resgate.evidence.store import (
    FolderStore,
    incomplete_parts,
    ledger,
    write_jsonl,
)

RECORD = {"ts": 1.0, "op": "get_order", "client_id": "c", "idempotency_key": None, "status": 200}


STREAM_RECORD = {"ts": 1.0, "client_id": "s1", "event": "heartbeat"}


def write_part(
    directory: Path,
    pid: int,
    lines: int,
    marker: int | None,
    *,
    stream_lines: int | None = None,
    stream_marker: int | None = None,
) -> None:
    """A worker's ledger part of ``lines`` records, its stream part of ``stream_lines`` (None: no file) and
    its marker counting ``marker`` ledger and ``stream_marker`` stream lines (None: no marker / no count)."""
    rows = [{**RECORD, "outcome": "ok", "latency_ms": 1.0} for _ in range(lines)]
    (directory / f"ledger-{pid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if stream_lines is not None:
        (directory / f"stream-{pid}.jsonl").write_text(
            "".join(json.dumps(STREAM_RECORD) + "\n" for _ in range(stream_lines))
        )
    if marker is not None:
        doc = {"pid": pid, "node": "w", "records": marker, "parts": {"ledger": marker}}
        if stream_marker is not None:
            doc["parts"]["stream"] = stream_marker
        (directory / f"done-{pid}.json").write_text(json.dumps(doc))


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
        "stream_records": 0,  # it ran no subscriber: no stream part, and its marker counts none
        "stream_marker_records": 0,
        "stream_complete": True,
        "stream_reason": None,
        "last_seen": None,
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
    assert [r["node"] for r in incomplete_parts(store, "ledger")] == ["w2"]
    for required in (True, False):
        with pytest.raises(EvidenceMissing, match=r"load worker w2 \(killed by signal 9\)"):
            ledger(store, required=required)
    result = run_check("retryable", store, None, Sources(run_id="r1"))
    assert result.valid == UNKNOWN and "w2" in (result.error or "")


def test_a_run_whose_parts_are_all_complete_or_that_had_no_workers_reads_its_ledger(tmp_path: Path) -> None:
    for nodes in ([{"node": "w1", "complete": True}, {"node": "w2", "complete": True}], None):
        store = store_with(tmp_path / str(bool(nodes)), nodes)
        assert incomplete_parts(store, "ledger") == []
        assert len(list(ledger(store))) == 1


def test_a_run_without_a_ledger_is_missing_evidence_unless_the_ledger_is_optional(tmp_path: Path) -> None:
    store = FolderStore(tmp_path, RunKey("g", "2026-12-07", "r2"))
    with pytest.raises(EvidenceMissing, match="no client ledger was written"):
        ledger(store)
    assert ledger(store, required=False) == []


@pytest.mark.parametrize(
    ("stream_lines", "stream_marker", "exit_code", "whole", "reason"),
    [
        (5, 5, 0, True, None),
        (None, 0, 0, True, None),  # the worker ran no subscriber (Locust put them all on the other)
        (4, 5, 0, False, "its stream part holds 4 records, the process wrote 5"),
        (6, 5, 0, False, "its stream part holds 6 records, the process wrote 5"),
        # a stream part its marker does not count
        (5, None, 0, False, "its stream part holds 5 records, the process wrote 0"),
        (5, 5, -9, False, "killed by signal 9"),
    ],
)
def test_a_stream_part_is_whole_only_when_the_marker_counts_its_lines_and_its_ledger_part_is_judged_apart(
    tmp_path: Path,
    stream_lines: int | None,
    stream_marker: int | None,
    exit_code: int,
    whole: bool,
    reason: str | None,
) -> None:
    write_part(tmp_path, 15, lines=2, marker=2, stream_lines=stream_lines, stream_marker=stream_marker)
    (row,) = node_rows(tmp_path, [("w1", 15, exit_code)])
    assert (row["stream_complete"], row["stream_reason"]) == (whole, reason)
    assert row["stream_records"] == (stream_lines or 0)
    assert row["complete"] is (exit_code == 0)  # the ledger part is whole whatever its stream part holds


def test_a_workers_row_carries_the_time_the_master_last_heard_it(tmp_path: Path) -> None:
    write_part(tmp_path, 16, lines=1, marker=1)
    seen = {"w2": {"node": "w2", "last_seen": 1796664611.469, "state": MISSING}}
    w1, w2 = node_rows(tmp_path, [("w1", 16, 0), ("w2", 17, -9)], seen)
    assert (w1["last_seen"], w2["last_seen"]) == (None, 1796664611.469)


@pytest.mark.parametrize(
    ("before", "locust_state", "after"),
    [
        (("ready", None), "running", ("running", None)),
        (("running", None), MISSING, (MISSING, 100.123)),  # first seen missing now (to the millisecond)
        ((MISSING, 90.0), MISSING, (MISSING, 90.0)),  # still missing since then
        ((MISSING, 90.0), "running", ("running", None)),  # it came back (Locust's self-heal)
        ((MISSING, 90.0), None, (MISSING, 90.0)),  # Locust forgot it after a minute: still gone
        (("running", None), None, ("left", None)),  # it quit
    ],
)
def test_the_masters_record_keeps_a_missing_worker_missing_until_it_comes_back(
    before: tuple[str, float | None], locust_state: str | None, after: tuple[str, float | None]
) -> None:
    assert seen_state(*before, locust_state, now=100.1234) == after


def stream_store(tmp_path: Path, nodes: list[dict] | None) -> FolderStore:
    store = store_with(tmp_path, nodes)
    write_jsonl(store, "stream", [STREAM_RECORD])
    return store


def test_a_run_with_a_workers_stream_part_missing_has_no_stream_ledger_to_judge(tmp_path: Path) -> None:
    gone = "the worker missed its heartbeats: last seen at 17:30:11.469Z"
    store = stream_store(
        tmp_path,
        [
            {"node": "w1", "complete": True, "stream_complete": True},
            {"node": "w2", "complete": True, "stream_complete": False, "stream_reason": gone},
            {"node": "w3", "complete": False, "reason": "killed by signal 9"},  # a row of no stream field
        ],
    )
    assert [r["node"] for r in incomplete_parts(store, "stream")] == ["w2", "w3"]
    with pytest.raises(EvidenceMissing, match=r"stream part of load worker w2 \(the worker missed its heart"):
        streaming_evidence(store, None, Sources(run_id="r1"))  # type: ignore[arg-type]
    result = run_check("streaming", store, None, Sources(run_id="r1"))
    assert result.valid == UNKNOWN and "w2" in (result.error or "") and "w3" in (result.error or "")


def test_a_run_whose_stream_parts_are_all_whole_or_that_had_no_workers_goes_on_to_the_topic(
    tmp_path: Path,
) -> None:
    whole = [{"node": "w1", "complete": True, "stream_complete": True}]
    for nodes in (whole, None):
        store = stream_store(tmp_path / str(bool(nodes)), nodes)
        assert incomplete_parts(store, "stream") == []
        with pytest.raises(ConfigError, match="streaming: read the trades topic"):
            streaming_evidence(store, None, Sources(run_id="r1"))  # type: ignore[arg-type]
