"""The evidence layout contract: ``<root>/gate=<name>/dt=<YYYY-MM-DD>/run_id=<id>/<file>``.

The same keys are used in S3 and on disk so the same SQL runs in Athena and in DuckDB. Each table is a
file name inside a run folder; Athena/Glue and DuckDB name the tables alike (see ``TABLES``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

# table name -> file name inside a run folder (JSON lines unless noted)
TABLES: dict[str, str] = {
    "ledger": "ledger.jsonl",
    "checks": "checks.jsonl",
    "faults": "faults.jsonl",
    "health": "health.jsonl",
    "verdicts": "verdict.json",
    "load_stats": "load_stats.jsonl",
}
FILES = {
    "config": "config.yaml",
    "report": "report.md",
    "junit": "junit.xml",
    "plot": "latency.png",
    "events": "events.jsonl",
}


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: ``YYYYmmddTHHMMSSZ-<6 hex>``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunKey:
    """Identifies one run's folder/prefix."""

    gate: str
    date: str
    run_id: str

    @property
    def prefix(self) -> str:
        return f"gate={self.gate}/dt={self.date}/run_id={self.run_id}"

    def path(self, root: str | Path) -> Path:
        return Path(root) / self.prefix

    @classmethod
    def new(cls, gate: str, now: dt.datetime | None = None) -> RunKey:
        now = now or dt.datetime.now(dt.UTC)
        return cls(gate=gate, date=now.strftime("%Y-%m-%d"), run_id=new_run_id(now))


def find_run(root: str | Path, run_id: str) -> Path | None:
    """The folder of run ``run_id`` under ``root`` (any gate, any date), or None."""
    matches = sorted(Path(root).glob(f"gate=*/dt=*/run_id={run_id}"))
    return matches[0] if matches else None


def list_runs(root: str | Path) -> list[Path]:
    """All run folders under ``root``, oldest first (run ids sort by time)."""
    return sorted(Path(root).glob("gate=*/dt=*/run_id=*"), key=lambda p: p.name)
