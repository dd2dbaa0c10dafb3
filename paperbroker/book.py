"""A pure, deterministic price-time-priority limit order book (one per symbol) for the paperbroker matcher.

No I/O and no clock: the same sequence of ``submit``/``cancel`` calls always gives the same fills. Bids and
asks are kept as price levels (a FIFO queue of resting orders per price, plus a sorted list of prices); an
incoming order trades against the best opposite levels while its limit price crosses, each fill at the
resting (maker) order's price, oldest order first within a level, and whatever is left rests in the book.
Time priority is the ``arrival`` number the caller gives each order (a global, strictly increasing
counter), which also identifies a resting order when the book is persisted and restored.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

BUY = "buy"
SELL = "sell"
SIDES = (BUY, SELL)


@dataclass(slots=True, eq=False)
class RestingOrder:
    """A resting order: ``remaining`` shrinks with fills; ``live`` turns False when it leaves the book."""

    order_id: str
    client_id: str
    symbol: str
    side: str
    price: Decimal
    qty: int
    remaining: int
    arrival: int
    live: bool = True


@dataclass(frozen=True, slots=True)
class Fill:
    """One match between the incoming (aggressor) order and a resting (maker) order, at the maker's price."""

    buy_order_id: str
    sell_order_id: str
    buy_client_id: str
    sell_client_id: str
    qty: int
    price: Decimal
    aggressor_order_id: str
    maker_arrival: int


@dataclass(slots=True)
class SubmitResult:
    """What a submit did: the fills in order, the makers it touched and the part that rested (if any)."""

    fills: list[Fill] = field(default_factory=list)
    makers: list[RestingOrder] = field(default_factory=list)
    rested: RestingOrder | None = None


def parse_price(value: object) -> Decimal:
    """Parse a limit price (decimal string or number) into a positive finite Decimal; ValueError otherwise."""
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError) as e:
        raise ValueError(f"not a price: {value!r}") from e
    if not price.is_finite() or price <= 0:
        raise ValueError(f"not a positive price: {value!r}")
    return price


class _Side:
    """One side of the book: price levels (FIFO queues) and their prices sorted ascending."""

    __slots__ = ("levels", "prices")

    def __init__(self) -> None:
        self.levels: dict[Decimal, deque[RestingOrder]] = {}
        self.prices: list[Decimal] = []

    def add(self, order: RestingOrder) -> None:
        queue = self.levels.get(order.price)
        if queue is None:
            queue = self.levels[order.price] = deque()
            bisect.insort(self.prices, order.price)
        queue.append(order)

    def drop_level_if_empty(self, price: Decimal) -> None:
        queue = self.levels.get(price)
        if queue is not None and not queue:
            del self.levels[price]
            i = bisect.bisect_left(self.prices, price)
            if i < len(self.prices) and self.prices[i] == price:
                del self.prices[i]

    def remove(self, order: RestingOrder) -> None:
        queue = self.levels.get(order.price)
        if queue is None:
            return
        try:
            queue.remove(order)
        except ValueError:
            return
        self.drop_level_if_empty(order.price)


class OrderBook:
    """The limit order book of one symbol with price-time priority."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids = _Side()
        self._asks = _Side()
        self._by_id: dict[str, RestingOrder] = {}

    # ----------------------------------------------------------------------------------------- queries
    def best_bid(self) -> Decimal | None:
        """The highest resting buy price, or None."""
        return self._bids.prices[-1] if self._bids.prices else None

    def best_ask(self) -> Decimal | None:
        """The lowest resting sell price, or None."""
        return self._asks.prices[0] if self._asks.prices else None

    def get(self, order_id: str) -> RestingOrder | None:
        """The resting order with this id, or None."""
        return self._by_id.get(order_id)

    def __len__(self) -> int:
        return sum(len(q) for q in self._bids.levels.values()) + sum(
            len(q) for q in self._asks.levels.values()
        )

    def depth(self, side: str) -> list[tuple[Decimal, int]]:
        """Aggregated levels of one side, best first: ``[(price, total remaining qty)]``."""
        book_side = self._bids if side == BUY else self._asks
        prices = reversed(book_side.prices) if side == BUY else iter(book_side.prices)
        return [(p, sum(o.remaining for o in book_side.levels[p])) for p in prices]

    def resting_orders(self) -> Iterator[RestingOrder]:
        """Every resting order, in arrival order (the order in which :meth:`restore` must replay them)."""
        orders = [o for s in (self._bids, self._asks) for q in s.levels.values() for o in q]
        return iter(sorted(orders, key=lambda o: o.arrival))

    # ----------------------------------------------------------------------------------------- changes
    def submit(
        self, *, order_id: str, client_id: str, side: str, qty: int, price: Decimal, arrival: int
    ) -> SubmitResult:
        """Match an incoming limit order, then rest what is left. Returns a :class:`SubmitResult`."""
        if side not in SIDES:
            raise ValueError(f"side must be buy or sell: {side!r}")
        if qty <= 0:
            raise ValueError(f"qty must be positive: {qty}")
        result = SubmitResult()
        remaining = qty
        opposite = self._asks if side == BUY else self._bids
        while remaining > 0 and opposite.prices:
            best = opposite.prices[0] if side == BUY else opposite.prices[-1]
            if (side == BUY and best > price) or (side == SELL and best < price):
                break
            queue = opposite.levels[best]
            maker = queue[0]
            q = min(remaining, maker.remaining)
            maker.remaining -= q
            remaining -= q
            if side == BUY:
                buy_id, buy_client, sell_id, sell_client = (
                    order_id,
                    client_id,
                    maker.order_id,
                    maker.client_id,
                )
            else:
                buy_id, buy_client, sell_id, sell_client = (
                    maker.order_id,
                    maker.client_id,
                    order_id,
                    client_id,
                )
            result.fills.append(
                Fill(buy_id, sell_id, buy_client, sell_client, q, best, order_id, maker.arrival)
            )
            result.makers.append(maker)
            if maker.remaining == 0:
                queue.popleft()
                maker.live = False
                if self._by_id.get(maker.order_id) is maker:
                    del self._by_id[maker.order_id]
                opposite.drop_level_if_empty(best)
        if remaining > 0:
            rested = RestingOrder(order_id, client_id, self.symbol, side, price, qty, remaining, arrival)
            self._add(rested)
            result.rested = rested
        return result

    def cancel(self, order_id: str) -> RestingOrder | None:
        """Remove a resting order; returns it (with its remaining qty, ``live`` False) or None if absent."""
        order = self._by_id.pop(order_id, None)
        if order is None:
            return None
        (self._bids if order.side == BUY else self._asks).remove(order)
        order.live = False
        return order

    def restore(self, order: RestingOrder) -> None:
        """Put a persisted resting order back (call in arrival order to keep time priority)."""
        if order.side not in SIDES or order.remaining <= 0:
            raise ValueError(
                f"cannot restore order {order.order_id}: side={order.side} rem={order.remaining}"
            )
        order.live = True
        self._add(order)

    def _add(self, order: RestingOrder) -> None:
        (self._bids if order.side == BUY else self._asks).add(order)
        self._by_id[order.order_id] = order
