"""The gateway's load shedding: a bound on the requests one replica serves at once.

A replica has a handful of pooled database connections; a request beyond what they can serve soon only
waits. So each replica admits at most ``max_in_flight`` requests at a time (``PB_MAX_IN_FLIGHT``, default
32: four per pooled connection, above the default gate's 20 users) and answers the next one at once with
**503 + Retry-After** and the error ``overloaded``: the client learns in a millisecond that it should
come back, with the same idempotency key, instead of timing out behind a queue. A shed request touched
nothing, so it is safe to retry; the requests already admitted keep a bounded wait (at most three other
requests ahead of them per connection, and the pool's own wait limit of 1.5 s, beyond which they too are
answered 503 + Retry-After).

The seeded bug ``unbounded_queue`` admits everything (:class:`Admission` with ``limit=None``) and waits
for a pooled connection as long as it takes: the pool's queue of waiters is the unbounded queue. Liveness
and readiness are never shed (a load balancer must not take a busy replica for a dead one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from paperbroker.gateway_api import ApiError

NEVER_SHED = frozenset({"/health", "/ready"})
UNBOUNDED_POOL_WAIT_S = 3600.0
"""The pool's wait limit under ``unbounded_queue`` (an hour: in effect none)."""


class Admission:
    """Counts the requests in flight; :meth:`middleware` sheds those beyond ``limit`` (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self.admitted = 0
        self.shed = 0

    def stats(self) -> dict[str, int | None]:
        """``{limit, in_flight, peak, admitted, shed}`` (shown on ``/ready``)."""
        return {
            "limit": self.limit,
            "in_flight": self.in_flight,
            "peak": self.peak,
            "admitted": self.admitted,
            "shed": self.shed,
        }

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Serve the request when a slot is free, else raise a 503 ``overloaded`` ApiError (Retry-After)."""
        if request.path in NEVER_SHED:
            return await handler(request)
        if self.limit is not None and self.in_flight >= self.limit:
            self.shed += 1
            raise ApiError(
                503,
                "overloaded",
                f"the gateway is serving {self.in_flight} requests (its limit); nothing was done: retry "
                "after Retry-After with the same Idempotency-Key",
            )
        self.in_flight += 1
        self.admitted += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
