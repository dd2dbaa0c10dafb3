"""The run's figure (resgate/evidence/figure.py): per-second figures, fault windows and health bands drawn
from the evidence store, empty seconds kept as gaps, latency ticks in plain units."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.contract.layout import RunKey
from resgate.evidence.figure import Second, fault_windows, health_bands, per_second, plain_ms, run_figure
from resgate.evidence.store import FolderStore, write_jsonl


def test_no_record_gives_no_figures() -> None:
    assert per_second([]) is None


def test_each_second_counts_its_ok_and_failed_requests_and_an_empty_second_stays_in_the_series() -> None:
    records = [(100.2, 5.0, True), (100.9, 7.0, False), (102.5, 9.0, True)]
    t0, rows = per_second(records)  # type: ignore[misc]
    assert t0 == 100.0
    assert rows == [Second(1, 1, 7.0), Second(0, 0, None), Second(1, 0, 9.0)]
    assert rows[0].error_ratio == 0.5 and rows[1].error_ratio is None and rows[2].error_ratio == 0.0


def test_p95_of_a_second_is_the_nearest_rank_value() -> None:
    # 20 requests: the 95th percentile's nearest rank is the 19th value; with 21 it is the 20th
    twenty = [(5.0, float(v), True) for v in range(1, 21)]
    assert per_second(twenty)[1][0].p95_ms == 19.0  # type: ignore[index]
    assert per_second([*twenty, (5.5, 21.0, True)])[1][0].p95_ms == 20.0  # type: ignore[index]


def test_a_held_fault_spans_from_its_first_opening_event_to_its_last_closing_one() -> None:
    events = [
        {"ts": 115.0, "fault_id": "p", "event": "ended"},
        {"ts": 105.0, "fault_id": "p", "event": "injecting"},
        {"ts": 105.2, "fault_id": "p", "event": "injected"},
        {"ts": 114.0, "fault_id": "p", "event": "lifting"},
    ]
    [w] = fault_windows(events, t0=100.0)
    assert (w.fault_id, w.start, w.end) == ("p", 5.0, 15.0)


def test_an_instantaneous_fault_is_a_window_of_no_width_and_an_effect_event_changes_nothing() -> None:
    events = [
        {"ts": 110.0, "fault_id": "kill", "event": "injected"},
        {"ts": 110.3, "fault_id": "kill", "event": "effect"},
        {"ts": 111.0, "event": "injected"},  # no fault id: not a fault's row
    ]
    [w] = fault_windows(events, t0=100.0)
    assert (w.start, w.end) == (10.0, 10.0)


def test_a_service_band_is_the_share_of_its_replicas_healthy_at_each_sample() -> None:
    rows = [
        {"ts": 101.0, "service": "gw", "replica": "gw-0", "healthy": True},
        {"ts": 101.0, "service": "gw", "replica": "gw-1", "healthy": False},
        {"ts": 101.0, "service": "m", "replica": "m-0", "healthy": True},
        {"ts": 102.0, "service": "gw", "replica": "gw-0", "healthy": False},
        {"ts": 102.0, "service": "gw", "replica": "gw-1", "healthy": False},
        {"ts": 101.5, "service": "gw", "replica": "gw-0", "event": "killed"},  # lifecycle: not a sample
    ]
    assert health_bands(rows, t0=100.0) == {"gw": [(1.0, 0.5), (2.0, 0.0)], "m": [(1.0, 1.0)]}


@pytest.mark.parametrize(
    ("ms", "text"),
    [(4, "4 ms"), (30, "30 ms"), (999, "999 ms"), (1000, "1 s"), (1500, "1.5 s"), (60000, "60 s")],
)
def test_latency_ticks_read_in_plain_units(ms: float, text: str) -> None:
    assert plain_ms(ms) == text


def test_the_figure_is_drawn_from_the_store_and_a_run_without_requests_has_none(tmp_path: Path) -> None:
    store = FolderStore(tmp_path, RunKey.new("g"))
    out = tmp_path / "fig.png"
    assert run_figure(store, out) is None and not out.exists()
    lines = [
        {
            "ts": 100.0 + i / 10,
            "op": "get_order",
            "method": "GET",
            "client_id": f"c{i % 3}",
            "status": 200 if i % 7 else 500,
            "outcome": "ok" if i % 7 else "fail",
            "latency_ms": 3.0 + i,
        }
        for i in range(100)
    ]
    store.path("ledger").parent.mkdir(parents=True, exist_ok=True)
    store.path("ledger").write_text("".join(json.dumps(r) + "\n" for r in lines))
    write_jsonl(store, "faults", [{"ts": 103.0, "fault_id": "k", "kind": "stop_task", "event": "injected"}])
    write_jsonl(store, "health", [{"ts": 101.0, "service": "gw", "replica": "gw-0", "healthy": True}])
    assert run_figure(store, out, title="t") == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
