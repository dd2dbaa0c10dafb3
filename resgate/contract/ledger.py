"""The client ledger's vocabulary: one JSON line per client request, written by the load generator and
judged by the checkers.

A record is ``{ts, op, client_id, idempotency_key, order_id?, status, outcome, latency_ms, ...}``:
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
)
"""Fields a record carries when they apply, in the order they are written."""

FIELDS: frozenset[str] = frozenset((*REQUIRED_FIELDS, *OPTIONAL_FIELDS))
"""Every field a ledger record may carry; others are kept as extra detail."""
