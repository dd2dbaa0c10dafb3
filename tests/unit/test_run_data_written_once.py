"""The local run writes its own data (faults.jsonl, health.jsonl, ...) once: the fault timeline in the
evidence is the one the checks judged, as on AWS, where the timeline Lambda writes it before the checks
and the abort cleanup never rewrites it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resgate.config import load_config
from resgate.evidence.store import FolderStore
from resgate.runner.gate import GateRun

ROOT = Path(__file__).resolve().parents[2]


class _Faults:
    """A fault runner's timeline that grows, as the cleanup's stops make it grow after the assertions."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = [{"ts": 1.0, "fault_id": "kill-web", "event": "injected"}]

    def timeline(self) -> list[dict[str, Any]]:
        return list(self.events)


def _gate(tmp_path: Path) -> tuple[GateRun, _Faults]:
    gate = GateRun(
        load_config(ROOT / "resgate" / "configs" / "paperbroker.yaml"), evidence_root=str(tmp_path)
    )
    gate.store = FolderStore(tmp_path, gate.key)
    faults = _Faults()
    gate.faults = faults  # type: ignore[assignment]
    return gate, faults


def _fault_events(gate: GateRun) -> list[str]:
    assert gate.store is not None
    return [json.loads(line)["event"] for line in gate.store.path("faults").read_text().splitlines()]


def test_the_fault_timeline_in_the_evidence_is_the_one_the_assertions_read(tmp_path: Path) -> None:
    gate, faults = _gate(tmp_path)
    gate._write_run_data()  # just before the assertions
    faults.events.append({"ts": 9.0, "fault_id": "kill-web", "event": "aborted"})  # the cleanup's stop
    gate._write_run_data()  # at the end of the run
    assert _fault_events(gate) == ["injected"]


def test_a_run_that_never_reached_the_assertions_writes_its_data_at_the_end(tmp_path: Path) -> None:
    gate, faults = _gate(tmp_path)
    faults.events.append({"ts": 9.0, "fault_id": "kill-web", "event": "aborted"})
    gate._write_run_data()  # the only call: from the end of the run
    assert _fault_events(gate) == ["injected", "aborted"]
