"""A run's evidence in S3: the same files as a local run folder, under ``<prefix>/gate=../dt=../run_id=../``.

:class:`S3Evidence` reads JSON-lines tables as streams (``iter_lines`` on the object body, so a large
ledger is never held whole in memory), writes the verdict's files, and turns "no such key" into
:class:`EvidenceMissing` so that a check can report ``unknown`` instead of judging nothing. Every other S3
failure is a :class:`resgate.contract.errors.GateError` with the cause attached.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.common import settings
from lambdas.common.event import RunEvent
from resgate.checks.ledger import LedgerRecord, iter_ledger
from resgate.contract.errors import ConfigError, GateError
from resgate.contract.layout import FILES, TABLES, RunKey

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

CONTENT_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".xml": "application/xml",
    ".yaml": "application/yaml",
}


class EvidenceMissing(GateError):
    """A piece of evidence a check needs is not there (an S3 object, or data a source did not return)."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        self.uri = uri
        super().__init__(message)


def file_name(name: str) -> str:
    """The file name of a table (``TABLES``) or file (``FILES``) by its logical name, or ``name`` itself."""
    return TABLES.get(name) or FILES.get(name) or name


class S3Evidence:
    """Reads and writes one run's evidence files in ``bucket`` under ``<prefix>/<run prefix>/``."""

    def __init__(self, bucket: str, prefix: str, run: RunKey, *, client: Any = None) -> None:
        self.bucket = bucket
        self.root = "/".join(p for p in (prefix.strip("/"), run.prefix) if p)
        self.run = run
        self.s3 = client if client is not None else boto3.client("s3")

    @classmethod
    def for_run(cls, event: RunEvent, *, client: Any = None) -> S3Evidence:
        """The evidence store of the event's run."""
        return cls(event.bucket, event.prefix, event.run, client=client)

    # -- names --------------------------------------------------------------------------------------
    def key(self, name: str) -> str:
        """The S3 key of a logical table/file name (``"ledger"``) or a plain file name."""
        return f"{self.root}/{file_name(name)}"

    def uri(self, name: str | None = None) -> str:
        """``s3://bucket/<run prefix>/`` or the URI of one file."""
        return f"s3://{self.bucket}/{self.root}/" + (file_name(name) if name else "")

    # -- reading ------------------------------------------------------------------------------------
    def _failed(self, action: str, name: str, e: Exception) -> Exception:
        if isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") in _MISSING_CODES:
            return EvidenceMissing(f"evidence file {self.uri(name)} is missing", uri=self.uri(name))
        return GateError(f"could not {action} {self.uri(name)}: {e}")

    def exists(self, name: str) -> bool:
        """True when the file is present."""
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key(name))
        except (ClientError, BotoCoreError) as e:
            err = self._failed("read", name, e)
            if isinstance(err, EvidenceMissing):
                return False
            raise err from e
        return True

    def _body(self, name: str) -> Any:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
        except (ClientError, BotoCoreError) as e:
            raise self._failed("read", name, e) from e

    def lines(self, name: str) -> Iterator[bytes]:
        """The file's lines as bytes, streamed. The object is opened now, so a missing file raises
        :class:`EvidenceMissing` here and not on the first iteration."""
        body = self._body(name)
        return _closing_lines(body)

    def read_text(self, name: str) -> str:
        """The whole file as text (for small files: config, verdict)."""
        body = self._body(name)
        try:
            return body.read().decode("utf-8")
        finally:
            body.close()

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """Every JSON object of a (small) JSON-lines table; a bad line raises ConfigError naming
        ``s3://…/<file>:<line>``."""
        return list(iter_json_objects(self.lines(name), source=self.uri(name)))

    def ledger(self) -> LedgerView:
        """A re-iterable stream of the run's ledger records; raises :class:`EvidenceMissing` now if absent."""
        if not self.exists("ledger"):
            raise EvidenceMissing(f"evidence file {self.uri('ledger')} is missing", uri=self.uri("ledger"))
        return LedgerView(self)

    # -- writing ------------------------------------------------------------------------------------
    def put_text(self, name: str, text: str) -> str:
        """Write a file; return its URI."""
        fname = file_name(name)
        suffix = fname[fname.rfind(".") :] if "." in fname else ""
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key(name),
                Body=text.encode("utf-8"),
                ContentType=CONTENT_TYPES.get(suffix, "text/plain; charset=utf-8"),
            )
        except (ClientError, BotoCoreError) as e:
            raise GateError(f"could not write {self.uri(name)}: {e}") from e
        return self.uri(name)

    def put_jsonl(self, name: str, rows: Iterable[Mapping[str, Any]], *, stamp: bool = True) -> str:
        """Write rows as JSON lines; with ``stamp`` each row starts with ``run_id`` and ``gate`` (as the local
        :class:`resgate.evidence.writer.EvidenceWriter` does, so the same SQL joins them)."""
        out = []
        for row in rows:
            if stamp:
                row = {"run_id": self.run.run_id, "gate": self.run.gate, **row}
            out.append(json.dumps(row, default=str, separators=(",", ":")) + "\n")
        return self.put_text(name, "".join(out))


class LedgerView:
    """The ledger as an iterable of :class:`LedgerRecord` that reads S3 afresh on every iteration.

    Checkers that take the ledger as evidence may pass over it more than once; a one-shot generator would
    silently be empty the second time, and a tuple would hold a million records in memory.
    """

    def __init__(self, store: S3Evidence) -> None:
        self.store = store

    def __iter__(self) -> Iterator[LedgerRecord]:
        return iter_ledger(self.store.lines("ledger"), source=self.store.uri("ledger"))


def _closing_lines(body: Any) -> Iterator[bytes]:
    try:
        # botocore's default 1 KiB chunks make a million-line ledger a million small reads.
        yield from body.iter_lines(chunk_size=settings.S3_READ_CHUNK_BYTES)
    finally:
        body.close()


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
