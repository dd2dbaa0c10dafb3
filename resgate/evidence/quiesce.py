"""Quiesce: after the load, wait (bounded) until the system has settled; the one function both conductors
call (``resgate run`` in :mod:`resgate.runner.quiesce`, the state machine's ``Quiesce`` state in the
``quiesce`` Lambda, :mod:`lambdas.quiesce`).

Two conditions, polled together until both hold twice in a row or the time is up:

- **drained**: the configured consumer groups have zero lag and every ``drained_queries`` query returns 0
  (:func:`drained_lag`). This is what ``settled`` means: the state integrity and replay compare is final.
  When it does not hold at the deadline, those two checks are ``unknown`` (state compared before it
  settles proves nothing).
- **healthy**: every replica of the target is healthy (the conductor's own probe: the local supervisor, or
  the target's ECS tasks). It only bounds the wait, so that recovery observes a late recovery; it does
  not decide ``settled``: a service that is slow to become healthy fails *recovery* (its own evidence,
  the health timeline), while the other checks still judge the drained state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.topics import client_kwargs
from resgate.config.model import ConsumerGroup
from resgate.sections.kafka import KafkaSettings


@dataclass
class QuiesceResult:
    """``settled``: the data drained (lag and pending rows zero) before the deadline; ``healthy``: every
    replica was healthy at the last poll; ``lag``: per consumer group (and ``pending_rows``)."""

    settled: bool
    waited_s: float
    healthy: bool
    lag: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{settled, waited_s, healthy, lag, reason}`` (what the ``quiesce`` Lambda returns and the
        integrity and replay events carry as ``quiesce``)."""
        return {
            "settled": self.settled,
            "waited_s": round(self.waited_s, 3),
            "healthy": self.healthy,
            "lag": self.lag,
            "reason": self.reason,
        }


async def consumer_lag(
    bootstrap: str, groups: Sequence[ConsumerGroup], kafka: KafkaSettings | None = None
) -> dict[str, int]:
    """Total lag per group: sum over its topics' partitions of (end offset - committed offset).

    Committed offsets are read with a consumer of the group that never joins it (OffsetFetch only), which
    works on the librdkafka mock as on real brokers.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

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


def pending_rows(dsn: str, queries: Sequence[str]) -> int:
    """Sum of the single numbers the ``drained_queries`` return (e.g. unsent outbox rows)."""
    if not queries:
        return 0
    import psycopg

    with psycopg.connect(dsn, connect_timeout=3) as conn:
        return sum(int(conn.execute(q).fetchone()[0] or 0) for q in queries)  # type: ignore[index]


def drained_lag(
    bootstrap: str,
    groups: Sequence[ConsumerGroup],
    *,
    dsn: str = "",
    drained_queries: Sequence[str] = (),
    kafka: KafkaSettings | None = None,
) -> dict[str, int]:
    """``{group: lag, ..., "pending_rows": n}`` (``pending_rows`` only with ``drained_queries``); all zero
    means drained. Raises what the brokers or the database raise."""
    lag = asyncio.run(consumer_lag(bootstrap, groups, kafka)) if groups else {}
    if drained_queries:
        lag["pending_rows"] = pending_rows(dsn, drained_queries)
    return lag


def wait_quiet(
    healthy: Callable[[], bool],
    lag: Callable[[], dict[str, int]],
    timeout_s: float,
    *,
    poll_s: float = 0.5,
    tick: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> QuiesceResult:
    """Poll ``healthy()`` and ``lag()`` (see the module) until both are fine twice in a row, or until
    ``timeout_s`` (at least two polls). ``settled`` is whether the lag was zero at the last two polls;
    an exception of either probe counts as not fine (the broker or a service may still be recovering
    from a fault) and is kept as the reason."""
    start = time.monotonic()
    drained_streak = 0
    healthy_now = False
    current: dict[str, int] = {}
    polls = 0
    while True:
        polls += 1
        problem = ""
        try:
            healthy_now = bool(healthy())
        except Exception as e:
            healthy_now = False
            problem = f"health unavailable: {type(e).__name__}: {e}"
        try:
            current = lag()
            drained_now = all(v == 0 for v in current.values())
        except Exception as e:
            drained_now = False
            problem = f"lag unavailable: {type(e).__name__}: {e}"
        drained_streak = drained_streak + 1 if drained_now else 0
        both_streak = drained_streak if healthy_now else 0
        waited = time.monotonic() - start
        if tick:
            tick(f"healthy={healthy_now} lag={current or '-'}")
        if both_streak >= 2:
            return QuiesceResult(True, waited, True, current)
        if waited >= timeout_s and polls >= 2:
            settled = drained_streak >= 2
            why = [] if healthy_now else ["not every replica is healthy"]
            if not all(v == 0 for v in current.values()):
                why.append(f"consumer lag {current}")
            if problem:
                why.append(problem)
            return QuiesceResult(settled, waited, healthy_now, current, "; ".join(why) or "timeout")
        sleep(poll_s)
