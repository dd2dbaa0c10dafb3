"""A small market-data feed for load-generator tests: ``GET /stream`` (a WebSocket speaking
:mod:`resgate.contract.stream`'s protocol) and ``POST /orders`` (acknowledged at once), on 127.0.0.1.

A subscriber gets a snapshot per symbol it asks for, then a trade every ``trade_every_s`` on a symbol in
turn (sequences per symbol 1, 2, 3, ...) and a heartbeat between them. Enough for Locust's ``StreamUser``
to write a stream ledger; nothing is persisted. aiohttp, in a thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from typing import Any

from aiohttp import WSMsgType, web

from resgate.contract import stream as proto


class FakeFeed:
    """Run the feed in a background thread; use as a context manager. ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, *, trade_every_s: float = 0.05) -> None:
        self.trade_every_s = trade_every_s
        self.url = ""
        self._orders = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        msg = await ws.receive(timeout=5)
        if msg.type != WSMsgType.TEXT:
            return ws
        symbols = list(json.loads(msg.data).get("symbols") or ["AAPL"])
        seqs = dict.fromkeys(symbols, 0)
        for s in symbols:
            await ws.send_json({"type": proto.MSG_SNAPSHOT, "symbol": s, "seq": 0, "price": "100.00"})
        for n in itertools.count():
            if ws.closed:
                break
            s = symbols[n % len(symbols)]
            seqs[s] += 1
            trade = {"type": proto.MSG_TRADE, "symbol": s, "seq": seqs[s], "price": "100.00", "qty": 1}
            try:
                await ws.send_json({**trade, "buy_order_id": None, "sell_order_id": None, "resent": False})
                await ws.send_json({"type": proto.MSG_HEARTBEAT, "ts": 0})
            except (ConnectionError, RuntimeError):  # the subscriber went away
                break
            await asyncio.sleep(self.trade_every_s)
        return ws

    async def _order(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"order_id": f"o{next(self._orders)}", "status": "accepted"})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get(proto.STREAM_PATH, self._stream),
                web.post("/orders", self._order),
                web.get("/ready", self._health),
            ]
        )
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> FakeFeed:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the fake feed did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
