"""The event contract of paperbroker: topic names and the JSON shape of every event.

Every event is a JSON object with ``event_id`` (unique, a UUID string), ``type`` and ``ts`` (epoch seconds),
plus the fields below. Events of one symbol share a Kafka key (the symbol) so they stay ordered.

Topic ``pb.orders`` (written by the gateway's outbox relay, key = symbol):
- ``OrderAccepted``: order_id, client_id, idempotency_key, symbol, side ("buy"|"sell"), qty (int),
  price (decimal string, limit price)
- ``CancelRequested``: order_id, client_id, symbol

Topic ``pb.executions`` (written by the matcher, key = symbol):
- ``TradeExecuted``: trade_id, symbol, seq (per-symbol, 1, 2, 3, ... without gaps), buy_order_id,
  sell_order_id, buy_client_id, sell_client_id, qty, price, aggressor_order_id
- ``OrderCancelled``: order_id, client_id, symbol, remaining_qty; added by the matcher: side, price
- ``OrderRested``: order_id, symbol (the order entered the book with remaining quantity); added by the
  matcher: client_id, side, price (limit price), qty (original), remaining_qty (the quantity that rested)

The matcher's event ids are deterministic (uuid5 of the trade id, or of the resting order's arrival number),
so a republished execution keeps its event_id.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

TOPIC_ORDERS = "pb.orders"
TOPIC_EXECUTIONS = "pb.executions"
ALL_TOPICS = (TOPIC_ORDERS, TOPIC_EXECUTIONS)
DEFAULT_PARTITIONS = 6

ORDER_ACCEPTED = "OrderAccepted"
CANCEL_REQUESTED = "CancelRequested"
TRADE_EXECUTED = "TradeExecuted"
ORDER_CANCELLED = "OrderCancelled"
ORDER_RESTED = "OrderRested"


def new_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """Return a new event dict ``{event_id, type, ts, **fields}`` with a fresh UUID event id."""
    return {"event_id": str(uuid.uuid4()), "type": event_type, "ts": time.time(), **fields}


def encode(event: dict[str, Any]) -> bytes:
    """Serialise an event for Kafka (compact JSON, UTF-8)."""
    return json.dumps(event, separators=(",", ":"), default=str).encode()


def decode(raw: bytes) -> dict[str, Any]:
    """Parse an event from Kafka."""
    return json.loads(raw)
