"""Locust traffic for an order gateway: traders that submit, cancel, quote and read, with a client ledger.

``TraderUser`` (a ``FastHttpUser``) has a unique ``client_id`` and mostly submits limit orders on a small
set of symbols at prices within a band around a reference, so buys and sells cross and trades happen;
it also cancels its own open orders, asks for RFQs and reads orders and RFQs back. Every order carries a
fresh ``Idempotency-Key``; its requests go through :class:`loadgen.ledger_client.LedgerClient`, which
retries with the same key and bytes and gives each attempt its ledger fields through the ledger plugin's
API (:mod:`loadgen.ledger_plugin`, which writes ``$RESGATE_LEDGER_DIR/ledger-<pid>.jsonl`` and the live
files, and flushes them). The settings are the plugin's (:mod:`loadgen.load_config`, read once at
import). The target is Locust's ``--host`` (or ``LOCUST_HOST``).
"""

from __future__ import annotations

import itertools
import logging
import random
import secrets
import sys
from collections import deque
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from locust import FastHttpUser, between, task

try:
    import loadgen
except ImportError:
    loadgen = None  # type: ignore[assignment]
if loadgen is None or getattr(loadgen, "__file__", None) is None:
    # Not importable, or only as a namespace package (an editable install made before loadgen had an
    # __init__.py): import the package this file belongs to.
    sys.modules.pop("loadgen", None)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import loadgen

from loadgen.ledger_client import LedgerClient
from loadgen.ledger_plugin import CONFIG, paced_wait_time
from loadgen.stream_user import StreamUser  # noqa: F401  (Locust runs it when RESGATE_STREAM_SUBSCRIBERS > 0)

log = logging.getLogger("resgate.loadgen")

CLOSED_ORDER_STATES = frozenset({"filled", "cancelled", "canceled", "rejected"})
_CENT = Decimal("0.01")
_USER_NUMBERS = itertools.count(1)


# --------------------------------------------------------------------------------------------- the user


class TraderUser(FastHttpUser):
    """A trader with its own ``client_id``: orders (most traffic), cancels, RFQs and reads, with retries."""

    # Open model (load.arrival_rate): a constant-throughput schedule, requests timed from their intended start
    wait_time = paced_wait_time if CONFIG.arrival_rate else between(CONFIG.wait_min_s, CONFIG.wait_max_s)
    connection_timeout = CONFIG.connect_timeout_s
    network_timeout = CONFIG.network_timeout_s
    max_retries = 0  # retries are ours (same key, recorded); the HTTP client must never resend on its own
    concurrency = 1  # one request at a time per trader

    def on_start(self) -> None:
        self.client_id = f"c{CONFIG.node}-{next(_USER_NUMBERS)}"
        self.seq = 0
        self.open_orders: deque[str] = deque(maxlen=50)
        self.known_orders: deque[str] = deque(maxlen=100)
        self.rfq_ids: deque[str] = deque(maxlen=20)
        self.api = LedgerClient(self, client_id=self.client_id, config=CONFIG)

    # -------------------------------------------------------------- tasks

    @task(70)
    def submit_order(self) -> None:
        symbol = random.choice(CONFIG.symbols)
        ref = CONFIG.ref_prices[symbol]
        band = Decimal(str(random.uniform(-CONFIG.price_band_pct, CONFIG.price_band_pct))) / 100
        price = max(_CENT, (ref * (1 + band)).quantize(_CENT, rounding=ROUND_HALF_UP))
        body = {
            "client_id": self.client_id,
            "symbol": symbol,
            "side": random.choice(("buy", "sell")),
            "qty": random.randint(1, CONFIG.max_qty),
            "price": str(price),
        }
        key = self._new_key()
        result = self.api.call("submit_order", "POST", "/orders", body=body, key=key)
        order_id = result.data.get("order_id") if isinstance(result.data, dict) else None
        if result.outcome == "ok" and random.random() < CONFIG.resend_ratio:
            # The same order again, same key and bytes: an idempotent gateway answers with the original.
            self.api.call("submit_order", "POST", "/orders", body=body, key=key, extra={"resend": True})
        if result.outcome == "ok" and order_id:
            self.known_orders.append(str(order_id))
            if str(result.data.get("status", "open")).lower() not in CLOSED_ORDER_STATES:
                self.open_orders.append(str(order_id))

    @task(10)
    def cancel_order(self) -> None:
        if not self.open_orders:
            self.submit_order()
            return
        order_id = self.open_orders.popleft() if random.random() < 0.5 else self.open_orders.pop()
        self.api.call(
            "cancel_order", "POST", f"/orders/{order_id}/cancel", key=self._new_key(), order_id=order_id
        )

    @task(8)
    def rfq(self) -> None:
        body = {
            "client_id": self.client_id,
            "symbol": random.choice(CONFIG.symbols),
            "side": random.choice(("buy", "sell")),
            "qty": random.randint(1, CONFIG.max_qty),
        }
        result = self.api.call("rfq", "POST", "/rfqs", body=body, key=self._new_key())
        if result.outcome == "ok" and isinstance(result.data, dict) and result.data.get("rfq_id"):
            self.rfq_ids.append(str(result.data["rfq_id"]))

    @task(8)
    def get_order(self) -> None:
        if not self.known_orders:
            self.submit_order()
            return
        order_id = random.choice(self.known_orders)
        self.api.call("get_order", "GET", f"/orders/{order_id}", order_id=order_id)

    @task(4)
    def get_rfq(self) -> None:
        if not self.rfq_ids:
            self.rfq()
            return
        rfq_id = random.choice(self.rfq_ids)
        self.api.call("get_rfq", "GET", f"/rfqs/{rfq_id}", extra={"rfq_id": rfq_id})

    # -------------------------------------------------------------- keys

    def _new_key(self) -> str:
        self.seq += 1
        return f"{self.client_id}-{self.seq}-{secrets.token_hex(4)}"
