"""The stream ledger's vocabulary: one JSON line per event a market-data subscriber saw, written by the
load generator's subscribers and judged by the ``streaming`` checker.

A record is ``{ts, client_id, event, ...}`` with ``event`` one of :data:`EVENTS` and the fields that event
carries (:data:`EVENT_FIELDS`). ``ts`` is epoch seconds when the subscriber saw it. Sequence numbers are
per symbol: the feed's ``seq`` of a trade is the matcher's per-symbol trade sequence (1, 2, 3, ...), so a
subscriber's received sequences can be compared with what the trades topic holds.

The wire protocol of the feed (``GET /stream``, a WebSocket, JSON text frames) is named here too, so the
feed (paperbroker) and the subscribers (loadgen) share one spelling:

- client → feed: ``{"op": "subscribe", "symbols": [...], "resume": {symbol: last_seq}}`` (``resume``
  optional: the last sequence the client holds per symbol);
- feed → client: ``{"type": "snapshot", "symbol", "seq", "price"}`` (the state up to ``seq``; incrementals
  follow from ``seq + 1``); ``{"type": "resume", "symbol", "from_seq", "to_seq", "mode"}`` with ``mode``
  ``resend`` (trades ``from_seq + 1 .. to_seq`` follow, then live ones) or ``snapshot`` (the feed cannot
  resend that far back: a snapshot follows instead); ``{"type": "trade", "symbol", "seq", "price", "qty",
  "buy_order_id", "sell_order_id", "resent"}``; ``{"type": "heartbeat", "ts"}`` when idle.
"""

from __future__ import annotations

STREAM_PATH = "/stream"
"""The feed's WebSocket path on the target (the same host and port as its HTTP API)."""

STREAM_PREFIX = "stream"
"""Each load process writes ``<ledger dir>/stream-<pid>.jsonl``; the conductor merges them."""

# ---- the feed's wire protocol
OP_SUBSCRIBE = "subscribe"
MSG_SNAPSHOT = "snapshot"
MSG_RESUME = "resume"
MSG_TRADE = "trade"
MSG_HEARTBEAT = "heartbeat"
MODE_RESEND = "resend"
MODE_SNAPSHOT = "snapshot"
RESUME_MODES: frozenset[str] = frozenset({MODE_RESEND, MODE_SNAPSHOT})

# ---- the stream ledger's events
EV_CONNECT = "connect"
"""A connection opened and subscribed: ``attempt`` (1 for the first of an outage), ``connect_ms``."""
EV_CONNECT_ERROR = "connect_error"
"""A connection attempt failed: ``attempt``, ``error``."""
EV_SNAPSHOT = "snapshot"
"""A snapshot arrived: ``symbol``, ``seq`` (the subscriber holds everything up to it)."""
EV_RESUME = "resume"
"""The feed answered a resume: ``symbol``, ``from_seq``, ``to_seq``, ``mode`` (resend | snapshot)."""
EV_MSG = "msg"
"""A trade arrived: ``symbol``, ``seq``, ``resent`` (true when it came as part of a resend)."""
EV_GAP = "gap"
"""A trade arrived past the next expected one: ``symbol``, ``from_seq``..``to_seq`` are missing."""
EV_DISCONNECT = "disconnect"
"""The connection ended: ``reason`` (closed, error, stale: no message for the heartbeat timeout)."""
EV_RECONNECT = "reconnect"
"""Subscribed again after a disconnect: ``duration_ms`` from the disconnect, ``attempts``."""
EV_HEARTBEAT = "heartbeat"
"""The feed's heartbeat arrived: the subscriber was connected and listening at ``ts``."""
EV_FILL = "fill"
"""The subscriber's own order appeared on the stream: ``order_id``, ``symbol``, ``seq``, ``ttff_ms`` (from
the submit's acknowledgement)."""

EVENTS: frozenset[str] = frozenset(
    {
        EV_CONNECT,
        EV_CONNECT_ERROR,
        EV_SNAPSHOT,
        EV_RESUME,
        EV_MSG,
        EV_GAP,
        EV_DISCONNECT,
        EV_RECONNECT,
        EV_HEARTBEAT,
        EV_FILL,
    }
)
"""Every event of the stream ledger."""

LISTENING_EVENTS: frozenset[str] = frozenset({EV_SNAPSHOT, EV_RESUME, EV_MSG, EV_HEARTBEAT})
"""The events that prove the feed was reaching the subscriber at their ``ts`` (what it is owed ends
there)."""

REQUIRED_FIELDS: tuple[str, ...] = ("ts", "client_id", "event")
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    EV_CONNECT: ("attempt", "connect_ms"),
    EV_CONNECT_ERROR: ("attempt", "error"),
    EV_SNAPSHOT: ("symbol", "seq"),
    EV_RESUME: ("symbol", "from_seq", "to_seq", "mode"),
    EV_MSG: ("symbol", "seq"),
    EV_GAP: ("symbol", "from_seq", "to_seq"),
    EV_DISCONNECT: ("reason",),
    EV_RECONNECT: ("duration_ms", "attempts"),
    EV_HEARTBEAT: (),
    EV_FILL: ("order_id", "symbol", "seq", "ttff_ms"),
}
"""The fields each event carries besides :data:`REQUIRED_FIELDS`."""
