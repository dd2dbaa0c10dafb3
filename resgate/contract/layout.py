"""The evidence layout contract: where each file of a run lives under the evidence root.

- a **table** file (:data:`TABLES`): ``<root>/gate=<name>/<table>/dt=<YYYY-MM-DD>/run_id=<id>/<file>``;
- every other file (:data:`FILES`, logs): the run's folder
  ``<root>/gate=<name>/dt=<YYYY-MM-DD>/run_id=<id>/``.

The same keys are used in S3 and on disk so the same SQL runs in Athena and in DuckDB. Each table has a
folder of its own (``<root>/gate=<name>/<table>/``) because Athena reads every object under a table's
location: that folder is the Glue table's location, and partition projection finds a day's runs at
``…/<table>/dt=<date>/`` without listing or registering partitions. ``run_id`` is therefore a column of every
row (:func:`stamp_line`), not a projected partition. Everything of a gate stays under ``<root>/gate=<name>/``
(one IAM prefix). :meth:`RunKey.relative` is the one place that maps a file to its key.
"""

from __future__ import annotations

import datetime as dt
import json
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
    "phases": "phases.jsonl",
    "stream": "stream.jsonl",  # the market-data subscribers' ledger (resgate/contract/stream.py)
}
# Data columns per table, Hive types, after ``run_id`` (the Glue tables' schema; DuckDB's views add the ones a
# run's files lack as NULLs). The partition columns gate/dt are not repeated: Hive refuses that.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "ledger": (
        ("ts", "double"),
        ("op", "string"),
        ("client_id", "string"),
        ("idempotency_key", "string"),
        ("order_id", "string"),
        ("status", "string"),  # an HTTP status or a transport word (timeout, conn_reset, ...)
        ("outcome", "string"),
        ("latency_ms", "double"),
        ("attempt", "int"),
        ("name", "string"),
        ("symbol", "string"),
        ("side", "string"),
        ("qty", "double"),
        ("price", "double"),
        ("retry_after", "double"),
        ("error", "string"),
        ("intended_ts", "double"),  # open model: when the request was meant to be sent (loadgen.pacing)
        ("intended_latency_ms", "double"),
    ),
    "checks": (
        ("name", "string"),
        ("valid", "string"),  # true | false | unknown
        ("counts", "string"),
        ("examples", "string"),
        ("error", "string"),
        ("details", "string"),
        ("duration_s", "double"),  # how long the check took (evidence and judgement)
    ),
    "faults": (
        ("ts", "double"),
        ("fault_id", "string"),
        ("kind", "string"),
        ("target", "string"),
        ("event", "string"),
        ("detail", "string"),
    ),
    "health": (
        ("ts", "double"),
        ("service", "string"),
        ("replica", "string"),
        ("event", "string"),
        ("detail", "string"),
    ),
    "verdicts": (
        ("result", "string"),
        ("passed", "boolean"),
        ("exit_code", "int"),
        ("reason", "string"),
        ("failed_checks", "array<string>"),
        ("unknown_checks", "array<string>"),
        ("started_at", "double"),
        ("ended_at", "double"),
        ("guardrail_tripped", "string"),
        ("score", "int"),  # the resilience score, 0-100 (null: not scored); resgate/evidence/score.py
        ("score_band", "string"),  # Pass | Marginal | Fail | Not scored
    ),
    "load_stats": (
        ("name", "string"),
        ("method", "string"),
        ("num_requests", "bigint"),
        ("num_none_requests", "bigint"),
        ("num_failures", "bigint"),
        ("total_response_time", "double"),
        ("max_response_time", "double"),
        ("min_response_time", "double"),
        ("total_content_length", "bigint"),
        ("start_time", "double"),
        ("last_request_timestamp", "double"),
        ("response_times", "string"),
        ("num_reqs_per_sec", "string"),
        ("num_fail_per_sec", "string"),
    ),
    "phases": (
        ("phase", "string"),  # baseline | during | recovery | steady
        ("key", "string"),  # the phase, or during:<fault> / recovery:<fault>
        ("fault_id", "string"),
        ("fault_kind", "string"),
        ("start_ts", "double"),
        ("end_ts", "double"),
        ("duration_s", "double"),
        ("requests", "bigint"),
        ("failures", "bigint"),
        ("error_ratio", "double"),
        ("throughput_rps", "double"),
        ("p50_ms", "double"),
        ("p95_ms", "double"),
        ("p99_ms", "double"),
        ("samples", "array<double>"),  # per-second p95s, for the regression test
    ),
    "stream": (
        ("ts", "double"),
        ("client_id", "string"),
        ("event", "string"),  # resgate.contract.stream.EVENTS
        ("symbol", "string"),
        ("seq", "bigint"),
        ("from_seq", "bigint"),
        ("to_seq", "bigint"),
        ("mode", "string"),
        ("resent", "boolean"),
        ("attempt", "int"),
        ("attempts", "int"),
        ("connect_ms", "double"),
        ("duration_ms", "double"),
        ("reason", "string"),
        ("error", "string"),
        ("order_id", "string"),
        ("ttff_ms", "double"),
    ),
}

