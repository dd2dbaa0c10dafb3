"""Applying a batch of events to the read models in one transaction, each event at most once per projector.

:func:`apply_batch` (and :func:`apply_batch_async` for the live projector) inserts the batch's
``(projector, event_id)`` pairs into ``<schema>.processed_events`` and, in the same transaction, runs the
statements :func:`paperbroker.projection_plan.build_plan` made for the pairs that were new, so a
redelivered batch is a no-op. The live projector also records where each record of the batch sat (topic,
partition, offset) in ``<schema>.consumed_offsets``, in the same transaction. The
``projector_double_apply`` seeded bug applies every event regardless.
A deadlock or serialization failure (concurrent replicas) retries the whole transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from paperbroker.projection_plan import ApplyStats, ProjectionOptions, build_plan, dedupe_keys
from paperbroker.read_models import check_schema_name


def _dedupe_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {s}.processed_events (projector, event_id)"
        " SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING RETURNING projector, event_id"
    ).format(s=sql.Identifier(check_schema_name(schema)))


def _positions_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        'INSERT INTO {s}.consumed_offsets (topic, "partition", "offset")'
        " SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[]) ON CONFLICT DO NOTHING"
    ).format(s=sql.Identifier(check_schema_name(schema)))


Position = tuple[str, int, int]


def _position_params(positions: Sequence[Position]) -> tuple[list[str], list[int], list[int]]:
    return [p[0] for p in positions], [p[1] for p in positions], [p[2] for p in positions]


_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def apply_batch(
    conn: psycopg.Connection,
    schema: str,
    events: Sequence[dict[str, Any]],
    options: ProjectionOptions = ProjectionOptions(),
) -> ApplyStats:
    """Apply a batch of decoded events to the read models in ``schema`` in ONE transaction (sync).

    Returns the batch's :class:`ApplyStats`. Retries the transaction on deadlock/serialization failure.
    """
    keys = dedupe_keys(events)
    for attempt in range(5):
        try:
            with conn.transaction(), conn.cursor() as cur:
                fresh: set[tuple[str, str]] | None = None
                if keys:
                    cur.execute(_dedupe_sql(schema), ([k[0] for k in keys], [k[1] for k in keys]))
                    fresh = {(p, e) for p, e in cur.fetchall()}
                accept = None if options.skip_dedupe else (fresh or set())
                plan, stats = build_plan(events, accept, schema, options)
                for stmt, rows in plan:
                    cur.executemany(stmt, rows)
            return stats
        except _RETRYABLE:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def apply_batch_async(
    conn: psycopg.AsyncConnection,
    schema: str,
    events: Sequence[dict[str, Any]],
    options: ProjectionOptions = ProjectionOptions(),
    positions: Sequence[Position] = (),
) -> ApplyStats:
    """Async :func:`apply_batch`; ``positions`` (the batch's ``(topic, partition, offset)`` in consumption
    order) go into ``consumed_offsets`` in the same transaction, each the first time only."""
    keys = dedupe_keys(events)
    for attempt in range(5):
        try:
            async with conn.transaction(), conn.cursor() as cur:
                fresh: set[tuple[str, str]] | None = None
                if keys:
                    await cur.execute(_dedupe_sql(schema), ([k[0] for k in keys], [k[1] for k in keys]))
                    fresh = {(p, e) for p, e in await cur.fetchall()}
                if positions:
                    await cur.execute(_positions_sql(schema), _position_params(positions))
                accept = None if options.skip_dedupe else (fresh or set())
                plan, stats = build_plan(events, accept, schema, options)
                for stmt, rows in plan:
                    await cur.executemany(stmt, rows)
            return stats
        except _RETRYABLE:
            if attempt == 4:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
