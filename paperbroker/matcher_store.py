"""The matcher's state in Postgres: the book snapshot, sequence numbers, consumed offsets and its outbox.

The tables (``matcher_meta`` arrival counter, ``matcher_symbols`` next ``seq`` per symbol,
``matcher_resting`` one row per resting order, ``matcher_seen_orders``, ``matcher_offsets`` next offset
of each consumed orders partition, ``matcher_outbox`` events to publish, ``matcher_published`` next
offset reached on each executions partition) and every statement on them. Every table but the two keyed
by a symbol or an order (which belong to exactly one group) is keyed by the symbol group (``grp``,
:mod:`paperbroker.lease`): each group's leader reads and writes only its group's rows, so the groups'
states move independently and a handover of one group never touches another's. :func:`save_batch` writes one
batch's changes and outputs in the caller's transaction, so the book, the offsets and the outputs move
together; :func:`load_engine` rebuilds the :class:`~paperbroker.matching.MatchingEngine` from the
snapshot; :func:`mark_sent` deletes published outbox rows together with the offsets they reached.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import psycopg

from paperbroker.book import RestingOrder
from paperbroker.events import encode
from paperbroker.lease import DEFAULT_GROUP, LEASE_DDL, fence
from paperbroker.matching import BatchOutcome, MatchingEngine

#: Advisory lock key of schema creation (transaction-level). The single active matcher is the holder of
#: the lease in :mod:`paperbroker.lease` (a session-level advisory lock outlived a partitioned leader).
SCHEMA_LOCK_KEY = 0x5042_4D53  # "PBMS"

MATCHER_DDL = (
    LEASE_DDL
    + """
