"""The event log's anomalies (aborted reads, consumer-group offsets backwards or skipped) at their boundaries.

Each test builds a tiny history (ledger attempts, accepted events with their partition and offset, and the
rows a consumer group recorded as it consumed), loads it into work tables with gather's own DDL and
loaders and runs gather's detector phases (``_integrity_work.detect``, no Kafka), then checks the smallest
step that makes the anomaly and the same step short of it. Keys repeat across clients and partitions, so
a detector that forgets the client, the partition or the group is caught. A Hypothesis property then
builds clean logs from a small model (shared keys, random partitions, interleaved consumption with
redeliveries), injects exactly one anomaly and checks the detectors name exactly that kind, once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from resgate.checks.integrity import IntegrityFindings, check
from tests.integration._integrity_work import Event, config_for, create_system_tables, detect

pytestmark = pytest.mark.integration

CONSUMED = {"table": "{schema}.consumed", "group": "group_id"}


@dataclass
class Log:
    """Ledger attempts, accepted events per partition, and a consumer group's consumption records."""

    ledger: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[Event] = field(default_factory=list)
    consumed: list[tuple[str, str, int, int]] = field(default_factory=list)  # in consumption order

    def attempt(self, client: str, key: str, status: int | str, outcome: str, oid: str | None = None) -> None:
        self.ledger.append({"ts": float(len(self.ledger)), "op": "submit_order", "client_id": client,
                            "idempotency_key": key, "status": status, "outcome": outcome,
                            **({"order_id": oid} if oid else {})})  # fmt: skip

    def event(self, client: str, key: str, oid: str, *, partition: int = 0) -> int:
        """An accepted event (and its orders row); returns its offset."""
        off = sum(1 for p, _o, _e in self.accepted if p == partition)
        ev = {"event_id": str(uuid.uuid4()), "type": "OrderAccepted", "order_id": oid, "client_id": client}
        self.accepted.append((partition, off, {**ev, "idempotency_key": key, "qty": 10}))
        if not any(o["order_id"] == oid for o in self.orders):
            self.orders.append({"order_id": oid, "client_id": client, "idempotency_key": key, "qty": 10})
        return off

    def order(self, client: str, key: str, oid: str, *, partition: int = 0) -> int:
        self.attempt(client, key, 201, "ok", oid)
        return self.event(client, key, oid, partition=partition)

    def consume(self, partition: int, *offsets: int, group: str = "proj", topic: str = "orders") -> None:
        self.consumed.extend((group, topic, partition, off) for off in offsets)


Run = Callable[..., IntegrityFindings]


