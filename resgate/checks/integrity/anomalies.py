"""The integrity anomalies, one detector per family, each a set operation in SQL over the work schema.

Each detector's docstring defines its anomaly with a small example and the detector returns its
:class:`~resgate.checks.integrity.plan.Cases` (a total and the first few examples); reading one anomaly
means reading one function. :func:`table_anomalies`, :func:`ledger_anomalies` and :func:`trade_anomalies`
only run the detectors that the configured sources allow, record their cases in the
:class:`~resgate.checks.integrity.check.IntegrityFindings`, and say why the others were not checked.
Validity is decided elsewhere, by :func:`resgate.checks.integrity.check`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.identifiers import table_label
from resgate.checks.integrity.check import IntegrityFindings
from resgate.checks.integrity.plan import Cases, OrderSource, Plan, TradeSource, counted, fetch, order_refs
from resgate.checks.integrity.trading import differs, fields_of, order_mismatch, trade_price_cases
from resgate.checks.sqlutil import table_ident

Conn = psycopg.Connection[Any]


def _record(findings: IntegrityFindings, kind: str, label: str, cases: Cases, cap: int) -> None:
    findings.kind(kind).add(cases.total, ({"source": label, **e} for e in cases.examples), cap)


# --- orders ------------------------------------------------------------------------------------------


def duplicated(conn: Conn, plan: Plan) -> Cases:
    """More than one orders row for one (client, idempotency key): the idempotency guard let a retry in.

    Example: the ledger holds one submit ``(c0, k2)`` acknowledged as order 2; the orders table holds
    orders 2 and 1000, both under ``(c0, k2)``. Case: ``{client_id, idempotency_key, rows, order_ids}``.
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT c AS client_id, k AS idempotency_key, n AS rows, ids AS order_ids, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT c, k, count(*) AS n, (array_agg(oid ORDER BY oid))[1:5] AS ids FROM {o} o"
                "  WHERE (c, k) IN (SELECT c, k FROM {o} x WHERE k IS NOT NULL"
                "                   GROUP BY c, k HAVING count(*) > 1)"
                "  GROUP BY c, k) d ORDER BY c, k LIMIT {cap}"
            ).format(o=plan.orders(), cap=sql.Literal(plan.cap)),
        )
    )


