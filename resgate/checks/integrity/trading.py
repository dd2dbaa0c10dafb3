"""The trading invariants, one detector per anomaly family, each a set operation in SQL over the work schema.

Where :mod:`resgate.checks.integrity.anomalies` proves the order lifecycle's existence properties (nothing
lost, duplicated or phantom), these prove what costs money when a trading system fails: a trade outside a
side's limit, an order stored with other fields than the client sent, a fill after a confirmed cancel, a
cancel acknowledged but the order still open, positions that do not conserve, a client reading its own
order going backwards, and an accepted event the projector never saw. Each detector's docstring defines
its anomaly with a small example and returns its :class:`~resgate.checks.integrity.plan.Cases`;
:func:`record_trading` runs the detectors the configured sources allow and names the reason for each kind
it could not check (never a pass).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.identifiers import table_label
from resgate.checks.integrity.check import IntegrityFindings
from resgate.checks.integrity.plan import Cases, Plan, TradeSource, counted, fetch, order_refs
from resgate.checks.sqlutil import column_type, table_ident

Conn = psycopg.Connection[Any]


def _name_ledger_lines(plan: Plan, cases: Cases) -> Cases:
    """Turn each example's ``ledger_at`` ``[src, line]`` into ``"file:line"``."""
    for e in cases.examples:
        at = e.pop("ledger_at", None)
        if at:
            e["ledger_at"] = f"{plan.ledger_labels[at[0]]}:{at[1]}"
    return cases


# --- prices ------------------------------------------------------------------------------------------


def price_outside_limit(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """A trade at a price outside one side's limit: a buy filled above its limit, a sell below its limit.

    Example: order 5 buys AAPL with limit 100.00; trade ``t3`` fills it at 100.01. A fill exactly at the
    limit is not a case. Case: ``{trade_id, order_id, side, limit_price, trade_price, partition?,
    offset?}``.
    """
    o = plan.c.orders
    assert o is not None
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT d.trade_id, r.oid AS order_id, f.side, f.price AS limit_price, "
                "d.price AS trade_price, "
                "d.p AS partition, d.off AS offset, count(*) OVER () AS _total "
                "FROM {t} d {refs} JOIN {f} f ON f.oid = r.oid "
                "WHERE d.price IS NOT NULL AND f.price IS NOT NULL AND r.oid IS NOT NULL "
                "  AND ((f.side = {buy} AND d.price > f.price) OR (f.side = {sell} AND d.price < f.price)) "
                "ORDER BY d.trade_id, r.oid LIMIT {cap}"
            ).format(
                t=t.rows,
                refs=order_refs(t.n_orders),
                f=plan.order_fields(),
                buy=sql.Literal(o.buy_side),
                sell=sql.Literal(o.sell_side),
                cap=sql.Literal(plan.cap),
            ),
        )
    )


# --- what was stored against what was sent -----------------------------------------------------------


MISMATCH_FIELDS = ("symbol", "side", "qty", "price")
"""The order fields :func:`order_mismatch` compares."""


def differs(left: str, right: str) -> sql.Composable:
    """True where some field of :data:`MISMATCH_FIELDS` is on both sides and differs (``left.f`` against
    ``right.f``); NULL, so false, where none does."""
    return sql.SQL(" OR ").join(
        sql.SQL("{}.{} <> {}.{}").format(
            sql.Identifier(left), sql.Identifier(f), sql.Identifier(right), sql.Identifier(f)
        )
        for f in MISMATCH_FIELDS
    )


def fields_of(alias: str, prefix: str = "") -> sql.Composable:
    """The select list of :data:`MISMATCH_FIELDS` from ``alias``: ``alias.f``, or ``alias.f AS <prefix>f``
    (the orders' fields beside the ledger's, in the submit join)."""
    return sql.SQL(", ").join(
        sql.SQL("{}.{} AS {}").format(sql.Identifier(alias), sql.Identifier(f), sql.Identifier(prefix + f))
        if prefix
        else sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(f))
        for f in MISMATCH_FIELDS
    )