CREATE TABLE IF NOT EXISTS matcher_meta (
    grp text PRIMARY KEY,
    next_arrival bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS matcher_symbols (
    symbol text PRIMARY KEY,
    next_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS matcher_resting (
    arrival bigint NOT NULL,
    order_id text NOT NULL,
    client_id text NOT NULL,
    symbol text NOT NULL,
    side text NOT NULL,
    price text NOT NULL,
    qty bigint NOT NULL,
    remaining bigint NOT NULL,
    grp text NOT NULL DEFAULT 'all-symbols',
    PRIMARY KEY (grp, arrival)
);
CREATE TABLE IF NOT EXISTS matcher_offsets (
    grp text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (grp, topic, partition)
);
CREATE TABLE IF NOT EXISTS matcher_seen_orders (
    order_id text PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS matcher_outbox (
    id bigserial PRIMARY KEY,
    grp text NOT NULL,
    event_id text NOT NULL,
    key text NOT NULL,
    payload bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS matcher_outbox_grp ON matcher_outbox (grp, id);
CREATE TABLE IF NOT EXISTS matcher_published (
    grp text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (grp, topic, partition)
);
"""
)


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the matcher's tables if missing (idempotent, safe to run concurrently); commits."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(MATCHER_DDL)
    if not conn.autocommit:
        conn.commit()


async def ensure_schema_async(conn: psycopg.AsyncConnection) -> None:
    """Async :func:`ensure_schema`."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        await conn.execute(MATCHER_DDL)
    if not conn.autocommit:
        await conn.commit()


async def load_engine(
    conn: psycopg.AsyncConnection,
    *,
    dedupe_orders: bool,
    round_prices: bool = False,
    group: str = DEFAULT_GROUP,
    id_scope: str = "",
) -> MatchingEngine:
    """Rebuild the :class:`MatchingEngine` of symbol group ``group`` from the snapshot tables.

    ``round_prices`` is the seeded bug ``matcher_restore_rounds_price``: each restored limit is rounded to
    a whole unit, so a restarted matcher fills resting orders outside their limits.
    """
    engine = MatchingEngine(dedupe_orders=dedupe_orders, id_scope=id_scope)
    cur = await conn.execute("SELECT next_arrival FROM matcher_meta WHERE grp = %s", (group,))
    row = await cur.fetchone()
    engine.next_arrival = int(row[0]) if row else 1
    cur = await conn.execute("SELECT symbol, next_seq FROM matcher_symbols")
    engine.next_seq = {s: int(n) for s, n in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT arrival, order_id, client_id, symbol, side, price, qty, remaining FROM matcher_resting"
        " WHERE grp = %s ORDER BY arrival",
        (group,),
    )
    async for arrival, oid, cid, sym, side, price, qty, rem in cur:
        limit = Decimal(price)
        if round_prices:
            limit = max(Decimal(1), limit.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        engine.book(sym).restore(RestingOrder(oid, cid, sym, side, limit, qty, rem, arrival))
    return engine


async def save_batch(
    conn: psycopg.AsyncConnection,
    engine: MatchingEngine,
    out: BatchOutcome,
    offsets: dict[tuple[str, int], int],
    *,
    keep_cancelled: bool = False,
    group: str = DEFAULT_GROUP,
) -> list[tuple[int, str, str, bytes]]:
    """Write one batch's state and outbox of symbol group ``group`` (caller holds the transaction);
    returns the outbox rows.

    ``keep_cancelled`` is the seeded bug ``matcher_snapshot_keeps_cancelled``: a cancelled order is saved
    like a resting one (only filled orders are deleted), so a restarted matcher puts it back in the book.
    """
    cur = conn.cursor()
    if out.new_order_ids:
        await cur.execute(
            "INSERT INTO matcher_seen_orders (order_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (out.new_order_ids,),
        )
    live = [o for o in out.changed.values() if o.live and o.remaining > 0]
    gone = [a for a, o in out.changed.items() if not (o.live and o.remaining > 0)]
    if keep_cancelled:  # the bug: an order with quantity left is saved as resting, cancelled or not
        live = [o for o in out.changed.values() if o.remaining > 0]
        gone = [a for a, o in out.changed.items() if o.remaining <= 0]
    if live:
        await cur.execute(
            "INSERT INTO matcher_resting"
            " (arrival, order_id, client_id, symbol, side, price, qty, remaining, grp)"
            " SELECT *, %s FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT (grp, arrival) DO UPDATE SET remaining = EXCLUDED.remaining",
            (
                group,
                [o.arrival for o in live],
                [o.order_id for o in live],
                [o.client_id for o in live],
                [o.symbol for o in live],
                [o.side for o in live],
                [str(o.price) for o in live],
                [o.qty for o in live],
                [o.remaining for o in live],
            ),
        )
    if gone:
        await cur.execute(
            "DELETE FROM matcher_resting WHERE grp = %s AND arrival = ANY(%s::bigint[])", (group, gone)
        )
    if out.seq_symbols:
        syms = sorted(out.seq_symbols)
        await cur.execute(
            "INSERT INTO matcher_symbols (symbol, next_seq) SELECT * FROM unnest(%s::text[], %s::bigint[])"
            " ON CONFLICT (symbol) DO UPDATE SET next_seq = EXCLUDED.next_seq",
            (syms, [engine.next_seq[s] for s in syms]),
        )
    await cur.execute(
        "INSERT INTO matcher_meta (grp, next_arrival) VALUES (%s, %s)"
        " ON CONFLICT (grp) DO UPDATE SET next_arrival = EXCLUDED.next_arrival",
        (group, engine.next_arrival),
    )
    if offsets:
        keys = sorted(offsets)
        await cur.execute(
            "INSERT INTO matcher_offsets (grp, topic, partition, next_offset)"
            " SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::bigint[])"
            " ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            (group, [k[0] for k in keys], [k[1] for k in keys], [offsets[k] for k in keys]),
        )
    rows: list[tuple[int, str, str, bytes]] = []
    if out.outputs:
        eids = [e["event_id"] for e in out.outputs]
        keys_ = [e["symbol"] for e in out.outputs]
        payloads = [encode(e) for e in out.outputs]
        await cur.execute(
            "INSERT INTO matcher_outbox (grp, event_id, key, payload)"
            " SELECT %s, e, k, p FROM unnest(%s::text[], %s::text[], %s::bytea[])"
            " WITH ORDINALITY AS u(e, k, p, n)"
            " ORDER BY n RETURNING id, event_id",
            (group, eids, keys_, payloads),
        )
        ids = {eid: i for i, eid in await cur.fetchall()}
        rows = [(ids[e], e, k, p) for e, k, p in zip(eids, keys_, payloads, strict=True)]
    return rows


async def consumed_offsets(
    conn: psycopg.AsyncConnection, topic: str, group: str = DEFAULT_GROUP
) -> dict[int, int]:
    """The stored next offset of each partition of ``topic`` that ``group`` consumed: ``{partition:
    offset}``."""
    cur = await conn.execute(
        "SELECT partition, next_offset FROM matcher_offsets WHERE grp = %s AND topic = %s", (group, topic)
    )
    return {int(p): int(o) for p, o in await cur.fetchall()}


async def seen_orders(conn: psycopg.AsyncConnection, order_ids: list[str]) -> set[str]:
    """Those of ``order_ids`` the matcher has already processed."""
    cur = await conn.execute(
        "SELECT order_id FROM matcher_seen_orders WHERE order_id = ANY(%s::text[])", (order_ids,)
    )
    return {r[0] for r in await cur.fetchall()}


async def outbox_rows(
    conn: psycopg.AsyncConnection, group: str = DEFAULT_GROUP
) -> list[tuple[int, str, str, bytes]]:
    """Every outbox row of ``group`` in id order: ``[(id, event_id, key, payload)]``."""
    cur = await conn.execute(
        "SELECT id, event_id, key, payload FROM matcher_outbox WHERE grp = %s ORDER BY id", (group,)
    )
    return [(int(i), e, k, bytes(p)) for i, e, k, p in await cur.fetchall()]


async def published_offsets(
    conn: psycopg.AsyncConnection, topic: str, group: str = DEFAULT_GROUP
) -> dict[int, int]:
    """The next offset ``group``'s acknowledged events reached on each partition of the executions
    ``topic``: ``{partition: offset}``."""
    cur = await conn.execute(
        "SELECT partition, next_offset FROM matcher_published WHERE grp = %s AND topic = %s", (group, topic)
    )
    return {int(p): int(o) for p, o in await cur.fetchall()}


async def mark_sent(
    conn: psycopg.AsyncConnection,
    topic: str,
    ids: list[int],
    reached: dict[int, int],
    *,
    lease: tuple[str, int] | None = None,
    group: str = DEFAULT_GROUP,
) -> None:
    """Delete the published outbox rows ``ids`` and raise the offsets ``group`` reached on ``topic``, in
    one transaction; with ``lease`` = (group, token) the transaction is fenced by that token before its
    commit."""
    async with conn.transaction():
        await conn.execute("DELETE FROM matcher_outbox WHERE id = ANY(%s::bigint[])", (ids,))
        if reached:
            parts = sorted(reached)
            await conn.execute(
                "INSERT INTO matcher_published (grp, topic, partition, next_offset)"
                " SELECT %s, %s, p, o FROM unnest(%s::int[], %s::bigint[]) AS u(p, o)"
                " ON CONFLICT (grp, topic, partition) DO UPDATE"
                " SET next_offset = GREATEST(matcher_published.next_offset, EXCLUDED.next_offset)",
                (group, topic, parts, [reached[p] for p in parts]),
            )
        if lease is not None:  # last: the lease row is share-locked only from here to the commit
            await fence(conn, *lease)
