"""Unit tests of the load generator's ledger writer, merge and count helpers, classification rules, the
live-stats windows and the Locust ``--json`` parser (all pure, built from small hand-made records)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from loadgen import ConfigError
from loadgen.ledger import (
    LedgerWriter,
    count_by,
    count_records,
    is_retryable,
    iter_records,
    merge_ledgers,
    outcome_for,
    parse_retry_after,
    transport_status,
)
from loadgen.stats import LiveWindow, live_figures, parse_locust_json, percentile, read_live, summarize

FIXTURE_STATS = Path(__file__).resolve().parents[1] / "fixtures" / "locust_stats.json"


def rec(ts: float, n: int = 0, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": ts,
        "op": "submit_order",
        "client_id": "c1",
        "idempotency_key": f"k{n}",
        "status": 201,
        "outcome": "ok",
        "latency_ms": 1.5,
    }
    base.update(kw)
    return base


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


# --------------------------------------------------------------------------------------------- writer


def test_writer_keeps_records_in_memory_until_flushed(tmp_path: Path) -> None:
    w = LedgerWriter(tmp_path, flush_every=100)
    w.write(rec(1.0))
    w.write(rec(2.0, 1))
    assert not w.path.exists()
    assert w.pending == 2
    assert w.flush() == 2
    assert w.path.name == f"ledger-{os.getpid()}.jsonl"
    assert [json.loads(line)["ts"] for line in lines_of(w.path)] == [1.0, 2.0]
    assert w.flush() == 0 and w.written == 2


def test_writer_flushes_by_itself_when_the_buffer_is_full(tmp_path: Path) -> None:
    w = LedgerWriter(tmp_path, flush_every=3)
    for i in range(7):
        w.write(rec(float(i), i))
    assert count_records(w.path) == 6
    assert w.pending == 1
    w.close()
    assert count_records(w.path) == 7


def test_writer_serialises_at_write_time_so_later_mutation_is_not_recorded(tmp_path: Path) -> None:
    w = LedgerWriter(tmp_path)
    r = rec(1.0)
    w.write(r)
    r["status"] = 500
    w.flush()
    assert next(iter_records(w.path))["status"] == 201


def test_writer_appends_whole_lines_from_many_threads(tmp_path: Path) -> None:
    w = LedgerWriter(tmp_path, flush_every=7)

    def work(t: int) -> None:
        for i in range(500):
            w.write(rec(t + i / 1000, i, client_id=f"c{t}", error="x" * (i % 50)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.flush()
    lines = lines_of(w.path)
    assert len(lines) == 4000
    assert all(line.endswith("\n") for line in lines)
    assert count_by(w.path, "client_id") == {f"c{t}": 500 for t in range(8)}


def test_a_torn_last_line_is_skipped_by_readers_and_cut_off_before_the_next_append(tmp_path: Path) -> None:
    part = tmp_path / f"ledger-{os.getpid()}.jsonl"
    part.write_text(json.dumps(rec(1.0)) + "\n" + '{"ts": 2.0, "op": "submit_ord')  # crash mid-write
    assert count_records(part) == 1
    w = LedgerWriter(tmp_path)
    w.write(rec(3.0, 3))
    w.flush()
    assert [r["ts"] for r in iter_records(part)] == [1.0, 3.0]
    assert part.read_text().endswith("\n")


def test_a_forked_child_writes_its_own_file_and_not_the_parents_buffer(tmp_path: Path) -> None:
    w = LedgerWriter(tmp_path)
    w.write(rec(1.0, 1, client_id="parent"))
    pid = os.fork()
    if pid == 0:  # child: must not write the parent's buffered line
        try:
            w.write(rec(2.0, 2, client_id="child"))
            w.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    w.flush()
    assert count_by(tmp_path / f"ledger-{pid}.jsonl", "client_id") == {"child": 1}
    assert count_by(w.path, "client_id") == {"parent": 1}


def test_writer_rejects_a_non_positive_flush_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LedgerWriter(tmp_path, flush_every=0)


# ------------------------------------------------------------------------------------------ merge, counts


def test_merge_joins_every_part_once_sorted_by_ts(tmp_path: Path) -> None:
    (tmp_path / "ledger-11.jsonl").write_text("".join(json.dumps(rec(t, int(t))) + "\n" for t in (1, 4, 5)))
    (tmp_path / "ledger-22.jsonl").write_text("".join(json.dumps(rec(t, int(t))) + "\n" for t in (2, 3, 6)))
    (tmp_path / "live-11.jsonl").write_text('{"ts": 1}\n')  # not a ledger part
    out = merge_ledgers(tmp_path)
    assert out == tmp_path / "ledger.jsonl"
    assert [r["ts"] for r in iter_records(out)] == [1, 2, 3, 4, 5, 6]
    assert count_records(tmp_path) == 6  # a directory counts its parts, not the merged file
    assert [r["ts"] for r in iter_records(merge_ledgers(tmp_path))] == [1, 2, 3, 4, 5, 6]  # merging again


def test_merge_drops_torn_lines_and_keeps_a_process_order_for_equal_times(tmp_path: Path) -> None:
    (tmp_path / "ledger-1.jsonl").write_text(
        json.dumps(rec(5.0, 1)) + "\n" + json.dumps(rec(5.0, 2)) + "\n" + '{"ts": 6.0, "op'
    )
    out = merge_ledgers(tmp_path)
    assert [r["idempotency_key"] for r in iter_records(out)] == ["k1", "k2"]
    assert out.read_text().endswith("\n")


def test_merge_of_an_empty_directory_is_an_empty_ledger(tmp_path: Path) -> None:
    out = merge_ledgers(tmp_path / "nothing-yet")
    assert out.read_text() == "" and count_records(out) == 0


def test_count_by_counts_one_or_several_fields(tmp_path: Path) -> None:
    w = LedgerWriter(tmp_path)
    w.write_many(
        [
            rec(1.0, 1),
            rec(2.0, 2, status=503, outcome="fail"),
            rec(3.0, 2, status=201, attempt=2),
            rec(4.0, 3, status="timeout", outcome="info"),
        ]
    )
    w.flush()
    assert count_by(tmp_path, "outcome") == {"ok": 2, "fail": 1, "info": 1}
    assert count_by(tmp_path, "idempotency_key", "outcome")[("k2", "ok")] == 1
    with pytest.raises(ValueError):
        count_by(tmp_path)


# --------------------------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("status", "outcome", "retry"),
    [
        (200, "ok", False),
        (201, "ok", False),
        (400, "fail", False),
        (404, "fail", False),
        (409, "fail", False),
        (422, "fail", False),
        (429, "fail", True),
        (503, "fail", True),
        (500, "info", False),
        (502, "info", True),
        (504, "info", True),
        ("conn_refused", "fail", True),
        ("timeout", "info", True),
        ("conn_reset", "info", True),
        ("conn_error", "info", True),
    ],
)
def test_outcome_and_retry_follow_the_ledger_contract(status: int | str, outcome: str, retry: bool) -> None:
    assert outcome_for(status) == outcome
    assert is_retryable(status) is retry


class HTTPConnectionClosed(Exception):
    """Stands in for geventhttpclient's class of that name (matched by name)."""


