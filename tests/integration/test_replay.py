"""The replay checker on real Postgres and Kafka with a small balances projection (and paperbroker's).

The live read model is built by the correct projection; the replay rebuilds it with a chosen variant:
the correct one matches, one that drops a row class or a field mismatches and names the keys, a topic
truncated by retention or a failing rebuild gives "unknown" with the reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from resgate.checks.replay import ReplayConfig, ReplayFindings, check, gather
from resgate.checks.result import UNKNOWN
from resgate.checks.topics import topic_bounds
from resgate.contract.errors import ConfigError
from tests.integration import _projection_fixture as fixture

pytestmark = pytest.mark.integration

FIXTURE = "tests.integration._projection_fixture"
FIXTURE_PATH = str(Path(fixture.__file__).resolve())


def _deposit(
    account: str, currency: str, amount: int, kind: str = "Deposited", **extra: Any
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "account": account,
        "currency": currency,
        "amount": amount,
        **extra,
    }


def _history() -> list[dict[str, Any]]:
    events = []
    for i in range(12):
        cur = "EUR" if i % 4 == 0 else "USD"
        events.append(_deposit(f"acc{i:02d}", cur, 100 + i))
        events.append(_deposit(f"acc{i:02d}", cur, 7, "Withdrawn"))
    return events


async def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]], **kw: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **kw)
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, json.dumps(e).encode(), key=e["account"].encode())
        await producer.flush()
    finally:
        await producer.stop()


def _world(dsn: str, bootstrap: str, topic: str, events: list[dict[str, Any]], **kw: Any) -> None:
    """Publish the events, then build the live read model (public.balances) with the correct projection."""
    asyncio.run(_produce(bootstrap, topic, events, **kw))
    ends = {t: {p: e for p, (_b, e) in ps.items()} for t, ps in topic_bounds(bootstrap, [topic]).items()}
    with psycopg.connect(dsn) as conn:
        fixture.rebuild_correct(conn, "public", ends, bootstrap=bootstrap)
        conn.commit()


def _config(topic: str, rebuild: dict[str, Any], **extra: Any) -> ReplayConfig:
    return ReplayConfig.from_dict(
        {
            "read_models": [{"name": "balances", "table": "public.balances", "key_columns": ["account"]}],
            "topics": [topic],
            "rebuild": rebuild,
            "buckets": 8,
            **extra,
        }
    )


def _shadow_schemas(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'resgate_replay%'").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def world(pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str]) -> str:
    topic = new_topic(partitions=3)
    _world(pg_dsn, kafka_bootstrap, topic, _history())
    return topic


def test_a_correct_projection_replays_to_the_same_table(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    config = _config(world, {"callable": f"{FIXTURE}:rebuild_correct"})
    findings = gather(pg_dsn, config, bootstrap=kafka_bootstrap, run_id="run-1")
    result = check(findings, config.thresholds)
    assert result.valid is True, result.to_dict()
    assert result.counts == {
        "read_models": 1,
        "matching": 1,
        "mismatching": 0,
        "unknown": 0,
        "differing_rows": 0,
    }
    (m,) = findings.models
    assert m.live_rows == m.rebuilt_rows == 12
    assert m.live_checksum == m.rebuilt_checksum
    assert sum(m.end_offsets[world].values()) == 24
    assert m.shadow_schema is not None and "_run_1_" in m.shadow_schema
    assert _shadow_schemas(pg_dsn) == 0


def test_a_projection_that_drops_a_row_class_mismatches_and_names_the_keys(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    config = _config(world, {"callable": f"{FIXTURE}:rebuild_drops_eur"})
    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap))
    assert result.valid is False
    assert result.counts["differing_rows"] == 3
    assert result.details["balances"]["diff_counts"] == {"missing_in_rebuilt": 3}
    keys = sorted(e["key"]["account"] for e in result.examples)
    assert keys == ["acc00", "acc04", "acc08"]
    ex = result.examples[0]
    assert ex["kind"] == "missing_in_rebuilt" and ex["rebuilt"] is None
    assert ex["live"]["currency"] == "EUR" and ex["live"]["balance"] == 93


def test_a_projection_that_drops_a_field_mismatches_and_names_the_field(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    config = _config(world, {"callable": f"{FIXTURE}:rebuild_drops_currency"}, examples_cap=5)
    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap), config.thresholds)
    assert result.valid is False
    assert result.details["balances"]["diff_counts"] == {"different": 12}
    assert len(result.examples) == 5
    assert all(e["columns"] == ["currency"] and e["rebuilt"]["currency"] is None for e in result.examples)
    assert result.examples[0]["key"] == {"account": "acc00"}


def test_an_excluded_column_is_not_compared(pg_dsn: str, kafka_bootstrap: str, world: str) -> None:
    config = ReplayConfig.from_dict(
        {
            "read_models": [
                {
                    "table": "balances",
                    "key_columns": ["account"],
                    "excluded_columns": ["currency"],
                    "topics": [world],
                    "rebuild": {"callable": f"{FIXTURE}:rebuild_drops_currency"},
                }
            ]
        }
    )
    assert check(gather(pg_dsn, config, bootstrap=kafka_bootstrap)).valid is True


def test_a_rebuild_command_that_matches_is_valid(pg_dsn: str, kafka_bootstrap: str, world: str) -> None:
    config = _config(world, {"command": [sys.executable, FIXTURE_PATH, "correct"], "timeout_s": 60})
    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap))
    assert result.valid is True, result.to_dict()


def test_a_truncated_topic_gives_unknown(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    pad = "x" * 10_000
    events = [_deposit(f"acc{i % 20:02d}", "USD", 1, pad=pad) for i in range(600)]
    asyncio.run(_produce(kafka_bootstrap, topic, events, max_batch_size=64 * 1024))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        fixture.create_table(conn, "public")
    config = _config(topic, {"callable": f"{FIXTURE}:rebuild_correct"})
    findings = gather(pg_dsn, config, bootstrap=kafka_bootstrap)
    result = check(findings)
    assert result.valid == UNKNOWN
    assert "retention truncated the log" in (result.error or "")
    assert f"{topic}[0] starts at offset" in (result.error or "")
    assert findings.models[0].shadow_schema is None  # nothing was rebuilt
    assert _shadow_schemas(pg_dsn) == 0


def test_a_failing_rebuild_command_gives_unknown_with_its_error(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    config = _config(world, {"command": [sys.executable, FIXTURE_PATH, "fail"]})
    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap))
    assert result.valid == UNKNOWN
    assert "exited with 3" in (result.error or "")
    assert "cannot parse event at offset 7" in (result.error or "")
    assert _shadow_schemas(pg_dsn) == 0


def test_a_rebuild_command_that_hangs_is_stopped_and_gives_unknown(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    config = _config(world, {"command": [sys.executable, FIXTURE_PATH, "hang"], "timeout_s": 2})
    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap))
    assert result.valid == UNKNOWN
    assert "did not finish within 2s" in (result.error or "")


def test_a_rebuild_callable_that_raises_gives_unknown_with_its_error(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    config = _config(world, {"callable": f"{FIXTURE}:rebuild_raises"})
    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap))
    assert result.valid == UNKNOWN
    assert "projection exploded on event 42" in (result.error or "")


def test_kept_shadow_schema_stays_for_debugging(pg_dsn: str, kafka_bootstrap: str, world: str) -> None:
    config = _config(world, {"callable": f"{FIXTURE}:rebuild_drops_eur"}, keep_shadow=True)
    findings = gather(pg_dsn, config, bootstrap=kafka_bootstrap)
    schema = findings.models[0].shadow_schema
    with psycopg.connect(pg_dsn) as c:
        row = c.execute(f'SELECT count(*) FROM "{schema}".balances').fetchone()
    assert row == (9,)
    again = ReplayFindings.from_dict(json.loads(json.dumps(findings.to_dict())))
    assert check(again).to_dict() == check(findings).to_dict()


def test_config_errors_are_raised_before_anything_runs(pg_dsn: str, kafka_bootstrap: str, world: str) -> None:
    with pytest.raises(ConfigError) as e:
        gather(pg_dsn, _config(world, {"callable": "no_such_module:fn"}), bootstrap=kafka_bootstrap)
    assert e.value.where == "replay.read_models[0].rebuild.callable"
    bad_key = ReplayConfig.from_dict(
        {
            "read_models": [
                {
                    "table": "balances",
                    "key_columns": ["nope"],
                    "topics": [world],
                    "rebuild": {"command": ["true"]},
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match="nope"):
        gather(pg_dsn, bad_key, bootstrap=kafka_bootstrap)
    assert _shadow_schemas(pg_dsn) == 0
    with pytest.raises(ConfigError) as e:
        ReplayConfig.from_dict({"read_models": [{"table": "t", "key_columns": ["k"], "topics": ["x"]}]})
    assert e.value.where == "replay.read_models[0].rebuild"
    with pytest.raises(ConfigError) as e:
        ReplayConfig.from_dict(
            {
                "read_models": [
                    {
                        "table": "t",
                        "key_columns": ["k"],
                        "topics": ["x"],
                        "rebuild": {"callable": "a:b", "command": ["c"]},
                    }
                ]
            }
        )
    assert e.value.where == "replay.read_models[0].rebuild"


# --- paperbroker's real read models ---------------------------------------------------------------------


def _paperbroker_rebuild() -> Any:
    try:
        from paperbroker import projections
    except Exception as e:  # pragma: no cover - depends on the other half of the tree
        pytest.skip(f"paperbroker.projections is not importable: {e}")
    if not callable(getattr(projections, "rebuild", None)) or not hasattr(projections, "READ_MODELS"):
        pytest.skip("paperbroker.projections has no rebuild() / READ_MODELS yet")
    return projections


def _paperbroker_events() -> list[dict[str, Any]]:
    from paperbroker.events import ORDER_ACCEPTED, TRADE_EXECUTED, new_event

    events = []
    orders = []
    for i in range(6):
        side = "buy" if i % 2 == 0 else "sell"
        oid = str(uuid.UUID(int=i + 1))
        orders.append(oid)
        events.append(
            new_event(
                ORDER_ACCEPTED,
                order_id=oid,
                client_id=f"c{i}",
                idempotency_key=f"k{i}",
                symbol="AAPL",
                side=side,
                qty=10,
                price="100.000000",
            )
        )
    for seq, (b, s) in enumerate([(0, 1), (2, 3), (4, 5)], start=1):
        events.append(
            new_event(
                TRADE_EXECUTED,
                trade_id=f"t{seq}",
                symbol="AAPL",
                seq=seq,
                buy_order_id=orders[b],
                sell_order_id=orders[s],
                buy_client_id=f"c{b}",
                sell_client_id=f"c{s}",
                qty=10 if seq < 3 else 4,
                price="100.000000",
                aggressor_order_id=orders[s],
            )
        )
    return events


def test_paperbroker_read_models_replay_to_the_live_tables(
    pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    projections = _paperbroker_rebuild()
    from paperbroker.events import TRADE_EXECUTED

    orders_topic, exec_topic = new_topic(partitions=2), new_topic(partitions=2)
    events = _paperbroker_events()

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for e in events:
                topic = exec_topic if e["type"] == TRADE_EXECUTED else orders_topic
                await producer.send(topic, json.dumps(e).encode(), key=e["symbol"].encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(publish())
    topics = [orders_topic, exec_topic]
    ends = {t: {p: e for p, (_b, e) in ps.items()} for t, ps in topic_bounds(kafka_bootstrap, topics).items()}
    # The "live" read models: built once by the projections into schema live.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        projections.rebuild(conn, "live", ends, bootstrap=kafka_bootstrap)
    config = ReplayConfig.from_dict(
        {
            "topics": topics,
            "rebuild": {"callable": "paperbroker.projections:rebuild"},
            "read_models": [
                {"name": t, "table": f"live.{t}", "key_columns": list(keys)}
                for t, keys in projections.READ_MODELS.items()
            ],
        }
    )
    findings = gather(pg_dsn, config, bootstrap=kafka_bootstrap)
    result = check(findings)
    assert result.valid is True, result.to_dict()
    assert result.counts["matching"] == len(projections.READ_MODELS)
    assert len({m.shadow_schema for m in findings.models}) == 1  # one rebuild for all read models

    # A live row that drifted from the log is found and named.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE live.rm_trades SET qty = qty + 1 WHERE trade_id = 't2'")
    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap))
    assert result.valid is False
    assert result.details["rm_trades"]["status"] == "mismatch"
    (ex,) = [e for e in result.examples if e["read_model"] == "rm_trades"]
    assert ex["key"] == {"trade_id": "t2"} and ex["columns"] == ["qty"]
    assert ex["live"]["qty"] == ex["rebuilt"]["qty"] + 1
