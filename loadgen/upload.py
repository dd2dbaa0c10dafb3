"""Upload a load run's results (merged ledger, Locust stats, live stats, log) to the run's S3 evidence prefix.

On Fargate the load task's files live only in the container, so the entrypoint (``python -m loadgen.run``)
calls :func:`upload_results` when ``RESGATE_EVIDENCE_S3_URI`` names the run's evidence prefix
(``s3://<bucket>/<root>/gate=<name>/dt=<date>/run_id=<id>/``). The objects get the keys of a local evidence
root (:meth:`resgate.contract.layout.RunKey.relative`), which is where the assertion Lambdas and the Athena
tables look for them:

- ``ledger.jsonl`` — the merged client ledger, in the ``ledger`` table's folder
  (``<root>/gate=<name>/ledger/dt=<date>/run_id=<id>/``)
- ``stream.jsonl`` — the market-data subscribers' stream ledger, in the ``stream`` table's folder (only
  when subscribers ran)
- ``load_stats.jsonl`` — Locust's ``--json`` entries, one a line, in the ``load_stats`` table's folder
- ``load_live.jsonl`` — the per-second live lines of every Locust process (the run's folder)
- ``load.log`` — Locust's log (the run's folder)
- ``load_nodes.jsonl`` — a distributed load's workers, one row each, its ledger and stream parts whole or
  not and when the master last heard it (the run's folder; only when the result has ``nodes``:
  :mod:`loadgen.distributed`)
- ``load_shape.jsonl`` — the overload shape's samples and fault rows (the run's folder; only when the
  load ran a shape, :mod:`resgate.contract.shape`): the timeline Lambda reads its fault rows
- ``leader_samples.jsonl`` — the leader samples of each watched leader loss (the run's folder; only when
  ``RESGATE_LEADER_WATCH`` named one, :mod:`loadgen.leader_watch`): the timeline Lambda reads them

The rows of the two tables are stamped with ``run_id`` and ``gate``
(:func:`resgate.contract.layout.stamp_line`), as the gate's own tables are: in Athena ``run_id`` is a column,
not a partition.

The gate runs one load task per run. A caller that runs several passes a ``layout`` with ``{node}`` in
the names (for example ``ledger/part-{node}.jsonl``) so that the tasks never overwrite each other.
boto3 is imported only when uploading.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from loadgen.ledger import LIVE_PREFIX, iter_lines
from loadgen.stats import load_locust_json
from resgate.contract import env as env_names
from resgate.contract.errors import ConfigError, GateError
from resgate.contract.layout import RunKey, stamp_line
from resgate.contract.shape import SHAPE_FILE

DEFAULT_LAYOUT: Mapping[str, str] = {
    "ledger": "ledger.jsonl",
    "stream": "stream.jsonl",
    "stats": "load_stats.jsonl",
    "live": "load_live.jsonl",
    "log": "load.log",
    "nodes": "load_nodes.jsonl",
    "shape": "load_shape.jsonl",
    "leader_samples": "leader_samples.jsonl",
}
_CONTENT_TYPES = {".jsonl": "application/x-ndjson", ".json": "application/json", ".log": "text/plain"}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into ``(bucket, prefix)``; the prefix is empty or ends with ``/``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"must be s3://bucket/prefix/, got {uri!r}", where=env_names.ENV_EVIDENCE_S3_URI)
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parsed.netloc, prefix


def object_key(prefix: str, name: str) -> str:
    """The key of a load file ``name`` for the evidence prefix ``prefix``: in the layout of a local evidence
    root when ``prefix`` is a run's folder (tables in their own folders), else ``prefix + name``."""
    try:
        root, key = RunKey.parse(prefix)
    except ValueError:
        return prefix + name
    return "/".join(p for p in (root, key.relative(name)) if p)


def _stamped_copy(path: Path, prefix: str) -> Path:
    """``path`` with every line stamped with the run's ``run_id`` and ``gate`` (a sibling ``*.stamped`` file),
    or ``path`` itself when ``prefix`` is not a run's folder."""
    try:
        _, key = RunKey.parse(prefix)
    except ValueError:
        return path
    out = path.with_name(path.name + ".stamped")
    with open(path, "rb") as src, open(out, "wb") as dst:
        dst.writelines(stamp_line(line, key) for line in src)
    return out


def parse_s3_locustfile(uri: str, *, where: str) -> tuple[str, str]:
    """Split ``s3://bucket/key.py`` into ``(bucket, key)``; ConfigError naming ``where`` unless it names a
    ``.py`` object. The load task downloads it (:func:`loadgen.run.resolve_locustfile`); the CDK app grants
    the task that one object."""
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not bucket or not key.rsplit("/", 1)[-1].endswith(".py"):
        raise ConfigError(f"must be s3://bucket/key.py, got {uri!r}", where=where)
    return bucket, key


def node_name() -> str:
    """This load node's name: ``RESGATE_LOAD_NODE``, else the host name (a Fargate task's is unique)."""
    name = os.environ.get(env_names.ENV_LOAD_NODE, "").strip() or socket.gethostname() or "node"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def upload_results(
    result: Any,
    s3_uri: str,
    *,
    node: str | None = None,
    layout: Mapping[str, str] = DEFAULT_LAYOUT,
    s3_client: Any = None,
) -> list[str]:
    """Upload a :class:`loadgen.run.LocustResult`'s files under ``s3_uri``; returns the object keys written.

    Missing files are skipped (a run killed before printing stats has no stats). The live lines of all
    processes are concatenated into one object. Raises :class:`ConfigError` for a bad URI and
    :class:`GateError` when S3 refuses an upload.
    """
    bucket, prefix = parse_s3_uri(s3_uri)
    node = node or node_name()
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3")
    ledger_dir = Path(result.ledger_path).parent
    live_path = ledger_dir / f"{LIVE_PREFIX}.jsonl"
    with open(live_path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(iter_lines(ledger_dir, prefix=LIVE_PREFIX))
    stats_path = Path(result.stats_path)
    stats_lines = ledger_dir / "load_stats.jsonl"
    if stats_path.is_file():
        with open(stats_lines, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in load_locust_json(stats_path))
    nodes_path = ledger_dir / "load_nodes.jsonl"
    if getattr(result, "nodes", ()):
        with open(nodes_path, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in result.nodes)
    elif nodes_path.is_file():
        nodes_path.unlink()
    files = {
        "ledger": Path(result.ledger_path),
        "stream": ledger_dir / "stream.jsonl",  # the market-data subscribers' ledger, when they ran
        "stats": stats_lines,
        "live": live_path,
        "log": Path(result.log_path),
        "nodes": nodes_path,
        "shape": ledger_dir / SHAPE_FILE,  # the overload shape's samples and fault rows, when it ran
        "leader_samples": ledger_dir / DEFAULT_LAYOUT["leader_samples"],  # loadgen.leader_watch's records
    }
    keys = []
    for kind, path in files.items():
        if not path.is_file():
            continue
        key = object_key(prefix, layout.get(kind, DEFAULT_LAYOUT[kind]).format(node=node))
        if kind in ("ledger", "stream", "stats", "nodes"):
            path = _stamped_copy(path, prefix)
        extra = {"ContentType": _CONTENT_TYPES.get(path.suffix, "application/octet-stream")}
        try:
            s3_client.upload_file(str(path), bucket, key, ExtraArgs=extra)
        except Exception as e:  # boto3 raises several unrelated types (ClientError, S3UploadFailedError, ...)
            raise GateError(f"uploading {path.name} to s3://{bucket}/{key} failed: {e}") from e
        keys.append(key)
    return keys
