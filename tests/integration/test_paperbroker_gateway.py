"""Integration tests of the paperbroker gateway and its outbox relay, on the embedded Postgres and Kafka.

Every gateway runs as a real subprocess (``python -m paperbroker.gateway``) on a free 127.0.0.1 port, with
its own database (``pg_dsn``) and its own topics (a unique ``PB_TOPIC_PREFIX``). Loops are bounded.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from paperbroker.config import topic_names
from paperbroker.events import CANCEL_REQUESTED, ORDER_ACCEPTED
from paperbroker.relay import read_topic_events
from paperbroker.system import GatewayProcess, init_system

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# ---------------------------------------------------------------------------------------------- helpers
def call(
    method: str, url: str, body: Any = None, key: str | None = None, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One HTTP request; returns ``(status, json body, headers)``; status 0 when the connection failed."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"{}"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)
    except (OSError, ValueError) as e:
        return 0, {"error": repr(e)}, {}


def order_body(
    client: str = "c1", *, qty: int = 10, price: str = "101.25", symbol: str = "AAPL"
) -> dict[str, Any]:
    return {"client_id": client, "symbol": symbol, "side": "buy", "qty": qty, "price": price}


def wait_outbox_drained(dsn: str, timeout_s: float = 20.0) -> None:
    """Wait until every outbox row is marked sent (the relay drained)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            unsent = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        if unsent == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"outbox not drained within {timeout_s}s ({unsent} unsent)")


