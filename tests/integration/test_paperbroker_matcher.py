"""The matcher as a real process on the embedded Postgres and Kafka: matching, restart safety, dedupe.

The helpers at the top are shared with the projector and bugs-pipeline tests of paperbroker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from paperbroker.config import Topics, topic_names
from paperbroker.events import new_event
from paperbroker.matching import MatchingEngine
from resgate.local.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ helpers
def make_topics(kafka: Any, partitions: int = 3) -> tuple[str, Topics]:
    """Create a fresh pair of paperbroker topics; returns ``(prefix, Topics)``."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topics = topic_names(prefix)
    kafka.create_topic(topics.orders, partitions)
    kafka.create_topic(topics.executions, partitions)
    return prefix, topics


class Service:
    """A paperbroker service (``python -m paperbroker.<name>``) as a real subprocess."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.port = int(env["PORT"])
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Service:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"paperbroker.{self.name}"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL (no cleanup at all) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_ready(self, timeout_s: float = 30) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.logs()[-3000:]}")
            try:
                code, body = self.get("/ready")
            except OSError:
                return None
            return body if code == 200 else None

        return wait_until(ready, timeout_s, f"{self.name} ready")

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        )


def service_env(pg_dsn: str, bootstrap: str, prefix: str, bugs: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PAPERBROKER_BUGS",)}
    env.update(
        PB_DSN=pg_dsn,
        PB_KAFKA_BOOTSTRAP=bootstrap,
        PB_TOPIC_PREFIX=prefix,
        PAPERBROKER_BUGS=bugs,
        PORT=str(free_port()),
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Factory ``services(name, env) -> Service`` (started); every service is stopped after the test."""
    started: list[Service] = []

    def make(name: str, env: dict[str, str]) -> Service:
        svc = Service(name, dict(env), tmp_path).start()
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.kill()


def wait_until(fn: Callable[[], Any], timeout_s: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``fn`` until it returns something truthy; AssertionError naming ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval)


async def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    try:
        futs = [
            await producer.send(topic, json.dumps(e).encode(), key=str(e["symbol"]).encode()) for e in events
        ]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    """Publish events in order, key = symbol (like the gateway's relay and the matcher)."""
    asyncio.run(_produce(bootstrap, topic, events))


async def _read_topic(bootstrap: str, topic: str) -> list[tuple[int, int, dict[str, Any]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, int, dict[str, Any]]] = []
        for tp in tps:
            if ends[tp] == 0:
                continue
            consumer.seek(tp, 0)
            got = 0
            while got < ends[tp]:
                data = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                for rec in data.get(tp, []):
                    if rec.offset < ends[tp]:
                        out.append((tp.partition, rec.offset, json.loads(rec.value)))
                    got = rec.offset + 1
                if not data:
                    break
        return out
    finally:
        await consumer.stop()


