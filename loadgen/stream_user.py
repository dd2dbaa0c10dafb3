"""Locust's market-data subscribers: ``StreamUser``, run beside the traders when
``RESGATE_STREAM_SUBSCRIBERS`` is above 0 (its ``fixed_count``; abstract, so never spawned, otherwise).

Each one subscribes to every symbol on the target's feed (``ws://<host>/stream``) in a greenlet of its own
(:class:`loadgen.stream_client.Subscriber`), and as its task submits a marketable order now and then
through the same ledger client as the traders, so that the time from the order's acknowledgement to its
first fill on the stream is measured. Everything the subscriber sees goes to this process's stream ledger
``$RESGATE_LEDGER_DIR/stream-<pid>.jsonl`` (vocabulary :mod:`resgate.contract.stream`), one of the
process's parts (:func:`loadgen.ledger_plugin.register_part`): flushed with the client ledger once a second,
on test stop and at exit, and counted by the process's completion marker, so a distributed load judges
each worker's stream part whole or not as it judges its ledger part. The same locustfile runs on Fargate:
only the environment differs.
"""

from __future__ import annotations

import atexit
import itertools
import random
import secrets
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task

from loadgen.ledger import LedgerWriter
from loadgen.ledger_client import LedgerClient
from loadgen.ledger_plugin import CONFIG, register_part
from loadgen.stream_client import Subscriber, SubscriberState
from resgate.contract.stream import STREAM_PATH, STREAM_PREFIX

STREAM = LedgerWriter(CONFIG.ledger_dir, prefix=STREAM_PREFIX, flush_every=CONFIG.flush_every)
register_part(STREAM)  # flushed once a second with the client ledger, and counted by the completion marker
_NUMBERS = itertools.count(1)
_CENT = Decimal("0.01")


def stream_url(host: str) -> str:
    """The feed's WebSocket URL for an HTTP(S) host: ``http://h:p`` → ``ws://h:p/stream``."""
    base = host.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + STREAM_PATH
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + STREAM_PATH
    return base + STREAM_PATH


def flush_stream(**_kw: Any) -> None:
    """Write the buffered stream records (idempotent)."""
    STREAM.flush()


class StreamUser(FastHttpUser):
    """A subscriber to every symbol that also trades a little, to time its own fills on the stream."""

    abstract = CONFIG.stream_subscribers <= 0
    fixed_count = CONFIG.stream_subscribers
    wait_time = between(0.5, 1.5)
    connection_timeout = CONFIG.connect_timeout_s
    network_timeout = CONFIG.network_timeout_s
    max_retries = 0
    concurrency = 1

    def on_start(self) -> None:
        self.client_id = f"s{CONFIG.node}-{next(_NUMBERS)}"
        self.api = LedgerClient(self, client_id=self.client_id, config=CONFIG)
        self.state = SubscriberState(self.client_id, list(CONFIG.symbols))
        self.subscriber = Subscriber(
            stream_url(self.host or ""),
            self.state,
            STREAM.write,
            connect_timeout_s=CONFIG.connect_timeout_s,
        )
        self.nkey = 0
        self._greenlet = gevent.spawn(self.subscriber.run)

    def on_stop(self) -> None:
        self.subscriber.stop()
        self._greenlet.kill(block=True, timeout=2)
        STREAM.flush()

    @task
    def marketable_order(self) -> None:
        symbol = random.choice(CONFIG.symbols)
        side = random.choice(("buy", "sell"))
        ref = CONFIG.ref_prices[symbol]
        band = Decimal(str(CONFIG.price_band_pct)) / 100
        price = ref * (1 + band) if side == "buy" else ref * (1 - band)  # crosses the resting book
        body = {
            "client_id": self.client_id,
            "symbol": symbol,
            "side": side,
            "qty": 1,
            "price": str(max(_CENT, price.quantize(_CENT, rounding=ROUND_HALF_UP))),
        }
        self.nkey += 1
        key = f"{self.client_id}-{self.nkey}-{secrets.token_hex(4)}"
        result = self.api.call("submit_order", "POST", "/orders", body=body, key=key)
        order_id = result.data.get("order_id") if isinstance(result.data, dict) else None
        if result.outcome == "ok" and order_id:
            self.state.order_acknowledged(str(order_id), time.time())


events.test_stop.add_listener(flush_stream)
events.quitting.add_listener(flush_stream)
atexit.register(flush_stream)