TABLE_OF_FILE: dict[str, str] = {f: t for t, f in TABLES.items()}
FILES = {
    "config": "config.yaml",
    "report": "report.md",
    "junit": "junit.xml",
    "plot": "latency.png",
    "events": "events.jsonl",
    "load_live": "load_live.jsonl",  # the load's per-second live lines (loadgen.upload writes it on AWS)
    "load_nodes": "load_nodes.jsonl",  # one line per Locust worker: its ledger part complete or not
    "load_shape": "load_shape.jsonl",  # the overload shape's samples and fault rows (resgate.contract.shape)
    "leader_samples": "leader_samples.jsonl",  # the load task's leader_loss samples (faults.jsonl rows)
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
        """The run's folder (its non-table files): ``gate=<name>/dt=<date>/run_id=<id>``."""
        return f"gate={self.gate}/dt={self.date}/run_id={self.run_id}"

    def table_prefix(self, table: str) -> str:
        """The run's folder in a table: ``gate=<name>/<table>/dt=<date>/run_id=<id>``."""
        return f"gate={self.gate}/{table}/dt={self.date}/run_id={self.run_id}"

    def relative(self, file_name: str) -> str:
        """The key of one of the run's files relative to the evidence root: a table's file under the
        table's folder, any other file under the run's folder."""
        table = TABLE_OF_FILE.get(file_name)
        return f"{self.table_prefix(table) if table else self.prefix}/{file_name}"

    def path(self, root: str | Path) -> Path:
        """The run's folder under ``root``."""
        return Path(root) / self.prefix

    @classmethod
    def parse(cls, prefix: str | Path) -> tuple[str, RunKey]:
        """Split a run folder (``[<root>/]gate=<g>/dt=<d>/run_id=<id>[/]``) into ``(root, key)``; raises
        ValueError when it does not end with those three parts."""
        parts = [p for p in str(prefix).replace("\\", "/").split("/") if p]
        if len(parts) < 3:
            raise ValueError(f"not a run folder: {prefix!r}")
        values = []
        for part, name in zip(parts[-3:], ("gate", "dt", "run_id"), strict=True):
            head, sep, value = part.partition("=")
            if head != name or not sep or not value:
                raise ValueError(f"not a run folder (expected {name}=…): {prefix!r}")
            values.append(value)
        root = "/".join(parts[:-3])
        if str(prefix).startswith("/"):
            root = "/" + root
        return root, cls(gate=values[0], date=values[1], run_id=values[2])

    @classmethod
    def new(cls, gate: str, now: dt.datetime | None = None) -> RunKey:
        now = now or dt.datetime.now(dt.UTC)
        return cls(gate=gate, date=now.strftime("%Y-%m-%d"), run_id=new_run_id(now))


GOLDEN_PROFILE_FILE = "profile.json"


def golden_key(gate: str) -> str:
    """The key of a gate's golden profile relative to the evidence root: ``gate=<name>/golden/profile.json``
    (next to the gate's tables, outside every table's location so Athena never reads it as a row)."""
    return f"gate={gate}/golden/{GOLDEN_PROFILE_FILE}"


def table_folder(gate: str, table: str) -> str:
    """A table's location relative to the evidence root: ``gate=<name>/<table>/`` (Glue's and DuckDB's)."""
    return f"gate={gate}/{table}/"


def table_glob(table: str) -> str:
    """The glob of every file of a table relative to the evidence root (any gate, date and run)."""
    return f"gate=*/{table}/dt=*/run_id=*/{TABLES[table]}"


def stamp_line(line: bytes, key: RunKey) -> bytes:
    """A JSON-object line with ``run_id`` and ``gate`` first (as ``write_jsonl`` stamps its rows), so that a
    copied file (the ledger, Locust's stats) can be joined by run in Athena, where ``run_id`` is a column;
    a line that already starts with ``{"run_id"``, a blank line or a non-object is returned unchanged."""
    stripped = line.lstrip()
    if not stripped.startswith(b"{") or stripped.startswith(b'{"run_id"'):
        return line
    head = json.dumps({"run_id": key.run_id, "gate": key.gate}, separators=(",", ":")).encode()[:-1]
    body = stripped[1:]
    return head + (b"," if not body.lstrip().startswith(b"}") else b"") + body


def file_of_run(run_dir: str | Path, file_name: str) -> Path:
    """The path of a run's file given the run's folder ``<root>/gate=…/dt=…/run_id=…`` (a table's file is in
    the table's folder)."""
    root, key = RunKey.parse(run_dir)
    return Path(root) / key.relative(file_name)


def find_run(root: str | Path, run_id: str) -> Path | None:
    """The folder of run ``run_id`` under ``root`` (any gate, any date), or None."""
    matches = sorted(Path(root).glob(f"gate=*/dt=*/run_id={run_id}"))
    return matches[0] if matches else None


def list_runs(root: str | Path) -> list[Path]:
    """All run folders under ``root``, oldest first (run ids sort by time)."""
    return sorted(Path(root).glob("gate=*/dt=*/run_id=*"), key=lambda p: p.name)