def duplicated_in_topic(conn: Conn, plan: Plan) -> Cases:
    """More than one distinct accepted order id for one (client, idempotency key) in the accepted events.

    Example: ``OrderAccepted(order 7, c1, k4)`` at partition 0 offset 3 and ``OrderAccepted(order 9, c1,
    k4)`` at 1:8. A redelivery of the same order id is not a case. Case: ``{client_id, idempotency_key,
    order_ids_count, order_ids, positions}`` (positions ``"partition:offset"`` of each order's first event).
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT c AS client_id, k AS idempotency_key, n AS order_ids_count, ids AS order_ids, "
                "positions, count(*) OVER () AS _total FROM ("
                "  SELECT c, k, count(*) AS n, (array_agg(oid ORDER BY pos))[1:5] AS ids,"
                "         (array_agg(pos ORDER BY pos))[1:5] AS positions FROM ("
                "    SELECT c, k, oid, min(p || ':' || off) AS pos FROM {a} a GROUP BY c, k, oid) x"
                "  GROUP BY c, k HAVING count(*) > 1) d ORDER BY c, k LIMIT {cap}"
            ).format(a=plan.accepted(), cap=sql.Literal(plan.cap)),
        )
    )


JOIN_PARTS = 2
"""The submit join runs in this many parts, each over the keys of one hash bucket (gather runs them on as
many connections at once: a full join is not parallel in Postgres 15, the two parts are)."""


def _key_part(column: sql.Composable, part: int, parts: int) -> sql.Composable:
    """True for the keys in hash bucket ``part`` of ``parts`` (a NULL key is in bucket 0)."""
    if parts == 1:
        return sql.SQL("true")
    return sql.SQL("coalesce((hashtext({}) & 2147483647) % {}, 0) = {}").format(
        column, sql.Literal(parts), sql.Literal(part)
    )


def submit_join(
    conn: Conn, plan: Plan, src: OrderSource, *, fields: bool, part: int = 0, parts: int = 1
) -> sql.Identifier:
    """Work table ``joined_<tag>_<part>``: the ledger's submits and the orders of ``src``, joined once.

    One full hash join on (client, idempotency key, outcome ``ok``) against ``src``'s orders, keeping only
    what a detector reads, so :func:`lost`, :func:`unacknowledged` and the order-field comparison share
    one pass over both sides instead of one join each:

    - an attempt with no row of ``src`` on its side (``acked`` NULL): every attempt not acknowledged ok
      (their orders, if any, are not joined to them), and every ok attempt whose key has no order in
      ``src`` (a lost order);
    - an order with no attempt on its side (``line`` NULL): an order of ``src`` whose key has no ok attempt;
    - with ``fields`` (``src`` is the orders table and :func:`order_mismatch` runs): an ok attempt joined to
      its order where some field of :data:`~.trading.MISMATCH_FIELDS` differs (columns ``o_symbol`` …
      ``o_price``).

    Example: attempts ``(c1, k1, ok)``, ``(c1, k2, info)``, ``(c2, k3, ok)`` and orders ``(c1, k1)``,
    ``(c1, k2)``, ``(c9, k9)`` give three rows: ``(c1, k2, info)`` (not acknowledged), ``(c2, k3, ok)`` with
    no order (lost), and order ``(c9, k9)`` with no ok attempt. ``part`` of ``parts`` keeps the keys of one
    hash bucket; the parts' tables together are the whole join (see :func:`joined_relation`).
    """
    table = plan.w(f"joined_{src.tag}_{part}")
    rows = plan.order_fields() if fields else src.rows
    o_cols = [sql.SQL("o.oid, o.c, o.k")]
    l_cols = [sql.SQL("l.src, l.line, l.ts, l.client_id, l.ikey, l.outcome, l.status, l.order_id")]
    keep = sql.SQL("o.acked IS NULL OR l.line IS NULL")
    if src.is_topic:
        o_cols.append(sql.SQL("o.p, o.off"))
    if fields:
        l_cols.append(fields_of("l"))
        o_cols.append(fields_of("o", "o_"))
        keep = sql.SQL("{} OR {}").format(keep, differs("l", "o"))
    create = sql.SQL(
        "CREATE UNLOGGED TABLE {t} AS SELECT {l_cols}, o.acked, {o_cols} "
        "FROM (SELECT * FROM {L} WHERE {l_part}) l FULL JOIN "
        "(SELECT x.*, 'ok'::text AS acked FROM {rows} x WHERE {o_part}) o "
        "ON o.c = l.client_id AND o.k = l.ikey AND o.acked = l.outcome WHERE {keep}"
    ).format(
        t=table,
        l_cols=sql.SQL(", ").join(l_cols),
        o_cols=sql.SQL(", ").join(o_cols),
        L=plan.w("ledger"),
        l_part=_key_part(sql.Identifier("ikey"), part, parts),
        rows=rows,
        o_part=_key_part(sql.SQL("x.k"), part, parts),
        keep=keep,
    )
    with conn.transaction():
        if parts > 1:
            # The parts are the parallelism (one per connection): no parallel workers beside them. The
            # planner, which cannot estimate a hash bucket's share, would otherwise funnel the scans
            # through Gather nodes (at 1M rows: two workers per part on two cores, 10-15% slower).
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        conn.execute(create)
    return table


def joined_relation(plan: Plan, src: OrderSource, parts: int) -> sql.Composable:
    """The whole submit join of ``src`` (:func:`submit_join`'s ``parts`` tables) as one relation."""
    return sql.SQL("({})").format(
        sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT * FROM {}").format(plan.w(f"joined_{src.tag}_{i}")) for i in range(parts)
        )
    )


def lost(conn: Conn, plan: Plan, j: sql.Composable) -> Cases:
    """A submit the ledger shows acknowledged ok whose (client, idempotency key) has no order in the source.

    Example: the client was told ``201 Created`` for ``(c1, k3)``, yet no orders row (``lost``) or no
    accepted event (``lost_in_topic``) carries ``(c1, k3)``: an ok attempt :func:`submit_join` found no
    order for. Case: ``{client_id, idempotency_key, order_id, attempts, ts, ledger_at: "file:line"}``
    (``attempts`` counts the key's ok attempts).
    """
    cases = counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT client_id, ikey AS idempotency_key, order_id, attempts, first_ts AS ts, "
                "at AS ledger_at, count(*) OVER () AS _total FROM ("
                "  SELECT j.client_id, j.ikey, min(j.order_id) AS order_id, count(*) AS attempts,"
                "         min(j.ts) AS first_ts, min(ARRAY[j.src, j.line]) AS at"
                "  FROM {j} j WHERE j.acked IS NULL AND j.outcome = 'ok'"
                "  GROUP BY j.client_id, j.ikey) x ORDER BY first_ts, client_id, ikey LIMIT {cap}"
            ).format(j=j, cap=sql.Literal(plan.cap)),
        )
    )
    for e in cases.examples:
        src_index, line = e.pop("ledger_at")
        e["ledger_at"] = f"{plan.ledger_labels[src_index]}:{line}"
    return cases


