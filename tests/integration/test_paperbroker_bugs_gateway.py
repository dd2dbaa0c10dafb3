"""The gateway's seeded bugs, specified by the property each one breaks (on) and keeps (off).

- ``no_idempotency``: retries with one Idempotency-Key create one order and one OrderAccepted (off) vs a
  new order and a new event per retry (on).
- ``ack_before_commit``: every acknowledged order survives a SIGKILL right after the acknowledgements
  (off) vs acknowledged orders are lost (on).
- ``slow_start``: ``/ready`` within about 2 s of the start (off) vs still 503 after ``PB_SLOW_START_S``
  (on; 45 s by default, more than the 30 s recovery objective).

Each gateway is a real subprocess with its own database and topics; every loop is bounded.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from paperbroker.config import DEFAULT_SLOW_START_S, load_settings, topic_names
from paperbroker.events import ORDER_ACCEPTED
from paperbroker.relay import read_topic_events
from paperbroker.system import GatewayProcess, init_system
from resgate.contract.constants import DEFAULT_RTO_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def post_order(url: str, key: str, client: str = "c1", qty: int = 5) -> tuple[int, dict[str, Any]]:
    body = {"client_id": client, "symbol": "IBM", "side": "sell", "qty": qty, "price": "99.5"}
    req = urllib.request.Request(
        f"{url}/orders",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_outbox_drained(dsn: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    unsent = -1
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            unsent = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        if unsent == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"outbox not drained within {timeout_s}s ({unsent} unsent)")


def stored_order_ids(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT order_id::text FROM orders").fetchall()}


@pytest.fixture
def system(pg_dsn: str, kafka: Any) -> Iterator[dict[str, Any]]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    init_system(pg_dsn, kafka.bootstrap, prefix, kafka=kafka)
    yield {"dsn": pg_dsn, "bootstrap": kafka.bootstrap, "prefix": prefix, "topics": topic_names(prefix)}


def gateway(system: dict[str, Any], bugs: str = "", **kw: Any) -> GatewayProcess:
    return GatewayProcess(
        dsn=system["dsn"], bootstrap=system["bootstrap"], topic_prefix=system["prefix"], bugs=bugs, **kw
    )


@pytest.mark.parametrize("bug_on", [False, True], ids=["bug_off", "bug_on"])
def test_no_idempotency_makes_retries_with_one_key_create_duplicate_orders_and_events(
    system: dict[str, Any], bug_on: bool
) -> None:
    with gateway(system, "no_idempotency" if bug_on else "") as gw:
        results = [post_order(gw.url, "retry-key") for _ in range(5)]
        wait_outbox_drained(system["dsn"])
    statuses = [s for s, _ in results]
    order_ids = {b["order_id"] for _, b in results}
    with psycopg.connect(system["dsn"]) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM orders WHERE client_id = 'c1' AND idempotency_key = 'retry-key'"
        ).fetchone()[0]
    events = [
        e
        for e in read_topic_events(system["bootstrap"], system["topics"].orders)
        if e["type"] == ORDER_ACCEPTED and e["idempotency_key"] == "retry-key"
    ]
    if bug_on:
        assert statuses == [201] * 5
        assert len(order_ids) == rows == 5  # duplicates by (client, idempotency key)
        assert len({e["event_id"] for e in events}) == 5  # each with a new event id: dedupe cannot help
    else:
        assert statuses == [201, 200, 200, 200, 200]
        assert len(order_ids) == rows == 1
        assert len(events) == 1


@pytest.mark.parametrize("bug_on", [False, True], ids=["bug_off", "bug_on"])
def test_ack_before_commit_loses_acknowledged_orders_when_the_replica_is_killed(
    system: dict[str, Any], bug_on: bool
) -> None:
    lost: set[str] = set()
    acked: list[str] = []
    for attempt in range(3):  # with the bug, a flush may (rarely) land between the last ack and the kill
        gw = gateway(system, "ack_before_commit" if bug_on else "").start()
        try:
            batch = []
            for i in range(30):
                status, body = post_order(gw.url, f"a{attempt}-{i}", qty=i + 1)
                assert status == 201
                batch.append(body["order_id"])
        finally:
            gw.kill()  # SIGKILL right after the acknowledgements
        acked += batch
        lost = set(acked) - stored_order_ids(system["dsn"])
        if lost or not bug_on:
            break
    if bug_on:
        assert lost, "acknowledged orders survived a SIGKILL with ack_before_commit on"
    else:
        assert not lost, f"{len(lost)} acknowledged orders lost"


@pytest.mark.parametrize("bug_on", [False, True], ids=["bug_off", "bug_on"])
def test_slow_start_keeps_readiness_down_past_its_delay(system: dict[str, Any], bug_on: bool) -> None:
    delay_s = 4.0
    with gateway(system, "slow_start" if bug_on else "", extra_env={"PB_SLOW_START_S": str(delay_s)}).start(
        wait_for="health"
    ) as gw:
        assert gw.status("health")[0] == 200  # alive at once either way
        if bug_on:
            time.sleep(max(0.0, delay_s - 1.0 - (time.monotonic() - gw.spawned_at)))
            status, state = gw.status("ready")
            assert status == 503 and state["database"] and state["broker"]  # only the delay holds it back
            assert state["slow_start_remaining_s"] > 0
            took = gw.wait_until("ready", delay_s + 10)
            assert took >= delay_s
        else:
            took = gw.wait_until("ready", 10)
            assert took < 3.0
        print(f"ready after {took:.2f}s (slow_start {'on' if bug_on else 'off'})")


def test_slow_start_default_delay_exceeds_the_recovery_objective() -> None:
    settings = load_settings({"PB_DSN": "postgresql://x", "PB_KAFKA_BOOTSTRAP": "x:1"})
    assert settings.slow_start_s == DEFAULT_SLOW_START_S == 45.0
    assert settings.slow_start_s > DEFAULT_RTO_SECONDS
