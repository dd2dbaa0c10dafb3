"""A distributed load on Fargate (:mod:`loadgen.distributed`): each worker task uploads its parts (client
ledger, and stream ledger when it ran subscribers) and then its row; the master waits (bounded) for every
expected worker, checks each part holds what its row counts, and gives a worker whose parts never came a
row that is not whole, naming it, so the run's ledgers are judged unknown, never passed on partial data. A
worker the master's heartbeats found missing is waited for only until it has been silent
``GONE_AFTER_S``, and its row says when it was last seen. The task's role comes from its environment
(:func:`loadgen.run.remote_role_from_env`), a bad one a ConfigError naming the variable. S3 is moto's."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loadgen import distributed
from loadgen.ledger import merge_ledgers
from loadgen.run import RemoteRole, remote_role_from_env
from resgate.contract import env as env_names
from resgate.contract.errors import ConfigError

RUN = "s3://evidence-bucket/evidence/gate=g/dt=2026-12-07/run_id=r1/"
RECORD = {"ts": 1.0, "op": "get_order", "client_id": "c", "status": 200, "outcome": "ok", "latency_ms": 1.0}


@pytest.fixture(scope="module")
def s3_module() -> Iterator[Any]:
    """One moto S3 for the module (starting one per test costs seconds); each test has its own run."""
    with pytest.MonkeyPatch.context() as mp:
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            mp.setenv(k, "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket="evidence-bucket")
            yield client


@pytest.fixture
def s3(s3_module: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(
        sys.modules[__name__], "RUN", RUN.replace("run_id=r1", f"run_id={request.node.name[:40]}")
    )
    return s3_module


STREAM_RECORD = {"ts": 1.0, "client_id": "s1", "event": "heartbeat"}


def worker_uploads(
    s3: Any,
    tmp_path: Path,
    node: str,
    lines: int,
    *,
    records: int | None = None,
    stream_lines: int = 0,
    stream_records: int | None = None,
) -> None:
    part = tmp_path / f"{node}.jsonl"
    part.write_text(
        "".join(json.dumps({**RECORD, "ts": float(i), "client_id": node}) + "\n" for i in range(lines))
    )
    parts = {"ledger": part, "stream": tmp_path / f"{node}-stream.jsonl"}
    if stream_lines:
        parts["stream"].write_text("".join(json.dumps(STREAM_RECORD) + "\n" for _ in range(stream_lines)))
    row = {"node": node, "pid": 7, "exit_code": 0, "records": lines if records is None else records}
    row |= {"stream_records": stream_lines if stream_records is None else stream_records}
    row |= {"complete": True, "reason": None, "stream_complete": True, "stream_reason": None}
    distributed.upload_worker_part(parts, row, RUN, s3_client=s3)


class Clock:
    """A clock the sleeps advance: the master's wait without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def collect(
    s3: Any,
    tmp_path: Path,
    nodes: list[str],
    timeout_s: float = 5.0,
    *,
    seen: dict[str, dict[str, Any]] | None = None,
    clock: Clock | None = None,
) -> list[dict[str, Any]]:
    clock = clock or Clock()
    out = tmp_path / "master"
    out.mkdir(exist_ok=True)
    return distributed.collect_worker_parts(
        RUN,
        nodes,
        out,
        timeout_s=timeout_s,
        s3_client=s3,
        seen=seen,
        clock=clock,
        sleep=clock.sleep,
        wall=lambda: NOW,
    )


NOW = 1_796_664_620.0
"""The wall clock when the master starts collecting (its record's times are on that clock)."""