def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every event of ``topic`` (partition by partition, in offset order)."""
    return [e for _p, _o, e in asyncio.run(_read_topic(bootstrap, topic))]


async def _end_offsets(bootstrap: str, topics: list[str]) -> dict[str, dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, dict[int, int]] = {}
        for t in topics:
            for _ in range(50):
                if consumer.partitions_for_topic(t):
                    break
                await consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for p in sorted(consumer.partitions_for_topic(t) or ())]
            ends = await consumer.end_offsets(tps)
            out[t] = {tp.partition: ends[tp] for tp in tps}
        return out
    finally:
        await consumer.stop()


def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, dict[int, int]]:
    """``{topic: {partition: end offset}}`` right now."""
    return asyncio.run(_end_offsets(bootstrap, topics))


def query(dsn: str, q: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            return conn.execute(q, args or None).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def matcher_done(dsn: str, topic: str, n_input: int) -> bool:
    """True when the matcher consumed ``n_input`` records of ``topic`` and its outbox is empty."""
    rows = query(dsn, "SELECT coalesce(sum(next_offset), 0) FROM matcher_offsets WHERE topic = %s", topic)
    if not rows or int(rows[0][0]) < n_input:
        return False
    return query(dsn, "SELECT count(*) FROM matcher_outbox")[0][0] == 0


def accepted(
    oid: str, side: str, qty: int, price: str, symbol: str = "ABC", client: str = "c1"
) -> dict[str, Any]:
    return new_event(
        "OrderAccepted",
        order_id=oid,
        client_id=client,
        idempotency_key=f"k-{oid}",
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
    )


def cancel(oid: str, symbol: str = "ABC", client: str = "c1") -> dict[str, Any]:
    return new_event("CancelRequested", order_id=oid, client_id=client, symbol=symbol)


def random_orders(n: int, seed: int, symbols: tuple[str, ...]) -> list[dict[str, Any]]:
    """A reproducible stream of crossing orders and some cancels over ``symbols``."""
    import random

    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    live: list[tuple[str, str, str]] = []
    for _ in range(n):
        if live and rnd.random() < 0.08:
            oid, sym, cid = live.pop(rnd.randrange(len(live)))
            out.append(cancel(oid, sym, cid))
            continue
        sym = rnd.choice(symbols)
        cid = f"c{rnd.randint(1, 8)}"
        oid = str(uuid.UUID(int=rnd.getrandbits(128)))
        price = f"{100 + rnd.randint(-4, 4)}.{rnd.choice(('00', '25', '50', '75'))}"
        out.append(accepted(oid, rnd.choice(("buy", "sell")), rnd.randint(1, 30), price, sym, cid))
        live.append((oid, sym, cid))
    return out


def trade_view(events: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """Per symbol, the trades' content in topic order (without event ts)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for e in events:
        if e["type"] == "TradeExecuted":
            out.setdefault(e["symbol"], []).append(
                (e["seq"], e["trade_id"], e["buy_order_id"], e["sell_order_id"], e["qty"], e["price"])
            )
    return out


# ------------------------------------------------------------------------------------------ tests
def test_matcher_matches_events_from_the_topic_with_price_time_priority(pg_dsn, kafka, services):
    prefix, topics = make_topics(kafka)
    history = [
        accepted("s1", "sell", 10, "101", client="alice"),
        accepted("s2", "sell", 5, "100", client="bob"),
        accepted("s3", "sell", 5, "100", client="carol"),
        accepted("b1", "buy", 12, "101", client="dave"),
        accepted("x1", "buy", 3, "50", symbol="XYZ", client="erin"),
        cancel("s1", client="alice"),
        cancel("nope"),
    ]
    produce(kafka.bootstrap, topics.orders, history)
    matcher = services("matcher", service_env(pg_dsn, kafka.bootstrap, prefix))
    matcher.wait_ready()
    assert matcher.get("/health")[0] == 200
    wait_until(
        lambda: matcher_done(pg_dsn, topics.orders, len(history)), 30, "matcher to consume the history"
    )
    out = read_topic(kafka.bootstrap, topics.executions)
    trades = [e for e in out if e["type"] == "TradeExecuted"]
    assert [(t["seq"], t["trade_id"], t["sell_order_id"], t["qty"], t["price"]) for t in trades] == [
        (1, "ABC-1", "s2", 5, "100"),
        (2, "ABC-2", "s3", 5, "100"),
        (3, "ABC-3", "s1", 2, "101"),
    ]
    assert {(t["buy_order_id"], t["buy_client_id"], t["aggressor_order_id"]) for t in trades} == {
        ("b1", "dave", "b1")
    }
    rested = {(e["order_id"], e["remaining_qty"]) for e in out if e["type"] == "OrderRested"}
    assert rested == {("s1", 10), ("s2", 5), ("s3", 5), ("x1", 3)}
    cancelled = [
        (e["order_id"], e["remaining_qty"], e["side"], e["price"])
        for e in out
        if e["type"] == "OrderCancelled"
    ]
    assert cancelled == [("s1", 8, "sell", "101")]
    assert len({e["event_id"] for e in out}) == len(out)
    # lag is a live figure, unknown (None) for a moment after a fetch that carried no highwater: the matcher
    # must show ready with lag 0 once it has matched everything, not at the first instant asked
    body = wait_until(lambda: (b := matcher.get("/ready")[1])["lag"] == 0 and b, 10, "/ready with lag 0")
    assert body["ready"] is True and body["lag"] == 0


