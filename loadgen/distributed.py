"""A distributed load on Fargate: one master task and N worker tasks, each worker's parts through S3.

Locally the master and its workers share one folder (:func:`loadgen.run.run_locust` with ``workers``). On
Fargate each task has its own file system, so the parts travel through the run's evidence prefix:

- a **worker** (``RESGATE_LOAD_ROLE=worker``, node ``w<i>``) uploads, after its Locust process has ended,
  each of its parts (:data:`loadgen.ledger.PART_PREFIXES`: its client ledger and, when it ran market-data
  subscribers, its stream ledger) to ``<run folder>/load_parts/<prefix>-<node>.jsonl`` and then its row
  (:func:`loadgen.run.node_rows`: records per part, completion marker, exit code, whole or not) to
  ``load_parts/node-<node>.json``; the row is written last, so its presence means the parts are there;
- the **master** (``RESGATE_LOAD_ROLE=master``), once its Locust has ended, waits (bounded) for the row of
  every expected worker ``w1``..``wN``, downloads each part into its own folder as ``<prefix>-<node>.jsonl``
  and checks each holds the records the row counts. A worker its Locust marked missing (no heartbeat for
  about 4 s, :class:`loadgen.ledger_plugin.WorkerWatch`) and that was still missing when the master ended
  is gone: the master waits for its row only until it has been silent for :data:`GONE_AFTER_S`, not the
  whole part wait, and its row says when it was last seen. A worker with no row by the end of the wait
  gets a row that says so. The master then merges the parts (:func:`loadgen.ledger.merge_ledgers`, the
  local code: ``ledger.jsonl`` and ``stream.jsonl``) and uploads them, its stats and ``load_nodes.jsonl``,
  which the evidence reads exactly as locally (:func:`resgate.evidence.store.incomplete_parts`: a part
  that is not whole makes every check that reads it unknown, naming the worker).

The parts sit in the run's folder, not in the tables' folders: Athena reads the merged ledgers only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loadgen.ledger import LEDGER_PREFIX, MISSING, PART_PREFIXES, count_records
from loadgen.upload import object_key, parse_s3_uri
from resgate.contract.errors import GateError
from resgate.contract.stream import STREAM_PREFIX

PARTS_FOLDER = "load_parts"
WORKER_PREFIX = "w"
"""Worker tasks are ``w1``..``wN`` (their ``RESGATE_LOAD_NODE``), as local worker processes are."""
GONE_AFTER_S = 10.0
"""A worker the master last heard this long ago, and that its Locust still counted missing when it ended,
is gone (its task died): the master stops waiting for its parts. Locust marks a worker missing after about
4 s without a heartbeat, and one that is only slow comes back within seconds."""
_COUNT_FIELD = {LEDGER_PREFIX: "records", STREAM_PREFIX: "stream_records"}
_WHOLE_FIELD = {LEDGER_PREFIX: "complete", STREAM_PREFIX: "stream_complete"}
_REASON_FIELD = {LEDGER_PREFIX: "reason", STREAM_PREFIX: "stream_reason"}


def worker_nodes(count: int) -> list[str]:
    """The node names of ``count`` workers: ``["w1", ..., "wN"]``."""
    return [f"{WORKER_PREFIX}{i}" for i in range(1, count + 1)]


def part_key(prefix: str, node: str, part: str = LEDGER_PREFIX) -> str:
    """The S3 key of a worker's part (``part`` one of :data:`loadgen.ledger.PART_PREFIXES`) under the run's
    evidence prefix."""
    return object_key(prefix, f"{PARTS_FOLDER}/{part}-{node}.jsonl")


def row_key(prefix: str, node: str) -> str:
    """The S3 key of a worker's row (its parts whole or not), written after its parts."""
    return object_key(prefix, f"{PARTS_FOLDER}/node-{node}.json")


def worker_part_files(ledger_dir: Path, pid: int) -> dict[str, Path]:
    """A worker process's part files by prefix: ``{"ledger": <dir>/ledger-<pid>.jsonl, "stream": ...}``."""
    return {part: ledger_dir / f"{part}-{pid}.jsonl" for part in PART_PREFIXES}


def upload_worker_part(
    parts: Mapping[str, Path], row: dict[str, Any], s3_uri: str, *, s3_client: Any
) -> list[str]:
    """A worker's parts (``{prefix: path}``, :func:`worker_part_files`; a part with no file is skipped),
    then its row (``row`` of :func:`loadgen.run.node_rows`); returns the keys written. Raises GateError
    when S3 refuses any."""
    bucket, prefix = parse_s3_uri(s3_uri)
    node = str(row["node"])
    keys = []
    try:
        for part, path in parts.items():
            if path.is_file():
                s3_client.upload_file(str(path), bucket, part_key(prefix, node, part))
                keys.append(part_key(prefix, node, part))
        s3_client.put_object(Bucket=bucket, Key=row_key(prefix, node), Body=json.dumps(row).encode())
        keys.append(row_key(prefix, node))
    except Exception as e:  # boto3 raises several unrelated types
        raise GateError(f"uploading the ledger parts of worker {node} failed: {e}") from e
    return keys


