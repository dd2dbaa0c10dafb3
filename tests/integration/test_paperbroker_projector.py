"""The projector as a real process: read models from a hand-made history, SIGKILL safety, rebuild equality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from paperbroker.matching import MatchingEngine
from paperbroker.projection_plan import dedupe_keys
from paperbroker.projections import rebuild
from paperbroker.read_models import AUX_TABLES, READ_MODELS, compare_schemas
from tests.integration import test_paperbroker_matcher as pb_matcher_tests
from tests.integration.test_paperbroker_matcher import (
    ROOT,
    accepted,
    cancel,
    end_offsets,
    make_topics,
    produce,
    query,
    random_orders,
    service_env,
    wait_until,
)

pytestmark = pytest.mark.integration
services = pb_matcher_tests.services  # the shared fixture (subprocess services, killed after the test)

D = Decimal
ALL_TABLES = (*READ_MODELS, *AUX_TABLES)


def executions_for(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matcher's output for an orders history (the pure engine, as one uninterrupted run)."""
    return MatchingEngine().apply_batch(orders, set(), now=1_700_000_000.0).outputs


def publish_history(
    kafka: Any, topics: Any, orders: list[dict[str, Any]], execs: list[dict[str, Any]]
) -> int:
    produce(kafka.bootstrap, topics.orders, orders)
    produce(kafka.bootstrap, topics.executions, execs)
    return len(dedupe_keys(orders + execs))


def processed(dsn: str) -> int:
    rows = query(dsn, "SELECT count(*) FROM processed_events")
    return int(rows[0][0]) if rows else 0


def rebuild_and_compare(dsn: str, bootstrap: str, topics: Any, schema: str) -> dict[str, dict[str, Any]]:
    ends = end_offsets(bootstrap, [topics.orders, topics.executions])
    with psycopg.connect(dsn, autocommit=True) as conn:
        result = rebuild(conn, schema, ends, bootstrap=bootstrap)
        assert result["events"] == sum(sum(p.values()) for p in ends.values())
        return compare_schemas(conn, "public", schema, ALL_TABLES)