def test_matcher_restarted_after_sigkill_mid_stream_emits_no_duplicate_trade_and_no_sequence_gap(
    pg_dsn, kafka, services
):
    prefix, topics = make_topics(kafka, partitions=3)
    symbols = ("AAA", "BBB", "CCC", "DDD")
    history = random_orders(12000, seed=11, symbols=symbols)
    produce(kafka.bootstrap, topics.orders, history[:6000])
    env = service_env(pg_dsn, kafka.bootstrap, prefix)
    matcher = services("matcher", env)
    kills = []

    def executions_count() -> int:
        return sum(end_offsets(kafka.bootstrap, [topics.executions])[topics.executions].values())

    for round_ in range(3):
        # wait until the matcher made progress in this incarnation, then kill it without warning
        before = executions_count()
        wait_until(lambda b=before: executions_count() > b, 30, f"progress before kill {round_}", 0.05)
        consumed = query(pg_dsn, "SELECT coalesce(sum(next_offset), 0) FROM matcher_offsets")[0][0]
        matcher.kill()
        kills.append(int(consumed))
        if round_ == 0:
            produce(kafka.bootstrap, topics.orders, history[6000:])
        matcher.start()
    assert any(k < len(history) for k in kills), f"every kill came after the end of the stream: {kills}"
    matcher.wait_ready()
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, len(history)), 60, "matcher to finish")

    out = read_topic(kafka.bootstrap, topics.executions)
    trades = [e for e in out if e["type"] == "TradeExecuted"]
    assert trades, "no trades at all"
    ids = Counter(t["trade_id"] for t in trades)
    assert len(ids) == len(trades), f"duplicate trades: {[k for k, v in ids.items() if v > 1][:5]}"
    for sym in symbols:
        seqs = [t["seq"] for t in trades if t["symbol"] == sym]
        assert seqs == list(range(1, len(seqs) + 1)), f"{sym}: gap or reorder"
    assert len({e["event_id"] for e in out}) == len(out)
    # and the trades are exactly those of an uninterrupted run of the same engine over the same input
    expected = MatchingEngine().apply_batch(history, set(), now=0.0).outputs
    assert trade_view(out) == trade_view(expected)
    assert matcher.starts == 4


def test_matcher_ignores_a_redelivered_order_accepted(pg_dsn, kafka, services):
    prefix, topics = make_topics(kafka)
    sell = accepted("s1", "sell", 10, "100", client="alice")
    first = [sell, accepted("b1", "buy", 10, "100", client="bob")]
    produce(kafka.bootstrap, topics.orders, first)
    matcher = services("matcher", service_env(pg_dsn, kafka.bootstrap, prefix))
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, 2), 30, "first trade")
    produce(kafka.bootstrap, topics.orders, [sell, accepted("b2", "buy", 10, "100", client="carol")])
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, 4), 30, "the redelivery")
    out = read_topic(kafka.bootstrap, topics.executions)
    trades = [e for e in out if e["type"] == "TradeExecuted"]
    assert [(t["sell_order_id"], t["buy_order_id"], t["qty"]) for t in trades] == [("s1", "b1", 10)]
    assert [e["order_id"] for e in out if e["type"] == "OrderRested"] == ["s1", "b2"]
    assert matcher.get("/ready")[1]["stats"]["duplicates_ignored"] == 1