class Timeout(BaseException):
    """Stands in for gevent.Timeout (a BaseException, matched by name)."""


class RetriesExceeded(Exception):
    def __init__(self, original: BaseException) -> None:
        super().__init__("retries exceeded")
        self.original = original


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ConnectionRefusedError(111, "refused"), "conn_refused"),
        (ConnectionResetError(104, "reset"), "conn_reset"),
        (BrokenPipeError(32, "pipe"), "conn_reset"),
        (HTTPConnectionClosed("connection closed."), "conn_reset"),
        (TimeoutError("timed out"), "timeout"),
        (Timeout(), "timeout"),
        (RetriesExceeded(TimeoutError("timed out")), "timeout"),
        (OSError(113, "no route to host"), "conn_error"),
        (ValueError("bad"), "conn_error"),
        (None, "conn_error"),
    ],
)
def test_transport_errors_map_to_the_ledger_status_words(exc: BaseException | None, status: str) -> None:
    assert transport_status(exc) == status


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("2", now=0) == 2.0
    assert parse_retry_after(["1", "3"], now=0) == 3.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == 6.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=20.0) == 0.0
    for bad in (None, "", "soon", "-1", "nan"):
        assert parse_retry_after(bad, now=0) is None


# --------------------------------------------------------------------------------------------- live stats


