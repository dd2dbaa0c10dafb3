"""A distributed load on Fargate: one master task and N worker tasks, each worker's ledger part through S3.

Locally the master and its workers share one folder (:func:`loadgen.run.run_locust` with ``workers``). On
Fargate each task has its own file system, so the parts travel through the run's evidence prefix:

- a **worker** (``RESGATE_LOAD_ROLE=worker``, node ``w<i>``) uploads, after its Locust process has ended,
  its ledger part to ``<run folder>/load_parts/ledger-<node>.jsonl`` and then its row
  (:func:`loadgen.run.node_rows`: records, completion marker, exit code, whole or not) to
  ``load_parts/node-<node>.json``; the row is written last, so its presence means the part is there;
- the **master** (``RESGATE_LOAD_ROLE=master``), once its Locust has ended, waits (bounded) for the row of
  every expected worker ``w1``..``wN``, downloads each part into its own folder as ``ledger-<node>.jsonl``
  and checks it holds the records the row counts; a worker with no row by then (its task died, it could not
  upload) gets a row that says so. The master then merges the parts (:func:`loadgen.ledger.merge_ledgers`,
  the local code) and uploads the merged ledger, its stats and ``load_nodes.jsonl``, which the evidence
  reads exactly as locally (:func:`resgate.evidence.store.incomplete_load_parts`: a part that is not whole
  makes every check that reads the ledger unknown, naming the worker).

The parts sit in the run's folder, not in the ``ledger`` table's: Athena reads the merged ledger only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loadgen.ledger import LEDGER_PREFIX, count_records
from loadgen.upload import object_key, parse_s3_uri
from resgate.contract.errors import GateError

PARTS_FOLDER = "load_parts"
WORKER_PREFIX = "w"
"""Worker tasks are ``w1``..``wN`` (their ``RESGATE_LOAD_NODE``), as local worker processes are."""


def worker_nodes(count: int) -> list[str]:
    """The node names of ``count`` workers: ``["w1", ..., "wN"]``."""
    return [f"{WORKER_PREFIX}{i}" for i in range(1, count + 1)]


def part_key(prefix: str, node: str) -> str:
    """The S3 key of a worker's ledger part under the run's evidence prefix."""
    return object_key(prefix, f"{PARTS_FOLDER}/{LEDGER_PREFIX}-{node}.jsonl")


def row_key(prefix: str, node: str) -> str:
    """The S3 key of a worker's row (its part whole or not), written after its part."""
    return object_key(prefix, f"{PARTS_FOLDER}/node-{node}.json")


def upload_worker_part(ledger_path: Path, row: dict[str, Any], s3_uri: str, *, s3_client: Any) -> list[str]:
    """A worker's part, then its row (``row`` of :func:`loadgen.run.node_rows`); returns the keys written.
    Raises GateError when S3 refuses either."""
    bucket, prefix = parse_s3_uri(s3_uri)
    node = str(row["node"])
    keys = []
    try:
        if ledger_path.is_file():
            s3_client.upload_file(str(ledger_path), bucket, part_key(prefix, node))
            keys.append(part_key(prefix, node))
        s3_client.put_object(Bucket=bucket, Key=row_key(prefix, node), Body=json.dumps(row).encode())
        keys.append(row_key(prefix, node))
    except Exception as e:  # boto3 raises several unrelated types
        raise GateError(f"uploading the ledger part of worker {node} failed: {e}") from e
    return keys


def missing_row(node: str, waited_s: float) -> dict[str, Any]:
    """The row of a worker whose part never arrived (``complete`` false; the reason names what to read)."""
    return {
        "node": node,
        "pid": None,
        "exit_code": None,
        "records": 0,
        "marker_records": None,
        "complete": False,
        "reason": f"no ledger part after {waited_s:.0f} s: the worker task stopped before uploading it "
        "(see its log and stoppedReason)",
    }


def _get(s3_client: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, None while it is not there (404, or 403 without ``s3:ListBucket``)."""
    try:
        return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as e:
        code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "403", "AccessDenied", "NotFound"):
            return None
        raise GateError(f"reading s3://{bucket}/{key} failed: {e}") from e


def collect_worker_parts(
    s3_uri: str,
    nodes: Sequence[str],
    ledger_dir: Path,
    *,
    timeout_s: float,
    s3_client: Any,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Wait at most ``timeout_s`` for each worker's row, download its part into ``ledger_dir`` as
    ``ledger-<node>.jsonl``; returns one row per node, in ``nodes`` order (the shape of
    :func:`loadgen.run.node_rows`). A part that holds other than the records its row counts is not whole."""
    bucket, prefix = parse_s3_uri(s3_uri)
    rows: dict[str, dict[str, Any]] = {}
    start = clock()
    while True:
        for node in nodes:
            if node in rows:
                continue
            raw = _get(s3_client, bucket, row_key(prefix, node))
            if raw is None:
                continue
            row = dict(json.loads(raw))
            row["node"] = node
            part = ledger_dir / f"{LEDGER_PREFIX}-{node}.jsonl"
            body = _get(s3_client, bucket, part_key(prefix, node))
            part.write_bytes(body or b"")
            got = count_records(part)
            if row.get("complete") and got != row.get("records"):
                row["complete"] = False
                row["reason"] = (
                    f"the uploaded part holds {got} records, the worker counted {row.get('records')}"
                )
            rows[node] = row
        waited = clock() - start
        if len(rows) == len(nodes) or waited >= timeout_s:
            return [rows.get(node) or missing_row(node, waited) for node in nodes]
        sleep(min(poll_s, max(0.0, timeout_s - waited)))
