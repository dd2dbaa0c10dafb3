"""What the trades topic says was published: every trade's ``(symbol, seq)`` and when, read from the
topic itself (never from the feed's counters), for the ``streaming`` check.

Imported on first use by :func:`resgate.checks.streaming.gather_published` (aiokafka is needed only here).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from resgate.checks.topics import consume_until, topic_bounds_async, truncated_partitions
from resgate.sections.kafka import KafkaSettings


async def _read(
    bootstrap: str, topic: str, trade_type: str, kafka: KafkaSettings | None, timeout_s: float
) -> tuple[dict[str, dict[int, float]], list[tuple[str, int, int]]]:
    bounds = await topic_bounds_async(bootstrap, [topic], kafka)
    published: dict[str, dict[int, float]] = {}
    async for batch in consume_until(bootstrap, bounds, timeout_s=timeout_s, kafka=kafka):
        for rec in batch:
            try:
                ev: Any = json.loads(rec.value)
            except (TypeError, ValueError):
                continue
            if not isinstance(ev, dict) or ev.get("type", trade_type) != trade_type:
                continue
            if "symbol" not in ev or "seq" not in ev:
                continue
            ts = float(ev["ts"]) if isinstance(ev.get("ts"), int | float) else rec.timestamp / 1000.0
            seqs = published.setdefault(str(ev["symbol"]), {})
            seq = int(ev["seq"])
            seqs[seq] = min(ts, seqs.get(seq, ts))  # a republished trade: its first publication counts
    return published, truncated_partitions(bounds)


def read_published(
    bootstrap: str,
    topic: str,
    trade_type: str,
    *,
    kafka: KafkaSettings | None = None,
    timeout_s: float = 120.0,
) -> tuple[dict[str, dict[int, float]], list[tuple[str, int, int]]]:
    """``({symbol: {seq: first publish ts}}, truncated partitions)`` of the trades in ``topic`` (events
    whose ``type`` is ``trade_type``, or that have no ``type``, with ``symbol`` and ``seq``); the publish
    time is the event's ``ts`` when it has one, else the record's timestamp."""
    return asyncio.run(_read(bootstrap, topic, trade_type, kafka, timeout_s))
