"""Helpers for the end-to-end tests: run `resgate run` as a real subprocess and read its evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from resgate.contract.layout import RunKey, table_glob

SHORT_CONFIG = Path(__file__).with_name("gate_short.yaml")


@dataclass
class GateRunResult:
    exit_code: int
    output: str
    verdict: dict[str, Any] | None
    checks: dict[str, dict[str, Any]]
    marker: str


def processes_with_marker(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment carries ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append((int(entry.name), cmd))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def run_gate(
    config: Path, evidence: Path, *, env: dict[str, str] | None = None, timeout: float = 600
) -> GateRunResult:
    marker = f"RESGATE_TEST_MARKER={uuid.uuid4().hex}"
    full_env = {**os.environ, **(env or {}), "RESGATE_TEST_MARKER": marker.split("=", 1)[1]}
    proc = subprocess.run(
        [sys.executable, "-m", "resgate.cli", "run", str(config), "--evidence-root", str(evidence)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    verdicts = sorted(evidence.glob(table_glob("verdicts")))
    verdict = json.loads(verdicts[-1].read_text()) if verdicts else None
    checks: dict[str, dict[str, Any]] = {}
    if verdicts:
        checks_file = evidence.joinpath(*_run_of(verdicts[-1], evidence).relative("checks.jsonl").split("/"))
        for line in checks_file.read_text().splitlines():
            row = json.loads(line)
            checks[row["name"]] = row
    return GateRunResult(proc.returncode, proc.stdout + proc.stderr, verdict, checks, marker)


def _run_of(table_file: Path, root: Path) -> RunKey:
    """The run of a file in a table's folder (``gate=…/<table>/dt=…/run_id=…/<file>``)."""
    gate, _table, day, run = table_file.relative_to(root).parts[:4]
    return RunKey.parse(f"{gate}/{day}/{run}")[1]


@pytest.fixture
def gate_runner(tmp_path: Path):  # type: ignore[no-untyped-def]
    def run(config: Path = SHORT_CONFIG, **kw: Any) -> GateRunResult:
        return run_gate(config, tmp_path / "evidence", **kw)

    return run