def unacknowledged(
    conn: Conn, plan: Plan, src: OrderSource, j: sql.Composable
) -> tuple[sql.Identifier, sql.Identifier]:
    """Work tables ``(unacked, seen)`` for :func:`phantoms` and :func:`recovered`, from the submit join.

    ``unacked``: the orders in ``src`` with no ok attempt in the ledger (usually few rows). ``seen``: the
    attempts of just those keys, with their outcomes; none is ok, so the join holds every one of them.
    """
    unacked, seen = plan.w(f"unacked_{src.tag}"), plan.w(f"seen_{src.tag}")
    extra = sql.SQL(", p, off") if src.is_topic else sql.SQL("")
    conn.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE {u} AS SELECT oid, c, k{extra} FROM {j} j WHERE j.line IS NULL"
        ).format(u=unacked, j=j, extra=extra)
    )
    conn.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE {s} AS SELECT j.client_id AS c, j.ikey AS k, count(*) AS attempts, "
            "(array_agg(DISTINCT j.outcome || ':' || coalesce(j.status, '')))[1:5] AS statuses "
            "FROM {j} j WHERE j.acked IS NULL AND j.line IS NOT NULL "
            "AND (j.client_id, j.ikey) IN (SELECT c, k FROM {u}) GROUP BY 1, 2"
        ).format(s=seen, j=j, u=unacked)
    )
    return unacked, seen


def phantoms(
    conn: Conn, plan: Plan, src: OrderSource, unacked: sql.Identifier, seen: sql.Identifier
) -> Cases:
    """An order (or accepted event) whose (client, idempotency key) no client ever submitted.

    Example: order 42 under ``(c9, k0)`` while the ledger has no submit at all for ``(c9, k0)``.
    Case: ``{client_id, idempotency_key, order_id}`` (plus ``partition, offset`` for a topic).
    """
    pos = sql.SQL(", u.p AS partition, u.off AS offset") if src.is_topic else sql.SQL("")
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT u.c AS client_id, u.k AS idempotency_key, u.oid AS order_id{pos}, "
                "count(*) OVER () AS _total FROM {u} u "
                "WHERE NOT EXISTS (SELECT 1 FROM {s} s WHERE s.c = u.c AND s.k = u.k) "
                "ORDER BY u.c, u.k, u.oid LIMIT {cap}"
            ).format(u=unacked, s=seen, cap=sql.Literal(plan.cap), pos=pos),
        )
    )


