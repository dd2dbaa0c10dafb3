"""The projection logic as a pure function: a batch of events in, the SQL that applies it to the tables out.

:func:`build_plan` turns a batch of decoded events into statements (``(sql, rows for executemany)``) on
the tables of :mod:`paperbroker.read_models` and the counts of what it applied (:class:`ApplyStats`).
Every change is commutative (sums, GREATEST, "highest seq wins", a status derived from the row's own
numbers), so the result does not depend on how the two topics' partitions interleave: the live projector
and a rebuild that reads the same events in another order end with identical rows. Which
``(projector, event_id)`` pairs are applied is the caller's decision (:func:`dedupe_keys` lists them,
:mod:`paperbroker.projection_apply` asks ``processed_events``); :class:`ProjectionOptions` carries the
seeded bugs of the live projector (``projector_double_apply``, ``projection_drift``). No I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg import sql

from paperbroker.events import ORDER_ACCEPTED, ORDER_CANCELLED, ORDER_RESTED, TRADE_EXECUTED
from paperbroker.read_models import check_schema_name

log = logging.getLogger("paperbroker.projections")

#: Projector names (the ``projector`` column of ``processed_events``) and the events each one applies.
PROJECTOR_EVENTS: dict[str, frozenset[str]] = {
    "orders": frozenset({ORDER_ACCEPTED, TRADE_EXECUTED, ORDER_CANCELLED}),
    "trades": frozenset({TRADE_EXECUTED}),
    "market": frozenset({TRADE_EXECUTED, ORDER_RESTED, ORDER_CANCELLED}),
    "positions": frozenset({TRADE_EXECUTED}),
}
PROJECTORS = tuple(PROJECTOR_EVENTS)

_PRICE_Q = Decimal("0.000001")

# The order status derived from the row's own numbers; 'cancelled' is sticky. {qty}/{filled} are SQL.
_STATUS = (
    "CASE WHEN {cur}.status = 'cancelled' THEN 'cancelled' WHEN {qty} IS NULL THEN 'open'"
    " WHEN {filled} >= {qty} THEN 'filled' WHEN {filled} > 0 THEN 'partially_filled' ELSE 'open' END"
)


@dataclass(frozen=True)
class ProjectionOptions:
    """Switches of the live projector. The defaults are the correct logic (what :func:`rebuild` uses)."""

    skip_dedupe: bool = False  # seeded bug projector_double_apply
    drop_cancel_status: bool = False  # seeded bug projection_drift
    positions_double_count: bool = False  # seeded bug positions_double_count

    @classmethod
    def from_bugs(cls, bugs: Iterable[str]) -> ProjectionOptions:
        """Options for a set of active seeded bug names."""
        b = set(bugs)
        return cls(
            skip_dedupe="projector_double_apply" in b,
            drop_cancel_status="projection_drift" in b,
            positions_double_count="positions_double_count" in b,
        )


@dataclass
class ApplyStats:
    """Counts of one :func:`apply_batch` call (or of a whole rebuild).

    ``applied`` counts events applied per projector, ``duplicates`` events every projector had already
    applied, ``skipped`` events no projector uses (``CancelRequested``) or that are malformed.
    """

    events: int = 0
    applied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROJECTORS, 0))
    duplicates: int = 0
    skipped: int = 0

    def add(self, other: ApplyStats) -> None:
        """Accumulate another batch's counts."""
        self.events += other.events
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        for k, v in other.applied.items():
            self.applied[k] = self.applied.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        """``{events, applied: {projector: n}, duplicates, skipped}``."""
        return {
            "events": self.events,
            "applied": dict(self.applied),
            "duplicates": self.duplicates,
            "skipped": self.skipped,
        }


# ------------------------------------------------------------------------------------------ pure part
def _price(value: Any) -> Decimal:
    p = Decimal(str(value))
    if not p.is_finite():
        raise ValueError(f"not a price: {value!r}")
    return p.quantize(_PRICE_Q)


def _valid(ev: Any) -> bool:
    return isinstance(ev, dict) and bool(ev.get("event_id")) and ev.get("type") in _ALL_TYPES


_ALL_TYPES = frozenset().union(*PROJECTOR_EVENTS.values())


