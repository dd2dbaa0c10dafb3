"""The integrity Lambda returns what the integrity checker returns, with the DSN from Secrets Manager.

S3 and Secrets Manager are moto; the database and the topic are the real embedded Postgres and Kafka.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import psycopg
import pytest

from lambdas.integrity.handler import handler
from resgate.checks import integrity
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError
from tests.functional.support import load_event, produce_json, put_db_secret, timed

pytestmark = pytest.mark.integration

N_ORDERS = 6


def order_id(i):
    return str(uuid.UUID(int=i + 1))


def ledger_rows():
    rows = [
        {
            "ts": 100.0 + i,
            "op": "submit_order",
            "client_id": f"c{i % 2}",
            "idempotency_key": f"k{i}",
            "order_id": order_id(i),
            "status": 201,
            "outcome": "ok",
            "latency_ms": 3.0,
        }
        for i in range(N_ORDERS)
    ]
    rows.append(
        {"ts": 99.0, "op": "get_order", "client_id": "c0", "status": 200, "outcome": "ok", "latency_ms": 1}
    )
    return rows


@pytest.fixture
def world(pg_dsn, kafka_bootstrap, new_topic, evidence):
    """A consistent history: ledger in S3, orders in Postgres, accepted events in Kafka; the DB secret in
    moto. Returns the event for it."""
    topic = new_topic(partitions=2)
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE orders (order_id uuid, client_id text, idempotency_key text, qty bigint)")
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO orders VALUES (%s, %s, %s, 10)",
                [(order_id(i), f"c{i % 2}", f"k{i}") for i in range(N_ORDERS)],
            )
    events = [
        (
            i % 2,
            {
                "event_id": str(uuid.uuid4()),
                "type": "OrderAccepted",
                "order_id": order_id(i),
                "client_id": f"c{i % 2}",
                "idempotency_key": f"k{i}",
                "qty": 10,
            },
        )
        for i in range(N_ORDERS)
    ]
    asyncio.run(produce_json(kafka_bootstrap, topic, events))
    evidence.put_jsonl("ledger.jsonl", ledger_rows())
    config = {
        "orders": {"table": "orders"},
        "accepted_events": {"topic": topic, "type_value": "OrderAccepted"},
        "examples_cap": 5,
    }
    return load_event(
        "integrity", config=config, db_secret_arn=put_db_secret(pg_dsn), kafka_bootstrap=kafka_bootstrap
    )


def expected(event, pg_dsn, kafka_bootstrap):
    config = integrity.IntegrityConfig.from_dict(event["config"], where="event.config")
    lines = [json.dumps(r) for r in ledger_rows()]
    result = integrity.check(
        integrity.gather(pg_dsn, config, lines, bootstrap=kafka_bootstrap), config.thresholds
    ).to_dict()
    return comparable(result)


def comparable(payload):
    """The result without what differs between two measurements of the same evidence (the random work
    schema's name and the timings live in ``details``/stats; counts and examples must match)."""
    return {k: v for k, v in json.loads(json.dumps(payload)).items() if k != "details"}, payload.get(
        "details", {}
    ).get("violations")


def test_integrity_handler_returns_the_checkers_passing_result_for_a_consistent_history(
    world, pg_dsn, kafka_bootstrap, lambda_context
):
    out = handler(world, lambda_context)

    assert comparable(timed(out)) == expected(world, pg_dsn, kafka_bootstrap)
    assert out["valid"] is True, out
    assert out["counts"]["lost"] == 0 and out["counts"]["ledger_submits"] == N_ORDERS


def test_integrity_handler_returns_the_checkers_failing_result_naming_a_lost_order(
    world, pg_dsn, kafka_bootstrap, lambda_context
):
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("DELETE FROM orders WHERE order_id = %s", (order_id(3),))

    out = handler(world, lambda_context)

    assert comparable(timed(out)) == expected(world, pg_dsn, kafka_bootstrap)
    assert out["valid"] is False
    assert out["details"]["violations"] == ["lost"]
    assert out["examples"][0]["kind"] == "lost" and out["examples"][0]["idempotency_key"] == "k3"


def test_integrity_handler_reports_unknown_when_the_ledger_is_missing(world, evidence, lambda_context):
    evidence.s3.delete_object(Bucket=evidence.bucket, Key=evidence.object_key("ledger.jsonl"))

    out = handler(world, lambda_context)

    assert out["valid"] == UNKNOWN and out["error"].startswith("no client ledger was written")


def test_integrity_handler_reports_unknown_when_the_system_did_not_quiesce(world, lambda_context):
    out = handler({**world, "quiesce": {"settled": False, "reason": "consumer lag 12"}}, lambda_context)

    assert out["valid"] == UNKNOWN and "did not quiesce" in out["error"] and "consumer lag 12" in out["error"]


def test_integrity_handler_needs_a_kafka_bootstrap_when_topics_are_configured(world, lambda_context):
    with pytest.raises(ConfigError, match=r"event\.kafka_bootstrap"):
        handler({**world, "kafka_bootstrap": None}, lambda_context)


def test_integrity_handler_raises_a_config_error_naming_the_bad_config_field(world, lambda_context):
    with pytest.raises(ConfigError, match=r"event\.config\.orders"):
        handler({**world, "config": {"orders": {"tabel": "orders"}}}, lambda_context)
