"""Quiesce: after the load, wait (bounded) until every replica is healthy and consumer lag is zero."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from resgate.checks.topics import client_kwargs
from resgate.config.kafka import KafkaSettings
from resgate.config.schema import ConsumerGroup
from resgate.local.supervisor import Supervisor


@dataclass
class QuiesceResult:
    """``settled`` is True when health and lag were both fine before the timeout."""

    settled: bool
    waited_s: float
    healthy: bool
    lag: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "settled": self.settled,
            "waited_s": round(self.waited_s, 3),
            "healthy": self.healthy,
            "lag": self.lag,
            "reason": self.reason,
        }


async def consumer_lag(
    bootstrap: str, groups: list[ConsumerGroup], kafka: KafkaSettings | None = None
) -> dict[str, int]:
    """Total lag per group: sum over its topics' partitions of (end offset - committed offset).

    Committed offsets are read with a consumer of the group that never joins it (OffsetFetch only), which
    works on the librdkafka mock as on real brokers.
    """
    out: dict[str, int] = {}
    for g in groups:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=g.group, enable_auto_commit=False, **client_kwargs(kafka)
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            tps = [
                TopicPartition(t, p) for t in g.topics for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            end = await consumer.end_offsets(tps) if tps else {}
            lag = 0
            for tp in tps:
                pos = await consumer.committed(tp) or 0
                lag += max(0, end[tp] - pos)
            out[g.group] = lag
        finally:
            await consumer.stop()
    return out


def pending_rows(dsn: str, queries: list[str]) -> int:
    """Sum of the single numbers the ``drained_queries`` return (e.g. unsent outbox rows)."""
    if not queries:
        return 0
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        return sum(int(conn.execute(q).fetchone()[0] or 0) for q in queries)  # type: ignore[index]


def wait_quiet(
    supervisor: Supervisor | None,
    bootstrap: str,
    groups: list[ConsumerGroup],
    timeout_s: float,
    *,
    drained_queries: list[str] | None = None,
    dsn: str = "",
    poll_s: float = 0.5,
    tick: Callable[[str], None] | None = None,
    kafka: KafkaSettings | None = None,
) -> QuiesceResult:
    """Poll health, pending rows and lag until all are fine twice in a row, or until ``timeout_s``.

    ``kafka`` is how to connect to the brokers (default PLAINTEXT, the embedded ones)."""
    start = time.monotonic()
    streak = 0
    healthy = False
    lag: dict[str, int] = {}
    reason = ""
    while True:
        healthy = supervisor.wait_healthy(0.01) if supervisor is not None else True
        try:
            lag = asyncio.run(consumer_lag(bootstrap, groups, kafka)) if groups else {}
            if drained_queries:
                lag["pending_rows"] = pending_rows(dsn, drained_queries)
            lag_ok = all(v == 0 for v in lag.values())
            reason = ""
        except Exception as e:  # the broker may still be recovering from a fault: keep polling
            lag_ok = False
            reason = f"lag unavailable: {type(e).__name__}: {e}"
        streak = streak + 1 if healthy and lag_ok else 0
        waited = time.monotonic() - start
        if tick:
            tick(f"healthy={healthy} lag={lag or '-'}")
        if streak >= 2:
            return QuiesceResult(True, waited, healthy, lag)
        if waited >= timeout_s:
            why = [] if healthy else ["not every replica is healthy"]
            if not all(v == 0 for v in lag.values()):
                why.append(f"consumer lag {lag}")
            if reason:
                why.append(reason)
            return QuiesceResult(False, waited, healthy, lag, "; ".join(why) or "timeout")
        time.sleep(poll_s)
