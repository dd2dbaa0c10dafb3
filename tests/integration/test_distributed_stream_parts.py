"""A distributed load with market-data subscribers, run for real on 127.0.0.1: every worker's stream ledger
part reaches the evidence beside its client-ledger part, and a worker that dies is noticed by its master.

Locally (``run_locust(workers=2)``) each worker's stream part is judged by its completion marker like its
ledger part (:func:`loadgen.run.node_rows`) and the run's ``stream.jsonl`` is their merge. On Fargate the
same three processes are the load image's entrypoint (``python -m loadgen.run``: a master task and two
worker tasks, S3 a moto server): each worker uploads its stream part with its ledger part, the master merges
them; a worker task killed mid-run (SIGKILL to the task's processes, its upload never happens) is found
missing by the master's Locust through its heartbeats, so the master stops waiting for its part once the
worker has been silent for :data:`loadgen.distributed.GONE_AFTER_S`, not after the full part wait, and the
evidence names it with the time it was last seen: the streaming check and the ledger's checks are unknown.
Every wait is bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psutil
import pytest

from loadgen import distributed
from loadgen.ledger import count_records, part_files
from loadgen.run import PACKAGE_ROOT, run_locust
from loadgen.stats import read_live
from resgate.contract import env as env_names
from resgate.contract.errors import EvidenceMissing
from resgate.contract.layout import RunKey
from resgate.contract.stream import STREAM_PREFIX
from resgate.evidence.builders import streaming_evidence
from resgate.evidence.sources import Sources
from resgate.evidence.store import FolderStore, ledger
from tests.integration._fake_feed import FakeFeed

pytestmark = pytest.mark.integration

SUBSCRIBERS = {
    env_names.ENV_STREAM_SUBSCRIBERS: "2",  # every user a subscriber: one on each worker
    "RESGATE_WAIT_MIN_S": "0.1",
    "RESGATE_WAIT_MAX_S": "0.2",
}
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "evidence-bucket"
RUN_PREFIX = "evidence/gate=g/dt=2026-12-07/run_id=dist1/"


def test_two_local_workers_each_leave_a_whole_stream_part_and_the_stream_ledger_is_their_merge(
    tmp_path: Path,
) -> None:
    with FakeFeed() as feed:
        run = run_locust(
            feed.url,
            users=2,
            spawn_rate=2,
            duration_s=3,
            ledger_dir=tmp_path,
            env=SUBSCRIBERS,
            workers=2,
            stop_timeout_s=1,
        )
        try:
            result = run.wait(timeout=90)
        finally:
            result = run.stop()
    rows = {n["node"]: n for n in result.nodes}
    assert set(rows) == {"w1", "w2"}
    for row in rows.values():
        assert row["complete"] and row["stream_complete"], row
        assert row["stream_records"] > 0 and row["stream_records"] == row["stream_marker_records"], row
    merged = tmp_path / f"{STREAM_PREFIX}.jsonl"
    assert count_records(merged) == sum(r["stream_records"] for r in rows.values())
    assert len(part_files(tmp_path, STREAM_PREFIX)) == 2


@pytest.fixture
def moto_s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 (the worker and master tasks are processes of their own), its bucket
    created; yields the environment that points boto3 at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    try:
        url = "http://{}:{}".format(*server.get_host_and_port())
        env = {**FAKE_AWS, "AWS_ENDPOINT_URL_S3": url}
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", **_keys()).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.stop()


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _task(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "loadgen.run"],
            cwd=PACKAGE_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill_task(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to a task's entrypoint and every process under it (its Locust leads a session of its own):
    the Fargate task is gone at once, nothing of it uploads."""
    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)