def _utc(ts: float | None) -> str:
    if ts is None:
        return "never"
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def missing_row(node: str, waited_s: float, seen: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The row of a worker whose parts never arrived (``complete`` and ``stream_complete`` false): gone
    (``seen`` is the master's record of a worker it found missing: the reason says when it was last
    heard) or not heard of by the end of the wait."""
    last_seen = (seen or {}).get("last_seen")
    if seen is not None and seen.get("state") == MISSING:
        reason = (
            f"the worker missed its heartbeats: last seen at {_utc(last_seen)}, missing from "
            f"{_utc(seen.get('missing_since'))}; its task died before uploading its parts "
            f"(the master stopped waiting after {waited_s:.0f} s)"
        )
    else:
        reason = (
            f"no ledger part after {waited_s:.0f} s: the worker task stopped before uploading it "
            "(see its log and stoppedReason)"
        )
    return {
        "node": node,
        "pid": (seen or {}).get("pid"),
        "exit_code": None,
        "records": 0,
        "marker_records": None,
        "complete": False,
        "reason": reason,
        "stream_records": 0,
        "stream_marker_records": None,
        "stream_complete": False,
        "stream_reason": reason,
        "last_seen": last_seen,
        "missing_since": (seen or {}).get("missing_since"),
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


def _take_row(
    s3_client: Any, bucket: str, prefix: str, node: str, raw: bytes, ledger_dir: Path
) -> dict[str, Any]:
    """A worker's row, its parts downloaded into ``ledger_dir`` as ``<part>-<node>.jsonl``; a part that
    holds other than the records its row counts is not whole."""
    row = dict(json.loads(raw))
    row["node"] = node
    for part in PART_PREFIXES:
        body = _get(s3_client, bucket, part_key(prefix, node, part))
        path = ledger_dir / f"{part}-{node}.jsonl"
        if body is not None or part == LEDGER_PREFIX:  # a worker with no subscriber has no stream part
            path.write_bytes(body or b"")
        got = count_records(path) if path.is_file() else 0
        counted = row.get(_COUNT_FIELD[part], 0)
        whole = _WHOLE_FIELD[part]
        row.setdefault(whole, row.get("complete"))  # a row without stream fields: a worker without the part
        if row.get(whole) and got != counted:
            row[whole] = False
            what = "part" if part == LEDGER_PREFIX else f"{part} part"
            row[_REASON_FIELD[part]] = (
                f"the uploaded {what} holds {got} records, the worker counted {counted}"
            )
    return row


def collect_worker_parts(
    s3_uri: str,
    nodes: Sequence[str],
    ledger_dir: Path,
    *,
    timeout_s: float,
    s3_client: Any,
    seen: Mapping[str, Mapping[str, Any]] | None = None,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """Wait for each worker's row, download its parts into ``ledger_dir`` as ``<part>-<node>.jsonl``;
    returns one row per node, in ``nodes`` order (the shape of :func:`loadgen.run.node_rows`).

    The wait for a worker is at most ``timeout_s``, and shorter for a worker that is gone: ``seen`` is the
    master's record of its workers (:func:`loadgen.ledger.read_seen`, final once the master's Locust has
    ended); one still ``missing`` there is waited for only until :data:`GONE_AFTER_S` after its
    ``last_seen`` (by ``wall``, the clock of the record), and then gets a row that says when it was last
    seen (:func:`missing_row`)."""
    bucket, prefix = parse_s3_uri(s3_uri)
    seen = seen or {}
    rows: dict[str, dict[str, Any]] = {}
    start = clock()
    silent_at_start = wall()
    deadline: dict[str, float] = {}
    for node in nodes:
        info = seen.get(node)
        deadline[node] = timeout_s
        if info is not None and info.get("state") == MISSING:
            silent = silent_at_start - float(info.get("last_seen") or silent_at_start)
            deadline[node] = min(timeout_s, max(0.0, GONE_AFTER_S - silent))
    while True:
        waited = clock() - start
        for node in [n for n in nodes if n not in rows]:
            raw = _get(s3_client, bucket, row_key(prefix, node))
            if raw is not None:
                rows[node] = _take_row(s3_client, bucket, prefix, node, raw, ledger_dir)
            elif waited >= deadline[node]:
                rows[node] = missing_row(node, waited, seen.get(node))
        pending = [deadline[n] for n in nodes if n not in rows]
        if not pending:
            return [rows[node] for node in nodes]
        sleep(min(poll_s, max(0.0, min(pending) - waited)))
