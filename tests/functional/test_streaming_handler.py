"""The streaming Lambda returns what the streaming checker returns: the stream ledger from the run's S3
prefix (moto) against the trades in a real (embedded) Kafka topic; no stream ledger is unknown; no
brokers is a config error naming ``event.kafka_bootstrap``."""

from __future__ import annotations

import asyncio

import pytest

from lambdas.streaming.handler import handler
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError
from tests.functional.support import load_event, produce_json, timed

pytestmark = pytest.mark.integration


def stream_rows(received: list[int]) -> list[dict]:
    rows = [
        {"ts": 100.0, "client_id": "s1", "event": "connect", "attempt": 1, "connect_ms": 2.0},
        {"ts": 100.0, "client_id": "s1", "event": "snapshot", "symbol": "AAPL", "seq": 0},
    ]
    rows += [
        {"ts": 100.0 + s, "client_id": "s1", "event": "msg", "symbol": "AAPL", "seq": s} for s in received
    ]
    rows.append({"ts": 200.0, "client_id": "s1", "event": "disconnect", "reason": "stopped"})
    return rows


@pytest.fixture
def topic(kafka_bootstrap, new_topic):
    """Trades AAPL 1..5 (published at 101..105) on a fresh topic."""
    name = new_topic(partitions=1)
    trades = [
        (0, {"type": "TradeExecuted", "symbol": "AAPL", "seq": s, "ts": 100.0 + s, "qty": 1, "price": "1"})
        for s in range(1, 6)
    ]
    asyncio.run(produce_json(kafka_bootstrap, name, trades))
    return name


def event(kafka_bootstrap: str, topic: str) -> dict:
    return load_event(
        "streaming", kafka_bootstrap=kafka_bootstrap, thresholds={"topic": topic, "tail_grace_s": 0}
    )


def test_streaming_handler_passes_a_subscriber_that_got_every_trade(
    evidence, kafka_bootstrap, topic, lambda_context
):
    evidence.put_jsonl("stream.jsonl", stream_rows([1, 2, 3, 4, 5]))
    out = timed(handler(event(kafka_bootstrap, topic), lambda_context))
    assert out["valid"] is True and out["counts"]["owed"] == 5 and out["counts"]["completeness"] == 1.0


def test_streaming_handler_names_the_gap_a_subscriber_never_got(
    evidence, kafka_bootstrap, topic, lambda_context
):
    evidence.put_jsonl("stream.jsonl", stream_rows([1, 2, 5]))
    out = handler(event(kafka_bootstrap, topic), lambda_context)
    assert out["valid"] is False
    assert out["examples"] == [
        {"kind": "gap_not_healed", "client_id": "s1", "symbol": "AAPL", "from_seq": 3, "to_seq": 4}
    ]


def test_streaming_handler_is_unknown_without_a_stream_ledger(
    evidence, kafka_bootstrap, topic, lambda_context
):
    out = handler(event(kafka_bootstrap, topic), lambda_context)
    assert out["valid"] == UNKNOWN and "no stream ledger" in out["error"]


def test_streaming_handler_needs_a_kafka_bootstrap(evidence, lambda_context):
    with pytest.raises(ConfigError, match=r"event\.kafka_bootstrap"):
        handler({**load_event("streaming"), "kafka_bootstrap": None}, lambda_context)
