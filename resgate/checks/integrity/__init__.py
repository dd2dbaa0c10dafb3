"""Integrity checker (Jepsen-style): the client ledger against the orders/trades tables and event topics.

The ledger is the ground truth of what clients asked for and were told. :func:`gather` loads it into a
per-run work schema in the target database with a raw COPY of its lines (Postgres parses the JSON),
streams the configured topics (order-accepted
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
run), :mod:`.anomalies` (one detector per anomaly family of the order lifecycle), :mod:`.trading`
(one detector per trading invariant) and :mod:`.event_log` (what the event log's consumers saw).

Anomaly kinds (:data:`KINDS`):

- ``lost`` — a submit acknowledged ok in the ledger whose (client, idempotency key) has no orders row;
  ``lost_in_topic`` — the same against the accepted-events topic.
- ``duplicated`` — more than one orders row for one (client, key); ``duplicated_in_topic`` — more than one
  distinct accepted order id for one (client, key).
- ``phantom`` / ``phantom_in_topic`` — an order (event) whose (client, key) no client ever submitted.
- ``recovered`` — a key with only failed or indeterminate attempts whose order landed (allowed by default).
- ``double_fill`` — the quantity traded against an order (distinct trade ids) exceeds the order quantity.
- ``duplicate_trade`` — one trade id more than once: two table rows, or two events with different event
  ids (or, without event ids, different offsets), or one event id with two contents (two matchers that
  both emitted the trade: split brain). Redeliveries of one event id are counted, not flagged.
- ``orphan_trade`` — a trade referencing an order id that is not a known order.
- ``seq_gap`` / ``seq_duplicate`` — per symbol, trade sequence numbers must be exactly 1..n (gaps are not
  checked on a trades topic truncated by retention: a missing seq may be among the dropped events).
- ``seq_reorder`` — in the trades topic, within a partition, a symbol's seq must strictly increase with
  the offset.

The trading invariants (each checked only when the config names its sources; otherwise listed in
``not_checked`` with the reason, never passed):

- ``price_outside_limit`` — a trade above a buy order's limit or below a sell order's limit.
- ``order_mismatch`` — an order stored with another symbol, side, qty or price than its client sent.
- ``fill_after_cancel`` — a trade on an order after the order's cancel confirmation in the trades topic.
- ``cancel_still_open`` — a cancel acknowledged ok whose order is still open after the system settled.
- ``position_not_conserved`` — per symbol, the positions' net quantities do not sum to zero.
- ``position_mismatch`` — a client's position differs from the signed sum of its fills.
- ``non_monotonic_read`` — a client reads its own order going backwards (filled quantity shrinking, or
  open again after a terminal status).
- ``unseen_by_projector`` — an accepted event the projector never recorded as applied.

The event log, as Jepsen's Kafka workload checks it (each only when its sources are configured):

- ``aborted_read`` — an accepted event in the topic whose (client, key) has only failed attempts in the
  ledger (outcome ``fail``: the client was told it certainly did not happen), which consumers read.
- ``offset_backwards`` — per consumer group and partition (Jepsen's key), an offset consumed for the
  first time after a higher one (``consumed_offsets``: where the group read each event, in order).
- ``offset_skip`` — an event of a loaded topic the group never consumed, below an offset it did consume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resgate.checks.integrity.check import NAME, IntegrityFindings, KindFinding, check
from resgate.checks.integrity.config import (
    ALLOWED_BY_DEFAULT,
    DEFAULT_PROHIBITED,
    KINDS,
    AcceptedEvents,
    CancelEvents,
    ConsumedOffsets,
    IntegrityConfig,
    IntegrityThresholds,
    OrdersTable,
    OrderStates,
    PositionsTable,
    ProjectedEvents,
    TradeEvents,
    TradesTable,
)

if TYPE_CHECKING:
    from resgate.checks.integrity.gather import gather
    from resgate.checks.integrity.load import LedgerInput


def __getattr__(name: str) -> Any:
    # The I/O modules import psycopg: loaded on first use, so a Lambda that only names this checker (through
    # resgate.checks.registry) does not need psycopg in its bundle.
    # Importing the submodule ``gather`` binds the package attribute ``gather`` to that module: rebind it to
    # the function, as the eager ``from .gather import gather`` did.
    if name == "gather":
        from resgate.checks.integrity.gather import gather as fn

        globals()["gather"] = fn
        return fn
    if name == "LedgerInput":
        from resgate.checks.integrity.load import LedgerInput

        globals()["LedgerInput"] = LedgerInput
        return LedgerInput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Thresholds = IntegrityConfig
"""The parser of the ``checks.integrity`` section: :func:`gather`'s config (tables, topics, fields), whose
``thresholds`` (an :class:`IntegrityThresholds`) are all :func:`check` takes."""


__all__ = [
    "ALLOWED_BY_DEFAULT",
    "DEFAULT_PROHIBITED",
    "KINDS",
    "NAME",
    "AcceptedEvents",
    "CancelEvents",
    "ConsumedOffsets",
    "IntegrityConfig",
    "IntegrityFindings",
    "IntegrityThresholds",
    "KindFinding",
    "LedgerInput",
    "OrderStates",
    "OrdersTable",
    "PositionsTable",
    "ProjectedEvents",
    "Thresholds",
    "TradeEvents",
    "TradesTable",
    "check",
    "gather",
]