@pytest.fixture
def system(pg_dsn: str, kafka: Any) -> Iterator[dict[str, Any]]:
    """A fresh database with the schema and a fresh pair of topics: ``{dsn, bootstrap, prefix, topics}``."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    init_system(pg_dsn, kafka.bootstrap, prefix, kafka=kafka)
    yield {"dsn": pg_dsn, "bootstrap": kafka.bootstrap, "prefix": prefix, "topics": topic_names(prefix)}


def gateway(system: dict[str, Any], **kw: Any) -> GatewayProcess:
    return GatewayProcess(
        dsn=system["dsn"], bootstrap=system["bootstrap"], topic_prefix=system["prefix"], **kw
    )


# ------------------------------------------------------------------------------------------------ tests
def test_twenty_concurrent_submissions_with_one_key_create_one_order_and_one_event(
    system: dict[str, Any],
) -> None:
    with gateway(system) as gw:
        body = order_body("c-concurrent")
        barrier = threading.Barrier(20)

        def submit(_: int) -> tuple[int, dict[str, Any], dict[str, str]]:
            barrier.wait(5)
            return call("POST", f"{gw.url}/orders", body, "key-1")

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(submit, range(20)))
        statuses = sorted(r[0] for r in results)
        assert statuses.count(201) == 1, statuses
        assert statuses.count(200) == 19, statuses
        order_ids = {r[1]["order_id"] for r in results}
        assert len(order_ids) == 1

        # a later retry returns the original; a changed body with the same key is refused
        status, again, _ = call("POST", f"{gw.url}/orders", {**body, "price": 101.25}, "key-1")
        assert (status, again["order_id"]) == (200, next(iter(order_ids)))
        status, conflict, _ = call("POST", f"{gw.url}/orders", {**body, "qty": 11}, "key-1")
        assert status == 409 and conflict["field"] == "Idempotency-Key"

        with psycopg.connect(system["dsn"]) as conn:
            rows = conn.execute(
                "SELECT order_id::text FROM orders"
                " WHERE client_id = 'c-concurrent' AND idempotency_key = 'key-1'"
            ).fetchall()
        assert [r[0] for r in rows] == list(order_ids)
        wait_outbox_drained(system["dsn"])
    events = read_topic_events(system["bootstrap"], system["topics"].orders)
    accepted = [e for e in events if e["type"] == ORDER_ACCEPTED and e["idempotency_key"] == "key-1"]
    assert len(accepted) == 1
    assert accepted[0]["order_id"] == next(iter(order_ids))
    assert (
        accepted[0]["price"] == "101.25"
        and accepted[0]["qty"] == 10
        and accepted[0]["client_id"] == "c-concurrent"
    )


INVALID_ORDERS = [
    # (body, idempotency key, expected status, field named); body None = malformed JSON
    ({"symbol": "AAPL", "side": "buy", "qty": 1, "price": "1"}, "k", 422, "client_id"),
    ({**order_body(), "symbol": "not a symbol"}, "k", 422, "symbol"),
    ({**order_body(), "side": "hold"}, "k", 422, "side"),
    ({**order_body(), "qty": 0}, "k", 422, "qty"),
    ({**order_body(), "qty": 1.5}, "k", 422, "qty"),
    ({**order_body(), "qty": True}, "k", 422, "qty"),
    ({**order_body(), "price": "abc"}, "k", 422, "price"),
    ({**order_body(), "price": -3}, "k", 422, "price"),
    ({**order_body(), "price": "1.0000001"}, "k", 422, "price"),
    (order_body(), None, 400, "Idempotency-Key"),
    (None, "k", 400, "body"),
    ([1, 2], "k", 400, "body"),
]


def test_invalid_order_is_rejected_with_a_message_naming_the_field(system: dict[str, Any]) -> None:
    with gateway(system) as gw:
        for body, key, status, field in INVALID_ORDERS:
            raw = b"{not json" if body is None else None
            got, payload, _ = call("POST", f"{gw.url}/orders", body, key, raw=raw)
            assert (got, payload.get("field")) == (status, field), (body, payload)
            assert field in payload["message"]
        with psycopg.connect(system["dsn"]) as conn:
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_cancel_is_idempotent_and_an_unknown_order_is_404(system: dict[str, Any]) -> None:
    with gateway(system) as gw:
        status, order, _ = call("POST", f"{gw.url}/orders", order_body("c-cancel"), "key-c")
        assert status == 201
        oid = order["order_id"]
        first = call("POST", f"{gw.url}/orders/{oid}/cancel")
        second = call("POST", f"{gw.url}/orders/{oid}/cancel")
        assert (first[0], second[0]) == (200, 200)
        assert first[1]["status"] == second[1]["status"] == "cancel_requested"
        assert call("POST", f"{gw.url}/orders/{uuid.uuid4()}/cancel")[0] == 404
        assert call("POST", f"{gw.url}/orders/not-a-uuid/cancel")[1]["field"] == "order_id"
        status, got, _ = call("GET", f"{gw.url}/orders/{oid}")
        assert (status, got["status"]) == (200, "cancel_requested")
        assert call("GET", f"{gw.url}/orders/{uuid.uuid4()}")[0] == 404
        wait_outbox_drained(system["dsn"])
    events = [
        e for e in read_topic_events(system["bootstrap"], system["topics"].orders) if e["order_id"] == oid
    ]
    assert [e["type"] for e in events] == [ORDER_ACCEPTED, CANCEL_REQUESTED]
    assert events[1]["client_id"] == "c-cancel" and events[1]["symbol"] == "AAPL"


def test_rfq_is_answered_with_a_two_sided_quote_and_can_be_read_back(system: dict[str, Any]) -> None:
    with gateway(system) as gw:
        status, rfq, _ = call(
            "POST", f"{gw.url}/rfqs", {"client_id": "c1", "symbol": "MSFT", "qty": 2500}, "r1"
        )
        assert status == 201
        assert float(rfq["bid"]) < float(rfq["reference_price"]) < float(rfq["ask"])
        status, again, _ = call(
            "POST", f"{gw.url}/rfqs", {"client_id": "c1", "symbol": "MSFT", "qty": 2500}, "r1"
        )
        assert (status, again["rfq_id"]) == (200, rfq["rfq_id"])
        status, got, _ = call("GET", f"{gw.url}/rfqs/{rfq['rfq_id']}")
        assert (status, got["bid"], got["ask"]) == (200, rfq["bid"], rfq["ask"])
        assert call("POST", f"{gw.url}/rfqs", {"client_id": "c1", "symbol": "MSFT"})[1]["field"] == "qty"
        assert call("GET", f"{gw.url}/rfqs/{uuid.uuid4()}")[0] == 404


def test_database_outage_gives_503_with_retry_after_and_recovers_without_restart(
    system: dict[str, Any], pg_server: Any
) -> None:
    with gateway(system) as gw:
        assert call("POST", f"{gw.url}/orders", order_body(), "before")[0] == 201
        pid = gw.proc.pid if gw.proc else None
        try:
            pg_server.stop()
            saw: list[int] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and 503 not in saw:
                status, payload, headers = call("POST", f"{gw.url}/orders", order_body(), "during")
                saw.append(status)
            assert saw[-1] == 503, saw
            assert headers.get("Retry-After") and payload["error"] == "database_unavailable"
            assert set(saw) <= {201, 503}, saw  # never a bare 500 or a dropped connection
            deadline = time.monotonic() + 5
            while gw.status("ready")[0] != 503 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert gw.status("ready")[0] == 503
            status, payload, headers = call("POST", f"{gw.url}/orders", order_body(), "during")
            assert status == 503 and headers.get("Retry-After")  # fails fast while the database is down
            assert gw.status("health")[0] == 200  # alive: the supervisor must not restart it
        finally:
            pg_server.start()
        t0 = time.monotonic()
        deadline = t0 + 20
        status = 0
        while time.monotonic() < deadline:
            status, payload, _ = call("POST", f"{gw.url}/orders", order_body(), "after")
            if status == 201:
                break
            assert status == 503, (status, payload)
            time.sleep(0.1)
        assert status == 201, "gateway did not recover after the database came back"
        assert gw.wait_until("ready", 10) > 0
        assert gw.proc is not None and gw.proc.pid == pid and gw.proc.poll() is None  # same process
        print(f"recovered {time.monotonic() - t0:.2f}s after the database restarted")


def test_sigkill_of_a_gateway_replica_under_load_loses_no_acknowledged_order(system: dict[str, Any]) -> None:
    a = gateway(system).start()
    b = gateway(system).start()
    try:
        # kill the replica that runs the relay, so the other one must take the relay over
        leader, other = (a, b) if a.status("ready")[1]["relay"]["leader"] else (b, a)
        acked: dict[str, str] = {}  # order_id -> idempotency key
        statuses: list[int] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + 4.0

        def worker(w: int) -> None:
            i = 0
            while time.monotonic() < stop_at:
                i += 1
                key = f"w{w}-{i}"
                for target in (leader, other) if i % 2 else (other, leader):
                    status, payload, _ = call("POST", f"{target.url}/orders", order_body(f"c{w}", qty=i), key)
                    with lock:
                        statuses.append(status)
                        if status in (200, 201):
                            acked[payload["order_id"]] = key
                    if status in (200, 201, 409, 422):
                        break  # done with this key; otherwise retry it on the other replica

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker, w) for w in range(8)]
            time.sleep(1.5)
            leader.kill()
            for f in futures:
                f.result(30)
        assert leader.proc is not None and leader.proc.returncode == -9
        assert len(acked) > 50, f"too little load: {len(acked)} acknowledged"
        assert 0 in statuses or 503 in statuses or len(statuses) > len(acked)  # the kill was felt
        assert not set(statuses) - {0, 200, 201, 503}, set(statuses)

        with psycopg.connect(system["dsn"]) as conn:
            stored = {r[0] for r in conn.execute("SELECT order_id::text FROM orders").fetchall()}
            dup = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM orders GROUP BY client_id, idempotency_key"
                " HAVING count(*) > 1) d"
            ).fetchone()[0]
        lost = set(acked) - stored
        assert not lost, f"{len(lost)} acknowledged orders lost: {sorted(lost)[:5]}"
        assert dup == 0
        wait_outbox_drained(system["dsn"], 30)
        events = read_topic_events(system["bootstrap"], system["topics"].orders)
        on_topic = {e["order_id"] for e in events if e["type"] == ORDER_ACCEPTED}
        missing = set(acked) - on_topic
        assert not missing, f"{len(missing)} acknowledged orders never reached the topic"
        print(
            f"{len(acked)} acknowledged, {statuses.count(0)} connection errors, {statuses.count(503)} x 503"
        )
    finally:
        a.kill()
        b.kill()


def test_relay_republishes_unsent_rows_with_the_same_event_id(system: dict[str, Any]) -> None:
    with gateway(system) as gw:
        ids = [
            call("POST", f"{gw.url}/orders", order_body(qty=q), f"re-{q}")[1]["order_id"] for q in (1, 2, 3)
        ]
        wait_outbox_drained(system["dsn"])
    # a relay crash between the broker's ack and the commit leaves rows unsent: simulate exactly that
    with psycopg.connect(system["dsn"]) as conn:
        conn.execute("UPDATE outbox SET sent_at = NULL WHERE order_id = %s::uuid", (ids[0],))
    with gateway(system):
        wait_outbox_drained(system["dsn"])
    events = [
        e for e in read_topic_events(system["bootstrap"], system["topics"].orders) if e["order_id"] == ids[0]
    ]
    assert len(events) == 2  # at least once: published again ...
    assert events[0]["event_id"] == events[1]["event_id"]  # ... with the same event id, so consumers dedupe


def test_broker_outage_keeps_intake_durable_and_gives_503_when_no_broker_answers(
    system: dict[str, Any], kafka: Any
) -> None:
    if not getattr(kafka, "controllable", False):
        pytest.skip("needs the embedded Kafka's fault controls")
    acked: set[str] = set()

    def submit(tag: str, n: int) -> list[int]:
        statuses = []
        for i in range(n):
            status, body, headers = call(
                "POST", f"{gw.url}/orders", order_body(symbol=f"S{i % 12}"), f"{tag}-{i}"
            )
            statuses.append(status)
            if status in (200, 201):
                acked.add(body["order_id"])
            else:
                assert status == 503 and headers.get("Retry-After"), (status, body)
        return statuses

    with gateway(system) as gw:
        try:
            kafka.set_broker_down(1)  # one of three brokers: the outbox absorbs it, intake goes on
            assert set(submit("one-down", 40)) == {201}
            kafka.set_broker_up(1)
            for b in (1, 2, 3):  # no broker at all: after a short grace, a clear 503
                kafka.set_broker_down(b)
            deadline = time.monotonic() + 15
            saw: list[int] = []
            while time.monotonic() < deadline and 503 not in saw:
                saw += submit(f"all-down-{len(saw)}", 1)
                time.sleep(0.2)
            assert 503 in saw
            status, payload, _ = call("POST", f"{gw.url}/orders", order_body(), "refused")
            assert status == 503 and payload["error"] == "broker_unavailable"
            assert gw.status("ready")[0] == 503
        finally:
            for b in (1, 2, 3):
                kafka.set_broker_up(b)
        gw.wait_until("ready", 20)
        assert set(submit("after", 5)) == {201}
        wait_outbox_drained(system["dsn"], 30)
    on_topic = {e["order_id"] for e in read_topic_events(system["bootstrap"], system["topics"].orders)}
    assert acked <= on_topic, f"{len(acked - on_topic)} acknowledged orders never reached the topic"
