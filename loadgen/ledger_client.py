"""One Locust user's HTTP requests: retries with the same key and body, every attempt in the ledger.

:class:`LedgerClient` wraps a ``FastHttpUser``'s client. A request that times out, loses its connection
or gets 429/502/503/504 is retried (at most ``max_attempts`` attempts, pausing for ``Retry-After`` or an
exponential backoff, capped) with the **same** ``Idempotency-Key`` and the **same** body bytes: that is
what exercises the target's idempotency. Every attempt is one Locust request (``catch_response``: a 2xx
is a success, anything else a failure), numbered in the ``X-Request-Attempt`` header, and one line of the
client ledger, written by
:mod:`loadgen.ledger_plugin` with the fields this client adds (``ts`` attempt start,
``op``, ``client_id``, ``idempotency_key``, ``order_id``, ``status``, ``outcome``, ``latency_ms`` as
Locust measured it, ``attempt``, ``symbol``, ``side``, ``qty``, ``price`` (a number), ``retry_after``,
``error``, ``rfq_id`` for RFQs, and ``order_status``/``filled_qty`` when a read's or a cancel's answer
carries them). Once the load is stopping no request or retry starts; an attempt cut
off by the stop is recorded too, as ``conn_error``/``info``, so the ledger and Locust's counts always
agree.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

import gevent
from gevent import GreenletExit
from locust import FastHttpUser
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING
from locust.user.task import LOCUST_STATE_STOPPING

from loadgen.ledger import is_retryable
from loadgen.ledger_plugin import classify_request, ledger_fields
from loadgen.load_config import LoadConfig
from resgate.contract.ledger import ATTEMPT_HEADER

ERROR_SNIPPET = 200
ORDER_STATE_OPS = frozenset({"get_order", "cancel_order"})
"""Ops whose answer describes an order: its status and filled quantity go into the ledger record."""


def order_state_fields(data: dict[str, Any]) -> dict[str, Any]:
    """``{order_status?, filled_qty?}`` from an order's JSON (what the integrity check's reads need)."""
    out: dict[str, Any] = {}
    status = data.get("status")
    if isinstance(status, str) and status:
        out["order_status"] = status
    filled = data.get("filled_qty")
    if isinstance(filled, (int, float)) and not isinstance(filled, bool):
        out["filled_qty"] = filled
    return out


@dataclass
class Attempt:
    """What one request attempt came to (also what was written to the ledger)."""

    status: int | str
    outcome: str
    data: Any = None
    retry_after: float | None = None


def classify(resp: Any) -> tuple[Attempt, str | None]:
    """The attempt's status, outcome, decoded body and Retry-After, and an error text for failures.

    The status, outcome and Retry-After are :func:`loadgen.ledger_plugin.classify_request`'s (judged on the
    exception the request itself raised, before the with-block marks it); a 2xx body is decoded as JSON.
    """
    status, outcome, retry_after, error = classify_request(resp, resp.request_meta.get("exception"))
    data: Any = None
    if outcome == "ok":
        content = resp.content
        try:
            data = json.loads(content) if content else None
        except ValueError:
            error = f"unparseable body: {content[:ERROR_SNIPPET].decode('utf-8', errors='replace')}"
    return Attempt(status, outcome, data, retry_after), error


class LedgerClient:
    """One user's requests, with retries; every attempt is reported to Locust and written to the ledger."""

    def __init__(self, user: FastHttpUser, *, client_id: str, config: LoadConfig) -> None:
        self.user = user
        self.client_id = client_id
        self.config = config
        self.conn_opened = time.monotonic()

    def stopping(self) -> bool:
        """True once this user or the whole load is stopping."""
        runner = self.user.environment.runner
        return self.user._state == LOCUST_STATE_STOPPING or (
            runner is not None and runner.state in (STATE_STOPPING, STATE_CLEANUP, STATE_STOPPED)
        )

    def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short steps; False (at once) when the load is stopping."""
        deadline = time.monotonic() + seconds
        while True:
            if self.stopping():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            gevent.sleep(min(0.1, left))

    def call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        order_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Attempt:
        """Make a client request with retries; every attempt is recorded. Returns the last attempt.

        Once the load is stopping no new request is started (``StopUser`` ends this user); an attempt
        already in flight is finished and recorded, and no retry follows it. Before anything is sent the
        user yields once: Locust stops a user that was waiting between tasks by killing its greenlet (a
        ramp-down of the load shape does), and a kill asked for just as its wait ended would otherwise land
        in the middle of the request it had started (measured: 11 of 989 requests of an overload gate cut
        mid-request); here it lands before the request, which is then never sent.
        """
        gevent.sleep(0)
        if self.stopping():
            raise StopUser()
        # serialised once: every attempt sends the very same bytes under the same key
        payload = json.dumps(body, separators=(",", ":")) if body is not None else None
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        fields: dict[str, Any] = dict(extra or {})
        if body is not None:
            for f in ("symbol", "side", "qty"):
                if f in body:
                    fields[f] = body[f]
            if "price" in body:
                fields["price"] = float(body["price"])
        attempt = 0
        while True:
            attempt += 1
            headers[ATTEMPT_HEADER] = str(attempt)
            result = self._attempt(op, method, path, payload, headers, key, order_id, attempt, fields)
            if result.outcome == "ok" and isinstance(result.data, dict) and result.data.get("order_id"):
                order_id = str(result.data["order_id"])
            if not is_retryable(result.status) or attempt >= self.config.max_attempts:
                return result
            if result.retry_after is not None:
                delay = min(result.retry_after, self.config.retry_after_cap_s)
            else:
                delay = random.uniform(
                    0, min(self.config.backoff_base_s * 2 ** (attempt - 1), self.config.retry_after_cap_s)
                )
            if not self.pause(delay):
                return result

    def _recycle_connection(self) -> None:
        """Close this trader's connection once it is ``conn_max_age_s`` old; the next request opens a new
        one (between requests, so no request is ever cut off by it)."""
        if self.config.conn_max_age_s <= 0:
            return
        now = time.monotonic()
        if now - self.conn_opened >= self.config.conn_max_age_s:
            self.user.client.client.close()
            self.conn_opened = now

    def _attempt(
        self,
        op: str,
        method: str,
        path: str,
        payload: str | None,
        headers: dict[str, str],
        key: str | None,
        order_id: str | None,
        attempt: int,
        fields: dict[str, Any],
    ) -> Attempt:
        """One request: report it to Locust (success iff 2xx); the plugin writes its ledger line with the
        fields set here (:func:`loadgen.ledger_plugin.ledger_fields`)."""
        self._recycle_connection()
        with ledger_fields(
            client_id=self.client_id, idempotency_key=key, order_id=order_id, attempt=attempt, **fields
        ) as record:
            return self._send(op, method, path, payload, headers, record)

    def _send(
        self,
        op: str,
        method: str,
        path: str,
        payload: str | None,
        headers: dict[str, str],
        record: dict[str, Any],
    ) -> Attempt:
        start = time.time()
        t0 = time.perf_counter()
        resp = None
        try:
            with self.user.client.request(
                method, path, data=payload, headers=headers, name=op, catch_response=True
            ) as resp:
                try:
                    result, error = classify(resp)
                except Exception as e:  # never lose the record of an attempt that was made
                    result, error = (
                        Attempt("conn_error", "info"),
                        f"unclassified response: {e!r}"[:ERROR_SNIPPET],
                    )
                # our classification, not the failure() we are about to report, goes into the ledger
                record.update(
                    status=result.status, outcome=result.outcome, retry_after=result.retry_after, error=error
                )
                data = result.data
                if isinstance(data, dict) and data.get("order_id") and op == "submit_order":
                    record["order_id"] = str(data["order_id"])
                if op == "rfq" and isinstance(data, dict) and data.get("rfq_id"):
                    record["rfq_id"] = str(data["rfq_id"])
                if op in ORDER_STATE_OPS and isinstance(data, dict):
                    record.update(order_state_fields(data))
                if result.outcome == "ok":
                    resp.success()
                else:
                    resp.failure(f"{result.status}: {error}" if error else str(result.status))
        except (GreenletExit, Exception) as e:
            if resp is not None:  # already reported by the with-block; nothing was lost
                raise
            # The attempt never came back: the load stopped (GreenletExit) or the client broke. The request
            # may have reached the server, so it is recorded as indeterminate, in the ledger and in Locust.
            killed = isinstance(e, GreenletExit)
            error = (
                "load stopped mid-request"
                if killed
                else f"client error: {type(e).__name__}: {e}"[:ERROR_SNIPPET]
            )
            result = Attempt("conn_error", "info")
            record.update(status=result.status, outcome=result.outcome, retry_after=None, error=error)
            self.user.environment.events.request.fire(
                request_type=method,
                name=op,
                response_time=(time.perf_counter() - t0) * 1000,
                response_length=0,
                response=None,
                context={},
                exception=RuntimeError(error),
                start_time=start,
                url=path,
            )
            if killed:
                raise
            return result
        return result