def test_a_workers_part_lands_in_the_runs_folder_and_its_row_after_it(s3: Any, tmp_path: Path) -> None:
    worker_uploads(s3, tmp_path, "w1", 3)
    prefix = RUN.removeprefix("s3://evidence-bucket/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="evidence-bucket", Prefix=prefix)["Contents"]]
    assert sorted(k.removeprefix(prefix) for k in keys) == [
        "load_parts/ledger-w1.jsonl",
        "load_parts/node-w1.json",
    ]  # the run's folder, not the ledger table's: Athena reads only the merged ledger


def test_the_master_merges_every_whole_part_and_the_merged_count_is_their_sum(
    s3: Any, tmp_path: Path
) -> None:
    worker_uploads(s3, tmp_path, "w1", 3)
    worker_uploads(s3, tmp_path, "w2", 4)
    rows = collect(s3, tmp_path, distributed.worker_nodes(2))
    assert [(r["node"], r["records"], r["complete"]) for r in rows] == [("w1", 3, True), ("w2", 4, True)]
    merged = merge_ledgers(tmp_path / "master")
    assert len(merged.read_text().splitlines()) == 7


def test_a_worker_whose_part_never_came_is_not_whole_and_named_after_the_wait(
    s3: Any, tmp_path: Path
) -> None:
    worker_uploads(s3, tmp_path, "w1", 2)
    rows = collect(s3, tmp_path, ["w1", "w2"], timeout_s=5.0)
    w2 = rows[1]
    assert (w2["node"], w2["complete"], w2["records"]) == ("w2", False, 0)
    assert w2["reason"].startswith("no ledger part after 5 s: the worker task stopped before uploading it")


def test_an_uploaded_part_one_record_short_of_its_row_is_not_whole(s3: Any, tmp_path: Path) -> None:
    worker_uploads(s3, tmp_path, "w1", 3, records=4)
    worker_uploads(s3, tmp_path, "w2", 3, records=3)
    w1, w2 = collect(s3, tmp_path, ["w1", "w2"])
    assert (
        w1["complete"] is False and w1["reason"] == "the uploaded part holds 3 records, the worker counted 4"
    )
    assert w2["complete"] is True


def test_a_worker_row_that_says_its_part_is_not_whole_stays_so(s3: Any, tmp_path: Path) -> None:
    part = tmp_path / "p.jsonl"
    part.write_text(json.dumps(RECORD) + "\n")
    row = {"node": "w1", "records": 1, "complete": False, "reason": "killed by signal 9"}
    distributed.upload_worker_part({"ledger": part}, row, RUN, s3_client=s3)
    (got,) = collect(s3, tmp_path, ["w1"])
    assert (got["complete"], got["reason"]) == (False, "killed by signal 9")
    assert got["stream_complete"] is False  # a row without stream fields: its parts share its verdict


def test_a_row_is_filed_under_the_node_it_was_uploaded_for_and_one_without_stream_fields_owes_no_stream(
    s3: Any, tmp_path: Path
) -> None:
    bucket, prefix = distributed.parse_s3_uri(RUN)
    s3.put_object(Bucket=bucket, Key=distributed.part_key(prefix, "w1"), Body=json.dumps(RECORD) + "\n")
    row = {"node": "w9", "records": 1, "complete": True, "reason": None}  # an image without stream parts
    s3.put_object(Bucket=bucket, Key=distributed.row_key(prefix, "w1"), Body=json.dumps(row))
    (got,) = collect(s3, tmp_path, ["w1"])
    assert (got["node"], got["complete"], got["stream_complete"]) == ("w1", True, True)


def test_a_workers_stream_part_travels_beside_its_ledger_part_and_is_checked_against_its_row(
    s3: Any, tmp_path: Path
) -> None:
    worker_uploads(s3, tmp_path, "w1", 2, stream_lines=5)
    worker_uploads(s3, tmp_path, "w2", 2, stream_lines=3, stream_records=4)
    worker_uploads(s3, tmp_path, "w3", 2)  # Locust put no subscriber on it: no stream part, none owed
    w1, w2, w3 = collect(s3, tmp_path, ["w1", "w2", "w3"])
    assert (w1["stream_complete"], w3["stream_complete"]) == (True, True)
    assert w2["complete"] is True and w2["stream_complete"] is False
    assert w2["stream_reason"] == "the uploaded stream part holds 3 records, the worker counted 4"
    merged = merge_ledgers(tmp_path / "master", prefix="stream")
    assert merged.name == "stream.jsonl" and len(merged.read_text().splitlines()) == 8
    assert not (tmp_path / "master" / "stream-w3.jsonl").exists()


def gone(last_seen: float) -> dict[str, dict[str, Any]]:
    """The master's record of a worker w2 its Locust still counted missing when it ended."""
    return {"w2": {"node": "w2", "last_seen": last_seen, "state": "missing", "missing_since": last_seen + 4}}


@pytest.mark.parametrize(
    ("silent_s", "waited_s"),
    [
        (distributed.GONE_AFTER_S, 0.0),  # silent long enough already: no wait at all
        (distributed.GONE_AFTER_S + 30, 0.0),
        (distributed.GONE_AFTER_S - 3, 3.0),  # waited for until it has been silent GONE_AFTER_S
        (distributed.GONE_AFTER_S - 2.5, 2.5),  # to the part of a second (the last sleep is shorter)
    ],
)
def test_a_worker_the_masters_heartbeats_found_missing_is_waited_for_only_until_silent_long_enough(
    s3: Any, tmp_path: Path, silent_s: float, waited_s: float
) -> None:
    worker_uploads(s3, tmp_path, "w1", 2)
    clock = Clock()
    clock.now = 500.0  # the monotonic clock starts anywhere
    w1, w2 = collect(s3, tmp_path, ["w1", "w2"], timeout_s=95.0, seen=gone(NOW - silent_s), clock=clock)
    assert clock.now - 500.0 == waited_s
    assert w1["complete"] and (w2["complete"], w2["stream_complete"]) == (False, False)
    assert (w2["records"], w2["stream_records"]) == (0, 0)
    assert w2["last_seen"] == NOW - silent_s and w2["missing_since"] == NOW - silent_s + 4
    assert w2["reason"].startswith("the worker missed its heartbeats: last seen at ")


def test_a_worker_heard_until_the_end_or_that_came_back_is_waited_for_the_whole_part_wait(
    s3: Any, tmp_path: Path
) -> None:
    worker_uploads(s3, tmp_path, "w1", 2)
    for state in ("running", "left"):
        clock = Clock()
        seen = {"w2": {"node": "w2", "last_seen": NOW - 60, "state": state, "missing_since": None}}
        _, w2 = collect(s3, tmp_path, ["w1", "w2"], timeout_s=20.0, seen=seen, clock=clock)
        assert clock.now == 20.0 and w2["reason"].startswith("no ledger part after 20 s")


def test_a_gone_workers_row_that_arrives_within_its_grace_is_taken_as_it_is(s3: Any, tmp_path: Path) -> None:
    worker_uploads(s3, tmp_path, "w2", 3, stream_lines=2)
    (w2,) = collect(s3, tmp_path, ["w2"], timeout_s=95.0, seen=gone(NOW - 1))
    assert (w2["complete"], w2["stream_complete"], w2["records"]) == (True, True, 3)


@pytest.mark.parametrize(
    ("env", "role"),
    [
        ({}, None),
        ({"RESGATE_LOAD_ROLE": "master", "RESGATE_LOAD_WORKERS": "0"}, None),  # a profile with no workers
        (
            {"RESGATE_LOAD_ROLE": "master", "RESGATE_LOAD_WORKERS": "2"},
            RemoteRole("master", "0.0.0.0", 5557, 2),
        ),
        (
            {
                "RESGATE_LOAD_ROLE": "master",
                "RESGATE_LOAD_WORKERS": "4",
                "RESGATE_MASTER_BIND_HOST": "127.0.0.1",
            },
            RemoteRole("master", "127.0.0.1", 5557, 4),
        ),
        (
            {
                "RESGATE_LOAD_ROLE": "worker",
                "RESGATE_MASTER_HOST": "10.0.1.23",
                "RESGATE_MASTER_PORT": "6000",
            },
            RemoteRole("worker", "10.0.1.23", 6000),
        ),
    ],
)
def test_the_tasks_role_comes_from_its_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], role: RemoteRole | None
) -> None:
    for name in (env_names.ENV_LOAD_ROLE, env_names.ENV_LOAD_WORKERS, env_names.ENV_MASTER_BIND_HOST):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert remote_role_from_env(users=4) == role


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"RESGATE_LOAD_ROLE": "leader"}, "RESGATE_LOAD_ROLE"),
        ({"RESGATE_LOAD_ROLE": "worker"}, "RESGATE_MASTER_HOST"),
        ({"RESGATE_LOAD_ROLE": "master", "RESGATE_LOAD_WORKERS": "5"}, "RESGATE_LOAD_WORKERS"),  # > 4 users
    ],
)
def test_a_bad_role_is_an_error_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], where: str
) -> None:
    for name in (env_names.ENV_MASTER_HOST, env_names.ENV_LOAD_WORKERS):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as e:
        remote_role_from_env(users=4)
    assert e.value.where == where