def order_mismatch(conn: Conn, plan: Plan, j: sql.Composable) -> Cases:
    """An order stored with a different symbol, side, quantity or price than its client sent under its key.

    Every attempt of a key that was not refused (outcome ok or indeterminate) carries the fields sent; the
    order stored under that (client, key) must carry the same ones. A field is compared only when both the
    ledger and the configured orders table have it. Example: ``(c1, k7)`` sent ``buy 10 AAPL @ 100.5``; the
    order stored for ``(c1, k7)`` says ``@ 99.5`` (a retry rebuilt from a stale copy). Case: ``{client_id,
    idempotency_key, order_id, fields: [...], sent: {...}, stored: {...}, ledger_at: "file:line"}``.

    ``j`` is the orders table's submit join (:func:`~resgate.checks.integrity.anomalies.submit_join` with
    ``fields``): it already holds the ok attempts that differ from their order; the indeterminate attempts,
    not joined to any order there, are compared here (usually few rows).
    """
    o_cols = sql.SQL(", ").join(sql.Identifier(f"o_{f}") for f in MISMATCH_FIELDS)
    diffs = sql.SQL(", ").join(
        sql.SQL(
            "CASE WHEN l.{f} IS NOT NULL AND l.{o} IS NOT NULL AND l.{f} <> l.{o} THEN {name} END"
        ).format(f=sql.Identifier(f), o=sql.Identifier(f"o_{f}"), name=sql.Literal(f))
        for f in MISMATCH_FIELDS
    )
    cases = counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT client_id, idempotency_key, order_id, fields, sent, stored, ledger_at, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT DISTINCT ON (client_id, idempotency_key, order_id) * FROM ("
                "    SELECT l.client_id, l.ikey AS idempotency_key, l.oid AS order_id,"
                "           array_remove(ARRAY[{diffs}], NULL) AS fields,"
                "           jsonb_strip_nulls(jsonb_build_object('symbol', l.symbol, 'side', l.side,"
                "             'qty', l.qty, 'price', l.price)) AS sent,"
                "           jsonb_strip_nulls(jsonb_build_object('symbol', l.o_symbol, 'side', l.o_side,"
                "             'qty', l.o_qty, 'price', l.o_price)) AS stored,"
                "           ARRAY[l.src, l.line] AS ledger_at, l.src, l.line FROM ("
                "      SELECT client_id, ikey, oid, src, line, {m_cols}, {o_cols} FROM {j} m"
                "      WHERE m.acked IS NOT NULL AND m.line IS NOT NULL"
                "      UNION ALL"
                "      SELECT i.client_id, i.ikey, o.oid, i.src, i.line, {i_cols}, {o_as}"
                "      FROM {j} i JOIN {o} o ON o.c = i.client_id AND o.k = i.ikey AND ({differs})"
                "      WHERE i.acked IS NULL AND i.outcome = 'info') l) x"
                "  WHERE cardinality(fields) > 0"
                "  ORDER BY client_id, idempotency_key, order_id, src, line) d "
                "ORDER BY client_id, idempotency_key, order_id LIMIT {cap}"
            ).format(
                diffs=diffs,
                m_cols=fields_of("m"),
                o_cols=o_cols,
                i_cols=fields_of("i"),
                o_as=fields_of("o", "o_"),
                j=j,
                o=plan.order_fields(),
                differs=differs("i", "o"),
                cap=sql.Literal(plan.cap),
            ),
        )
    )
    return _name_ledger_lines(plan, cases)


# --- cancels -----------------------------------------------------------------------------------------