def dedupe_keys(events: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The ``(projector, event_id)`` pairs of a batch, first occurrence only, in batch order."""
    keys: dict[tuple[str, str], None] = {}
    for ev in events:
        if not _valid(ev):
            continue
        for proj, types in PROJECTOR_EVENTS.items():
            if ev["type"] in types:
                keys.setdefault((proj, str(ev["event_id"])), None)
    return list(keys)


Statement = tuple[sql.Composable, list[tuple[Any, ...]]]


def build_plan(
    events: Sequence[dict[str, Any]],
    accept: set[tuple[str, str]] | None,
    schema: str,
    options: ProjectionOptions = ProjectionOptions(),
) -> tuple[list[Statement], ApplyStats]:
    """Turn a batch into SQL statements (``(sql, rows for executemany)``) and the counts.

    ``accept`` is the set of ``(projector, event_id)`` to apply (the new ones); ``None`` applies every
    event (the ``projector_double_apply`` bug), including repeats within the batch. Rows are aggregated per
    key and sorted, so concurrent replicas lock rows in the same order.
    """
    s = sql.Identifier(check_schema_name(schema))
    stats = ApplyStats()
    accepted: dict[str, tuple[Any, ...]] = {}
    fills: dict[str, list[Any]] = {}  # order_id -> [qty, max ts, client, symbol, side]
    cancels: dict[str, list[Any]] = {}  # order_id -> [client, symbol, max ts]
    trades: dict[str, tuple[Any, ...]] = {}
    last: dict[str, tuple[int, Decimal, int]] = {}
    levels: dict[tuple[str, str, Decimal], int] = {}
    market_syms: set[str] = set()
    positions: dict[tuple[str, str], list[Any]] = {}
    once: set[tuple[str, str]] = set()

    def take(proj: str, eid: str) -> bool:
        if accept is None or (proj == "positions" and options.positions_double_count):
            return True  # the seeded bugs: apply the event whether or not it was applied before
        key = (proj, eid)
        if key not in accept or key in once:
            return False
        once.add(key)
        return True

    for ev in events:
        stats.events += 1
        if not _valid(ev):
            stats.skipped += 1
            continue
        eid, etype = str(ev["event_id"]), ev["type"]
        ts = float(ev.get("ts") or 0.0)
        try:
            if etype == ORDER_ACCEPTED:
                if take("orders", eid):
                    oid = str(ev["order_id"])
                    row = (
                        oid,
                        ev["client_id"],
                        ev["symbol"],
                        ev["side"],
                        int(ev["qty"]),
                        _price(ev["price"]),
                        ts,
                    )
                    prev = accepted.get(oid)
                    accepted[oid] = row if prev is None else (*row[:6], max(prev[6], ts))
                    stats.applied["orders"] += 1
                else:
                    stats.duplicates += 1
            elif etype == TRADE_EXECUTED:
                sym, qty, price = str(ev["symbol"]), int(ev["qty"]), _price(ev["price"])
                buy, sell = str(ev["buy_order_id"]), str(ev["sell_order_id"])
                bc, sc = str(ev["buy_client_id"]), str(ev["sell_client_id"])
                dup = True
                if take("orders", eid):
                    dup = False
                    stats.applied["orders"] += 1
                    for oid, cid, side in ((buy, bc, "buy"), (sell, sc, "sell")):
                        f = fills.setdefault(oid, [0, ts, cid, sym, side])
                        f[0] += qty
                        f[1] = max(f[1], ts)
                if take("trades", eid):
                    dup = False
                    stats.applied["trades"] += 1
                    trades.setdefault(
                        str(ev["trade_id"]),
                        (str(ev["trade_id"]), sym, int(ev["seq"]), buy, sell, bc, sc, qty, price),
                    )
                if take("market", eid):
                    dup = False
                    stats.applied["market"] += 1
                    market_syms.add(sym)
                    seq = int(ev["seq"])
                    if sym not in last or seq > last[sym][0]:
                        last[sym] = (seq, price, qty)
                    maker_side = "sell" if str(ev.get("aggressor_order_id")) == buy else "buy"
                    k = (sym, maker_side, price)
                    levels[k] = levels.get(k, 0) - qty
                if take("positions", eid):
                    dup = False
                    stats.applied["positions"] += 1
                    notional = price * qty
                    for cid, dq, dc in ((bc, qty, -notional), (sc, -qty, notional)):
                        p = positions.setdefault((cid, sym), [0, Decimal(0)])
                        p[0] += dq
                        p[1] += dc
                stats.duplicates += dup
            elif etype == ORDER_RESTED:
                if take("market", eid):
                    sym = str(ev["symbol"])
                    k = (sym, str(ev["side"]), _price(ev["price"]))
                    levels[k] = levels.get(k, 0) + int(ev["remaining_qty"])
                    market_syms.add(sym)
                    stats.applied["market"] += 1
                else:
                    stats.duplicates += 1
            elif etype == ORDER_CANCELLED:
                dup = True
                if take("orders", eid):
                    dup = False
                    stats.applied["orders"] += 1
                    if not options.drop_cancel_status:
                        c = cancels.setdefault(
                            str(ev["order_id"]), [ev.get("client_id"), ev.get("symbol"), ts]
                        )
                        c[2] = max(c[2], ts)
                if take("market", eid):
                    dup = False
                    stats.applied["market"] += 1
                    sym = str(ev["symbol"])
                    market_syms.add(sym)
                    if ev.get("side") is not None and ev.get("price") is not None:
                        k = (sym, str(ev["side"]), _price(ev["price"]))
                        levels[k] = levels.get(k, 0) - int(ev["remaining_qty"])
                stats.duplicates += dup
        except (KeyError, TypeError, ValueError, InvalidOperation) as e:
            log.warning("skipping malformed %s event %s: %s", etype, eid, e)
            stats.skipped += 1

    plan: list[Statement] = []
    if accepted:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_orders AS o (order_id, client_id, symbol, side, qty, price,"
                    " filled_qty, status, last_event_ts) VALUES (%s, %s, %s, %s, %s, %s, 0, 'open', %s)"
                    " ON CONFLICT (order_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
                    " symbol = EXCLUDED.symbol, side = EXCLUDED.side, qty = EXCLUDED.qty,"
                    " price = EXCLUDED.price,"
                    " status = " + _STATUS.format(cur="o", qty="EXCLUDED.qty", filled="o.filled_qty") + ","
                    " last_event_ts = GREATEST(o.last_event_ts, EXCLUDED.last_event_ts)"
                ).format(s=s),
                [accepted[k] for k in sorted(accepted)],
            )
        )
    if fills:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_orders AS o (order_id, client_id, symbol, side, filled_qty, status,"
                    " last_event_ts) VALUES (%s, %s, %s, %s, %s, 'open', %s)"
                    " ON CONFLICT (order_id) DO UPDATE SET filled_qty = o.filled_qty + EXCLUDED.filled_qty,"
                    " status = "
                    + _STATUS.format(cur="o", qty="o.qty", filled="(o.filled_qty + EXCLUDED.filled_qty)")
                    + ", last_event_ts = GREATEST(o.last_event_ts, EXCLUDED.last_event_ts)"
                ).format(s=s),
                [(k, f[2], f[3], f[4], f[0], f[1]) for k, f in sorted(fills.items())],
            )
        )
    if cancels:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_orders AS o (order_id, client_id, symbol, status, last_event_ts)"
                    " VALUES (%s, %s, %s, 'cancelled', %s)"
                    " ON CONFLICT (order_id) DO UPDATE SET status = 'cancelled',"
                    " last_event_ts = GREATEST(o.last_event_ts, EXCLUDED.last_event_ts)"
                ).format(s=s),
                [(k, c[0], c[1], c[2]) for k, c in sorted(cancels.items())],
            )
        )
    if trades:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_trades (trade_id, symbol, seq, buy_order_id, sell_order_id,"
                    " buy_client_id, sell_client_id, qty, price) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (trade_id) DO NOTHING"
                ).format(s=s),
                [trades[k] for k in sorted(trades)],
            )
        )
    if market_syms:
        syms = sorted(market_syms)
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_market (symbol) VALUES (%s) ON CONFLICT (symbol) DO NOTHING"
                ).format(s=s),
                [(x,) for x in syms],
            )
        )
        if last:
            plan.append(
                (
                    sql.SQL(
                        "UPDATE {s}.rm_market SET last_seq = %s, last_price = %s, last_qty = %s"
                        " WHERE symbol = %s AND (last_seq IS NULL OR last_seq < %s)"
                    ).format(s=s),
                    [(v[0], v[1], v[2], k, v[0]) for k, v in sorted(last.items())],
                )
            )
        deltas = [(k[0], k[1], k[2], d) for k, d in sorted(levels.items()) if d != 0]
        if deltas:
            plan.append(
                (
                    sql.SQL(
                        "INSERT INTO {s}.rm_market_levels AS l (symbol, side, price, qty)"
                        " VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (symbol, side, price) DO UPDATE SET qty = l.qty + EXCLUDED.qty"
                    ).format(s=s),
                    deltas,
                )
            )
        plan.append(
            (
                sql.SQL("DELETE FROM {s}.rm_market_levels WHERE symbol = ANY(%s::text[]) AND qty = 0").format(
                    s=s
                ),
                [(syms,)],
            )
        )
        plan.append(
            (
                sql.SQL(
                    "UPDATE {s}.rm_market m SET"
                    " best_bid = (SELECT max(price) FROM {s}.rm_market_levels l"
                    " WHERE l.symbol = m.symbol AND l.side = 'buy' AND l.qty > 0),"
                    " best_ask = (SELECT min(price) FROM {s}.rm_market_levels l"
                    " WHERE l.symbol = m.symbol AND l.side = 'sell' AND l.qty > 0)"
                    " WHERE m.symbol = ANY(%s::text[])"
                ).format(s=s),
                [(syms,)],
            )
        )
    if positions:
        plan.append(
            (
                sql.SQL(
                    "INSERT INTO {s}.rm_positions AS p (client_id, symbol, net_qty, cash)"
                    " VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (client_id, symbol) DO UPDATE"
                    " SET net_qty = p.net_qty + EXCLUDED.net_qty, cash = p.cash + EXCLUDED.cash"
                ).format(s=s),
                [(k[0], k[1], v[0], v[1]) for k, v in sorted(positions.items())],
            )
        )
    return plan, stats