def test_matcher_killed_while_waiting_for_acks_skips_on_restart_what_already_reached_the_topic(
    pg_dsn, kafka, services
):
    if not getattr(kafka, "controllable", False):
        pytest.skip("needs the embedded Kafka's latency fault")
    prefix, topics = make_topics(kafka)
    # One warm-up trade per symbol: the matcher's producer then has a connection to the leader of every
    # partition the history's trades go to. A first connection would wait for the latency set below
    # (its handshake is a request too), and nothing would reach the topic before the kill.
    warmup = [
        accepted("w1", "sell", 1, "100", "AAA"),
        accepted("w2", "buy", 1, "100", "AAA"),
        accepted("w3", "sell", 1, "100", "BBB"),
        accepted("w4", "buy", 1, "100", "BBB"),
    ]
    history = warmup + random_orders(3000, seed=5, symbols=("AAA", "BBB"))
    matcher = services("matcher", service_env(pg_dsn, kafka.bootstrap, prefix))
    matcher.wait_ready()
    produce(kafka.bootstrap, topics.orders, warmup)  # the matcher's producer now knows the topic
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, len(warmup)), 30, "warm-up trades")
    assert matcher.proc is not None
    matcher.proc.send_signal(signal.SIGSTOP)
    produce(kafka.bootstrap, topics.orders, history[len(warmup) :])
    try:
        for broker in (1, 2, 3):
            kafka.set_rtt(broker, 8000)  # the broker stores a produce request at once, acks 8 s later
        matcher.proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: query(pg_dsn, "SELECT count(*) FROM matcher_outbox")[0][0] > 0, 20, "a pending outbox"
        )
        # Time for the producer to send its first batches (a busy 2-core CI machine needed more than
        # 0.5 s), well before their acknowledgements could arrive.
        time.sleep(3.0)
        matcher.kill()  # committed in Postgres, on the topic, never acknowledged
    finally:
        for broker in (1, 2, 3):
            kafka.set_rtt(broker, 0)
    pending = query(pg_dsn, "SELECT count(*) FROM matcher_outbox")[0][0]
    assert pending > 0
    matcher.start()
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, len(history)), 60, "matcher to finish")
    recovery = [line for line in matcher.logs().splitlines() if "outbox recovery" in line]
    assert recovery and " 0 already on" not in recovery[0], recovery
    out = read_topic(kafka.bootstrap, topics.executions)
    assert len({e["event_id"] for e in out}) == len(out)
    assert trade_view(out) == trade_view(MatchingEngine().apply_batch(history, set(), now=0.0).outputs)


def test_matcher_republishes_committed_events_whose_publish_failed(pg_dsn, kafka, services):
    if not getattr(kafka, "controllable", False):
        pytest.skip("needs the embedded Kafka's request-error fault")
    prefix, topics = make_topics(kafka)
    warmup = [accepted("w1", "sell", 1, "100", "AAA"), accepted("w2", "buy", 1, "100", "AAA")]
    history = warmup + random_orders(2000, seed=9, symbols=("AAA", "BBB", "CCC"))
    matcher = services("matcher", service_env(pg_dsn, kafka.bootstrap, prefix))
    matcher.wait_ready()
    produce(kafka.bootstrap, topics.orders, warmup)
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, 2), 30, "warm-up trade")
    assert matcher.proc is not None
    matcher.proc.send_signal(signal.SIGSTOP)
    produce(kafka.bootstrap, topics.orders, history[2:])
    try:
        kafka.push_request_errors("Produce", [10])  # MESSAGE_SIZE_TOO_LARGE: not retriable
        matcher.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: matcher_done(pg_dsn, topics.orders, len(history)), 60, "matcher to finish")
    finally:
        kafka.clear_request_errors("Produce")
    recovery = [line for line in matcher.logs().splitlines() if "outbox recovery" in line]
    assert recovery and "republishing 0" not in recovery[0], recovery
    out = read_topic(kafka.bootstrap, topics.executions)
    assert len({e["event_id"] for e in out}) == len(out)
    assert trade_view(out) == trade_view(MatchingEngine().apply_batch(history, set(), now=0.0).outputs)
