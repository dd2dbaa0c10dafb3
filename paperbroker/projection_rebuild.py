"""Rebuilding the read models from the topics into a shadow schema: the reference run of the replay check.

:func:`rebuild` empties (or creates) the read-model tables in a schema other than ``public``, streams the
events of the given topics from offset 0 up to the given end offsets (:func:`iter_event_batches`, a plain
assigned consumer that commits nothing) and applies them with the correct projection logic, never the
seeded bugs, so the result can be compared with the live tables. A topic whose history was cut by
retention is refused with :class:`TruncatedLogError` (the replay check reports unknown rather than a
false mismatch). Its command-line form is ``python -m paperbroker.projections rebuild``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from paperbroker.events import decode
from paperbroker.projection_apply import apply_batch
from paperbroker.projection_plan import ApplyStats
from paperbroker.read_models import AUX_TABLES, READ_MODELS, check_schema_name, ensure_schema
from resgate.contract.errors import ConfigError, GateError


class TruncatedLogError(GateError):
    """The topic no longer holds the full history (earliest offset > 0): a rebuild would be wrong.

    ``partitions`` lists ``(topic, partition, earliest_offset)``.
    """

    def __init__(self, partitions: list[tuple[str, int, int]]) -> None:
        self.partitions = partitions
        super().__init__(f"topic history truncated by retention (earliest offset > 0): {partitions}")


def _normalise_end_offsets(end_offsets: Any) -> dict[str, dict[int, int]]:
    if not isinstance(end_offsets, dict) or not end_offsets:
        raise ConfigError("must be a non-empty {topic: {partition: end_offset}} mapping", where="end_offsets")
    out: dict[str, dict[int, int]] = {}
    for topic, parts in end_offsets.items():
        if not isinstance(topic, str) or not topic or not isinstance(parts, dict):
            raise ConfigError(f"bad entry for topic {topic!r}", where="end_offsets")
        try:
            out[topic] = {int(p): int(o) for p, o in parts.items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"partitions/offsets must be integers: {parts!r}", where=f"end_offsets.{topic}"
            ) from e
        if any(p < 0 or o < 0 for p, o in out[topic].items()):
            raise ConfigError("negative partition or offset", where=f"end_offsets.{topic}")
    return out


async def iter_event_batches(
    bootstrap: str,
    end_offsets: dict[str, dict[int, int]],
    *,
    batch_size: int = 2000,
    timeout_s: float = 600.0,
) -> Any:
    """Async generator of decoded event batches from offset 0 up to ``end_offsets`` (exclusive).

    Uses a plain assigned consumer (no group, nothing committed). Raises :class:`TruncatedLogError` before
    yielding anything when a partition's earliest offset is above 0, and GateError when the topic does
    not reach the requested end within ``timeout_s``. Undecodable records are skipped (counted by caller
    as not events). Memory is bounded by the batch size and the consumer's fetch buffers.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tps = [
        TopicPartition(t, p)
        for t, parts in sorted(end_offsets.items())
        for p, end in sorted(parts.items())
        if end > 0
    ]
    if not tps:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        truncated = [(tp.topic, tp.partition, begins[tp]) for tp in tps if begins[tp] > 0]
        if truncated:
            raise TruncatedLogError(truncated)
        todo: dict[Any, int] = {}
        for tp in tps:
            consumer.seek(tp, 0)
            todo[tp] = end_offsets[tp.topic][tp.partition]
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise GateError(f"rebuild: topics did not reach the end offsets within {timeout_s}s: {todo}")
            data = await consumer.getmany(*todo.keys(), timeout_ms=500, max_records=batch_size)
            batch: list[dict[str, Any]] = []
            for tp, recs in data.items():
                end = todo.get(tp)
                if end is None:
                    continue
                for rec in recs:
                    if rec.offset >= end:
                        break
                    try:
                        ev = decode(rec.value)
                    except ValueError:
                        ev = None
                    batch.append(ev if isinstance(ev, dict) else {})
                if recs and recs[-1].offset + 1 >= end:
                    todo.pop(tp)
                    consumer.pause(tp)
            if batch:
                yield batch
    finally:
        await consumer.stop()


def _prepare_shadow(conn: psycopg.Connection, schema: str) -> None:
    if check_schema_name(schema) == "public":
        raise ConfigError("refusing to rebuild into the live schema 'public'", where="schema")
    ensure_schema(conn, schema)
    tables = [*READ_MODELS, *AUX_TABLES, "processed_events"]
    with conn.transaction():
        conn.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables))
        )


async def _rebuild_async(
    conn: psycopg.Connection,
    schema: str,
    end_offsets: dict[str, dict[int, int]],
    bootstrap: str,
    batch_size: int,
    timeout_s: float,
) -> dict[str, Any]:
    from aiokafka.errors import KafkaError

    total = ApplyStats()
    batches = 0
    t0 = time.monotonic()
    try:
        batches_in = iter_event_batches(bootstrap, end_offsets, batch_size=batch_size, timeout_s=timeout_s)
        async with contextlib.aclosing(batches_in):  # stops the consumer even when applying fails
            async for batch in batches_in:
                total.add(apply_batch(conn, schema, batch))  # always the correct logic
                batches += 1
    except KafkaError as e:
        raise GateError(f"rebuild: Kafka error reading {sorted(end_offsets)}: {type(e).__name__}: {e}") from e
    if not conn.autocommit:
        conn.commit()
    return {
        "schema": schema,
        "batches": batches,
        "elapsed_s": round(time.monotonic() - t0, 3),
        "end_offsets": {t: {str(p): o for p, o in parts.items()} for t, parts in end_offsets.items()},
        **total.as_dict(),
    }


def rebuild(
    conn: psycopg.Connection,
    schema: str,
    end_offsets: dict[str, dict[int, int]],
    *,
    bootstrap: str,
    batch_size: int = 2000,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Rebuild the read models into ``schema`` from offset 0 to ``end_offsets`` ({topic: {partition: end}}).

    ``conn`` is a synchronous psycopg connection to the database that will hold the shadow schema. The
    schema's tables are created (or emptied) first; ``public`` is refused. Events are streamed in batches
    and applied with the reference logic (never the seeded bugs), deduplicated by event id within the
    rebuild (``<schema>.processed_events``). Returns ``{schema, batches, elapsed_s, end_offsets, events,
    applied: {projector: n}, duplicates, skipped}``. Raises :class:`TruncatedLogError` when retention
    dropped the beginning of a partition, ConfigError on bad arguments, GateError when the topics do not
    reach the end offsets within ``timeout_s``. Safe to call from a thread that runs an event loop (the
    Kafka reads then run in a helper thread).
    """
    ends = _normalise_end_offsets(end_offsets)
    if not bootstrap:
        raise ConfigError("Kafka bootstrap servers are required", where="bootstrap")
    _prepare_shadow(conn, schema)
    coro_args = (conn, schema, ends, bootstrap, batch_size, timeout_s)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_rebuild_async(*coro_args))
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["result"] = asyncio.run(_rebuild_async(*coro_args))
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=worker, name="pb-rebuild", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
