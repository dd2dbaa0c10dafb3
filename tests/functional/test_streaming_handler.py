"""The streaming Lambda returns what the streaming checker returns: the stream ledger from the run's S3
prefix (moto) against the trades in a real (embedded) Kafka topic; no stream ledger is unknown; no
brokers is a config error naming ``event.kafka_bootstrap``."""

from __future__ import annotations

import asyncio
import json

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


def test_streaming_handler_names_a_silent_subscriber_from_the_stream_ledger_the_load_task_uploaded(
    evidence, kafka_bootstrap, topic, lambda_context, tmp_path
):
    # The load task's own upload (loadgen.upload, as on Fargate) puts stream.jsonl at the key the Lambda
    # reads; the subscriber got AAPL 1..2 live, then only heartbeats on the same connection until 120.0
    # (the feed dropped it without a close, seeded bug feed_drops_silently): 3..5 (published 103..105)
    # never came, silent for 17 s.
    from types import SimpleNamespace

    from loadgen.upload import upload_results

    rows = stream_rows([1, 2])[:-1]
    rows += [{"ts": 120.0, "client_id": "s1", "event": "heartbeat"}]
    rows += [{"ts": 120.0, "client_id": "s1", "event": "disconnect", "reason": "stopped"}]
    (tmp_path / "stream.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ledger.jsonl").write_text("")
    result = SimpleNamespace(
        ledger_path=tmp_path / "ledger.jsonl", stats_path=tmp_path / "none.json", log_path=tmp_path / "x.log"
    )
    uri = f"s3://{evidence.bucket}/{evidence.prefix}/{evidence.key.prefix}/"
    keys = upload_results(result, uri, node="task-1", s3_client=evidence.s3)
    assert evidence.object_key("stream.jsonl") in keys
    out = handler(event(kafka_bootstrap, topic), lambda_context)
    assert out["valid"] is False
    silent = [e for e in out["examples"] if e["kind"] == "silent_subscriber"]
    assert silent == [
        {
            "kind": "silent_subscriber",
            "client_id": "s1",
            "symbol": "AAPL",
            "from_seq": 3,
            "to_seq": 5,
            "silent_s": 17.0,
        }
    ]
    assert out["counts"]["silent"] == 3 and out["counts"]["reconnects"] == 0
