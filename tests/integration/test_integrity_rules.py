"""The integrity rules at their exact boundaries, each with the anomaly present and absent.

Each test pins one rule a plausible one-line bug would break: an idempotency key is per client (two
clients may share one), a self-trade references its order once, a symbol's sequence spans partitions, a
sequence starts at 1 unless the topic was truncated, a truncated topic with no orders table proves
neither loss nor recovery, and a ledger with no submits proves nothing. The histories are loaded into
work tables by the real loaders and checked by the real detectors (``_integrity_work.detect``), without
Kafka, so each test costs a few queries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from resgate.checks.integrity import IntegrityConfig, IntegrityFindings, check, gather
from resgate.checks.result import UNKNOWN
from tests.integration._integrity_work import Event, config_for, create_system_tables, detect

pytestmark = pytest.mark.integration


@dataclass
class History:
    """A tiny history: ledger records, orders and trades rows, accepted and trade events."""

    ledger: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[Event] = field(default_factory=list)
    executions: list[Event] = field(default_factory=list)

    def submit(self, client: str, key: str, outcome: str = "ok", oid: str | None = None) -> None:
        self.ledger.append(
            {
                "ts": float(len(self.ledger)),
                "op": "submit_order",
                "client_id": client,
                "idempotency_key": key,
                "status": 201 if outcome == "ok" else "timeout",
                "outcome": outcome,
                **({"order_id": oid} if oid else {}),
            }
        )

    def land(self, client: str, key: str, oid: str, qty: int = 10, *, partition: int = 0) -> None:
        """The order row and its accepted event."""
        self.orders.append(
            {"order_id": oid, "client_id": client, "idempotency_key": key, "qty": qty, "symbol": "AAPL"}
        )
        off = sum(1 for p, _o, _e in self.accepted if p == partition)
        self.accepted.append(
            (
                partition,
                off,
                {
                    "event_id": str(uuid.uuid4()),
                    "type": "OrderAccepted",
                    "order_id": oid,
                    "client_id": client,
                    "idempotency_key": key,
                    "qty": qty,
                },
            )
        )

    def order(self, client: str, key: str, oid: str, qty: int = 10) -> None:
        """Submitted, acknowledged and landed."""
        self.submit(client, key, "ok", oid)
        self.land(client, key, oid, qty)

    def trade(
        self, tid: str, buy: str, sell: str, qty: int, seq: int, *, symbol: str = "AAPL", partition: int = 0
    ) -> None:
        row = {"trade_id": tid, "symbol": symbol, "seq": seq, "buy_order_id": buy, "sell_order_id": sell}
        row["qty"] = qty
        self.trades.append(row)
        off = sum(1 for p, _o, _e in self.executions if p == partition)
        self.executions.append(
            (partition, off, {"event_id": str(uuid.uuid4()), "type": "TradeExecuted", **row})
        )


Run = Callable[..., IntegrityFindings]


@pytest.fixture
def run(pg_dsn: str) -> Iterator[Run]:
    """``run(history, truncated=..., **config overrides) -> findings`` in a fresh schema of one database."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:

        def go(h: History, *, truncated: frozenset[str] = frozenset(), **overrides: Any) -> IntegrityFindings:
            schema = f"h_{uuid.uuid4().hex[:10]}"
            conn.execute(f"CREATE SCHEMA {schema}")
            create_system_tables(conn, schema, h.orders, h.trades)
            return detect(
                conn,
                config_for(schema, **overrides),
                schema,
                ledger=[json.dumps(r) for r in h.ledger],
                accepted=h.accepted,
                trade_events=h.executions,
                truncated=truncated,
            )

        yield go


def counts(f: IntegrityFindings) -> dict[str, int]:
    """The non-zero kinds."""
    return {k: v.count for k, v in f.kinds.items() if v.count}


def sources(f: IntegrityFindings, kind: str) -> list[str]:
    return sorted(e["source"] for e in f.kinds[kind].examples)


