"""Integrity checker (Jepsen-style): the client ledger against the orders/trades tables and event topics.

The ledger is the ground truth of what clients asked for and were told. :func:`gather` loads it into a
per-run work schema in the target database with COPY, streams the configured topics (order-accepted
events, trade events, with partition and offset) into the same schema from their earliest offsets to the
end offsets taken at the start, and finds anomalies with SQL set operations (anti-joins, grouped
aggregates, window functions) — never Python loops over rows, and never a history held in Python memory.
It returns :class:`IntegrityFindings`: a count and capped examples per anomaly kind. :func:`check` is the
pure judge: a prohibited kind with a count above zero makes the result false; a source that could not be
read fully (a topic truncated by retention, malformed records) makes it "unknown" with the reason.

Nothing here knows paperbroker: tables, columns, topics, event types and JSON fields come from
:class:`IntegrityConfig`.

Modules: :mod:`.config` (the config), :mod:`.check` (the findings and the pure judge), :mod:`.gather`
(the I/O), :mod:`.load` (COPY loaders of the ledger and topics), :mod:`.plan` (the SQL relations of one
run) and :mod:`.anomalies` (one detector per anomaly family).

Anomaly kinds (:data:`KINDS`):

- ``lost`` — a submit acknowledged ok in the ledger whose (client, idempotency key) has no orders row;
  ``lost_in_topic`` — the same against the accepted-events topic.
- ``duplicated`` — more than one orders row for one (client, key); ``duplicated_in_topic`` — more than one
  distinct accepted order id for one (client, key).
- ``phantom`` / ``phantom_in_topic`` — an order (event) whose (client, key) no client ever submitted.
- ``recovered`` — a key with only failed or indeterminate attempts whose order landed (allowed by default).
- ``double_fill`` — the quantity traded against an order (distinct trade ids) exceeds the order quantity.
- ``duplicate_trade`` — one trade id more than once: two table rows, or two events with different event
  ids (or, without event ids, different offsets). Redeliveries of one event id are counted, not flagged.
- ``orphan_trade`` — a trade referencing an order id that is not a known order.
- ``seq_gap`` / ``seq_duplicate`` — per symbol, trade sequence numbers must be exactly 1..n (gaps are not
  checked on a trades topic truncated by retention: a missing seq may be among the dropped events).
- ``seq_reorder`` — in the trades topic, within a partition, a symbol's seq must strictly increase with
  the offset.
"""

from __future__ import annotations

from resgate.checks.integrity.check import NAME, IntegrityFindings, KindFinding, check
from resgate.checks.integrity.config import (
    ALLOWED_BY_DEFAULT,
    DEFAULT_PROHIBITED,
    KINDS,
    AcceptedEvents,
    IntegrityConfig,
    IntegrityThresholds,
    OrdersTable,
    TradeEvents,
    TradesTable,
)
from resgate.checks.integrity.gather import gather
from resgate.checks.integrity.load import LedgerInput

Thresholds = IntegrityConfig
"""The parser of the ``checks.integrity`` section: sources and thresholds both (``check`` takes either)."""


__all__ = [
    "ALLOWED_BY_DEFAULT",
    "DEFAULT_PROHIBITED",
    "KINDS",
    "NAME",
    "AcceptedEvents",
    "IntegrityConfig",
    "IntegrityFindings",
    "IntegrityThresholds",
    "KindFinding",
    "LedgerInput",
    "OrdersTable",
    "Thresholds",
    "TradeEvents",
    "TradesTable",
    "check",
    "gather",
]