@pytest.fixture
def run(pg_dsn: str) -> Iterator[Run]:
    """``run(log, consumed=True) -> findings`` in a fresh schema of one database."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:

        def go(log: Log, *, consumed: bool = True) -> IntegrityFindings:
            schema = f"e_{uuid.uuid4().hex[:10]}"
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            create_system_tables(conn, schema, log.orders, [])
            t = sql.Identifier(schema, "consumed")
            conn.execute(
                sql.SQL(
                    'CREATE TABLE {} (seq bigserial, group_id text, topic text, "partition" int, '
                    '"offset" bigint)'
                ).format(t)
            )
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        'INSERT INTO {} (group_id, topic, "partition", "offset") VALUES (%s, %s, %s, %s)'
                    ).format(t),
                    log.consumed,
                )
            overrides: dict[str, Any] = {}
            if consumed:
                overrides["consumed_offsets"] = {**CONSUMED, "table": f"{schema}.consumed"}
            return detect(
                conn,
                config_for(schema, trade_events=None, **overrides),
                schema,
                ledger=[json.dumps(r) for r in log.ledger],
                accepted=log.accepted,
            )

        yield go


def _kinds(f: IntegrityFindings) -> dict[str, int]:
    return {k: v.count for k, v in f.kinds.items() if v.count}


def _oid(n: int) -> str:
    return str(uuid.UUID(int=n))


def _clean() -> Log:
    """Two clients sharing keys k0/k1, orders on partitions 0 and 1, all consumed in order."""
    log = Log()
    log.order("c0", "k0", _oid(1), partition=0)
    log.order("c1", "k0", _oid(2), partition=1)
    log.order("c0", "k1", _oid(3), partition=0)
    log.order("c1", "k1", _oid(4), partition=1)
    log.consume(0, 0)
    log.consume(1, 0)
    log.consume(0, 1)
    log.consume(1, 1)
    return log


def test_the_clean_log_has_no_event_log_anomaly_and_every_kind_was_checked(run: Run) -> None:
    f = run(_clean())
    assert _kinds(f) == {}
    for kind in ("aborted_read", "offset_backwards", "offset_skip"):
        assert f.kinds[kind].count == 0 and kind not in f.not_checked, kind
    assert check(f, config_for("x").thresholds).valid is True


# --- aborted reads -----------------------------------------------------------------------------------------


def test_an_event_whose_only_attempt_failed_with_503_is_an_aborted_read(run: Run) -> None:
    log = _clean()
    log.attempt("c0", "k2", 503, "fail")
    off = log.event("c0", "k2", _oid(5), partition=1)
    f = run(log)
    assert _kinds(f) == {"aborted_read": 1, "recovered": 1}
    (ex,) = f.kinds["aborted_read"].examples
    assert (ex["client_id"], ex["idempotency_key"], ex["partition"], ex["offset"]) == ("c0", "k2", 1, off)
    assert ex["statuses"] == ["503"] and ex["ledger_at"] == "ledger:5" and ex["source"] == "topic:orders"
    result = check(f, config_for("x").thresholds)
    assert result.valid is False and "aborted_read" in result.details["violations"]


def test_a_failed_attempt_followed_by_an_indeterminate_one_explains_the_event(run: Run) -> None:
    log = _clean()
    log.attempt("c0", "k2", 503, "fail")
    log.attempt("c0", "k2", "timeout", "info")
    log.event("c0", "k2", _oid(5))
    assert _kinds(run(log)) == {"recovered": 1}


def test_a_failed_attempt_followed_by_an_acknowledged_retry_is_no_aborted_read(run: Run) -> None:
    log = _clean()
    log.attempt("c0", "k2", 503, "fail")
    log.order("c0", "k2", _oid(5))
    assert _kinds(run(log)) == {}


def test_a_key_failed_for_one_client_and_landed_for_another_is_no_aborted_read(run: Run) -> None:
    log = _clean()
    log.attempt("c0", "k9", 409, "fail")  # c0's k9 failed; c1's k9 is another order under the same key
    log.order("c1", "k9", _oid(5), partition=0)
    assert _kinds(run(log)) == {}


def test_a_key_failed_for_one_client_is_an_aborted_read_though_another_clients_same_key_succeeded(
    run: Run,
) -> None:
    log = _clean()
    log.attempt("c0", "k9", 503, "fail")
    log.event("c0", "k9", _oid(5), partition=1)  # c0's failed k9 landed anyway
    log.order("c1", "k9", _oid(6), partition=0)  # c1's k9 was acknowledged
    f = run(log)
    assert _kinds(f) == {"aborted_read": 1, "recovered": 1}
    assert f.kinds["aborted_read"].examples[0]["client_id"] == "c0"


def test_a_failed_attempt_whose_event_never_appeared_is_no_aborted_read(run: Run) -> None:
    log = _clean()
    log.attempt("c0", "k2", 400, "fail")
    assert _kinds(run(log)) == {}


def test_an_aborted_event_delivered_twice_is_one_aborted_read_at_its_first_position(run: Run) -> None:
    log = _clean()
    log.attempt("c1", "k0x", "conn_refused", "fail")
    first = log.event("c1", "k0x", _oid(5), partition=0)
    p, _off, ev = log.accepted[-1]
    log.accepted.append((p, first + 1, dict(ev)))
    f = run(log)
    assert f.kinds["aborted_read"].count == 1
    assert f.kinds["aborted_read"].examples[0]["offset"] == first


# --- consumer-group offsets going backwards -----------------------------------------------------------


def test_a_group_consuming_an_offset_after_a_higher_one_goes_backwards(run: Run) -> None:
    log = _clean()
    for n in (5, 6, 7):
        log.order("c0", f"k{n}", _oid(n), partition=0)  # offsets 2, 3, 4
    log.consume(0, 3, 2, 4)  # 2 first consumed right after 3: one step backwards
    f = run(log)
    assert _kinds(f) == {"offset_backwards": 1}
    (ex,) = f.kinds["offset_backwards"].examples
    assert (ex["group"], ex["topic"], ex["partition"], ex["offset"], ex["after_offset"]) == (
        "proj", "orders", 0, 2, 3)  # fmt: skip


def test_a_redelivery_from_the_committed_offset_is_not_backwards(run: Run) -> None:
    log = _clean()
    for n in (5, 6, 7):
        log.order("c0", f"k{n}", _oid(n), partition=0)
    log.consume(0, 2, 3, 2, 3, 4)  # a crash before the commit of 2-3: consumed again, then on
    assert _kinds(run(log)) == {}


def test_partitions_and_groups_are_ordered_apart(run: Run) -> None:
    log = _clean()
    log.order("c0", "k5", _oid(5), partition=0)  # partition 0 offsets 2, 3
    log.order("c0", "k6", _oid(6), partition=0)
    log.order("c1", "k5", _oid(7), partition=1)  # partition 1 offset 2, consumed after 0/3
    log.consume(0, 2, 3)
    log.consume(1, 2)
    log.consume(0, 0, 1, group="audit")  # another group starting later at offset 0: not backwards
    assert _kinds(run(log)) == {}


# --- consumer-group offsets skipped -------------------------------------------------------------------------


def test_an_event_below_the_groups_highest_offset_never_consumed_is_skipped(run: Run) -> None:
    log = _clean()
    for n in (5, 6):
        log.order("c1", f"k{n}", _oid(n), partition=1)  # offsets 2, 3
    log.order("c0", "k5", _oid(7), partition=0)  # partition 0 offset 2: consumed
    log.consume(0, 2)
    log.consume(1, 3)  # 2 was never consumed; 3 was
    f = run(log)
    assert _kinds(f) == {"offset_skip": 1}
    (ex,) = f.kinds["offset_skip"].examples
    assert (ex["group"], ex["partition"], ex["offset"], ex["max_consumed"]) == ("proj", 1, 2, 3)


def test_an_event_above_the_groups_highest_offset_is_lag_not_a_skip(run: Run) -> None:
    log = _clean()
    for n in (5, 6):
        log.order("c1", f"k{n}", _oid(n), partition=1)
    log.consume(1, 2)  # 3 not yet consumed
    assert _kinds(run(log)) == {}


def test_only_the_group_that_skipped_is_named(run: Run) -> None:
    log = _clean()
    log.consume(0, 1, group="audit")  # audit skipped partition 0 offset 0; proj consumed it
    f = run(log)
    assert _kinds(f) == {"offset_skip": 1}
    assert f.kinds["offset_skip"].examples[0]["group"] == "audit"


def test_offset_kinds_without_a_consumed_offsets_table_are_not_checked_never_passed(run: Run) -> None:
    f = run(_clean(), consumed=False)
    assert "offset_backwards" in f.not_checked and "offset_skip" in f.not_checked
    assert "offset_backwards" not in f.kinds and f.kinds["aborted_read"].count == 0


# --- generated logs: one injected anomaly is named alone ---------------------------------------------

KEY_CHARS = st.text(alphabet=st.sampled_from("ab\t\\\"'é😀 ,;"), min_size=1, max_size=5)
FAILS = st.sampled_from([(503, "fail"), (409, "fail"), (400, "fail"), ("conn_refused", "fail")])


@st.composite
def logs(draw: st.DrawFn) -> Log:
    """A clean log: orders 2m and 2m+1 share a key under two clients, on random partitions, each key with an
    ok attempt (maybe after a failed or indeterminate one); the group consumes every partition in order,
    partitions interleaved, with redeliveries of offsets it had already consumed."""
    log = Log()
    n = draw(st.integers(min_value=2, max_value=12))
    keys = [draw(KEY_CHARS) for _ in range((n + 1) // 2)]
    for i in range(n):
        client, key = f"c{i % 3}", f"{keys[i // 2]}#{i // 2}"
        first = draw(st.sampled_from(["ok", "info", "fail"]))
        if first == "info":
            log.attempt(client, key, "timeout", "info")
        elif first == "fail":
            log.attempt(client, key, *draw(FAILS))
        log.order(client, key, _oid(i + 1), partition=draw(st.integers(0, 2)))
    queues = {p: [off for q, off, _e in log.accepted if q == p] for p in range(3)}
    consumed: dict[int, list[int]] = {p: [] for p in range(3)}
    while any(queues.values()):
        p = draw(st.sampled_from([p for p, q in queues.items() if q]))
        log.consume(p, queues[p].pop(0))
        consumed[p].append(log.consumed[-1][3])
        if draw(st.integers(0, 4)) == 0:  # a redelivery from an earlier committed offset
            log.consume(p, *consumed[p][draw(st.integers(0, len(consumed[p]) - 1)) :])
    return log


def _first_reads(log: Log, p: int) -> list[int]:
    """Partition ``p``'s offsets in first-consumption order."""
    seen: list[int] = []
    for _g, _t, q, off in log.consumed:
        if q == p and off not in seen:
            seen.append(off)
    return seen


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log=logs(), kind=st.sampled_from(["none", "aborted_read", "offset_backwards", "offset_skip"]),
       data=st.data())  # fmt: skip