# --- one idempotency key, two clients -----------------------------------------------------------------


def test_one_key_used_by_two_clients_each_with_its_own_order_is_no_anomaly(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1")
    h.order("c1", "k1", "o2")
    f = run(h)
    assert counts(f) == {}
    assert check(f).valid is True


def test_two_orders_for_one_client_and_key_are_duplicated_in_the_table_and_the_topic(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1")
    h.land("c0", "k1", "o2")
    assert counts(run(h)) == {"duplicated": 1, "duplicated_in_topic": 1}


def test_a_shared_key_whose_second_clients_order_never_landed_is_lost_for_that_client(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1")
    h.submit("c1", "k1", "ok", "o2")
    f = run(h)
    assert counts(f) == {"lost": 1, "lost_in_topic": 1}
    assert [e["client_id"] for e in f.kinds["lost"].examples] == ["c1"]
    assert [e["client_id"] for e in f.kinds["lost_in_topic"].examples] == ["c1"]


def test_an_order_under_a_key_only_another_client_submitted_is_a_phantom(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1")
    h.land("c1", "k1", "o2")
    f = run(h)
    assert counts(f) == {"phantom": 1, "phantom_in_topic": 1}
    assert [(e["client_id"], e["order_id"]) for e in f.kinds["phantom"].examples] == [("c1", "o2")]


def test_an_orders_row_without_an_idempotency_key_is_a_phantom(run: Run) -> None:
    """No submit has a NULL key, so nothing can have sent it; the submit join, split by a hash of the key,
    must still see a row whose key has no hash."""
    h = History()
    h.order("c0", "k1", "o1")
    h.orders.append({"order_id": "o2", "client_id": "c0", "idempotency_key": None, "qty": 1, "symbol": "X"})
    f = run(h)
    assert counts(f) == {"phantom": 1}
    assert [e["order_id"] for e in f.kinds["phantom"].examples] == ["o2"]


def test_an_unacknowledged_key_is_recovered_even_when_another_client_had_it_acknowledged(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1")
    h.submit("c1", "k1", "info")
    h.land("c1", "k1", "o2")
    f = run(h)
    assert counts(f) == {"recovered": 1}
    assert [e["client_id"] for e in f.kinds["recovered"].examples] == ["c1"]
    assert check(f).valid is True  # recovered is allowed by default


def test_a_phantom_under_a_key_another_client_only_tried_is_still_a_phantom(run: Run) -> None:
    # (c0, k1) timed out and landed (recovered); (c1, k1) was never submitted by c1 but landed: a phantom.
    h = History()
    h.order("c0", "k0", "o0")
    h.submit("c0", "k1", "info")
    h.land("c0", "k1", "o1")
    h.land("c1", "k1", "o2")
    f = run(h)
    assert counts(f) == {"recovered": 1, "phantom": 1, "phantom_in_topic": 1}
    assert [(e["client_id"], e["order_id"]) for e in f.kinds["phantom"].examples] == [("c1", "o2")]
    assert [(e["client_id"], e["order_id"]) for e in f.kinds["recovered"].examples] == [("c0", "o1")]


# --- a trade whose buy and sell side are the same order ---------------------------------------------


def test_a_self_trade_for_the_whole_quantity_is_not_a_double_fill(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1", qty=10)
    h.trade("t1", "o1", "o1", 10, 1)
    assert counts(run(h)) == {}


def test_a_self_trade_one_above_the_quantity_is_one_double_fill_counting_the_trade_once(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1", qty=10)
    h.trade("t1", "o1", "o1", 11, 1)
    f = run(h)
    assert counts(f) == {"double_fill": 2}  # one per source: the trades table and the trade events
    assert [s.split(":")[0] for s in sources(f, "double_fill")] == ["table", "topic"]
    assert {(e["order_id"], e["filled_qty"], e["trades"]) for e in f.kinds["double_fill"].examples} == {
        ("o1", 11, 1)
    }


def test_a_self_trade_of_an_unknown_order_is_one_orphan(run: Run) -> None:
    h = History()
    h.order("c0", "k1", "o1")
    h.trade("t1", "o9", "o9", 1, 1)
    f = run(h)
    assert counts(f) == {"orphan_trade": 2}  # once per source, not once per side
    assert {(e["trade_id"], e["order_id"]) for e in f.kinds["orphan_trade"].examples} == {("t1", "o9")}


# --- one symbol across partitions; sequences that do not start at 1 ------------------------------------


def _orders(h: History, n: int) -> None:
    for i in range(n):
        h.order("c0", f"k{i}", f"o{i}", qty=100)


def test_a_symbols_sequence_split_across_partitions_is_neither_a_gap_nor_a_reorder(run: Run) -> None:
    h = History()
    _orders(h, 2)
    for seq, p in ((1, 0), (2, 1), (3, 0), (4, 1)):
        h.trade(f"t{seq}", "o0", "o1", 1, seq, partition=p)
    assert counts(run(h)) == {}


def test_a_reorder_in_one_partition_is_found_while_another_partition_interleaves(run: Run) -> None:
    h = History()
    _orders(h, 2)
    for seq, p in ((1, 1), (3, 0), (2, 0), (4, 1)):
        h.trade(f"t{seq}", "o0", "o1", 1, seq, partition=p)
    f = run(h)
    assert counts(f) == {"seq_reorder": 1}
    (ex,) = f.kinds["seq_reorder"].examples
    assert (ex["partition"], ex["seq"], ex["previous_seq"]) == (0, 2, 3)


def test_the_same_seq_again_later_in_one_partition_is_a_reorder_as_well_as_a_duplicate(run: Run) -> None:
    # Seqs must strictly increase with the offset: an equal seq is out of order too.
    h = History()
    _orders(h, 2)
    for tid, seq in (("t1", 1), ("t2", 2), ("t2b", 2), ("t3", 3)):
        h.trade(tid, "o0", "o1", 1, seq)
    f = run(h, trades=None)
    assert counts(f) == {"seq_duplicate": 1, "seq_reorder": 1}
    (ex,) = f.kinds["seq_reorder"].examples
    assert (ex["trade_id"], ex["seq"], ex["previous_seq"]) == ("t2b", 2, 2)


def test_a_gap_between_two_partitions_is_found_once(run: Run) -> None:
    h = History()
    _orders(h, 2)
    for seq, p in ((1, 0), (2, 1), (3, 0), (5, 1)):
        h.trade(f"t{seq}", "o0", "o1", 1, seq, partition=p)
    f = run(h, trades=None)
    assert counts(f) == {"seq_gap": 1}
    (ex,) = f.kinds["seq_gap"].examples
    assert (ex["after_seq"], ex["next_seq"], ex["missing"]) == (3, 5, 1)


def test_a_sequence_starting_at_1_is_whole_and_one_starting_at_2_misses_seq_1(run: Run) -> None:
    whole, late = History(), History()
    for h, start in ((whole, 1), (late, 2)):
        _orders(h, 2)
        h.trade("ta", "o0", "o1", 1, start)
        h.trade("tb", "o0", "o1", 1, start + 1)
    assert counts(run(whole)) == {}
    f = run(late)
    assert counts(f) == {"seq_gap": 2}  # the table and the topic
    assert {(e["after_seq"], e["next_seq"], e["missing"]) for e in f.kinds["seq_gap"].examples} == {(0, 2, 1)}


def test_a_truncated_topic_whose_retained_sequence_starts_late_is_no_gap(run: Run) -> None:
    h = History()
    _orders(h, 2)
    h.trade("t7", "o0", "o1", 1, 7)
    h.trade("t8", "o0", "o1", 1, 8)
    f = run(h, trades=None, truncated=frozenset({"executions"}))
    assert counts(f) == {}
    assert check(f).valid == UNKNOWN


def test_a_truncated_topic_with_a_symbol_across_partitions_proves_no_gap(run: Run) -> None:
    # Seqs 1..5 over two partitions; retention dropped partition 0's first two events (seqs 1 and 3).
    # What is left (2, 4 on partition 1; 5 on partition 0) misses 3, but 3 may be among the dropped
    # events: no evidence of a gap.
    h = History()
    _orders(h, 2)
    for seq, p in ((2, 1), (4, 1), (5, 0)):
        h.trade(f"t{seq}", "o0", "o1", 1, seq, partition=p)
    f = run(h, trades=None, truncated=frozenset({"executions"}))
    assert counts(f) == {}
    assert "seq_gap" in f.not_checked
    assert check(f).valid == UNKNOWN


# --- truncated topics with no orders table ------------------------------------------------------------


def _topic_only_history() -> History:
    h = History()
    h.order("c0", "k1", "o1")
    h.submit("c0", "k2", "info")
    h.land("c0", "k2", "o2")  # landed though never acknowledged: recovered
    h.trade("t1", "o1", "o9", 1, 1)  # o9 is known nowhere: an orphan, when known orders are complete
    return h


def test_without_an_orders_table_a_complete_topic_decides_recovered_and_orphans(run: Run) -> None:
    f = run(_topic_only_history(), orders=None, trades=None)
    assert counts(f) == {"recovered": 1, "orphan_trade": 1}
    assert "lost_in_topic" in f.kinds and "lost" not in f.kinds


def test_without_an_orders_table_a_truncated_topic_proves_neither_loss_recovery_nor_orphans(run: Run) -> None:
    f = run(_topic_only_history(), orders=None, trades=None, truncated=frozenset({"orders"}))
    assert counts(f) == {}
    for kind in ("lost_in_topic", "recovered", "orphan_trade", "double_fill"):
        assert kind in f.not_checked, (kind, f.not_checked)
    assert "phantom_in_topic" in f.kinds  # a phantom is still a phantom in what is left
    result = check(f)
    assert result.valid == UNKNOWN and "truncated" in (result.error or "")


def test_with_the_orders_table_a_truncated_topic_still_decides_from_the_table(run: Run) -> None:
    h = _topic_only_history()
    f = run(h, trades=None, truncated=frozenset({"orders"}))
    # the table is complete: recovered and the orphan are decided from it; lost_in_topic is not checked
    assert counts(f) == {"recovered": 1, "orphan_trade": 1}
    assert "lost_in_topic" in f.not_checked and "lost" in f.kinds


# --- a ledger with no submits at all -------------------------------------------------------------------


def _gather_ledger(pg_dsn: str, ledger: list[dict[str, Any]]) -> Any:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE o (order_id text, client_id text, idempotency_key text, qty bigint)")
        for r in ledger:
            if r["op"] == "submit_order":
                c.execute(
                    "INSERT INTO o VALUES (%s, %s, %s, 1)",
                    (r["order_id"], r["client_id"], r["idempotency_key"]),
                )
    config = IntegrityConfig.from_dict({"orders": {"table": "o"}})
    return check(gather(pg_dsn, config, [json.dumps(r) for r in ledger]), config.thresholds)


READ = {"ts": 1.0, "op": "get_order", "client_id": "c0", "status": 200, "outcome": "ok"}


def test_a_ledger_with_no_submit_at_all_proves_nothing(pg_dsn: str) -> None:
    result = _gather_ledger(pg_dsn, [READ, READ])
    assert result.valid == UNKNOWN
    assert "no submit records" in (result.error or "")


def test_a_ledger_with_exactly_one_submit_is_judged(pg_dsn: str) -> None:
    one = {
        "ts": 2.0,
        "op": "submit_order",
        "client_id": "c0",
        "idempotency_key": "k1",
        "status": 201,
        "outcome": "ok",
        "order_id": "o1",
    }
    result = _gather_ledger(pg_dsn, [READ, one])
    assert result.valid is True, result.to_dict()
    assert result.counts["ledger_submits"] == 1
