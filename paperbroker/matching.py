"""The matcher's pure engine: every symbol's book, the per-symbol trade sequence and the output events.

:class:`MatchingEngine` applies a batch of input events in order — ``OrderAccepted`` is submitted to the
symbol's price-time-priority book (:mod:`paperbroker.book`), ``CancelRequested`` takes a resting order
out — and returns a :class:`BatchOutcome`: the output events in emission order (``TradeExecuted`` with
the symbol's next ``seq`` 1, 2, 3, ... and ``trade_id`` ``<symbol>-<seq>``, ``OrderRested``,
``OrderCancelled``), plus what changed, so the caller can persist exactly that. Event ids are
deterministic (uuid5 of the trade id or of the resting order's arrival number), which is what lets the
matcher's recovery recognise an event already on the topic. Orders are deduplicated by ``order_id``
unless the ``matcher_double_fill`` seeded bug is on. No I/O and no clock (the caller passes ``now``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from paperbroker.book import SIDES, OrderBook, RestingOrder, parse_price
from paperbroker.events import CANCEL_REQUESTED, ORDER_ACCEPTED, ORDER_CANCELLED, ORDER_RESTED, TRADE_EXECUTED

log = logging.getLogger("paperbroker.matcher")

#: Namespace of the matcher's deterministic event ids (uuid5).
EVENT_NAMESPACE = uuid.UUID("5f0c6f1e-2a57-4b8e-9c1d-7e0b7a1c2d3e")


def trade_event_id(trade_id: str) -> str:
    """Deterministic event id of a trade."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"trade:{trade_id}"))


@dataclass
class BatchOutcome:
    """The result of applying a batch: events to publish (in order) and the state that changed."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    new_order_ids: list[str] = field(default_factory=list)
    changed: dict[int, RestingOrder] = field(default_factory=dict)
    seq_symbols: set[str] = field(default_factory=set)
    ignored: int = 0
    duplicates: int = 0


class MatchingEngine:
    """All books plus the per-symbol trade sequence and the arrival counter; deterministic and pure.

    ``dedupe_orders=False`` is the ``matcher_double_fill`` seeded bug. ``id_scope`` names the symbol group
    whose arrival numbers this engine counts (each group's matcher counts its own from 1), so the ids of
    ``OrderRested`` / ``OrderCancelled`` events, derived from the arrival number, stay unique across groups;
    empty (the single group) keeps the ids the matcher always gave.
    """

    def __init__(self, *, dedupe_orders: bool = True, id_scope: str = "") -> None:
        self.dedupe_orders = dedupe_orders
        self.id_scope = id_scope
        self.books: dict[str, OrderBook] = {}
        self.next_seq: dict[str, int] = {}
        self.next_arrival = 1

    def _arrival_event_id(self, kind: str, arrival: int) -> str:
        """Deterministic id of the ``kind`` event of the order that arrived ``arrival``-th in this scope."""
        name = f"{kind}:{self.id_scope}:{arrival}" if self.id_scope else f"{kind}:{arrival}"
        return str(uuid.uuid5(EVENT_NAMESPACE, name))

    def book(self, symbol: str) -> OrderBook:
        """The book of ``symbol`` (created empty on first use)."""
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = OrderBook(symbol)
        return b

    def restore(self, orders: Iterable[RestingOrder]) -> None:
        """Put persisted resting orders back; they must come in arrival order."""
        for o in orders:
            self.book(o.symbol).restore(o)

    def apply_batch(self, events: Iterable[dict[str, Any]], seen: set[str], now: float) -> BatchOutcome:
        """Apply input events in order. ``seen`` holds order ids already processed (updated in place).

        Returns a :class:`BatchOutcome` with the output events ({event_id, type, ts, ...}) in emission order.
        """
        out = BatchOutcome()
        for ev in events:
            etype = ev.get("type")
            if etype == ORDER_ACCEPTED:
                self._accept(ev, seen, now, out)
            elif etype == CANCEL_REQUESTED:
                self._cancel(ev, now, out)
            else:
                out.ignored += 1
        return out

    def _accept(self, ev: dict[str, Any], seen: set[str], now: float, out: BatchOutcome) -> None:
        order_id = str(ev.get("order_id") or "")
        if not order_id:
            out.ignored += 1
            return
        if order_id in seen:
            out.duplicates += 1
            if self.dedupe_orders:
                return
        else:
            seen.add(order_id)
            out.new_order_ids.append(order_id)
        try:
            symbol = str(ev["symbol"])
            side = str(ev["side"])
            qty = int(ev["qty"])
            price = parse_price(ev["price"])
            client_id = str(ev["client_id"])
            if not symbol or side not in SIDES or qty <= 0 or isinstance(ev["qty"], bool):
                raise ValueError("bad symbol/side/qty")
        except (KeyError, TypeError, ValueError) as e:
            log.warning("ignoring malformed OrderAccepted %s: %s", ev.get("event_id"), e)
            out.ignored += 1
            return
        arrival = self.next_arrival
        self.next_arrival += 1
        book = self.book(symbol)
        res = book.submit(
            order_id=order_id, client_id=client_id, side=side, qty=qty, price=price, arrival=arrival
        )
        for f in res.fills:
            seq = self.next_seq.get(symbol, 1)
            self.next_seq[symbol] = seq + 1
            trade_id = f"{symbol}-{seq}"
            out.outputs.append(
                {
                    "event_id": trade_event_id(trade_id),
                    "type": TRADE_EXECUTED,
                    "ts": now,
                    "trade_id": trade_id,
                    "symbol": symbol,
                    "seq": seq,
                    "buy_order_id": f.buy_order_id,
                    "sell_order_id": f.sell_order_id,
                    "buy_client_id": f.buy_client_id,
                    "sell_client_id": f.sell_client_id,
                    "qty": f.qty,
                    "price": str(f.price),
                    "aggressor_order_id": f.aggressor_order_id,
                }
            )
            out.seq_symbols.add(symbol)
        for m in res.makers:
            out.changed[m.arrival] = m
        if res.rested is not None:
            r = res.rested
            out.changed[r.arrival] = r
            out.outputs.append(
                {
                    "event_id": self._arrival_event_id("rested", r.arrival),
                    "type": ORDER_RESTED,
                    "ts": now,
                    "order_id": r.order_id,
                    "symbol": symbol,
                    "client_id": r.client_id,
                    "side": r.side,
                    "price": str(r.price),
                    "qty": r.qty,
                    "remaining_qty": r.remaining,
                }
            )

    def _cancel(self, ev: dict[str, Any], now: float, out: BatchOutcome) -> None:
        symbol = ev.get("symbol")
        order_id = ev.get("order_id")
        book = self.books.get(str(symbol)) if symbol else None
        order = book.cancel(str(order_id)) if book is not None and order_id else None
        if order is None:
            out.ignored += 1  # unknown, already filled or already cancelled: nothing to do
            return
        out.changed[order.arrival] = order
        out.outputs.append(
            {
                "event_id": self._arrival_event_id("cancelled", order.arrival),
                "type": ORDER_CANCELLED,
                "ts": now,
                "order_id": order.order_id,
                "client_id": order.client_id,
                "symbol": order.symbol,
                "remaining_qty": order.remaining,
                "side": order.side,
                "price": str(order.price),
            }
        )