def recovered(conn: Conn, plan: Plan, unacked: sql.Identifier, seen: sql.Identifier) -> Cases:
    """A key with only failed or indeterminate attempts whose order landed anyway (allowed by default).

    Example: ``(c0, k5)`` timed out twice (outcome ``info``) and was never acknowledged, but order 5 exists.
    Case: ``{client_id, idempotency_key, order_id, attempts, statuses: ["outcome:status", ...]}``.
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT u.c AS client_id, u.k AS idempotency_key, min(u.oid) AS order_id, "
                "min(s.attempts) AS attempts, min(s.statuses) AS statuses, count(*) OVER () AS _total "
                "FROM {u} u JOIN {s} s ON s.c = u.c AND s.k = u.k "
                "GROUP BY u.c, u.k ORDER BY u.c, u.k LIMIT {cap}"
            ).format(u=unacked, s=seen, cap=sql.Literal(plan.cap)),
        )
    )


# --- trades ------------------------------------------------------------------------------------------


def duplicate_trades(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """One trade id under more than one identity: two table rows, two events with different event ids, or
    one event id carrying two contents (another seq, quantity, price or order).

    Example: trade ``t7`` as event ``e1`` at 0:10 and again as event ``e2`` at 1:4; or ``t7`` (event
    ``e1``) filling orders 3 and 5 at 0:10 and, as ``e1`` again, orders 3 and 9 at 0:12: two matchers both
    emitted trade 7 (split brain), which no redelivery does. Redeliveries of one event id (or, without
    event ids, of one offset) with the same content are not cases. Case: ``{trade_id, copies,
    positions}`` (no positions for table rows).
    """
    content = sql.SQL("concat_ws('|', {})").format(
        sql.SQL(", ").join(
            sql.Identifier(c) for c in ("seq", "qty", "price", *(f"o{i}" for i in range(t.n_orders)))
        )
    )
    cases = counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT trade_id, copies, positions, count(*) OVER () AS _total FROM ("
                "  SELECT trade_id, count(*) AS copies,"
                "         (array_agg(pos ORDER BY pos))[1:5] AS positions FROM ("
                "    SELECT trade_id, ident, {content} AS content, min(p || ':' || off) AS pos FROM {rows} r"
                "    GROUP BY trade_id, ident, {content}) x"
                "  GROUP BY trade_id HAVING count(*) > 1) d ORDER BY trade_id LIMIT {cap}"
            ).format(rows=t.rows, cap=sql.Literal(plan.cap), content=content),
        )
    )
    if not t.is_topic:
        for e in cases.examples:
            e.pop("positions", None)  # table rows have no offsets
    return cases


def one_row_per_trade(conn: Conn, plan: Plan, t: TradeSource) -> TradeSource:
    """``t`` with one row per trade id (its first position), so copies do not count twice below."""
    repeats = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {rows} r GROUP BY trade_id HAVING count(*) > 1)").format(
            rows=t.rows
        )
    ).fetchone()
    if not (repeats and repeats[0]):
        return t
    dedup = plan.w(f"trades_{t.tag}")
    conn.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE IF NOT EXISTS {d} AS SELECT DISTINCT ON (trade_id) * FROM {rows} r "
            "ORDER BY trade_id, p NULLS FIRST, off NULLS FIRST"
        ).format(d=dedup, rows=t.rows)
    )
    conn.execute(sql.SQL("ANALYZE {}").format(dedup))
    return replace(t, rows=dedup)


def orphan_trades(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """A trade referencing an order id that is not a known order.

    Example: trade ``t3`` buys for order 17, but neither the orders table nor the accepted events know
    order 17. Case: ``{trade_id, order_id, partition?, offset?}``.
    """
    assert t.known is not None
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT d.trade_id, r.oid AS order_id, d.p AS partition, d.off AS offset, "
                "count(*) OVER () AS _total FROM {t} d {refs} "
                "WHERE r.oid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {k} k WHERE k.oid = r.oid) "
                "ORDER BY d.trade_id, r.oid LIMIT {cap}"
            ).format(t=t.rows, refs=order_refs(t.n_orders), k=t.known, cap=sql.Literal(plan.cap)),
        )
    )


def double_fills(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """The quantity traded against an order (over distinct trade ids) exceeds the order's quantity.

    Example: order 5 for qty 10 filled by ``t1`` (qty 10) and ``t2`` (qty 10): filled 20 > 10.
    Case: ``{order_id, order_qty, filled_qty, trades, trade_ids}``.
    """
    assert t.order_qty is not None
    refs = order_refs(t.n_orders)
    cases = counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT f.oid AS order_id, q.qty AS order_qty, f.filled AS filled_qty, f.trades, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT r.oid, sum(d.qty) AS filled, count(*) AS trades FROM {t} d {refs}"
                "  WHERE r.oid IS NOT NULL GROUP BY r.oid) f "
                "JOIN {q} q ON q.oid = f.oid WHERE f.filled > q.qty ORDER BY f.oid LIMIT {cap}"
            ).format(t=t.rows, refs=refs, q=t.order_qty, cap=sql.Literal(plan.cap)),
        )
    )
    if cases.examples:
        ids = fetch(
            conn,
            sql.SQL(
                "SELECT r.oid, (array_agg(d.trade_id ORDER BY d.trade_id))[1:10] AS ids "
                "FROM {t} d {refs} WHERE r.oid = ANY(%s) GROUP BY r.oid"
            ).format(t=t.rows, refs=refs),
            [[e["order_id"] for e in cases.examples]],
        )
        by_oid = {r["oid"]: r["ids"] for r in ids}
        for e in cases.examples:
            e["trade_ids"] = by_oid.get(e["order_id"], [])
    return cases


def seq_duplicates(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """Two distinct trades of one symbol with the same sequence number (per symbol, seqs are 1..n).

    Example: ``AAPL`` trades ``t4`` and ``t9`` both carry seq 4. Case: ``{symbol, seq, trades,
    trade_ids: [min, max]}``.
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT symbol, seq, n AS trades, ids AS trade_ids, count(*) OVER () AS _total FROM ("
                "  SELECT symbol, seq, count(*) AS n, ARRAY[min(trade_id), max(trade_id)] AS ids FROM {t} d"
                "  WHERE seq IS NOT NULL GROUP BY symbol, seq HAVING count(*) > 1) x"
                " ORDER BY symbol, seq LIMIT {cap}"
            ).format(t=t.rows, cap=sql.Literal(plan.cap)),
        )
    )