def _objects(env: dict[str, str]) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1", **_keys())
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_a_worker_task_killed_mid_run_is_named_with_its_last_heartbeat_and_the_master_stops_waiting_early(
    tmp_path: Path, moto_s3: dict[str, str]
) -> None:
    port = _free_port()
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RESGATE_", "AWS_"))},
        **moto_s3,
        **SUBSCRIBERS,
        "PYTHONPATH": str(PACKAGE_ROOT),
        env_names.ENV_USERS: "2",
        env_names.ENV_DURATION_S: "6",
        env_names.ENV_STOP_TIMEOUT_S: "1",
        env_names.ENV_EVIDENCE_S3_URI: f"s3://{BUCKET}/{RUN_PREFIX}",
        env_names.ENV_MASTER_PORT: str(port),
    }
    with FakeFeed() as feed:
        base[env_names.ENV_TARGET_HOST] = feed.url
        master_env = {
            **base,
            env_names.ENV_LOAD_ROLE: "master",
            env_names.ENV_LOAD_WORKERS: "2",
            env_names.ENV_MASTER_BIND_HOST: "127.0.0.1",
            env_names.ENV_LEDGER_DIR: str(tmp_path / "master"),
        }
        tasks: dict[str, subprocess.Popen[bytes]] = {"master": _task(master_env, tmp_path / "master.log")}
        for node in ("w1", "w2"):
            tasks[node] = _task(
                {
                    **base,
                    env_names.ENV_LOAD_ROLE: "worker",
                    env_names.ENV_MASTER_HOST: "127.0.0.1",
                    env_names.ENV_LOAD_NODE: node,
                    env_names.ENV_LEDGER_DIR: str(tmp_path / node),
                },
                tmp_path / f"{node}.log",
            )
        try:
            # w2 dies once it has reported its first requests (its live lines, written once a second)
            deadline = time.monotonic() + 90
            while not any(p["requests"] for p in read_live(tmp_path / "w2")):
                assert time.monotonic() < deadline and tasks["w2"].poll() is None, _logs(tmp_path)
                time.sleep(0.1)
            _kill_task(tasks["w2"])
            killed_at = time.time()
            tasks["master"].wait(timeout=distributed.GONE_AFTER_S + 90)
            tasks["w1"].wait(timeout=30)
        finally:
            for proc in tasks.values():
                if proc.poll() is None:
                    _kill_task(proc)
    master_log = (tmp_path / "master.log").read_text()
    assert tasks["master"].returncode == 0, _logs(tmp_path)
    # the master's own measure of its wait for the parts: w2's silence, not the full part wait
    waited = float(master_log.split("worker parts collected in ")[1].split(" s")[0])
    assert waited < distributed.GONE_AFTER_S + 5, master_log[-3000:]

    objects = _objects(moto_s3)
    root, key = RunKey.parse(RUN_PREFIX)
    store = FolderStore(tmp_path / "evidence", key)
    for k, body in objects.items():
        path = tmp_path / "evidence" / k.removeprefix(root + "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    nodes = {r["node"]: r for r in map(json.loads, store.path("load_nodes").read_text().splitlines())}
    assert nodes["w1"]["complete"] and nodes["w1"]["stream_complete"], nodes
    w2 = nodes["w2"]
    assert w2["complete"] is False and w2["stream_complete"] is False, w2
    assert w2["last_seen"] is not None and killed_at - 5 < w2["last_seen"] <= killed_at + 0.5, (w2, killed_at)
    assert "missed its heartbeats" in w2["reason"] and "last seen at" in w2["reason"], w2
    # the stream ledger the master uploaded is w1's whole part: nothing of w2 reached it
    assert count_records(store.path("stream")) == nodes["w1"]["stream_records"] > 0
    with pytest.raises(EvidenceMissing, match="load worker w2"):
        streaming_evidence(store, None, Sources(run_id="dist1"))  # type: ignore[arg-type]
    with pytest.raises(EvidenceMissing, match="load worker w2"):
        ledger(store)


def _logs(tmp_path: Path) -> str:
    out: list[str] = []
    for name in ("master", "w1", "w2"):
        log = tmp_path / f"{name}.log"
        if log.is_file():
            out.append(f"--- {name}\n{log.read_text()[-1500:]}")
    return "\n".join(out)
