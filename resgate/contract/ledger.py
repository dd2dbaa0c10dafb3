"""The client ledger's vocabulary: one JSON line per client request, written by the load generator and
judged by the checkers.

A record is ``{ts, op, client_id, idempotency_key, order_id?, status, outcome, latency_ms, ...}`` plus the
optional fields of :data:`OPTIONAL_FIELDS` (new fields are only ever optional: older readers keep working):
``status`` is the HTTP status, or one of :data:`TRANSPORT_STATUSES` when no response came back;
``outcome`` is one of :data:`OUTCOMES`.
"""

from __future__ import annotations

from typing import Literal

OPS: frozenset[str] = frozenset({"submit_order", "cancel_order", "rfq", "get_order", "get_rfq"})
"""The operations paperbroker's traders perform (other load may write other ``op`` names)."""

Outcome = Literal["ok", "fail", "info"]
OUTCOMES: frozenset[str] = frozenset({"ok", "fail", "info"})
"""ok = did what was asked; fail = clearly did not; info = indeterminate (timeout, reset, 5xx)."""

TRANSPORT_STATUSES: frozenset[str] = frozenset({"timeout", "conn_refused", "conn_reset", "conn_error"})
"""``status`` values for requests that got no HTTP response."""

RETRYABLE_HTTP: frozenset[int] = frozenset({429, 502, 503, 504})
"""HTTP statuses a client retries (same idempotency key and body); transport errors are retried too."""

ATTEMPT_HEADER = "X-Request-Attempt"
"""The header in which the load generator numbers each attempt of a request (1, 2, ...), as AWS SDKs do
with ``amz-sdk-request: attempt=N``; the ledger's ``attempt`` field holds the same number."""

REQUIRED_FIELDS: tuple[str, ...] = (
    "ts",
    "op",
    "client_id",
    "idempotency_key",
    "status",
    "outcome",
    "latency_ms",
)
"""Fields every record has (``idempotency_key`` may be null)."""

OPTIONAL_FIELDS: tuple[str, ...] = (
    "order_id",
    "retry_after",
    "error",
    "attempt",
    "name",
    "symbol",
    "side",
    "qty",
    "price",
    "method",
    "order_status",
    "filled_qty",
    "intended_ts",
    "intended_latency_ms",
)
"""Fields a record carries when they apply, in the order they are written.

``symbol, side, qty, price`` are what a submit sent (every attempt of a key sends the same); ``order_id``
names the order a cancel or a read is about; ``order_status`` and ``filled_qty`` are what a read (or a
cancel's answer) said about the order, when the response carried them. ``intended_ts`` and
``intended_latency_ms`` (open model only, ``loadgen.pacing``): when the request was meant to be sent and
its latency from then, which a stall that delayed the send cannot hide (coordinated omission)."""

FIELDS: frozenset[str] = frozenset((*REQUIRED_FIELDS, *OPTIONAL_FIELDS))
"""Every field a ledger record may carry; others are kept as extra detail."""
