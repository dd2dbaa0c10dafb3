"""Seeded bugs, switched on by ``PAPERBROKER_BUGS=<comma list>`` (all off by default).

Each bug breaks one property the gate checks; the gate must fail every one of them with the check that
names it:

- ``no_idempotency``: the (client_id, idempotency_key) guard and event dedupe are gone → duplicate orders
  and double fills (integrity: duplicates).
- ``projector_double_apply``: projectors apply redelivered events again → read models drift from a
  rebuild (replay).
- ``ack_before_commit``: the gateway answers 201 before the order is durable → a killed replica loses
  acknowledged orders (integrity: lost).
- ``slow_start``: readiness takes longer than the 30 s recovery objective (recovery).
- ``matcher_double_fill``: a redelivered order can fill twice (integrity: double fills).
- ``projection_drift``: a projector silently drops a field or a row class → a rebuild no longer matches
  (replay).

Four that break a trading invariant, each only under failure:

- ``matcher_restore_rounds_price``: a restarted matcher rebuilds its book from the snapshot with each
  resting order's limit rounded to a whole unit → after a matcher restart, fills above a buy's limit or
  below a sell's (integrity: price_outside_limit).
- ``matcher_snapshot_keeps_cancelled``: the matcher's snapshot saves a cancelled order like a resting one
  (only filled orders are deleted) → after a matcher restart the cancelled order is back in the book and
  fills after its confirmed cancel (integrity: fill_after_cancel).
- ``gateway_retry_stale_copy``: a retried order (the client's ``X-Request-Attempt`` header is above 1) is
  rebuilt from the replica's cached copy of that client's previous order, keeping only the quantity → a
  retry after a failover is stored with another symbol, side or price than was sent (integrity:
  order_mismatch).
- ``positions_double_count``: the positions projection applies a redelivered trade again → after a
  redelivery or a projector restart, positions no longer equal the signed sum of the fills (integrity:
  position_mismatch; replay too).

Two that break the event log's guarantees to its readers, each only under failure:

- ``gateway_sheds_after_write``: the gateway refuses an order with 503 when the outbox is more than a
  second behind (the broker is slow or down), but checks after writing the order and its event; a retry
  is refused the same way → a client told its order certainly failed, and consumers read its
  ``OrderAccepted`` once the broker is back (integrity: aborted_read).
- ``projector_skips_backlog``: a restarted projector skips each partition it consumed before to its end
  (and commits there) instead of resuming at the group's committed offset, to be ready sooner → the
  events that arrived while it was down are never applied (integrity: offset_skip; unseen_by_projector
  and replay too).

Two only the network finds (a process fault or a Postgres restart fails fast and never shows them):

- ``no_db_deadline``: the gateway's requests wait on the database with no deadline → behind a partition
  that swallows bytes they hang, and the pooled connections stuck in them never come back (recovery:
  the error ratio after the 30 s partition stays at 1.0).
- ``no_connect_timeout``: the gateway's pool connects with no timeout → connections opened during a
  partition never finish and starve the pool long after the path is back (recovery, as above).

One only an overload burst finds (a calm load never fills the pool):

- ``unbounded_queue``: the gateway admits every request and queues it, without bound, for a database
  connection (no in-flight limit, no wait limit) instead of answering 503 + Retry-After when it is
  saturated → a burst far beyond capacity times requests out instead of shedding them, and the queue
  left behind (requests whose clients gave up are still served) keeps latency high and throughput low
  for seconds after the burst (backpressure; recovery: the throughput in the after-window). Its timeouts
  all carry an idempotency key, so retryable rightly allows them (a retry is safe).

One only a leader loss finds (:mod:`paperbroker.lease`):

- ``unfenced_leader``: the matcher's writes skip the store's fencing token check (and the server's end of
  a transaction left idle past the lease), a failed or refused renewal is ignored and a lease renewed
  within the last 10 s is taken to be still held → a leader paused past its lease (or cut off from it by
  a partition) matches again beside its successor (split brain: the same orders filled twice, trades
  under one id with other contents; integrity: duplicate_trade; recovery: split_brain, stale_leader).

Two only a market-data subscriber finds:

- ``feed_no_resend``: the feed answers a subscriber's resume after a reconnect with mode ``resend`` but
  sends only the live trades after it → the gap a killed feed replica opened is never healed
  (streaming: gap_not_healed).
- ``feed_drops_silently``: on a projector restart the feed unregisters its subscribers without closing
  their WebSockets (they should be closed with 1012, to resubscribe) → their connections stay up on
  heartbeats alone, none reconnects, and no trade reaches them again (streaming: silent_subscriber).

One only a golden profile finds (every absolute limit still passes):

- ``slow_orders``: every order takes :data:`SLOW_ORDERS_S` (50 ms) longer (slo: a regression of the
  steady and baseline phases against the gate's golden profile, ``resgate baseline set``).
"""

from __future__ import annotations

import os

from resgate.contract.errors import ConfigError

ENV_BUGS = "PAPERBROKER_BUGS"
SLOW_ORDERS_S = 0.05

KNOWN_BUGS = frozenset(
    {
        "no_idempotency",
        "projector_double_apply",
        "ack_before_commit",
        "slow_start",
        "matcher_double_fill",
        "projection_drift",
        "no_db_deadline",
        "no_connect_timeout",
        "slow_orders",
        "matcher_restore_rounds_price",
        "matcher_snapshot_keeps_cancelled",
        "gateway_retry_stale_copy",
        "positions_double_count",
        "unbounded_queue",
        "unfenced_leader",
        "gateway_sheds_after_write",
        "projector_skips_backlog",
        "feed_no_resend",
        "feed_drops_silently",
    }
)


def parse_bugs(value: str | None) -> frozenset[str]:
    """Parse a comma list of bug names; an unknown name is a ConfigError naming it."""
    if not value:
        return frozenset()
    names = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(names - KNOWN_BUGS)
    if unknown:
        raise ConfigError(f"unknown seeded bug(s) {unknown}; known: {sorted(KNOWN_BUGS)}", where=ENV_BUGS)
    return frozenset(names)


def active_bugs(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The bugs switched on in the environment (``PAPERBROKER_BUGS``)."""
    env = os.environ if environ is None else environ
    return parse_bugs(env.get(ENV_BUGS))


def bug_on(name: str, environ: dict[str, str] | None = None) -> bool:
    """True when seeded bug ``name`` is switched on."""
    if name not in KNOWN_BUGS:
        raise ValueError(f"not a seeded bug: {name}")
    return name in active_bugs(environ)