def fill_after_cancel(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """A trade on an order after the system confirmed the order's cancel (later in the same partition).

    The cancel confirmations and the trades share a topic keyed so that one order's events stay in one
    partition; a trade at a higher offset than the order's first confirmation came after it. Example:
    ``OrderCancelled(order 9)`` at 0:40, then ``TradeExecuted(t12, buy 9)`` at 0:41 (a fill arriving after
    the cancel was applied during recovery). Case: ``{trade_id, order_id, partition, cancel_offset,
    trade_offset}``.
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT d.trade_id, r.oid AS order_id, d.p AS partition, c.off AS cancel_offset, "
                "d.off AS trade_offset, count(*) OVER () AS _total FROM {t} d {refs} "
                "JOIN (SELECT order_id, p, min(off) AS off FROM {c} GROUP BY order_id, p) c "
                "  ON c.order_id = r.oid AND c.p = d.p AND d.off > c.off "
                "ORDER BY d.p, d.off, r.oid LIMIT {cap}"
            ).format(t=t.rows, refs=order_refs(t.n_orders), c=plan.w("cancels"), cap=sql.Literal(plan.cap)),
        )
    )


def cancel_still_open(conn: Conn, plan: Plan) -> Cases:
    """A cancel acknowledged ok to its client whose order is still open after the system settled.

    Example: ``POST /orders/9/cancel`` answered 200 at ts 120.5, yet after quiesce the order blotter says
    order 9 is ``open``. An order that filled before the cancel reached it is not open, so not a case.
    The ledger's order id (text) matches the order whose id reads as that text; the cancels are few and the
    orders many, so the cancel's id is read in the order id's type (see :func:`_same_id`), not every order
    id cast to text. Case: ``{client_id, order_id, status, ts, ledger_at: "file:line"}``.
    """
    st = plan.c.order_states
    assert st is not None
    cases = counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT x.client_id, x.order_id, s.status, x.ts, x.ledger_at, count(*) OVER () AS _total "
                "FROM (SELECT client_id, order_id, min(ts) AS ts, min(ARRAY[src, line]) AS ledger_at "
                "      FROM {ops} WHERE kind = 'cancel' AND outcome = 'ok' AND order_id IS NOT NULL "
                "      GROUP BY client_id, order_id) x "
                "JOIN (SELECT {oid} AS oid, {status}::text AS status FROM {t}) s ON {same} "
                "WHERE s.status = ANY({open}) ORDER BY x.ts, x.order_id LIMIT {cap}"
            ).format(
                ops=plan.w("ledger_ops"),
                oid=sql.Identifier(st.order_id),
                status=sql.Identifier(st.status),
                t=table_ident(st.table),
                same=_same_id(column_type(conn, st.table, st.order_id), "s.oid", "x.order_id"),
                open=sql.Literal(list(st.open_statuses)),
                cap=sql.Literal(plan.cap),
            ),
        )
    )
    return _name_ledger_lines(plan, cases)


_UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""The text of a uuid exactly as Postgres writes it (lowercase, hyphenated): the strings a uuid's cast to
text can equal, each the text of exactly one uuid."""


def _same_id(typ: str | None, column: str, text: str) -> sql.Composable:
    """The condition ``column::text = text`` (``column`` of SQL type ``typ``, ``text`` a text), written so
    that an index or hash on ``column`` serves it: for a text column the plain equality, for a uuid the
    text read as a uuid only when it is a uuid's own text (any other text equals no uuid's text, and the
    cast would fail on it); any other type casts the column, as the definition says."""
    col, txt = sql.SQL(column), sql.SQL(text)
    if typ in ("text", "character varying"):
        return sql.SQL("{} = {}").format(col, txt)
    if typ == "uuid":
        return sql.SQL("{} = CASE WHEN {} ~ {} THEN {}::uuid END").format(
            col, txt, sql.Literal(_UUID_TEXT), txt
        )
    return sql.SQL("{}::text = {}").format(col, txt)


# --- positions ---------------------------------------------------------------------------------------


def _positions(plan: Plan) -> sql.Composable:
    pos = plan.c.positions
    assert pos is not None
    return sql.SQL(
        "(SELECT {c}::text AS client_id, {s}::text AS symbol, sum({n})::numeric AS net FROM {t} "
        "GROUP BY 1, 2)"
    ).format(
        c=sql.Identifier(pos.client_id),
        s=sql.Identifier(pos.symbol),
        n=sql.Identifier(pos.net_qty),
        t=table_ident(pos.table),
    )


def position_not_conserved(conn: Conn, plan: Plan) -> Cases:
    """Per symbol, the positions read model's net quantities do not sum to zero (bought ≠ sold).

    Every trade moves the same quantity from a seller to a buyer, so over all clients a symbol's net
    position is 0. Example: AAPL positions ``c0 +10, c1 -10, c2 +5``: net +5. Case: ``{symbol, net_qty,
    clients}``.
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT symbol, sum(net) AS net_qty, count(*) AS clients, count(*) OVER () AS _total "
                "FROM {p} p GROUP BY symbol HAVING sum(net) <> 0 ORDER BY symbol LIMIT {cap}"
            ).format(p=_positions(plan), cap=sql.Literal(plan.cap)),
        )
    )


def position_mismatch(conn: Conn, plan: Plan, t: TradeSource) -> Cases:
    """A client's position in the positions read model differs from the signed sum of its fills.

    Each trade adds its quantity to the buying order's client and subtracts it from the selling order's
    client (the side and client from the orders table); a (client, symbol) present on one side only counts
    as 0 on the other. Example: c0 bought 10 and sold 4 AAPL in the trades, but its position says +16 (a
    redelivered trade counted twice). Case: ``{client_id, symbol, position, fills}``.
    """
    o = plan.c.orders
    assert o is not None
    return counted(
        fetch(
            conn,
            sql.SQL(
                "WITH f AS (SELECT f.c AS client_id, coalesce(d.symbol, f.symbol) AS symbol,"
                "  sum(CASE WHEN f.side = {buy} THEN d.qty WHEN f.side = {sell} THEN -d.qty ELSE 0 END)"
                "  AS net"
                "  FROM {t} d {refs} JOIN {of} f ON f.oid = r.oid WHERE d.qty IS NOT NULL GROUP BY 1, 2) "
                "SELECT coalesce(f.client_id, p.client_id) AS client_id,"
                " coalesce(f.symbol, p.symbol) AS symbol,"
                " coalesce(p.net, 0) AS position, coalesce(f.net, 0) AS fills, count(*) OVER () AS _total "
                "FROM f FULL JOIN {p} p ON p.client_id = f.client_id AND p.symbol = f.symbol "
                "WHERE coalesce(p.net, 0) <> coalesce(f.net, 0) ORDER BY 1, 2 LIMIT {cap}"
            ).format(
                t=t.rows,
                refs=order_refs(t.n_orders),
                of=plan.order_fields(),
                p=_positions(plan),
                buy=sql.Literal(o.buy_side),
                sell=sql.Literal(o.sell_side),
                cap=sql.Literal(plan.cap),
            ),
        )
    )


# --- reads -------------------------------------------------------------------------------------------


def non_monotonic_read(conn: Conn, plan: Plan) -> Cases:
    """A client reads its own order going backwards: filled quantity shrinking, or open again after final.

    A client's reads of one order are ordered by when each started (one client makes one request at a
    time). Example: c3 reads order 9 as ``filled`` (qty 10) at ts 50, then as ``open`` with 0 filled at ts
    52 (served from a lagging copy after a failover). Case: ``{client_id, order_id, status,
    filled_qty, previous_max_filled, was_terminal, ts, ledger_at: "file:line"}``.
    """
    terminal = sql.Literal(list(plan.c.terminal_statuses))
    cases = counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT client_id, order_id, order_status AS status, filled_qty, max_before AS "
                "previous_max_filled, terminal_before AS was_terminal, ts, ledger_at, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT client_id, order_id, order_status, filled_qty, ts, ARRAY[src, line] AS ledger_at,"
                "         max(filled_qty) OVER w AS max_before,"
                "         coalesce(bool_or(order_status = ANY({terminal})) OVER w, false) AS terminal_before"
                "  FROM {ops} WHERE kind = 'read' AND outcome = 'ok' AND order_id IS NOT NULL"
                "    AND (order_status IS NOT NULL OR filled_qty IS NOT NULL)"
                "  WINDOW w AS (PARTITION BY client_id, order_id ORDER BY ts NULLS FIRST, src, line"
                "               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) x "
                "WHERE filled_qty < max_before"
                "   OR (terminal_before AND order_status IS NOT NULL AND NOT order_status = ANY({terminal})) "
                "ORDER BY client_id, order_id, ts LIMIT {cap}"
            ).format(terminal=terminal, ops=plan.w("ledger_ops"), cap=sql.Literal(plan.cap)),
        )
    )
    return _name_ledger_lines(plan, cases)


# --- the event log ------------------------------------------------------------------------------------


def unseen_by_projector(conn: Conn, plan: Plan) -> Cases:
    """An accepted event in the topic that the projector never recorded as applied (after the settle).

    Example: ``OrderAccepted`` event ``e7`` (order 7) sits at partition 1 offset 30, but the projector's
    processed-events table has no row for ``e7``: the order is missing from every read model it feeds.
    Case: ``{event_id, order_id, client_id, partition, offset}``.
    """
    pe = plan.c.projected_events
    assert pe is not None
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT a.eid AS event_id, a.order_id, a.client_id, a.p AS partition, a.off AS offset, "
                "count(*) OVER () AS _total FROM (SELECT DISTINCT ON (eid) * FROM {a} WHERE eid IS NOT NULL "
                "  ORDER BY eid, p, off) a "
                "WHERE NOT EXISTS (SELECT 1 FROM {t} s WHERE s.{e}::text = a.eid) "
                "ORDER BY a.p, a.off LIMIT {cap}"
            ).format(
                a=plan.w("accepted"),
                t=table_ident(pe.table),
                e=sql.Identifier(pe.event_id),
                cap=sql.Literal(plan.cap),
            ),
        )
    )


# --- gathering the cases -----------------------------------------------------------------------------


def _record(findings: IntegrityFindings, kind: str, label: str, cases: Cases, cap: int) -> None:
    findings.kind(kind).add(cases.total, ({"source": label, **e} for e in cases.examples), cap)


def trade_price_cases(conn: Conn, plan: Plan, findings: IntegrityFindings, t: TradeSource) -> None:
    """``price_outside_limit`` (and, for the trades topic, ``fill_after_cancel``) on one source of trades."""
    o = plan.c.orders
    if not t.has_price:
        findings.skip("price_outside_limit", "no trade price configured (trades.price / trade_events.price)")
    elif o is None or o.side is None or o.price is None:
        findings.skip("price_outside_limit", "no orders table with side and price columns configured")
    else:
        _record(findings, "price_outside_limit", t.label, price_outside_limit(conn, plan, t), plan.cap)
    if t.is_topic:
        ce = plan.c.cancel_events
        if ce is None:
            findings.skip("fill_after_cancel", "no cancel_events topic configured")
        elif ce.topic != t.label.removeprefix("topic:"):
            findings.skip("fill_after_cancel", "cancel_events must be on the trade events' topic")
        elif ce.topic in plan.truncated:
            findings.skip("fill_after_cancel", f"topic {ce.topic} was truncated by retention")
        else:
            _record(findings, "fill_after_cancel", t.label, fill_after_cancel(conn, plan, t), plan.cap)


def record_trading(
    conn: Conn,
    plan: Plan,
    findings: IntegrityFindings,
    positions_trades: TradeSource | None,
    ledger_fields: dict[str, int],
) -> None:
    """The kinds that join the ledger's cancels and reads, the event log or the positions:
    cancel_still_open, non_monotonic_read, unseen_by_projector, position_not_conserved, position_mismatch
    (``order_mismatch`` runs with the order-source kinds, on their join).

    ``positions_trades`` is the complete source of trades the positions are checked against (None when
    there is none); ``ledger_fields`` counts the ledger records carrying each field the kinds need.
    """
    c = plan.c
    o = c.orders
    cap = plan.cap
    if c.order_states is None:
        findings.skip("cancel_still_open", "no order_states table configured")
    elif not ledger_fields.get("cancels"):
        findings.skip("cancel_still_open", f"the ledger holds no cancel ({', '.join(c.cancel_ops)})")
    else:
        label = f"table:{table_label(c.order_states.table)}"
        _record(findings, "cancel_still_open", label, cancel_still_open(conn, plan), cap)

    if not ledger_fields.get("read_fields"):
        findings.skip(
            "non_monotonic_read",
            f"no read in the ledger ({', '.join(c.read_ops)}) carries order_status or filled_qty",
        )
    else:
        _record(findings, "non_monotonic_read", "ledger", non_monotonic_read(conn, plan), cap)

    a = c.accepted_events
    if c.projected_events is None:
        findings.skip("unseen_by_projector", "no projected_events table configured")
    elif a is None or a.event_id is None:
        findings.skip("unseen_by_projector", "no accepted_events topic with an event_id configured")
    elif not plan.accepted_complete():
        findings.skip("unseen_by_projector", f"topic {a.topic} was truncated by retention")
    else:
        label = f"table:{table_label(c.projected_events.table)}"
        _record(findings, "unseen_by_projector", label, unseen_by_projector(conn, plan), cap)

    if c.positions is None:
        for k in ("position_not_conserved", "position_mismatch"):
            findings.skip(k, "no positions table configured")
        return
    label_pos = f"table:{table_label(c.positions.table)}"
    _record(findings, "position_not_conserved", label_pos, position_not_conserved(conn, plan), cap)
    if positions_trades is None or not positions_trades.has_qty:
        findings.skip("position_mismatch", "no complete source of trades with a quantity")
    elif o is None or o.side is None:
        findings.skip("position_mismatch", "no orders table with a side column configured")
    elif positions_trades.n_orders == 0:
        findings.skip("position_mismatch", "the trades reference no orders")
    else:
        _record(
            findings, "position_mismatch", label_pos, position_mismatch(conn, plan, positions_trades), cap
        )