def seq_gaps(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """A hole in a symbol's trade sequence numbers (per symbol, seqs are exactly 1..n).

    Example: ``AAPL`` seqs 1, 2, 5: after 2 comes 5, 2 missing. A first seq above 1 is a gap too. Not run
    on a truncated topic (see :func:`trade_anomalies`). Case: ``{symbol, after_seq, next_seq, missing}``.
    """
    # Consecutive distinct seqs of one symbol that differ by more than 1 (or a first seq above 1).
    first_gap = sql.SQL(" OR (prev IS NULL AND seq > 1)")
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT symbol, coalesce(prev, 0) AS after_seq, seq AS next_seq, "
                "seq - coalesce(prev, 0) - 1 AS missing, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT symbol, seq, lag(seq) OVER (PARTITION BY symbol ORDER BY seq) AS prev FROM ("
                "    SELECT DISTINCT symbol, seq FROM {t} d WHERE seq IS NOT NULL) s) g "
                "WHERE (prev IS NOT NULL AND seq - prev > 1){first} ORDER BY symbol, seq LIMIT {cap}"
            ).format(t=t.rows, first=first_gap, cap=sql.Literal(plan.cap)),
        )
    )


def seq_reorders(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """In the trades topic, within a partition, a symbol's seq does not strictly increase with the offset.

    Example: partition 0 holds ``AAPL`` seq 3 at offset 10 and seq 2 at offset 11. Case: ``{symbol,
    partition, offset, seq, previous_offset, previous_seq, trade_id}``.
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT symbol, p AS partition, off AS offset, seq, prev_off AS previous_offset, "
                "prev_seq AS previous_seq, trade_id, count(*) OVER () AS _total FROM ("
                "  SELECT symbol, p, off, seq, trade_id,"
                "         lag(seq) OVER w AS prev_seq, lag(off) OVER w AS prev_off FROM {t} d"
                "  WHERE seq IS NOT NULL WINDOW w AS (PARTITION BY p, symbol ORDER BY off)) x "
                "WHERE seq <= prev_seq ORDER BY p, off LIMIT {cap}"
            ).format(t=t.rows, cap=sql.Literal(plan.cap)),
        )
    )


# --- gathering the cases -----------------------------------------------------------------------------


def table_anomalies(conn: Conn, plan: Plan, findings: IntegrityFindings) -> None:
    """The kinds that read only the system's tables: duplicates in the orders table, the trades table."""
    config = plan.c
    if config.orders:
        label = f"table:{table_label(config.orders.table)}"
        _record(findings, "duplicated", label, duplicated(conn, plan), plan.cap)
        n = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(table_ident(config.orders.table))
        ).fetchone()
        findings.stats["orders_rows"] = int(n[0]) if n else 0
    else:
        findings.skip("duplicated", "no orders table configured")
        findings.skip("phantom", "no orders table configured")
        findings.skip("lost", "no orders table configured")
    if config.trades:
        trade_anomalies(conn, plan, findings, plan.table_trades())


def mismatch_skipped(plan: Plan, ledger_fields: dict[str, int]) -> str | None:
    """Why ``order_mismatch`` cannot be checked, or None when it can (the orders table's join then carries
    the order fields)."""
    o = plan.c.orders
    if o is None or not any((o.symbol, o.side, o.qty, o.price)):
        return "no orders table with symbol, side, qty or price columns configured"
    if not ledger_fields.get("submit_fields"):
        return "no submit in the ledger carries symbol, side, qty or price"
    return None


