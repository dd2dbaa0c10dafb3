"""The market-data feed: trades from the executions topic, streamed to subscribers over a WebSocket.

Every gateway replica serves ``GET /stream`` (:data:`resgate.contract.stream.STREAM_PATH`) behind the same
balancer as its HTTP API. The replica reads the executions topic from its start with its own consumer (no
group: every replica holds every trade), keeps each symbol's trades in memory (the last
:data:`HISTORY_PER_SYMBOL`), and pushes each new trade to the subscribers of its symbol. The sequence of a
trade is the matcher's per-symbol ``seq``, so what a subscriber receives can be compared with the topic.

Protocol (spelt in :mod:`resgate.contract.stream`): a client subscribes with the symbols it wants and,
after a reconnect, the last sequence it holds per symbol. Without one it gets a ``snapshot`` (the last
sequence and price) and the trades after it. With one, the feed answers ``resume`` with mode ``resend``
and sends the missed trades from its history, or with mode ``snapshot`` and a fresh snapshot when its
history no longer reaches back that far (the client then knows which sequences it will never see). An
idle connection gets a ``heartbeat`` every :data:`HEARTBEAT_S`, so a client can tell a quiet market from
a dead connection. A broker fault stalls the consumer, so it shows on the stream as late trades.

A projector restart: the projector announces each new session with a Postgres ``NOTIFY`` on
:data:`PROJECTOR_CHANNEL` (:func:`announce_projector_session`), and every feed replica listens for it
(:meth:`MarketFeed.watch_projector`). The read models a subscriber reconciles with (the blotters, the
positions) may then be replayed, so the feed starts its subscribers over: it unregisters each one and
closes its WebSocket with code 1012 (service restart); each reconnects and resumes from its last
sequence, and the gap is resent.

Seeded bugs: ``feed_no_resend``: the feed answers a resume with mode ``resend`` but sends only the live
trades after it, so the gap a reconnect opened is never healed (streaming: gap_not_healed).
``feed_drops_silently``: on a projector restart the feed unregisters its subscribers without closing
them; their connections stay open and keep getting heartbeats, so no subscriber notices, none
reconnects, and no trade reaches them again (streaming: silent_subscriber, gap_not_healed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from resgate.contract import stream as proto

log = logging.getLogger("paperbroker.feed")

HEARTBEAT_S = 1.0
PROJECTOR_CHANNEL = "pb_projector"
"""The Postgres ``NOTIFY`` channel on which the projector announces each new session."""
CLOSE_SERVICE_RESTART = 1012  # RFC 6455 registry: the server is restarting, the client may reconnect
WATCH_RETRY_S = 0.5
HISTORY_PER_SYMBOL = 50_000
MAX_QUEUE = 100_000  # a subscriber this far behind is cut off (it reconnects and resumes)
TRADE_EXECUTED = "TradeExecuted"


def trade_message(event: dict[str, Any], *, resent: bool = False) -> dict[str, Any]:
    """The feed's ``trade`` message for a ``TradeExecuted`` event."""
    return {
        "type": proto.MSG_TRADE,
        "symbol": event["symbol"],
        "seq": int(event["seq"]),
        "price": str(event.get("price")),
        "qty": event.get("qty"),
        "buy_order_id": event.get("buy_order_id"),
        "sell_order_id": event.get("sell_order_id"),
        "ts": event.get("ts"),
        "resent": resent,
    }


class _Subscriber:
    """One WebSocket's subscriptions and its outgoing queue (a writer task drains it)."""

    def __init__(self) -> None:
        self.symbols: set[str] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.overflowed = False
        self.restart = False  # the writer closes the WebSocket with 1012 (start over)

    def put(self, msg: dict[str, Any]) -> None:
        if self.queue.qsize() >= MAX_QUEUE:
            self.overflowed = True
            return
        self.queue.put_nowait(msg)