def test_a_generated_log_with_one_injected_anomaly_names_exactly_that_kind(
    run: Run, log: Log, kind: str, data: st.DataObject
) -> None:
    parts = [p for p in range(3) if len(_first_reads(log, p)) >= 2]
    if kind in ("offset_backwards", "offset_skip") and not parts:
        kind = "none"
    if kind == "aborted_read":
        used = {(r["client_id"], r["idempotency_key"]) for r in log.ledger}
        key = data.draw(st.sampled_from(sorted({k for _c, k in used})))  # a key another client also uses
        client = next(c for c in ("c0", "c1", "c2", "c9") if (c, key) not in used)
        for _ in range(data.draw(st.integers(1, 3))):
            log.attempt(client, key, *data.draw(FAILS))
        p = data.draw(st.integers(0, 2))
        log.consume(p, log.event(client, key, _oid(99), partition=p))
    elif kind == "offset_backwards":  # two successive first reads of one partition swapped
        p = data.draw(st.sampled_from(parts))
        reads = _first_reads(log, p)
        i = data.draw(st.integers(0, len(reads) - 2))
        a, b = (
            next(j for j, r in enumerate(log.consumed) if r[2] == p and r[3] == off)
            for off in reads[i : i + 2]
        )
        log.consumed[a], log.consumed[b] = log.consumed[b], log.consumed[a]
    elif kind == "offset_skip":  # every read of one offset below the partition's highest dropped
        p = data.draw(st.sampled_from(parts))
        reads = sorted(_first_reads(log, p))
        off = data.draw(st.sampled_from(reads[:-1]))
        log.consumed = [r for r in log.consumed if not (r[2] == p and r[3] == off)]
    f = run(log)
    violations = sorted(k for k, v in f.kinds.items() if v.count and k != "recovered")
    assert violations == ([] if kind == "none" else [kind]), (kind, _kinds(f))
    if kind != "none":
        assert f.kinds[kind].count == 1