def test_live_window_drains_finished_seconds_zero_filled() -> None:
    lw = LiveWindow(pid=7)
    lw.start(100.2)
    for ms in (1, 2, 3, 4, 150):
        lw.add(100.5, ms, failed=ms == 150)
    lw.add(102.1, 10, failed=False)
    lines = lw.drain(102.5)
    assert [(x["ts"], x["requests"], x["failures"]) for x in lines] == [(100, 5, 1), (101, 0, 0)]
    assert lines[0]["p95_ms"] == 150.0 and lines[0]["hist"] == {"1": 1, "2": 1, "3": 1, "4": 1, "150": 1}
    assert lines[1]["p95_ms"] is None and lines[1]["pid"] == 7
    assert lw.drain(102.9) == []
    final = lw.drain(102.9, final=True)
    assert [(x["ts"], x["requests"]) for x in final] == [(102, 1)]


def test_read_live_merges_processes_per_second_with_p95_of_the_merged_histogram(tmp_path: Path) -> None:
    a, b = LiveWindow(pid=1), LiveWindow(pid=2)
    for _ in range(19):
        a.add(50.1, 1, failed=False)
    b.add(50.2, 900, failed=True)
    b.add(51.2, 5, failed=False)
    for w in (a, b):
        lines = [json.dumps(x) + "\n" for x in w.drain(52)]
        (tmp_path / f"live-{w.pid}.jsonl").write_text("".join(lines))
    with open(tmp_path / "live-2.jsonl", "a") as f:
        f.write('{"ts": 52, "requ')  # torn by a crash
    points = read_live(tmp_path)
    assert [(p["ts"], p["requests"], p["failures"], p["processes"]) for p in points] == [
        (50, 20, 1, 2),
        (51, 1, 0, 2),
    ]
    assert points[0]["p95_ms"] == 1.0  # 19 of 20 at 1 ms: nearest rank 19
    assert points[0]["error_ratio"] == 0.05
    assert read_live(tmp_path, since_ts=50) == points[1:]
    fig = live_figures(tmp_path, window_s=2, now=52.5, settle_s=0)
    assert (fig["ts_from"], fig["ts_to"], fig["requests"], fig["rps"]) == (50, 51, 21, 10.5)
    assert fig["p95_ms"] == 5.0
    assert read_live(tmp_path / "missing") == []


def test_percentile_is_nearest_rank() -> None:
    assert percentile({1: 95, 100: 5}, 95) == 1.0
    assert percentile({1: 94, 100: 6}, 95) == 100.0
    assert percentile({}, 50) is None


# --------------------------------------------------------------------------------------------- locust --json


def test_locust_json_fixture_parses_and_summarises() -> None:
    entries = parse_locust_json(FIXTURE_STATS.read_text())
    s = summarize(entries)
    assert s["requests"] == sum(e["num_requests"] for e in entries)
    assert s["failures"] == sum(e["num_failures"] for e in entries)
    assert set(s["by_name"]) == {e["name"] for e in entries}
    assert s["by_name"]["submit_order"]["p95_ms"] == 230.0


def test_locust_json_accepts_float_times_and_leading_noise() -> None:
    entry = {
        "name": "submit_order",
        "method": "POST",
        "last_request_timestamp": 11.0,
        "start_time": 10.0,
        "num_requests": 2,
        "num_none_requests": 0,
        "num_failures": 1,
        "total_response_time": 3.5,
        "max_response_time": 2.25,
        "min_response_time": 1.25,
        "total_content_length": 10,
        "response_times": {"1": 1, "2": 1},
        "num_reqs_per_sec": {"10": 2},
        "num_fail_per_sec": {"10": 1},
    }
    text = "a stray print\n" + json.dumps([entry], indent=4)
    assert parse_locust_json(text)[0]["num_requests"] == 2
    assert summarize(parse_locust_json(text))["rps"] == 2.0
    assert parse_locust_json("[]") == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "locust_stats"),
        ('{"a": 1}', "locust_stats"),
        ('[{"name": "x", "method": "GET"}]', "locust_stats[0].num_requests"),
    ],
)
def test_locust_json_errors_name_the_field(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_locust_json(text)
    assert e.value.where == where