class MarketFeed:
    """The trades of every symbol, as read from the topic, and the subscribers they go to.

    :meth:`add_trade` is the one way a trade enters (the consumer calls it; tests may too); a trade whose
    ``seq`` is not above the symbol's last one (a redelivery) is ignored. :meth:`subscribe` answers a
    subscribe request with the messages to send first, and registers the subscriber for what follows.
    """

    def __init__(
        self, *, resend: bool = True, close_on_restart: bool = True, history: int = HISTORY_PER_SYMBOL
    ) -> None:
        self.resend = resend
        self.close_on_restart = close_on_restart
        self.projector_restarts = 0
        self.watching = False  # LISTENing for projector sessions now
        self.trades: dict[str, deque[dict[str, Any]]] = {}
        self.last: dict[str, tuple[int, str]] = {}  # symbol -> (seq, price)
        self.subscribers: set[_Subscriber] = set()
        self.history = history

    def add_trade(self, event: dict[str, Any]) -> bool:
        """Record a ``TradeExecuted`` event and push it to the symbol's subscribers; False if a duplicate."""
        symbol, seq = str(event["symbol"]), int(event["seq"])
        last = self.last.get(symbol)
        if last is not None and seq <= last[0]:
            return False
        msg = trade_message(event)
        self.trades.setdefault(symbol, deque(maxlen=self.history)).append(msg)
        self.last[symbol] = (seq, msg["price"])
        for sub in self.subscribers:
            if symbol in sub.symbols:
                sub.put(msg)
        return True

    def _snapshot(self, symbol: str) -> dict[str, Any]:
        seq, price = self.last.get(symbol, (0, None))
        return {"type": proto.MSG_SNAPSHOT, "symbol": symbol, "seq": seq, "price": price}

    def _resend(self, symbol: str, from_seq: int) -> list[dict[str, Any]] | None:
        """The trades after ``from_seq`` from history, or None when history starts later than that."""
        last_seq = self.last.get(symbol, (0, None))[0]
        if from_seq >= last_seq:
            return []
        held = self.trades.get(symbol) or deque()
        if not held or held[0]["seq"] > from_seq + 1:
            return None
        return [{**m, "resent": True} for m in held if m["seq"] > from_seq]

    def subscribe(self, sub: _Subscriber, symbols: list[str], resume: dict[str, int]) -> list[dict[str, Any]]:
        """Register ``sub`` for ``symbols`` and return the messages it gets first (snapshot or resume)."""
        out: list[dict[str, Any]] = []
        for symbol in symbols:
            if symbol in resume:
                from_seq = int(resume[symbol])
                to_seq = self.last.get(symbol, (0, None))[0]
                missed = self._resend(symbol, from_seq)
                mode = proto.MODE_SNAPSHOT if missed is None else proto.MODE_RESEND
                out.append(
                    {
                        "type": proto.MSG_RESUME,
                        "symbol": symbol,
                        "from_seq": from_seq,
                        "to_seq": to_seq,
                        "mode": mode,
                    }
                )
                if missed is None:
                    out.append(self._snapshot(symbol))
                elif self.resend:  # feed_no_resend: says "resend" and sends nothing
                    out.extend(missed)
            else:
                out.append(self._snapshot(symbol))
            sub.symbols.add(symbol)
        self.subscribers.add(sub)
        return out

    def projector_restarted(self) -> int:
        """Start every subscriber over after a projector restart; returns how many were registered.

        Each is unregistered and (unless ``close_on_restart`` is off: seeded bug ``feed_drops_silently``)
        told to close with 1012, so it reconnects and resumes. Without the close its connection stays
        open, its writer goes on sending heartbeats, and no trade reaches it again."""
        self.projector_restarts += 1
        dropped = list(self.subscribers)
        self.subscribers.clear()
        if self.close_on_restart:
            for sub in dropped:
                sub.restart = True
                sub.queue.put_nowait({"type": proto.MSG_HEARTBEAT, "ts": time.time()})  # wake the writer
        log.info(
            "projector restarted: %d subscriber(s) %s",
            len(dropped),
            "closed to resubscribe" if self.close_on_restart else "dropped without a close",
        )
        return len(dropped)

    async def watch_projector(self, dsn: str, stop: asyncio.Event) -> None:
        """``LISTEN`` on :data:`PROJECTOR_CHANNEL` until ``stop``; each notification is a projector
        restart (:meth:`projector_restarted`). A lost database connection is opened again (notifications
        sent meanwhile are lost, as Postgres loses them for any listener that is not connected)."""
        import psycopg

        while not stop.is_set():
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(dsn, autocommit=True), 5.0)
                await conn.execute(f"LISTEN {PROJECTOR_CHANNEL}")
                self.watching = True
                while not stop.is_set():
                    async for _note in conn.notifies(timeout=WATCH_RETRY_S):
                        self.projector_restarted()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is down or restarting: listen again once it is back
                log.warning("feed projector watch failed (%s: %s); retrying", type(e).__name__, e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), WATCH_RETRY_S)
            finally:
                self.watching = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    # ------------------------------------------------------------------------------- the WebSocket
    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /stream``: the WebSocket of one subscriber."""
        ws = web.WebSocketResponse(heartbeat=None, autoping=True)
        await ws.prepare(request)
        sub = _Subscriber()
        writer = asyncio.create_task(self._write(ws, sub), name="feed-writer")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    body = json.loads(msg.data)
                    if body.get("op") != proto.OP_SUBSCRIBE:
                        raise ValueError("op must be subscribe")
                    symbols = [str(s) for s in body.get("symbols") or []]
                    resume = {str(k): int(v) for k, v in (body.get("resume") or {}).items()}
                except (ValueError, TypeError, AttributeError) as e:
                    sub.put({"type": "error", "message": str(e)})
                    continue
                for out in self.subscribe(sub, symbols, resume):
                    sub.put(out)
        finally:
            self.subscribers.discard(sub)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        return ws

    async def _write(self, ws: web.WebSocketResponse, sub: _Subscriber) -> None:
        while not ws.closed:
            try:
                msg = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                msg = {"type": proto.MSG_HEARTBEAT, "ts": time.time()}
            if sub.overflowed:
                await ws.close(code=1013, message=b"too far behind")
                return
            if sub.restart:
                await ws.close(code=CLOSE_SERVICE_RESTART, message=b"projector restarted: resubscribe")
                return
            try:
                await ws.send_str(json.dumps(msg, separators=(",", ":")))
            except (ConnectionError, RuntimeError):
                return

    # ------------------------------------------------------------------------------- the consumer
    async def consume(self, bootstrap: str, topic: str, stop: asyncio.Event) -> None:
        """Read ``topic`` from its start into :meth:`add_trade` until ``stop``; a broker fault is retried."""
        from aiokafka import AIOKafkaConsumer

        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            try:
                await consumer.start()
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200)
                    for _tp, records in batch.items():
                        for rec in records:
                            self._on_record(rec.value)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker is down: start over, history dedupes by seq
                log.warning("feed consumer failed (%s: %s); restarting", type(e).__name__, e)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _on_record(self, raw: bytes | None) -> None:
        if not raw:
            return
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if event.get("type") == TRADE_EXECUTED and "seq" in event and "symbol" in event:
            self.add_trade(event)


async def announce_projector_session(conn: Any) -> None:
    """Tell every feed replica that a projector session started (``NOTIFY`` on
    :data:`PROJECTOR_CHANNEL`; ``conn`` is an autocommit psycopg ``AsyncConnection``)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (PROJECTOR_CHANNEL, str(os.getpid())))
