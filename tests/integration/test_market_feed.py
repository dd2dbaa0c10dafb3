"""The market-data feed through the local ALB: a WebSocket upgrade passes to one healthy replica and its
bytes are spliced both ways; a subscriber whose replica dies reconnects through the balancer to another
one and resumes from its last sequence, and the feed resends the gap (or, with the seeded bug
``feed_no_resend``, does not, and the ``streaming`` check names the missing range). On a projector
restart, announced by the projector's own call over a real Postgres ``NOTIFY``, the feed closes its
subscribers so they resume (or, with the seeded bug ``feed_drops_silently``, drops them without a close:
they hear only heartbeats from then on, and the check names them ``silent_subscriber``).

The replicas are real aiohttp servers with :class:`paperbroker.feed.MarketFeed`, fed the same trades as the
topic would feed them (no Kafka needed); the subscriber is the load's own
:class:`loadgen.stream_client.Subscriber` (websocket-client) in a thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from loadgen.stream_client import Subscriber, SubscriberState
from paperbroker.feed import MarketFeed, announce_projector_session
from resgate.checks import streaming
from resgate.contract import stream as sl
from resgate.local.http_balancer import HttpBalancer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class FeedReplica:
    """One feed replica: an aiohttp server with a MarketFeed, on its own event loop thread."""

    def __init__(self, *, resend: bool = True, close_on_restart: bool = True) -> None:
        self.feed = MarketFeed(resend=resend, close_on_restart=close_on_restart)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        threading.Thread(target=self._serve, daemon=True).start()
        assert self._ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get(sl.STREAM_PATH, self.feed.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()

    def publish(self, event: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.feed.add_trade, event)

    def watch_projector(self, dsn: str) -> asyncio.Event:
        """Listen for projector sessions on ``dsn`` (the gateway's task); set the returned event to stop."""
        stop = asyncio.Event()
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self.feed.watch_projector(dsn, stop)))
        return stop

    def kill(self) -> None:
        """Stop serving: every open WebSocket ends, as when the replica's task is stopped."""
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _wait(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def feed_pair(request: pytest.FixtureRequest) -> Iterator[tuple[FeedReplica, FeedReplica]]:
    resend = getattr(request, "param", True)
    yield FeedReplica(resend=resend), FeedReplica(resend=resend)


def _run_failover(a: FeedReplica, b: FeedReplica) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """Trades 1-10 while subscribed to ``a``, 11-20 while ``a`` is dead, 21-30 on ``b``; returns the stream
    ledger and the published ``{seq: ts}``."""
    alive = [("127.0.0.1", a.port)]
    records: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(r: dict[str, Any]) -> None:
        with lock:
            records.append(r)

    def seqs() -> set[int]:
        with lock:
            return {int(r["seq"]) for r in records if r["event"] == sl.EV_MSG}

    published: dict[int, float] = {}

    def publish(lo: int, hi: int, replicas: list[FeedReplica]) -> None:
        for seq in range(lo, hi + 1):
            published[seq] = time.time()
            ev = {"symbol": "AAPL", "seq": seq, "price": "190", "qty": 1, "buy_order_id": f"o{seq}"}
            for r in replicas:
                r.publish(ev)

    with HttpBalancer(0, lambda: list(alive)) as bal:
        state = SubscriberState("s1", ["AAPL"])
        sub = Subscriber(f"ws://127.0.0.1:{bal.port}{sl.STREAM_PATH}", state, record, backoff_initial_s=0.05)
        t = threading.Thread(target=sub.run, daemon=True)
        t.start()
        try:
            _wait(lambda: any(r["event"] == sl.EV_SNAPSHOT for r in records))
            publish(1, 10, [a, b])
            _wait(lambda: seqs() >= set(range(1, 11)))
            alive[:] = [("127.0.0.1", b.port)]
            a.kill()
            _wait(lambda: any(r["event"] == sl.EV_DISCONNECT for r in records))
            publish(11, 20, [b])  # the subscriber is away: only the live replica gets them
            # The feed's resume answer, not the reconnect: the client records its reconnect as soon as it
            # has sent the subscribe, before the replica registered it, and trades published in between
            # come only as a resend (never, with feed_no_resend: seq 30 never arrived in one CI run).
            _wait(lambda: any(r["event"] == sl.EV_RESUME for r in records))
            publish(21, 30, [b])
            _wait(lambda: 30 in seqs())
            time.sleep(0.1)
            record(state.rec("disconnect", time.time(), reason="test end"))
        finally:
            sub.stop()
            t.join(5)
        assert bal.stats()["connections"] >= 2  # both WebSockets went through the balancer
    return records, published


def test_a_subscriber_through_the_balancer_resumes_on_another_replica_and_gets_the_gap_resent(
    feed_pair: tuple[FeedReplica, FeedReplica],
) -> None:
    records, published = _run_failover(*feed_pair)
    got = [int(r["seq"]) for r in records if r["event"] == sl.EV_MSG]
    assert got == list(range(1, 31))  # every trade once, in order: 11-20 came as a resend
    resumes = [r for r in records if r["event"] == sl.EV_RESUME]
    assert [(r["from_seq"], r["to_seq"], r["mode"]) for r in resumes] == [(10, 20, sl.MODE_RESEND)]
    assert not [r for r in records if r["event"] == sl.EV_GAP]
    result = streaming.check(
        streaming.StreamingEvidence(records=tuple(records), published={"AAPL": published}),
        streaming.StreamingThresholds(tail_grace_s=0.0),
    )
    assert result.valid is True, result.examples
    assert result.counts["completeness"] == 1.0 and result.counts["reconnects"] == 1


@pytest.mark.parametrize("feed_pair", [False], indirect=True)
def test_with_feed_no_resend_the_gap_stays_open_and_the_streaming_check_names_its_range(
    feed_pair: tuple[FeedReplica, FeedReplica],
) -> None:
    records, published = _run_failover(*feed_pair)
    gaps = [(r["from_seq"], r["to_seq"]) for r in records if r["event"] == sl.EV_GAP]
    assert gaps == [(11, 20)]
    result = streaming.check(
        streaming.StreamingEvidence(records=tuple(records), published={"AAPL": published}),
        streaming.StreamingThresholds(tail_grace_s=0.0),
    )
    assert result.valid is False
    assert [(e["kind"], e["symbol"], e["from_seq"], e["to_seq"]) for e in result.examples] == [
        ("gap_not_healed", "AAPL", 11, 20)
    ]


async def _announce(dsn: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await announce_projector_session(conn)


def _run_projector_restart(replica: FeedReplica, dsn: str) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """Trades 1-10, a projector session announced, then trades 11-20; the ledger ends after two heartbeats
    past trade 20 (or after 20 arrived). Returns the stream ledger and the published ``{seq: ts}``."""
    records: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(r: dict[str, Any]) -> None:
        with lock:
            records.append(r)

    def count(event: str) -> int:
        with lock:
            return sum(1 for r in records if r["event"] == event)

    def seqs() -> set[int]:
        with lock:
            return {int(r["seq"]) for r in records if r["event"] == sl.EV_MSG}

    published: dict[int, float] = {}

    def publish(lo: int, hi: int) -> None:
        for seq in range(lo, hi + 1):
            published[seq] = time.time()
            replica.publish(
                {"symbol": "AAPL", "seq": seq, "price": "190", "qty": 1, "buy_order_id": f"o{seq}"}
            )

    stop_watch = replica.watch_projector(dsn)
    state = SubscriberState("s1", ["AAPL"])
    url = f"ws://127.0.0.1:{replica.port}{sl.STREAM_PATH}"
    sub = Subscriber(url, state, record, backoff_initial_s=0.05)
    t = threading.Thread(target=sub.run, daemon=True)
    t.start()
    try:
        _wait(lambda: count(sl.EV_SNAPSHOT) == 1)
        publish(1, 10)
        _wait(lambda: seqs() >= set(range(1, 11)))
        _wait(lambda: replica.feed.watching)
        asyncio.run(_announce(dsn))
        _wait(lambda: replica.feed.projector_restarts == 1)
        publish(11, 20)
        beats = count(sl.EV_HEARTBEAT)
        _wait(lambda: 20 in seqs() or count(sl.EV_HEARTBEAT) >= beats + 2)
        time.sleep(0.1)
        record(state.rec("disconnect", time.time(), reason="test end"))
    finally:
        replica.loop.call_soon_threadsafe(stop_watch.set)
        sub.stop()
        t.join(5)
    return records, published


def test_a_projector_restart_closes_each_subscriber_which_resumes_and_gets_the_gap_resent(
    pg_dsn: str,
) -> None:
    records, published = _run_projector_restart(FeedReplica(), pg_dsn)
    assert [int(r["seq"]) for r in records if r["event"] == sl.EV_MSG] == list(range(1, 21))
    assert next(r["reason"] for r in records if r["event"] == sl.EV_DISCONNECT) != "test end"
    assert len([r for r in records if r["event"] == sl.EV_RECONNECT]) == 1
    result = streaming.check(
        streaming.StreamingEvidence(records=tuple(records), published={"AAPL": published}),
        streaming.StreamingThresholds(tail_grace_s=0.0, max_silence_s=1.0),
    )
    assert result.valid is True, result.examples
    assert result.counts["completeness"] == 1.0 and result.counts["silent"] == 0


def test_with_feed_drops_silently_a_projector_restart_leaves_subscribers_silent_and_the_check_names_them(
    pg_dsn: str,
) -> None:
    records, published = _run_projector_restart(FeedReplica(close_on_restart=False), pg_dsn)
    assert [int(r["seq"]) for r in records if r["event"] == sl.EV_MSG] == list(range(1, 11))
    assert not [r for r in records if r["event"] == sl.EV_RECONNECT]  # nothing told it to reconnect
    result = streaming.check(
        streaming.StreamingEvidence(records=tuple(records), published={"AAPL": published}),
        streaming.StreamingThresholds(tail_grace_s=0.0, max_silence_s=1.0),
    )
    assert result.valid is False
    silent = [e for e in result.examples if e["kind"] == "silent_subscriber"]
    assert [(e["client_id"], e["symbol"], e["from_seq"], e["to_seq"]) for e in silent] == [
        ("s1", "AAPL", 11, 20)
    ]
    assert silent[0]["silent_s"] > 1.0 and result.counts["unhealed"] == 10
