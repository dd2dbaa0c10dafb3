"""The checkers' Kafka clients over TLS: the embedded brokers speak only PLAINTEXT, so a local
TLS-terminating proxy (``_tls_kafka_proxy``) stands in for MSK's TLS listeners. Reading through it with
``kafka: {security_protocol: SSL, ca_file: <its CA>}`` must give what reading the brokers directly gives."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from resgate.checks.topics import consume_until, topic_bounds
from resgate.sections.kafka import KafkaSettings
from tests.integration._tls_kafka_proxy import TlsKafkaProxy, self_signed

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topic, json.dumps({"i": i}).encode(), partition=i % 3)
        await producer.flush()
    finally:
        await producer.stop()


async def _read(bootstrap: str, ranges: dict, kafka: KafkaSettings) -> list[int]:
    out: list[int] = []
    async for batch in consume_until(bootstrap, ranges, timeout_s=20, kafka=kafka):
        out += [json.loads(m.value)["i"] for m in batch]
    return sorted(out)


def test_topic_bounds_and_reads_through_tls_equal_the_plaintext_ones(
    kafka_bootstrap: str, new_topic, tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    asyncio.run(_produce(kafka_bootstrap, topic, 30))
    plain = topic_bounds(kafka_bootstrap, [topic])
    cert, key = self_signed(tmp_path)
    tls = KafkaSettings("SSL", ca_file=str(cert))

    with TlsKafkaProxy(kafka_bootstrap, cert, key) as proxy:
        assert proxy.bootstrap != kafka_bootstrap
        bounds = topic_bounds(proxy.bootstrap, [topic], tls)
        values = asyncio.run(_read(proxy.bootstrap, bounds, tls))

    assert bounds == plain
    assert sum(e for _b, e in bounds[topic].values()) == 30
    assert values == list(range(30))