def test_projector_builds_the_read_models_of_a_small_hand_made_history(pg_dsn, kafka, services):
    prefix, topics = make_topics(kafka)
    orders = [
        accepted("a1", "buy", 10, "100.5", "ABC", "alice"),
        accepted("s1", "sell", 4, "100", "ABC", "bob"),  # trade ABC-1: 4 @ 100.5 (the resting price)
        accepted("s2", "sell", 10, "102", "ABC", "carol"),
        accepted("x1", "sell", 5, "20", "XYZ", "alice"),
        cancel("a1", "ABC", "alice"),  # a1 cancelled with 6 left
        accepted("b2", "buy", 3, "102", "ABC", "dave"),  # trade ABC-2: 3 @ 102
    ]
    execs = executions_for(orders)
    assert [e["type"] for e in execs].count("TradeExecuted") == 2
    expected_keys = publish_history(kafka, topics, orders, execs)
    projector = services("projector", service_env(pg_dsn, kafka.bootstrap, prefix))
    projector.wait_ready()
    wait_until(lambda: processed(pg_dsn) >= expected_keys, 30, "projection of the history")

    assert query(
        pg_dsn,
        "SELECT order_id, client_id, symbol, side, qty, price, filled_qty, status FROM rm_orders ORDER BY 1",
    ) == [
        ("a1", "alice", "ABC", "buy", 10, D("100.500000"), 4, "cancelled"),
        ("b2", "dave", "ABC", "buy", 3, D("102.000000"), 3, "filled"),
        ("s1", "bob", "ABC", "sell", 4, D("100.000000"), 4, "filled"),
        ("s2", "carol", "ABC", "sell", 10, D("102.000000"), 3, "partially_filled"),
        ("x1", "alice", "XYZ", "sell", 5, D("20.000000"), 0, "open"),
    ]
    assert query(pg_dsn, "SELECT count(*) FROM rm_orders WHERE last_event_ts IS NULL") == [(0,)]
    assert query(pg_dsn, "SELECT * FROM rm_trades ORDER BY seq") == [
        ("ABC-1", "ABC", 1, "a1", "s1", "alice", "bob", 4, D("100.500000")),
        ("ABC-2", "ABC", 2, "b2", "s2", "dave", "carol", 3, D("102.000000")),
    ]
    assert query(pg_dsn, "SELECT * FROM rm_market ORDER BY symbol") == [
        ("ABC", None, D("102.000000"), D("102.000000"), 3, 2),
        ("XYZ", None, D("20.000000"), None, None, None),
    ]
    assert query(pg_dsn, "SELECT * FROM rm_positions ORDER BY 1, 2") == [
        ("alice", "ABC", 4, D("-402.000000")),
        ("bob", "ABC", -4, D("402.000000")),
        ("carol", "ABC", -3, D("306.000000")),
        ("dave", "ABC", 3, D("-306.000000")),
    ]
    body = projector.get("/ready")[1]
    assert body["ready"] is True and body["stats"]["duplicates"] == 0

    # the rebuild (function form) equals the live tables
    diff = rebuild_and_compare(pg_dsn, kafka.bootstrap, topics, "replay_fn")
    assert all(d["equal"] for d in diff.values()), diff

    # ... and so does the command form the gate can run in its own process
    env = {
        **os.environ,
        "RESGATE_REPLAY_DSN": pg_dsn,
        "RESGATE_REPLAY_SCHEMA": "replay_cli",
        "RESGATE_REPLAY_END_OFFSETS": json.dumps(
            end_offsets(kafka.bootstrap, [topics.orders, topics.executions])
        ),
        "RESGATE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "PYTHONPATH": str(ROOT),
    }
    cp = subprocess.run(
        [sys.executable, "-m", "paperbroker.projections", "rebuild"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["events"] == len(orders) + len(execs)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        diff = compare_schemas(conn, "public", "replay_cli", ALL_TABLES)
    assert all(d["equal"] for d in diff.values()), diff


def test_projector_killed_mid_batch_and_restarted_applies_no_event_twice(pg_dsn, kafka, services):
    prefix, topics = make_topics(kafka, partitions=3)
    orders = random_orders(12000, seed=21, symbols=("AAA", "BBB", "CCC", "DDD"))
    execs = executions_for(orders)
    trades = [e for e in execs if e["type"] == "TradeExecuted"]
    expected_keys = publish_history(kafka, topics, orders, execs)
    projector = services("projector", service_env(pg_dsn, kafka.bootstrap, prefix))
    wait_until(lambda: processed(pg_dsn) > 0, 30, "a first committed batch", 0.02)
    projector.kill()  # while it works through the backlog in 2000-event batches
    at_kill = processed(pg_dsn)
    assert at_kill < expected_keys, "the kill came after the end of the history"
    projector.start()
    wait_until(lambda: processed(pg_dsn) >= expected_keys, 60, "projection of the history")
    projector.wait_ready()
    assert processed(pg_dsn) == expected_keys

    positions: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, D(0)])
    filled: dict[str, int] = defaultdict(int)
    for t in trades:
        notional = D(t["price"]) * t["qty"]
        positions[(t["buy_client_id"], t["symbol"])][0] += t["qty"]
        positions[(t["buy_client_id"], t["symbol"])][1] -= notional
        positions[(t["sell_client_id"], t["symbol"])][0] -= t["qty"]
        positions[(t["sell_client_id"], t["symbol"])][1] += notional
        filled[t["buy_order_id"]] += t["qty"]
        filled[t["sell_order_id"]] += t["qty"]
    got_positions = {(c, s): [q, cash] for c, s, q, cash in query(pg_dsn, "SELECT * FROM rm_positions")}
    assert got_positions == {k: v for k, v in positions.items()}
    got_filled = dict(query(pg_dsn, "SELECT order_id, filled_qty FROM rm_orders WHERE filled_qty > 0"))
    assert got_filled == dict(filled)
    assert query(pg_dsn, "SELECT count(*) FROM rm_trades") == [(len(trades),)]
    assert query(pg_dsn, "SELECT count(*) FROM rm_orders WHERE filled_qty > qty") == [(0,)]

    # where the group read each record (the gate's offset_backwards / offset_skip): every offset of every
    # partition once, first consumed in increasing order, the batch redelivered after the kill not again
    ends = end_offsets(kafka.bootstrap, [topics.orders, topics.executions])
    read: dict[tuple[str, int], list[int]] = defaultdict(list)
    for topic, part, off in query(
        pg_dsn, 'SELECT topic, "partition", "offset" FROM consumed_offsets ORDER BY seq'
    ):
        read[(topic, part)].append(off)
    assert read == {(t, p): list(range(end)) for t, parts in ends.items() for p, end in parts.items() if end}

    diff = rebuild_and_compare(pg_dsn, kafka.bootstrap, topics, "replay_after_kill")
    assert all(d["equal"] for d in diff.values()), diff


def test_projector_skips_backlog_restarted_never_reads_what_arrived_while_it_was_down(
    pg_dsn, kafka, services
):
    """The seeded bug ``projector_skips_backlog`` (the good build's gapless record is the test above)."""
    prefix, topics = make_topics(kafka, partitions=1)
    produce(kafka.bootstrap, topics.orders, [accepted(f"a{i}", "buy", 1, "10.00") for i in range(5)])
    projector = services("projector", service_env(pg_dsn, kafka.bootstrap, prefix, "projector_skips_backlog"))
    offsets = f"SELECT \"offset\" FROM consumed_offsets WHERE topic = '{topics.orders}' ORDER BY seq"

    def consumed() -> list[int]:
        return [o for (o,) in query(pg_dsn, offsets)]

    wait_until(lambda: len(consumed()) == 5, 30, "the first five events consumed")
    projector.kill()
    # offsets 5-9 arrive while the projector is down
    produce(kafka.bootstrap, topics.orders, [accepted(f"b{i}", "buy", 1, "10.00") for i in range(5)])
    projector.start()
    n = 0

    def one_more_read() -> bool:  # the group's partitions are assigned some seconds after the restart
        nonlocal n
        n += 1
        produce(kafka.bootstrap, topics.orders, [accepted(f"c{n}", "buy", 1, "10.00")])
        return max(consumed()) > 9

    wait_until(one_more_read, 60, "an event after the restart consumed", 0.5)
    got = consumed()
    assert got[:5] == list(range(5)) and not set(range(5, 10)) & set(got), got
    assert got == sorted(got) and got[5] > 9, got
