"""The seeded bugs of the matcher and the projector, on the whole pipeline: each breaks its property when on
and the property holds when off (these tests are the bugs' specification).

Pipeline: orders written to the orders topic → ``python -m paperbroker.matcher`` → executions topic →
``python -m paperbroker.projector`` → read models; the replay side is
:func:`paperbroker.projections.rebuild` into a shadow schema.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
import pytest

from paperbroker.projection_plan import dedupe_keys
from paperbroker.projections import rebuild
from paperbroker.read_models import AUX_TABLES, READ_MODELS, compare_schemas
from tests.integration import test_paperbroker_matcher as pb_matcher_tests
from tests.integration.test_paperbroker_matcher import (
    Service,
    accepted,
    end_offsets,
    make_topics,
    matcher_done,
    produce,
    query,
    random_orders,
    read_topic,
    service_env,
    wait_until,
)

pytestmark = pytest.mark.integration
services = pb_matcher_tests.services  # the shared fixture (subprocess services, killed after the test)

ALL_TABLES = (*READ_MODELS, *AUX_TABLES)


def run_pipeline(pg_dsn, kafka, services, orders, *, matcher_bugs="", projector_bugs=""):
    """Start matcher and projector, feed ``orders``, wait until both are done; returns (topics, projector)."""
    prefix, topics = make_topics(kafka)
    matcher = services("matcher", service_env(pg_dsn, kafka.bootstrap, prefix, matcher_bugs))
    projector = services("projector", service_env(pg_dsn, kafka.bootstrap, prefix, projector_bugs))
    produce(kafka.bootstrap, topics.orders, orders)
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, len(orders)), 30, "the matcher")
    wait_projected(pg_dsn, kafka, topics)
    projector.wait_ready()
    return prefix, topics, matcher, projector


def wait_projected(pg_dsn: str, kafka: Any, topics: Any) -> None:
    """Wait until every (projector, event id) of both topics is in processed_events."""
    events = read_topic(kafka.bootstrap, topics.orders) + read_topic(kafka.bootstrap, topics.executions)
    want = len(dedupe_keys(events))

    def done() -> bool:
        rows = query(pg_dsn, "SELECT count(*) FROM processed_events")
        return bool(rows) and rows[0][0] >= want

    wait_until(done, 60, "the projector")


def consumed(projector: Service) -> int:
    return int(projector.get("/ready")[1]["stats"]["events"])


def rebuild_diff(pg_dsn: str, kafka: Any, topics: Any, schema: str) -> dict[str, dict[str, Any]]:
    ends = end_offsets(kafka.bootstrap, [topics.orders, topics.executions])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rebuild(conn, schema, ends, bootstrap=kafka.bootstrap)
        return compare_schemas(conn, "public", schema, ALL_TABLES)


@pytest.mark.parametrize("bug_on", [True, False], ids=["bug_on", "bug_off"])
def test_projector_double_apply_makes_redelivered_events_drift_positions_from_a_rebuild(
    pg_dsn, kafka, services, bug_on
):
    orders = random_orders(400, seed=31, symbols=("AAA", "BBB"))
    bugs = "projector_double_apply" if bug_on else ""
    _prefix, topics, _m, projector = run_pipeline(pg_dsn, kafka, services, orders, projector_bugs=bugs)
    before = consumed(projector)
    # a duplicate delivery: the already applied trades arrive again (same event ids)
    trades = [e for e in read_topic(kafka.bootstrap, topics.executions) if e["type"] == "TradeExecuted"]
    assert trades
    produce(kafka.bootstrap, topics.executions, trades[:50])
    wait_until(lambda: consumed(projector) >= before + 50, 30, "the redelivered events")
    diff = rebuild_diff(pg_dsn, kafka, topics, "replay_double")
    over = query(pg_dsn, "SELECT count(*) FROM rm_orders WHERE filled_qty > qty")[0][0]
    if bug_on:
        assert not diff["rm_positions"]["equal"], diff
        assert over > 0
    else:
        assert all(d["equal"] for d in diff.values()), diff
        assert over == 0


@pytest.mark.parametrize("bug_on", [True, False], ids=["bug_on", "bug_off"])
def test_matcher_double_fill_fills_a_redelivered_order_twice(pg_dsn, kafka, services, bug_on):
    sell = accepted("s1", "sell", 10, "100", client="alice")
    orders = [sell, accepted("b1", "buy", 10, "100", client="bob")]
    bugs = "matcher_double_fill" if bug_on else ""
    _prefix, topics, _m, _p = run_pipeline(pg_dsn, kafka, services, orders, matcher_bugs=bugs)
    # the same OrderAccepted is delivered again (same event), then a new buyer arrives
    produce(kafka.bootstrap, topics.orders, [sell, accepted("b2", "buy", 10, "100", client="carol")])
    wait_until(lambda: matcher_done(pg_dsn, topics.orders, 4), 30, "the matcher")
    wait_projected(pg_dsn, kafka, topics)
    filled: dict[str, int] = defaultdict(int)
    for e in read_topic(kafka.bootstrap, topics.executions):
        if e["type"] == "TradeExecuted":
            filled[e["sell_order_id"]] += e["qty"]
    (rm_filled,) = query(pg_dsn, "SELECT filled_qty FROM rm_orders WHERE order_id = 's1'")[0]
    if bug_on:
        assert filled["s1"] == 20 > 10
        assert rm_filled == 20
    else:
        assert filled["s1"] == 10
        assert rm_filled == 10
        assert query(pg_dsn, "SELECT status FROM rm_orders WHERE order_id = 'b2'") == [("open",)]


@pytest.mark.parametrize("bug_on", [True, False], ids=["bug_on", "bug_off"])
def test_projection_drift_makes_the_live_order_blotter_differ_from_a_rebuild(pg_dsn, kafka, services, bug_on):
    orders = random_orders(300, seed=41, symbols=("AAA", "BBB"))
    assert any(o["type"] == "CancelRequested" for o in orders)
    bugs = "projection_drift" if bug_on else ""
    _prefix, topics, _m, _p = run_pipeline(pg_dsn, kafka, services, orders, projector_bugs=bugs)
    cancelled = [e for e in read_topic(kafka.bootstrap, topics.executions) if e["type"] == "OrderCancelled"]
    assert cancelled
    diff = rebuild_diff(pg_dsn, kafka, topics, "replay_drift")
    live_cancelled = query(pg_dsn, "SELECT count(*) FROM rm_orders WHERE status = 'cancelled'")[0][0]
    shadow_cancelled = query(pg_dsn, "SELECT count(*) FROM replay_drift.rm_orders WHERE status = 'cancelled'")
    assert shadow_cancelled == [(len(cancelled),)]
    if bug_on:
        assert not diff["rm_orders"]["equal"], diff
        assert live_cancelled == 0
    else:
        assert all(d["equal"] for d in diff.values()), diff
        assert live_cancelled == len(cancelled)
