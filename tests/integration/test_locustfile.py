"""The real locustfile, run headless by ``run_locust`` against a fake order gateway on 127.0.0.1.

One short faulty run (every 11th order 503 + Retry-After, every 13th connection reset after the order
was applied, every 97th answered after the client timeout) is shared by most tests; the stop tests start
their own runs. Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loadgen import ConfigError
from loadgen.ledger import count_records, iter_records
from loadgen.run import LocustRun, run_locust
from loadgen.stats import read_live
from resgate.contract.ledger import OPS
from resgate.runner.load import LoadRun
from tests.integration._fake_broker_api import FakeBrokerAPI

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 4
NETWORK_TIMEOUT_S = 0.4
RETRY_AFTER_CAP_S = 0.2
USERS = 8
LOAD_ENV = {
    "RESGATE_WAIT_MIN_S": "0",
    "RESGATE_WAIT_MAX_S": "0.02",
    "RESGATE_NETWORK_TIMEOUT_S": str(NETWORK_TIMEOUT_S),
    "RESGATE_CONNECT_TIMEOUT_S": "1",
    "RESGATE_RETRY_AFTER_CAP_S": str(RETRY_AFTER_CAP_S),
    "RESGATE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "RESGATE_RESEND_RATIO": "0.05",
}


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_live_lines(ledger_dir: Path, run: LocustRun, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not read_live(ledger_dir):
        assert run.running, f"locust exited early: {run.log_path.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no live stats within the time limit"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    ledger_dir = tmp_path_factory.mktemp("faulty-run")
    with FakeBrokerAPI(
        unavailable_every=11,
        retry_after="1",
        drop_every=13,
        drop_mode="reset",
        drop_after_apply=True,
        stall_every=97,
        stall_s=NETWORK_TIMEOUT_S * 2,
    ) as api:
        run = run_locust(
            api.url, users=USERS, spawn_rate=USERS, duration_s=5, ledger_dir=ledger_dir, env=LOAD_ENV
        )
        try:
            result = run.wait(timeout=60)
        finally:
            run.stop()
        submits = api.submits
        with api.server.lock:
            idempotency = dict(api.server.idempotency)
            orders = len(api.server.orders)
    records = list(iter_records(result.ledger_path))
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["op"] == "submit_order":
            by_key[r["idempotency_key"]].append(r)
    for attempts in by_key.values():
        attempts.sort(key=lambda r: r["attempt"])
    return SimpleNamespace(
        result=result,
        records=records,
        submits=submits,
        idempotency=idempotency,
        orders=orders,
        by_key=by_key,
        run=run,
    )


def test_the_run_ends_by_itself_with_stats_and_a_merged_ledger(faulty_run: SimpleNamespace) -> None:
    result = faulty_run.result
    assert result.exit_code == 0, result.log_path.read_text()[-2000:]
    assert result.stats_error is None and not result.stopped and not result.killed
    assert result.ledger_path.name == "ledger.jsonl"
    assert result.total_requests > 200
    assert not group_exists(faulty_run.run.pgid)


def test_every_request_attempt_is_one_ledger_record_and_one_locust_request(
    faulty_run: SimpleNamespace,
) -> None:
    result, records = faulty_run.result, faulty_run.records
    assert result.ledger_records == len(records) == result.total_requests
    per_op: dict[str, int] = defaultdict(int)
    for r in records:
        per_op[r["op"]] += 1
    assert per_op == {e["name"]: e["num_requests"] for e in result.stats}
    assert sum(1 for r in records if r["outcome"] != "ok") == result.total_failures


def test_ledger_records_follow_the_contract(faulty_run: SimpleNamespace) -> None:
    from resgate.checks.ledger import LedgerRecord

    for i, r in enumerate(faulty_run.records):
        rec = LedgerRecord.from_dict(r, where=f"ledger:{i + 1}")
        assert rec.op in OPS
        assert rec.attempt is not None and 1 <= rec.attempt <= MAX_ATTEMPTS
        if rec.op == "submit_order":
            assert (
                rec.idempotency_key and rec.symbol and rec.side in ("buy", "sell") and rec.qty and rec.price
            )
    assert {r["op"] for r in faulty_run.records} >= {"submit_order", "cancel_order", "rfq", "get_order"}
    assert len({r["client_id"] for r in faulty_run.records}) == USERS
    assert all(
        r["order_id"] for r in faulty_run.records if r["op"] == "submit_order" and r["outcome"] == "ok"
    )
    # what a read saw, for the integrity check's non-monotonic reads
    reads = [r for r in faulty_run.records if r["op"] == "get_order" and r["outcome"] == "ok"]
    assert reads and all(r["order_status"] and isinstance(r["filled_qty"], int) for r in reads)


def test_buys_and_sells_cross_on_every_symbol(faulty_run: SimpleNamespace) -> None:
    prices: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in faulty_run.records:
        if r["op"] == "submit_order" and r["attempt"] == 1:
            prices[(r["symbol"], r["side"])].append(r["price"])
    for symbol in ("AAPL", "MSFT", "GOOG", "AMZN"):
        assert max(prices[(symbol, "buy")]) > min(prices[(symbol, "sell")])


def test_retries_reuse_the_idempotency_key_and_the_body(faulty_run: SimpleNamespace) -> None:
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for s in faulty_run.submits:
        bodies[s.key].add(s.body)
    assert all(len(b) == 1 for b in bodies.values()), "a retry sent another body under the same key"
    assert not [s for s in faulty_run.submits if s.result == "conflict"]
    assert sum(1 for s in faulty_run.submits if s.result == "replayed") > 0
    retried = [a for a in faulty_run.by_key.values() if len(a) > 1]
    assert retried
    for all_attempts in faulty_run.by_key.values():
        # A deliberate resend of an accepted order starts its own attempt count (see the next test).
        attempts = [a for a in all_attempts if not a.get("resend")]
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        first = attempts[0]
        for a in attempts[1:]:
            assert (a["client_id"], a["symbol"], a["side"], a["qty"], a["price"]) == (
                first["client_id"],
                first["symbol"],
                first["side"],
                first["qty"],
                first["price"],
            )
            assert a["ts"] > first["ts"]
    # one order per key, however many times it was sent
    assert len({order_id for _, order_id in faulty_run.idempotency.values()}) == faulty_run.orders
    assert len(faulty_run.idempotency) == faulty_run.orders


def test_503_with_retry_after_is_recorded_as_fail_and_retried_after_the_pause(
    faulty_run: SimpleNamespace,
) -> None:
    unavailable = [r for r in faulty_run.records if r["status"] == 503]
    assert unavailable
    retried = 0
    for r in unavailable:
        assert r["outcome"] == "fail" and r["retry_after"] == 1.0 and "503" in r["error"]
        attempts = faulty_run.by_key[r["idempotency_key"]]
        # the next attempt of the same sequence (a deliberate resend counts its attempts on its own)
        later = [
            a
            for a in attempts
            if a["attempt"] == r["attempt"] + 1 and bool(a.get("resend")) == bool(r.get("resend"))
        ]
        if r["attempt"] == MAX_ATTEMPTS:
            assert not later
            continue
        if later:  # none only when the run stopped during the pause
            retried += 1
            ended = r["ts"] + r["latency_ms"] / 1000
            assert later[0]["ts"] - ended >= RETRY_AFTER_CAP_S - 0.02  # Retry-After honoured, capped
    assert retried >= len(unavailable) - USERS


def test_dropped_connections_are_indeterminate_and_the_retry_gets_the_original_order(
    faulty_run: SimpleNamespace,
) -> None:
    dropped = [r for r in faulty_run.records if r["status"] in ("conn_reset", "conn_error")]
    assert dropped
    assert all(r["outcome"] == "info" for r in dropped)
    # The server's own log says, per key, which attempt applied the order first. Where that first
    # applying attempt had its connection dropped, no client ever saw the order created: every later
    # answer for the key (the retries, and a deliberate resend with its own attempt count) is the
    # original order, replayed. A reset the wire gave for another reason (a busy machine) may come
    # before the order was applied; its retry then creates the order (201), which is right.
    applied = ("created", "replayed", "dropped_after_apply", "stalled")
    first_applied: dict[str, str] = {}
    for s in faulty_run.submits:
        if s.key is not None and s.result in applied:
            first_applied.setdefault(s.key, s.result)
    created_then_dropped = {k for k, result in first_applied.items() if result == "dropped_after_apply"}
    assert created_then_dropped
    resolved = 0
    for key in created_then_dropped:
        answered = [a for a in faulty_run.by_key[key] if a["outcome"] == "ok"]
        for a in answered:
            assert a["status"] == 200, (key, a)
            assert a["order_id"] == faulty_run.idempotency[key][1]
        resolved += bool(answered)
    assert resolved > 0


def test_timeouts_are_indeterminate_and_retried(faulty_run: SimpleNamespace) -> None:
    timeouts = [r for r in faulty_run.records if r["status"] == "timeout"]
    assert timeouts
    for r in timeouts:
        assert r["outcome"] == "info"
        assert r["latency_ms"] >= NETWORK_TIMEOUT_S * 1000 * 0.9


def test_the_server_received_exactly_the_submit_attempts_the_ledger_holds(
    faulty_run: SimpleNamespace,
) -> None:
    sent = [r for r in faulty_run.records if r["op"] == "submit_order" and r["status"] != "conn_error"]
    assert len(sent) == len(faulty_run.submits)
    assert {r["idempotency_key"] for r in sent} == {s.key for s in faulty_run.submits}


def test_live_files_count_every_request_once(faulty_run: SimpleNamespace) -> None:
    points = read_live(faulty_run.result.ledger_path.parent)
    assert sum(p["requests"] for p in points) == faulty_run.result.total_requests
    assert sum(p["failures"] for p in points) == faulty_run.result.total_failures
    assert all(p["processes"] == 1 for p in points)
    assert [p["ts"] for p in points] == list(range(points[0]["ts"], points[-1]["ts"] + 1))


def test_results_upload_under_the_run_prefix(
    faulty_run: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    from loadgen.upload import upload_results
    from resgate.contract.layout import TABLES

    for k, v in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="evidence")
        prefix = "root/gate=g/dt=2026-01-01/run_id=r1/"
        keys = upload_results(faulty_run.result, f"s3://evidence/{prefix}", node="task-1", s3_client=s3)
        # the keys of a local evidence root: what the assertion Lambdas and the Athena tables read
        assert keys == [
            f"root/gate=g/ledger/dt=2026-01-01/run_id=r1/{TABLES['ledger']}",
            f"root/gate=g/load_stats/dt=2026-01-01/run_id=r1/{TABLES['load_stats']}",
            f"{prefix}load_live.jsonl",
            f"{prefix}load.log",
        ]
        body = s3.get_object(Bucket="evidence", Key=keys[0])["Body"].read().decode()
        assert len(body.splitlines()) == faulty_run.result.total_requests
        lines = s3.get_object(Bucket="evidence", Key=keys[1])["Body"].read().decode().splitlines()
        stats = [json.loads(line) for line in lines]
        assert {(e["run_id"], e["gate"]) for e in stats} == {("r1", "g")}
        assert json.loads(body.splitlines()[0])["run_id"] == "r1"
        assert sum(e["num_requests"] for e in stats) == faulty_run.result.total_requests
        # the SLO Lambda's reader takes these objects as they are
        from resgate.contract.layout import RunKey
        from resgate.evidence.s3 import S3Store
        from resgate.evidence.store import ledger, read_jsonl

        store = S3Store("evidence", "root", RunKey(gate="g", date="2026-01-01", run_id="r1"), client=s3)
        assert sum(e["num_requests"] for e in read_jsonl(store, "load_stats")) == len(body.splitlines())
        assert sum(1 for _ in ledger(store)) == faulty_run.result.total_requests


def test_stop_ends_a_multi_process_run_cleanly_and_leaves_no_process_behind(tmp_path: Path) -> None:
    with FakeBrokerAPI(unavailable_every=9, drop_every=7, drop_mode="close") as api:
        run = run_locust(
            api.url,
            users=4,
            spawn_rate=4,
            duration_s=120,
            ledger_dir=tmp_path,
            env=LOAD_ENV,
            extra_args=("--processes", "2"),
        )
        try:
            wait_for_live_lines(tmp_path, run)
            time.sleep(1.0)
            result = run.stop()
        finally:
            run.stop(grace_s=0)
    assert not group_exists(run.pgid)
    # Ended by its own SIGTERM handling within the stop grace (a wall-clock bound tighter than the grace
    # only measured the machine's load: it failed once at load average 17).
    assert result.stopped and not result.killed and result.exit_code == 0
    assert len(list(tmp_path.glob("ledger-*.jsonl"))) == 2  # one file per worker process
    assert result.ledger_records == result.total_requests > 0
    assert sum(p["requests"] for p in read_live(tmp_path)) == result.total_requests
    closed = [r for r in iter_records(result.ledger_path) if r["status"] == "conn_reset"]
    assert closed and all(r["outcome"] == "info" for r in closed)


def test_stop_kills_the_whole_group_when_locust_does_not_exit_in_time(tmp_path: Path) -> None:
    with FakeBrokerAPI() as api:
        run = run_locust(api.url, users=2, spawn_rate=2, duration_s=120, ledger_dir=tmp_path, env=LOAD_ENV)
        try:
            wait_for_live_lines(tmp_path, run)
            result = run.stop(grace_s=0)
        finally:
            run.stop(grace_s=0)
    assert not group_exists(run.pgid)
    assert result.killed and result.exit_code < 0
    assert result.stats == [] and result.stats_error
    assert result.ledger_records == count_records(tmp_path) > 0  # what was flushed each second survives


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"host": "127.0.0.1:8080"}, "load.host"),
        ({"users": 0}, "load.users"),
        ({"spawn_rate": 0}, "load.spawn_rate"),
        ({"duration_s": -1}, "load.duration_s"),
        ({"locustfile": "/nonexistent/locustfile.py"}, "load.locustfile"),
    ],
)
def test_run_locust_rejects_bad_arguments_before_starting_anything(
    tmp_path: Path, kwargs: dict[str, Any], where: str
) -> None:
    args: dict[str, Any] = {"users": 1, "spawn_rate": 1, "duration_s": 1, "ledger_dir": tmp_path / "ledger"}
    host = kwargs.pop("host", "http://127.0.0.1:9")
    args.update(kwargs)
    with pytest.raises(ConfigError) as e:
        run_locust(host, **args)
    assert e.value.where == where
    assert not (tmp_path / "ledger").exists()


def test_a_resent_accepted_order_gets_the_original_order_back(faulty_run: SimpleNamespace) -> None:
    resends = [r for r in faulty_run.records if r.get("resend") and r["outcome"] == "ok"]
    assert resends, "RESGATE_RESEND_RATIO should make some clients send an accepted order again"
    for r in resends:
        originals = [
            a for a in faulty_run.by_key[r["idempotency_key"]] if not a.get("resend") and a["outcome"] == "ok"
        ]
        assert originals and originals[-1]["order_id"] == r["order_id"]


def test_the_gate_counts_the_load_from_its_first_request_not_from_the_process_start(tmp_path: Path) -> None:
    """Locust's users start a moment after its process (seconds on a busy machine); the fault schedule and
    the baseline count from the first request the live stats report."""
    with FakeBrokerAPI() as api:
        spawned = time.time()
        run = run_locust(api.url, users=2, spawn_rate=2, duration_s=3, ledger_dir=tmp_path, env=LOAD_ENV)
        try:
            first_seen = LoadRun(run, tmp_path, 3).first_request(30)
            result = run.wait(timeout=60)
        finally:
            run.stop()
    first_ts = min(r["ts"] for r in iter_records(result.ledger_path))
    assert first_seen is not None
    assert spawned < first_ts <= first_seen <= first_ts + 3, (spawned, first_ts, first_seen)
