"""The SQL plan of one integrity run: the work-schema tables and each configured source as a relation.

The detectors in :mod:`resgate.checks.integrity.anomalies` take a :class:`Plan` (the run's context: work
schema, example cap, which topics were truncated) and an :class:`OrderSource` or :class:`TradeSource`
(one source of orders or trades, normalised to fixed column names), never a long list of flags. Every
identifier is quoted with ``psycopg.sql``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from resgate.checks.identifiers import table_label
from resgate.checks.integrity.config import IntegrityConfig
from resgate.checks.sqlutil import table_ident


@dataclass
class Cases:
    """What one detector found: how many anomalies in all, and the first few (at most the cap) as dicts."""

    total: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


def fetch(
    conn: psycopg.Connection[Any], query: sql.Composable, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Run ``query`` and return its rows as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def counted(rows: list[dict[str, Any]]) -> Cases:
    """Rows carrying a ``_total`` window count as :class:`Cases` (examples without ``_total`` or nulls)."""
    if not rows:
        return Cases()
    total = int(rows[0]["_total"])
    return Cases(
        total, [{k: _jsonable(v) for k, v in r.items() if k != "_total" and v is not None} for r in rows]
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


@dataclass(frozen=True)
class OrderSource:
    """One source of landed orders: the orders table or the loaded accepted events.

    ``rows`` is a relation ``(oid, c, k, qty, ...)`` (order id, client id, idempotency key as text; qty
    numeric; topic rows add ``p, off, eid``). ``complete`` is False for a topic truncated by retention: it
    still shows phantoms, but its missing history is no evidence of loss. ``tag`` names its work tables.
    """

    label: str
    rows: sql.Composable
    is_topic: bool
    complete: bool
    lost_kind: str
    phantom_kind: str

    @property
    def tag(self) -> str:
        return self.lost_kind


@dataclass(frozen=True)
class TradeSource:
    """One source of trades (the trades table or the loaded trade events) and what it is checked against.

    ``rows`` is a relation ``(trade_id, symbol, seq, qty, price, o0 … o<n_orders-1>, p, off, ident)``:
    ``o<i>`` are the order ids a trade references, ``p``/``off`` its partition and offset (NULL for table
    rows), ``ident`` what tells two copies of one trade apart (a row's ctid; an event id, else its position).
    ``known`` is a relation ``(oid, …)`` of known orders and ``order_qty`` one of ``(oid, qty)``; each is
    None when no complete source of it exists. ``truncated``: the topic lost its oldest events.
    """

    label: str
    rows: sql.Composable
    n_orders: int
    has_seq: bool
    has_qty: bool
    is_topic: bool
    truncated: bool
    known: sql.Composable | None
    order_qty: sql.Composable | None
    has_price: bool = False

    @property
    def tag(self) -> str:
        return "topic" if self.is_topic else "table"


class Plan:
    """The SQL of one gather run: work-schema tables and the configured sources as subqueries.

    ``truncated`` holds the topics whose history retention cut short; ``ledger_labels`` name the ledger
    sources by index (the ``src`` column of the work ledger).
    """

    def __init__(
        self,
        config: IntegrityConfig,
        schema: str,
        *,
        ledger_labels: Sequence[str] = (),
        truncated: set[str] | None = None,
    ) -> None:
        self.c = config
        self.schema = schema
        self.cap = config.examples_cap
        self.ledger_labels = list(ledger_labels)
        self.truncated = truncated if truncated is not None else set()

    def w(self, name: str) -> sql.Identifier:
        """A table of the work schema."""
        return sql.Identifier(self.schema, name)

    def orders(self) -> sql.Composable:
        """``(oid, c, k, qty)`` from the orders table, all as text except qty (numeric)."""
        o = self.c.orders
        assert o is not None
        qty = sql.SQL("{}::numeric").format(sql.Identifier(o.qty)) if o.qty else sql.SQL("NULL::numeric")
        return sql.SQL(
            "(SELECT {oid}::text AS oid, {c}::text AS c, {k}::text AS k, {qty} AS qty FROM {t})"
        ).format(
            oid=sql.Identifier(o.order_id),
            c=sql.Identifier(o.client_id),
            k=sql.Identifier(o.idempotency_key),
            qty=qty,
            t=table_ident(o.table),
        )

    def order_fields(self) -> sql.Composable:
        """``(oid, c, k, symbol, side, qty, price)`` from the orders table (NULL where not configured)."""
        o = self.c.orders
        assert o is not None

        def col(name: str | None, cast: str) -> sql.Composable:
            if name is None:
                return sql.SQL("NULL::{}").format(sql.SQL(cast))
            return sql.SQL("{}::{}").format(sql.Identifier(name), sql.SQL(cast))

        return sql.SQL(
            "(SELECT {oid} AS oid, {c} AS c, {k} AS k, {sym} AS symbol, {side} AS side, {qty} AS qty, "
            "{price} AS price FROM {t})"
        ).format(
            oid=col(o.order_id, "text"),
            c=col(o.client_id, "text"),
            k=col(o.idempotency_key, "text"),
            sym=col(o.symbol, "text"),
            side=col(o.side, "text"),
            qty=col(o.qty, "numeric"),
            price=col(o.price, "numeric"),
            t=table_ident(o.table),
        )

    def accepted(self) -> sql.Composable:
        """``(oid, c, k, qty, p, off, eid)`` from the loaded accepted events."""
        return sql.SQL(
            "(SELECT order_id AS oid, client_id AS c, ikey AS k, qty, p, off, eid FROM {})"
        ).format(self.w("accepted"))

    def accepted_complete(self) -> bool:
        """True when accepted events are configured and their topic was not truncated."""
        a = self.c.accepted_events
        return a is not None and a.topic not in self.truncated

    def order_sources(self) -> list[OrderSource]:
        """The configured sources of landed orders: the orders table first, then the accepted events."""
        out = []
        if self.c.orders:
            label = f"table:{table_label(self.c.orders.table)}"
            out.append(OrderSource(label, self.orders(), False, True, "lost", "phantom"))
        if self.c.accepted_events:
            label = f"topic:{self.c.accepted_events.topic}"
            out.append(
                OrderSource(
                    label,
                    self.accepted(),
                    True,
                    self.accepted_complete(),
                    "lost_in_topic",
                    "phantom_in_topic",
                )
            )
        return out

    def _known_orders(self, *, accepted: bool) -> tuple[sql.Composable | None, sql.Composable | None]:
        """``(known orders, order quantities)``: from the orders table, else (if ``accepted``) the events."""
        known: sql.Composable | None = None
        qty: sql.Composable | None = None
        if self.c.orders:
            known = self.orders()
            if self.c.orders.qty:
                qty = sql.SQL("(SELECT oid, min(qty) AS qty FROM {} o GROUP BY oid)").format(self.orders())
        if known is None and accepted:
            known = self.accepted()
        if qty is None and accepted and self.c.accepted_events and self.c.accepted_events.qty:
            qty = sql.SQL("(SELECT oid, min(qty) AS qty FROM {} a GROUP BY oid)").format(self.accepted())
        return known, qty

    def table_trades(self) -> TradeSource:
        """The trades table as a :class:`TradeSource`.

        It is checked while the topics are still loading, so only the orders table counts as known orders.
        """
        t = self.c.trades
        assert t is not None

        def col(name: str | None, cast: str) -> sql.Composable:
            if name is None:
                return sql.SQL("NULL::{}").format(sql.SQL(cast))
            return sql.SQL("{}::{}").format(sql.Identifier(name), sql.SQL(cast))

        oids = sql.SQL(", ").join(
            sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(f"o{i}"))
            for i, c in enumerate(t.order_ids)
        )
        rows = sql.SQL(
            "(SELECT {tid} AS trade_id, {sym} AS symbol, {seq} AS seq, {qty} AS qty, {price} AS price, "
            "{oids}, NULL::int AS p, NULL::bigint AS off, ctid::text AS ident FROM {t})"
        ).format(
            tid=col(t.trade_id, "text"),
            sym=col(t.symbol, "text"),
            seq=col(t.seq, "bigint"),
            qty=col(t.qty, "numeric"),
            price=col(t.price, "numeric"),
            oids=oids,
            t=table_ident(t.table),
        )
        known, qty = self._known_orders(accepted=False)
        return TradeSource(
            label=f"table:{table_label(t.table)}",
            rows=rows,
            n_orders=len(t.order_ids),
            has_seq=t.symbol is not None and t.seq is not None,
            has_qty=t.qty is not None,
            is_topic=False,
            truncated=False,
            known=known,
            order_qty=qty,
            has_price=t.price is not None,
        )

    def topic_trades(self) -> TradeSource:
        """The loaded trade events as a :class:`TradeSource` (known orders may come from a complete topic)."""
        t = self.c.trade_events
        assert t is not None
        oids = sql.SQL(", ").join(sql.Identifier(f"o{i}") for i in range(len(t.order_ids)))
        rows = sql.SQL(
            "(SELECT trade_id, symbol, seq, qty, price, {oids}, p, off, "
            "coalesce(eid, p || ':' || off) AS ident FROM {})"
        ).format(self.w("trade_events"), oids=oids)
        known, qty = self._known_orders(accepted=self.accepted_complete())
        return TradeSource(
            label=f"topic:{t.topic}",
            rows=rows,
            n_orders=len(t.order_ids),
            has_seq=t.symbol is not None and t.seq is not None,
            has_qty=t.qty is not None,
            is_topic=True,
            truncated=t.topic in self.truncated,
            known=known,
            order_qty=qty,
            has_price=t.price is not None,
        )


def order_refs(n: int, alias: str = "d") -> sql.Composable:
    """LATERAL rows ``(oid)`` for each order-id column of a trade, each distinct order once."""
    vals = []
    for i in range(n):
        col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(f"o{i}"))
        prev = [sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(f"o{j}")) for j in range(i)]
        if prev:
            cond = sql.SQL(" AND ").join(sql.SQL("{} IS DISTINCT FROM {}").format(col, p) for p in prev)
            vals.append(sql.SQL("(CASE WHEN {} THEN {} END)").format(cond, col))
        else:
            vals.append(sql.SQL("({})").format(col))
    return sql.SQL("CROSS JOIN LATERAL (VALUES {}) AS r(oid)").format(sql.SQL(", ").join(vals))