def submit_joins(conn: Conn, plan: Plan, ledger_fields: dict[str, int], part: int, parts: int) -> None:
    """:func:`submit_join` part ``part`` of ``parts`` for every source of landed orders."""
    fields = mismatch_skipped(plan, ledger_fields) is None
    for src in plan.order_sources():
        submit_join(conn, plan, src, fields=fields and not src.is_topic, part=part, parts=parts)


def ledger_anomalies(
    conn: Conn, plan: Plan, findings: IntegrityFindings, ledger_fields: dict[str, int], parts: int
) -> None:
    """Kinds joining the ledger or the accepted events, once :func:`submit_joins` has run for every part:
    lost, phantom, recovered, order_mismatch, duplicated_in_topic."""
    config = plan.c
    sources = plan.order_sources()
    # Recovered orders are counted against one complete source of landed orders: the table, else the topic.
    landed = next((s for s in sources if s.complete), None)
    if config.accepted_events and not plan.accepted_complete():
        findings.skip("lost_in_topic", f"topic {config.accepted_events.topic} was truncated by retention")
    for src in sources:
        j = joined_relation(plan, src, parts)
        if src.complete:
            _record(findings, src.lost_kind, src.label, lost(conn, plan, j), plan.cap)
        unacked, seen = unacknowledged(conn, plan, src, j)
        _record(findings, src.phantom_kind, src.label, phantoms(conn, plan, src, unacked, seen), plan.cap)
        if src is landed:
            _record(findings, "recovered", src.label, recovered(conn, plan, unacked, seen), plan.cap)
        if not src.is_topic:
            skipped = mismatch_skipped(plan, ledger_fields)
            if skipped:
                findings.skip("order_mismatch", skipped)
            else:
                _record(findings, "order_mismatch", src.label, order_mismatch(conn, plan, j), plan.cap)
    if landed is None:
        findings.skip("recovered", "no complete source of landed orders (orders table or untruncated topic)")
    if config.orders is None:
        findings.skip("order_mismatch", "no orders table with symbol, side, qty or price columns configured")

    if config.accepted_events:
        a = config.accepted_events
        _record(
            findings, "duplicated_in_topic", f"topic:{a.topic}", duplicated_in_topic(conn, plan), plan.cap
        )
        redelivered = conn.execute(
            sql.SQL("SELECT count(*) - count(DISTINCT coalesce(eid, p || ':' || off)) FROM {}").format(
                plan.w("accepted")
            )
        ).fetchone()
        findings.stats[f"redelivered_events[{a.topic}]"] = int(redelivered[0]) if redelivered else 0
    else:
        for k in ("lost_in_topic", "duplicated_in_topic", "phantom_in_topic"):
            findings.skip(k, "no accepted-events topic configured")


def trade_anomalies(conn: Conn, plan: Plan, findings: IntegrityFindings, t: TradeSource) -> TradeSource:
    """The trade-side kinds for one source of trades (the trades table, or the loaded trade events).

    Returns the source with one row per trade id (what the positions are checked against).
    """
    cap = plan.cap
    _record(findings, "duplicate_trade", t.label, duplicate_trades(conn, plan, t), cap)
    t = one_row_per_trade(conn, plan, t)
    trade_price_cases(conn, plan, findings, t)
    if t.known is not None:
        _record(findings, "orphan_trade", t.label, orphan_trades(conn, plan, t), cap)
    else:
        findings.skip("orphan_trade", "no complete source of known orders")
    if t.has_qty and t.order_qty is not None:
        _record(findings, "double_fill", t.label, double_fills(conn, plan, t), cap)
    else:
        findings.skip("double_fill", "no trade quantity or no order quantity configured")
    if not t.has_seq:
        for k in ("seq_gap", "seq_duplicate", "seq_reorder"):
            findings.skip(k, "no symbol/seq configured for the trades")
        return t
    _record(findings, "seq_duplicate", t.label, seq_duplicates(conn, plan, t), cap)
    if t.truncated:
        # Retention drops each partition's oldest events: with a symbol spread over partitions, a seq
        # missing from what is left, even mid-sequence, may be among the dropped events of any of them.
        findings.skip("seq_gap", f"{t.label} was truncated by retention: a missing seq may have been dropped")
    else:
        _record(findings, "seq_gap", t.label, seq_gaps(conn, plan, t), cap)
    if t.is_topic:
        _record(findings, "seq_reorder", t.label, seq_reorders(conn, plan, t), cap)
    elif plan.c.trade_events is None:
        findings.skip("seq_reorder", "needs a trades topic (offset order)")
    return t
