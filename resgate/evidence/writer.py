"""Writes a run's evidence files under its run folder (the local twin of the S3 prefix)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from resgate.contract.layout import FILES, TABLES, RunKey


class EvidenceWriter:
    """Creates ``<root>/gate=../dt=../run_id=..`` and writes JSON, JSON-lines and text files into it."""

    def __init__(self, root: str | Path, key: RunKey) -> None:
        self.key = key
        self.dir = key.path(root)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """Path of a table (``TABLES``) or file (``FILES``) by its logical name, or a plain file name."""
        return self.dir / (TABLES.get(name) or FILES.get(name) or name)

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path(name)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=str, sort_keys=False) + "\n")
        tmp.replace(p)
        return p

    def write_jsonl(self, name: str, rows: Iterable[dict[str, Any]], *, stamp: bool = True) -> Path:
        """Write rows as JSON lines; with ``stamp`` each row carries ``run_id`` and ``gate`` for SQL joins."""
        p = self.path(name)
        with p.open("w") as f:
            for row in rows:
                if stamp:
                    row = {"run_id": self.key.run_id, "gate": self.key.gate, **row}
                f.write(json.dumps(row, default=str, separators=(",", ":")) + "\n")
        return p

    def write_text(self, name: str, text: str) -> Path:
        p = self.path(name)
        p.write_text(text)
        return p

    def copy_in(self, name: str, source: Path) -> Path:
        p = self.path(name)
        shutil.copyfile(source, p)
        return p
