"""The run store: one run's files, read and written through one protocol whether they sit in a local run
folder (:class:`FolderStore`) or under an S3 prefix (:class:`resgate.evidence.s3.S3Store`).

Names are the logical names of :data:`resgate.contract.layout.TABLES` / ``FILES`` (``"ledger"``,
``"verdicts"``…) or plain file names. Reading a file that is not there raises
:class:`~resgate.contract.errors.EvidenceMissing`, so a check reports ``unknown`` instead of judging
nothing. JSON lines are encoded by one function (:func:`jsonl_text`) for both stores, so the same inputs
give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from resgate.checks.ledger import LedgerRecord, iter_ledger
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.contract.layout import FILES, TABLES, RunKey


def file_name(name: str) -> str:
    """The file name of a table (``TABLES``) or file (``FILES``) by its logical name, or ``name`` itself."""
    return TABLES.get(name) or FILES.get(name) or name


@runtime_checkable
class RunStore(Protocol):
    """One run's files. ``key`` names the run; every method takes a logical name or a file name."""

    key: RunKey

    def uri(self, name: str | None = None) -> str:
        """Where the run (or one of its files) is: a folder path or ``s3://bucket/…/``."""
        ...

    def exists(self, name: str) -> bool:
        """True when the file is present."""
        ...

    def lines(self, name: str) -> Iterator[bytes | str]:
        """The file's lines, streamed; raises EvidenceMissing now if the file is absent."""
        ...

    def read_text(self, name: str) -> str:
        """The whole file as text; raises EvidenceMissing if absent."""
        ...

    def write_text(self, name: str, text: str) -> str:
        """Write (replace) the file; return its URI."""
        ...

    def local_path(self, name: str) -> Path | None:
        """The file's path on this machine when the store is a folder (for tools that read files by path),
        else None."""
        ...


def jsonl_text(rows: Iterable[Mapping[str, Any]], key: RunKey | None = None) -> str:
    """Rows as JSON lines (compact, one object a line); with ``key`` each row starts with ``run_id`` and
    ``gate`` so the same SQL joins every table."""
    out = []
    for row in rows:
        if key is not None:
            row = {"run_id": key.run_id, "gate": key.gate, **row}
        out.append(json.dumps(row, default=str, separators=(",", ":")) + "\n")
    return "".join(out)


def write_jsonl(store: RunStore, name: str, rows: Iterable[Mapping[str, Any]], *, stamp: bool = True) -> str:
    """Write rows as a JSON-lines table (see :func:`jsonl_text`); return its URI."""
    return store.write_text(name, jsonl_text(rows, store.key if stamp else None))


def iter_json_objects(lines: Iterable[bytes | str], *, source: str) -> Iterator[dict[str, Any]]:
    """Decode JSON lines (blank lines skipped); a line that is not a JSON object raises ConfigError
    ``<source>:<line>``."""
    for lineno, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"not a JSON line: {e.msg} at column {e.colno}", where=f"{source}:{lineno}"
            ) from e
        if not isinstance(obj, dict):
            raise ConfigError(f"must be a JSON object, got {type(obj).__name__}", where=f"{source}:{lineno}")
        yield obj


def read_jsonl(store: RunStore, name: str) -> list[dict[str, Any]]:
    """Every JSON object of a (small) JSON-lines table; a bad line raises ConfigError naming
    ``<uri>:<line>``; an absent file raises EvidenceMissing."""
    return list(iter_json_objects(store.lines(name), source=store.uri(name)))


class LedgerView:
    """The run's ledger as an iterable of :class:`LedgerRecord` that reads the store afresh on every
    iteration: checkers may pass over it more than once, and a tuple would hold a million records."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def __iter__(self) -> Iterator[LedgerRecord]:
        return iter_ledger(self.store.lines("ledger"), source=self.store.uri("ledger"))


def incomplete_parts(store: RunStore, part: Literal["ledger", "stream"]) -> list[dict[str, Any]]:
    """The load workers (rows of ``load_nodes.jsonl``, written for a distributed load) whose ``part`` is
    missing or incomplete; ``[]`` for a single-process load or when every part is whole.

    ``ledger`` is a worker's client ledger (its row's ``complete``); ``stream`` its market-data
    subscribers' records (``stream_complete``; a row without the field is judged by its ``complete``). A
    worker that ran no subscriber has a whole, empty stream part."""
    if not store.exists("load_nodes"):
        return []
    rows = read_jsonl(store, "load_nodes")
    if part == "ledger":
        return [row for row in rows if row.get("complete") is not True]
    return [row for row in rows if row.get("stream_complete", row.get("complete")) is not True]


def ledger(store: RunStore, *, required: bool = True) -> LedgerView | list[LedgerRecord]:
    """The run's ledger as a re-iterable stream; without a ledger, EvidenceMissing when ``required``, else an
    empty list (the checks that only refine their figures with it do without).

    A distributed load's ledger is the merge of one part per worker: when a part is missing or incomplete
    (a worker died mid-run, :func:`incomplete_parts`), EvidenceMissing even when not ``required``:
    partial data would let a check pass on what it never saw, so every check that reads it says unknown."""
    broken = incomplete_parts(store, "ledger")
    if broken:
        names = ", ".join(f"{row.get('node')} ({row.get('reason')})" for row in broken)
        raise EvidenceMissing(
            f"the client ledger is partial: the part of load worker {names} is missing or incomplete",
            uri=store.uri("load_nodes"),
        )
    if store.exists("ledger"):
        return LedgerView(store)
    if required:
        raise EvidenceMissing(
            f"no client ledger was written ({store.uri('ledger')})", uri=store.uri("ledger")
        )
    return []


def relative_key(key: RunKey, name: str) -> str:
    """The key of a run's file (logical or plain name) relative to the evidence root, the same on disk and
    in S3 (:meth:`resgate.contract.layout.RunKey.relative`): tables under ``gate=…/<table>/dt=…/run_id=…/``,
    other files in the run's folder ``gate=…/dt=…/run_id=…/``."""
    return key.relative(file_name(name))


class FolderStore:
    """A run's files under an evidence root on this machine (the local twin of the S3 prefix): ``dir`` is the
    run's folder ``<root>/gate=…/dt=…/run_id=…/``; each table's file is in the table's folder."""

    def __init__(self, root: str | Path, key: RunKey, *, create: bool = True) -> None:
        self.key = key
        self.root = Path(root)
        self.dir = key.path(root)
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """The path of a file by its logical or plain name."""
        return self.root / relative_key(self.key, name)

    def local_path(self, name: str) -> Path | None:
        return self.path(name)

    def uri(self, name: str | None = None) -> str:
        return str(self.path(name)) if name else f"{self.dir}{os.sep}"

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def lines(self, name: str) -> Iterator[bytes | str]:
        p = self.path(name)
        try:
            f = p.open("rb")
        except FileNotFoundError:
            raise EvidenceMissing(f"evidence file {p} is missing", uri=str(p)) from None
        return _closing(f)

    def read_text(self, name: str) -> str:
        p = self.path(name)
        try:
            return p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EvidenceMissing(f"evidence file {p} is missing", uri=str(p)) from None

    def write_text(self, name: str, text: str) -> str:
        """Write through a temporary file and rename, so a reader never sees half a file."""
        p = self.path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(p)
        return str(p)


def _closing(f: Any) -> Iterator[bytes]:
    with f:
        yield from f


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps`` accepts and Step Functions can carry: string keys, lists for
    tuples/sets, non-finite floats as strings (``"nan"``), other objects as ``str``."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [jsonable(v) for v in items]
    return str(obj)
