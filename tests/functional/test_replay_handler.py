"""The replay Lambda returns what the replay checker returns, with the DSN from Secrets Manager.

Secrets Manager is moto; the database and the topic are the real embedded Postgres and Kafka. The read
model is the small projection in ``_replay_projection``.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import psycopg
import pytest

from lambdas.replay.handler import handler
from resgate.checks import replay
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError
from tests.functional import _replay_projection as projection
from tests.functional.support import load_event, produce_json, put_db_secret, timed

pytestmark = pytest.mark.integration

EVENTS = [
    {
        "event_id": str(uuid.uuid4()),
        "type": "OrderAccepted",
        "order_id": f"o-{i}",
        "client_id": f"c{i % 3}",
        "qty": 10 + i,
    }
    for i in range(9)
]


@pytest.fixture
def world(pg_dsn, kafka_bootstrap, new_topic, evidence):
    """Events in a topic, the live read model built from them by the same projection, the DB secret in
    moto. Returns the event for it."""
    topic = new_topic(partitions=3)
    asyncio.run(produce_json(kafka_bootstrap, topic, [(i % 3, e) for i, e in enumerate(EVENTS)]))
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        projection.create_table(c, "public")
        projection.apply(c, "public", EVENTS)
    config = {
        "read_models": [{"name": "orders_rm", "table": "public.orders_rm", "key_columns": ["order_id"]}],
        "topics": [topic],
        "rebuild": {"callable": "tests.functional._replay_projection:rebuild", "timeout_s": 60},
        "buckets": 4,
    }
    return load_event(
        "replay", config=config, db_secret_arn=put_db_secret(pg_dsn), kafka_bootstrap=kafka_bootstrap
    )


def expected(event, pg_dsn, kafka_bootstrap):
    config = replay.ReplayConfig.from_dict(event["config"], where="event.config")
    result = replay.check(replay.gather(pg_dsn, config, bootstrap=kafka_bootstrap), config.thresholds)
    return comparable(result.to_dict())


def comparable(payload):
    """The result without what differs between two replays of the same history (timings in details)."""
    payload = json.loads(json.dumps(payload))
    details = {
        name: {k: v for k, v in info.items() if "timing" not in k}
        for name, info in payload.get("details", {}).items()
    }
    return {**payload, "details": details}


def test_replay_handler_returns_the_checkers_passing_result_when_the_read_model_replays_exactly(
    world, pg_dsn, kafka_bootstrap, lambda_context
):
    out = handler(world, lambda_context)

    assert comparable(timed(out)) == expected(world, pg_dsn, kafka_bootstrap)
    assert out["valid"] is True, out
    assert out["counts"]["matching"] == 1


def test_replay_handler_returns_the_checkers_failing_result_naming_the_row_the_live_model_lost(
    world, pg_dsn, kafka_bootstrap, lambda_context
):
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("DELETE FROM orders_rm WHERE order_id = 'o-4'")

    out = handler(world, lambda_context)

    assert comparable(timed(out)) == expected(world, pg_dsn, kafka_bootstrap)
    assert out["valid"] is False
    assert out["counts"]["mismatching"] == 1
    assert any("o-4" in json.dumps(e["key"]) for e in out["examples"]), out["examples"]


def test_replay_handler_reports_unknown_when_the_system_did_not_quiesce(world, lambda_context):
    out = handler({**world, "quiesce": {"settled": False, "reason": "projector lag 3"}}, lambda_context)

    assert out["valid"] == UNKNOWN and "projector lag 3" in out["error"]


def test_replay_handler_raises_a_config_error_when_the_live_table_does_not_exist(world, lambda_context):
    config = {**world["config"], "read_models": [{"table": "public.nope", "key_columns": ["order_id"]}]}

    with pytest.raises(ConfigError, match="does not exist"):
        handler({**world, "config": config}, lambda_context)


def test_replay_handler_needs_a_kafka_bootstrap(world, lambda_context):
    with pytest.raises(ConfigError, match=r"event\.kafka_bootstrap"):
        handler({**world, "kafka_bootstrap": None}, lambda_context)
