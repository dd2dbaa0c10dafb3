"""The ``duplicate_delivery`` fault: re-publish already delivered events, as an at-least-once log would.

Events are copied verbatim (same key, value and headers, same partition), so consumers see the very same
event ids again; idempotent consumers must ignore them. One function, two places: the local fault runner
(``resgate.runner.faults``) and, on AWS, the redeliver Lambda (``lambdas/redeliver``) that FIS starts
through an SSM automation, over the same Kafka settings (TLS, MSK IAM) the checks use.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from resgate.checks.topics import client_kwargs
from resgate.sections.kafka import KafkaSettings


async def _redeliver(
    bootstrap: str, topics: list[str], fraction: float, max_events: int, kafka: KafkaSettings | None
) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs(kafka))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_batch_size=64 * 1024,
        **client_kwargs(kafka),
    )
    await consumer.start()
    await producer.start()
    per_topic: dict[str, int] = {}
    try:
        tps = []
        for t in topics:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(t) or set()
            tps += [TopicPartition(t, p) for p in sorted(parts)]
        if not tps:
            return {"republished": 0, "per_topic": {}, "note": "no partitions found"}
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        total = sum(end[tp] - begin[tp] for tp in tps)
        budget = min(max_events, math.ceil(total * fraction)) if total else 0
        # Spread the budget over partitions in proportion to their size; take each partition's tail.
        plan: dict[TopicPartition, int] = {}
        for tp in tps:
            size = end[tp] - begin[tp]
            n = min(size, math.ceil(budget * size / total)) if total else 0
            if n:
                plan[tp] = n
        consumer.assign(list(plan))
        for tp, n in plan.items():
            consumer.seek(tp, end[tp] - n)
        remaining = dict(plan)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while any(v > 0 for v in remaining.values()) and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if remaining.get(tp, 0) <= 0 or m.offset >= end[tp]:
                        continue
                    remaining[tp] -= 1
                    await producer.send(
                        tp.topic, m.value, key=m.key, partition=tp.partition, headers=list(m.headers or [])
                    )
                    per_topic[tp.topic] = per_topic.get(tp.topic, 0) + 1
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return {"republished": sum(per_topic.values()), "per_topic": per_topic}


def redeliver(
    bootstrap: str,
    topics: list[str],
    fraction: float,
    max_events: int,
    kafka: KafkaSettings | None = None,
) -> dict[str, Any]:
    """Re-publish up to ``max_events`` (``fraction`` of what the topics hold) of the most recent events.

    ``kafka`` is how to connect to the brokers (default PLAINTEXT). Returns
    ``{"republished": n, "per_topic": {topic: n}}``.
    """
    return asyncio.run(_redeliver(bootstrap, topics, fraction, max_events, kafka))
