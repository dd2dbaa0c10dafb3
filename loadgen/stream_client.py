"""A market-data subscriber: subscribes to the feed's WebSocket, reconnects with backoff, resumes from the
last sequence it holds, and records what it saw into the stream ledger.

:class:`SubscriberState` is the pure part: it turns each feed message into stream-ledger records
(:mod:`resgate.contract.stream`): every trade's sequence (``msg``), every gap it noticed, snapshots,
resume answers, and the fills of the orders its user acknowledged (time to first fill). :class:`Subscriber`
is the transport (``websocket-client``, cooperative under Locust's gevent): connect, subscribe (with
``resume`` after the first time), read with a timeout of :attr:`Subscriber.stale_after_s` (a feed that sends
heartbeats is never that quiet), and on any end record the disconnect, back off (doubling, capped) and
reconnect (the first attempt after ``backoff_initial_s`` with jitter), recording each reconnect's
duration. Every loop is bounded by the ``stop`` check.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from resgate.contract import stream as sl

Record = dict[str, Any]
YIELD_EVERY = 20  # messages read between two explicit yields to the other greenlets


class SubscriberState:
    """What one subscriber holds: the last sequence per symbol, and its own acknowledged orders."""

    def __init__(self, client_id: str, symbols: list[str]) -> None:
        self.client_id = client_id
        self.symbols = list(symbols)
        self.last: dict[str, int] = {}
        self.pending_fills: dict[str, float] = {}  # order_id -> ack time (epoch s)

    def rec(self, event: str, now: float, **fields: Any) -> Record:
        """A stream-ledger record."""
        return {"ts": now, "client_id": self.client_id, "event": event, **fields}

    def subscribe_request(self) -> dict[str, Any]:
        """The subscribe message: every symbol, resuming the ones it holds a sequence for."""
        body: dict[str, Any] = {"op": sl.OP_SUBSCRIBE, "symbols": self.symbols}
        if self.last:
            body["resume"] = dict(self.last)
        return body

    def order_acknowledged(self, order_id: str, now: float) -> None:
        """The user's order was acknowledged at ``now``; its first fill on the stream is timed from it."""
        self.pending_fills[order_id] = now

    def on_message(self, msg: dict[str, Any], now: float) -> list[Record]:
        """The records one feed message makes (a heartbeat: one, that says the subscriber was listening)."""
        kind = msg.get("type")
        symbol = msg.get("symbol")
        if kind == sl.MSG_SNAPSHOT and isinstance(symbol, str):
            seq = int(msg.get("seq") or 0)
            self.last[symbol] = seq
            return [self.rec(sl.EV_SNAPSHOT, now, symbol=symbol, seq=seq)]
        if kind == sl.MSG_RESUME and isinstance(symbol, str):
            return [
                self.rec(
                    sl.EV_RESUME,
                    now,
                    symbol=symbol,
                    from_seq=msg.get("from_seq"),
                    to_seq=msg.get("to_seq"),
                    mode=msg.get("mode"),
                )
            ]
        if kind == sl.MSG_HEARTBEAT:
            return [self.rec(sl.EV_HEARTBEAT, now)]
        if kind != sl.MSG_TRADE or not isinstance(symbol, str):
            return []
        seq = int(msg["seq"])
        out: list[Record] = []
        last = self.last.get(symbol)
        if last is not None and seq <= last:
            return out  # already held (a resend overlapping what arrived live)
        if last is not None and seq > last + 1:
            out.append(self.rec(sl.EV_GAP, now, symbol=symbol, from_seq=last + 1, to_seq=seq - 1))
        self.last[symbol] = seq
        out.append(self.rec(sl.EV_MSG, now, symbol=symbol, seq=seq, resent=bool(msg.get("resent"))))
        for side in ("buy_order_id", "sell_order_id"):
            oid = msg.get(side)
            acked = self.pending_fills.pop(str(oid), None) if oid else None
            if acked is not None:
                ttff = round(max(0.0, now - acked) * 1000.0, 3)
                out.append(self.rec(sl.EV_FILL, now, order_id=str(oid), symbol=symbol, seq=seq, ttff_ms=ttff))
        return out


class Subscriber:
    """The transport loop of one subscriber (see the module docstring); ``record`` writes one record."""

    def __init__(
        self,
        url: str,
        state: SubscriberState,
        record: Callable[[Record], None],
        *,
        connect_timeout_s: float = 2.0,
        stale_after_s: float = 3.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 2.0,
    ) -> None:
        self.url = url
        self.state = state
        self.record = record
        self.connect_timeout_s = connect_timeout_s
        self.stale_after_s = stale_after_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stopped = False
        self._ws: Any = None

    def stop(self) -> None:
        """Ask the loop to end; the open connection is closed."""
        self.stopped = True
        ws = self._ws
        if ws is not None:
            try:
                ws.close(timeout=0.2)
            except Exception:  # closing a broken socket: nothing left to do
                pass

    def run(self) -> None:
        """Subscribe, read, reconnect with backoff until :meth:`stop`."""
        import websocket  # websocket-client

        down_since: float | None = None
        attempts = 0
        backoff = self.backoff_initial_s
        while not self.stopped:
            attempts += 1
            t0 = time.time()
            try:
                ws = websocket.create_connection(
                    self.url, timeout=self.connect_timeout_s, enable_multithread=True
                )
                ws.send(json.dumps(self.state.subscribe_request()))
            except Exception as e:
                if self.stopped:
                    return
                self.record(self.state.rec(sl.EV_CONNECT_ERROR, time.time(), attempt=attempts, error=_err(e)))
                if down_since is None:
                    down_since = t0
                time.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(self.backoff_max_s, backoff * 2)
                continue
            self._ws = ws
            now = time.time()
            self.record(
                self.state.rec(sl.EV_CONNECT, now, attempt=attempts, connect_ms=round((now - t0) * 1000, 3))
            )
            if down_since is not None:
                self.record(
                    self.state.rec(
                        sl.EV_RECONNECT,
                        now,
                        duration_ms=round((now - down_since) * 1000, 3),
                        attempts=attempts,
                    )
                )
            attempts, backoff, down_since = 0, self.backoff_initial_s, None
            reason = self._read(ws)
            self._ws = None
            try:
                ws.close(timeout=0.2)
            except Exception:  # already broken
                pass
            if self.stopped:
                return
            down_since = time.time()
            self.record(self.state.rec(sl.EV_DISCONNECT, down_since, reason=reason))
            # a client waits (with jitter) before it reconnects, so a fleet does not stampede the feed
            time.sleep(self.backoff_initial_s * (0.5 + random.random() / 2))

    def _read(self, ws: Any) -> str:
        import websocket

        ws.settimeout(self.stale_after_s)
        n = 0
        while not self.stopped:
            n += 1
            if n % YIELD_EVERY == 0:
                # Under gevent (Locust) a read that finds data never yields: a busy feed would starve
                # every other user of the process without this.
                time.sleep(0)
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                return "stale"
            except websocket.WebSocketConnectionClosedException:
                return "closed"
            except Exception as e:
                return f"error: {_err(e)}"
            if not raw:
                return "closed"
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            now = time.time()
            for r in self.state.on_message(msg, now):
                self.record(r)
        return "stopped"


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:200]
