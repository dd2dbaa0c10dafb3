"""The embedded Kafka speaks the protocol to aiokafka and its fault controls really act."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from resgate.checks.topics import topic_bounds, truncated_partitions
from resgate.contract.errors import ConfigError
from resgate.local.kafka import EmbeddedKafka

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, n: int, size: int = 100, **kw: object) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", **kw)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topic, b"x" * size, key=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_group(bootstrap: str, topic: str, group: str, want: int, timeout_s: float = 15) -> int:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = 0
    try:
        deadline = time.monotonic() + timeout_s
        while got < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got += sum(len(v) for v in batch.values())
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def _committed(bootstrap: str, topic: str, group: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


def test_aiokafka_produces_and_consumes_through_a_group_with_committed_offsets(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    asyncio.run(_produce(kafka_bootstrap, topic, 500))
    assert asyncio.run(_consume_group(kafka_bootstrap, topic, "g1", 500)) == 500
    assert asyncio.run(_committed(kafka_bootstrap, topic, "g1", 3)) == 500
    # A second consumer of the same group resumes after the committed offsets: nothing left to read.
    assert asyncio.run(_consume_group(kafka_bootstrap, topic, "g1", 1, timeout_s=2)) == 0


def test_broker_down_stalls_a_produce_and_broker_up_lets_it_complete() -> None:
    async def scenario(k: EmbeddedKafka) -> tuple[bool, float]:
        producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap, acks="all", request_timeout_ms=30000)
        await producer.start()
        try:
            await producer.send_and_wait("t", b"warm")
            k.set_broker_down(1)
            send = asyncio.ensure_future(producer.send_and_wait("t", b"while-down"))
            await asyncio.sleep(1.5)
            stalled = not send.done()
            k.set_broker_up(1)
            t0 = time.monotonic()
            await asyncio.wait_for(send, 20)
            return stalled, time.monotonic() - t0
        finally:
            await producer.stop()

    with EmbeddedKafka(brokers=1) as k:
        k.create_topic("t", 1)
        stalled, completed_after = asyncio.run(scenario(k))
    assert stalled
    assert completed_after < 20


def test_latency_injection_measurably_slows_a_round_trip() -> None:
    async def round_trip(bootstrap: str) -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("t", b"warm")
            t0 = time.monotonic()
            for _ in range(3):
                await producer.send_and_wait("t", b"x")
            return (time.monotonic() - t0) / 3
        finally:
            await producer.stop()

    with EmbeddedKafka(brokers=1) as k:
        k.create_topic("t", 1)
        fast = asyncio.run(round_trip(k.bootstrap))
        k.set_rtt(1, 300)
        slow = asyncio.run(round_trip(k.bootstrap))
    assert slow >= 0.25
    assert slow > fast + 0.2


def test_truncation_is_detected_on_a_topic_pushed_past_retention(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    # 7 MiB into one partition: the mock keeps 5 MiB and silently drops the oldest.
    asyncio.run(_produce(kafka_bootstrap, topic, 700, size=10_000, max_batch_size=64 * 1024))
    bounds = topic_bounds(kafka_bootstrap, [topic])
    earliest, end = bounds[topic][0]
    assert end == 700
    assert earliest > 0
    assert truncated_partitions(bounds) == [(topic, 0, earliest)]


def test_an_untruncated_topic_reports_no_truncation(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    asyncio.run(_produce(kafka_bootstrap, topic, 50))
    bounds = topic_bounds(kafka_bootstrap, [topic])
    assert sum(e for _b, e in bounds[topic].values()) == 50
    assert truncated_partitions(bounds) == []


def test_fault_controls_reject_bad_input_before_acting() -> None:
    with EmbeddedKafka(brokers=2) as k:
        with pytest.raises(ConfigError, match="broker id 5"):
            k.set_broker_down(5)
        with pytest.raises(ConfigError, match="rtt_ms"):
            k.set_rtt(1, -1)
        with pytest.raises(ConfigError, match="unknown Kafka API"):
            k.push_request_errors("Nope", ["REQUEST_TIMED_OUT"])
        k.push_request_errors("Produce", ["NOT_LEADER_OR_FOLLOWER"])


def test_the_mock_cluster_dies_with_its_parent_process() -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from resgate.local.kafka import EmbeddedKafka
        k = EmbeddedKafka(brokers=1)
        k.start()
        print(k._proc.pid, flush=True)
        os._exit(0)  # no cleanup: the child must notice on its own
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    child = int(out.stdout.strip())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
    finally:
        os.sched_yield()
