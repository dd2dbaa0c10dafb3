"""A distributed load on Fargate (:mod:`loadgen.distributed`): each worker task uploads its ledger part and
then its row; the master waits (bounded) for every expected worker, checks each part holds what its row
counts, and gives a worker whose part never came a row that is not whole, naming it, so the run's ledger
is judged unknown, never passed on partial data. The task's role comes from its environment
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


def worker_uploads(s3: Any, tmp_path: Path, node: str, lines: int, *, records: int | None = None) -> None:
    part = tmp_path / f"{node}.jsonl"
    part.write_text(
        "".join(json.dumps({**RECORD, "ts": float(i), "client_id": node}) + "\n" for i in range(lines))
    )
    row = {"node": node, "pid": 7, "exit_code": 0, "records": lines if records is None else records}
    distributed.upload_worker_part(part, {**row, "complete": True, "reason": None}, RUN, s3_client=s3)


class Clock:
    """A clock the sleeps advance: the master's wait without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def collect(s3: Any, tmp_path: Path, nodes: list[str], timeout_s: float = 5.0) -> list[dict[str, Any]]:
    clock = Clock()
    out = tmp_path / "master"
    out.mkdir(exist_ok=True)
    return distributed.collect_worker_parts(
        RUN, nodes, out, timeout_s=timeout_s, s3_client=s3, clock=clock, sleep=clock.sleep
    )


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
    distributed.upload_worker_part(part, row, RUN, s3_client=s3)
    (got,) = collect(s3, tmp_path, ["w1"])
    assert (got["complete"], got["reason"]) == (False, "killed by signal 9")


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
