"""The run store under an S3 prefix: the same keys as a local evidence root, under ``s3://<bucket>/<prefix>/``
in the layout of :mod:`resgate.contract.layout` (see :mod:`resgate.evidence.store` for the protocol).

Files are streamed line by line (``iter_lines`` on the object body, so a large ledger is never held whole in
memory); "no such key" becomes :class:`~resgate.contract.errors.EvidenceMissing`; every other S3 failure
is a :class:`~resgate.contract.errors.GateError` with the cause attached.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from resgate.contract.errors import EvidenceMissing, GateError
from resgate.contract.layout import RunKey
from resgate.evidence.store import file_name, relative_key

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# botocore's default 1 KiB chunks make a million-line ledger a million small reads.
READ_CHUNK_BYTES = 1 << 20

CONTENT_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".xml": "application/xml",
    ".yaml": "application/yaml",
}


class S3Store:
    """One run's files in ``bucket`` under the evidence root ``prefix``: ``root`` is the run's folder
    ``<prefix>/gate=…/dt=…/run_id=…``; each table's file is in the table's folder (same keys as on disk)."""

    def __init__(self, bucket: str, prefix: str, key: RunKey, *, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = "/".join(p for p in (self.prefix, key.prefix) if p)
        self.key = key
        self.s3 = client if client is not None else boto3.client("s3")

    # -- names --------------------------------------------------------------------------------------
    def object_key(self, name: str) -> str:
        """The S3 key of a logical table/file name (``"ledger"``) or a plain file name."""
        return "/".join(p for p in (self.prefix, relative_key(self.key, name)) if p)

    def uri(self, name: str | None = None) -> str:
        """``s3://bucket/<run folder>/`` or the URI of one file."""
        return f"s3://{self.bucket}/" + (self.object_key(name) if name else f"{self.root}/")

    # -- reading ------------------------------------------------------------------------------------
    def _failed(self, action: str, name: str, e: Exception) -> Exception:
        if isinstance(e, ClientError) and e.response.get("Error", {}).get("Code") in _MISSING_CODES:
            return EvidenceMissing(f"evidence file {self.uri(name)} is missing", uri=self.uri(name))
        return GateError(f"could not {action} {self.uri(name)}: {e}")

    def exists(self, name: str) -> bool:
        """True when the file is present."""
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.object_key(name))
        except (ClientError, BotoCoreError) as e:
            err = self._failed("read", name, e)
            if isinstance(err, EvidenceMissing):
                return False
            raise err from e
        return True

    def _body(self, name: str) -> Any:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.object_key(name))["Body"]
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

    # -- writing ------------------------------------------------------------------------------------
    def local_path(self, name: str) -> Path | None:
        """None: an S3 object has no local path."""
        return None

    def write_text(self, name: str, text: str) -> str:
        """Write a file; return its URI."""
        fname = file_name(name)
        suffix = fname[fname.rfind(".") :] if "." in fname else ""
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.object_key(name),
                Body=text.encode("utf-8"),
                ContentType=CONTENT_TYPES.get(suffix, "text/plain; charset=utf-8"),
            )
        except (ClientError, BotoCoreError) as e:
            raise GateError(f"could not write {self.uri(name)}: {e}") from e
        return self.uri(name)


def _closing_lines(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_lines(chunk_size=READ_CHUNK_BYTES)
    finally:
        body.close()
