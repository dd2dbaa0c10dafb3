"""Test support: run the integrity detectors over hand-made work tables, without Kafka.

:func:`detect` fills one Postgres schema the way :func:`resgate.checks.integrity.gather` fills its work
schema, with gather's own DDL (:func:`~resgate.checks.integrity.gather.create_topic_tables`) and detector
phases (``table_anomalies``, then :func:`~resgate.checks.integrity.gather.joined_anomalies`): the ledger
through the real COPY loader, topic events through the real row makers
:func:`~resgate.checks.integrity.load.accepted_row` / :func:`~resgate.checks.integrity.load.trade_row`,
each with its partition and offset. Events are given
as ``(partition, offset, event dict)``; a topic named in ``truncated`` is treated as cut by retention.
Many histories can share one database (one schema each), which keeps generated-history tests fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.integrity import IntegrityConfig, IntegrityFindings
from resgate.checks.integrity.anomalies import table_anomalies
from resgate.checks.integrity.config import KINDS
from resgate.checks.integrity.gather import create_topic_tables, joined_anomalies
from resgate.checks.integrity.load import (
    ACCEPTED_COLUMNS,
    accepted_row,
    load_ledger,
    trade_columns,
    trade_row,
)
from resgate.checks.integrity.plan import Plan
from resgate.checks.sqlutil import CopyBuffer, copy_statement

Event = tuple[int, int, dict[str, Any]]

ORDERS_DDL = "CREATE TABLE {} (order_id text, client_id text, idempotency_key text, qty bigint, symbol text)"
TRADES_DDL = (
    "CREATE TABLE {} (trade_id text, symbol text, seq bigint, buy_order_id text, sell_order_id text, "
    "qty bigint)"
)


def create_system_tables(
    conn: psycopg.Connection[Any],
    schema: str,
    orders: Sequence[dict[str, Any]],
    trades: Sequence[dict[str, Any]],
) -> None:
    """The system under test's own tables ``<schema>.orders`` and ``<schema>.rm_trades``."""
    o, t = sql.Identifier(schema, "orders"), sql.Identifier(schema, "rm_trades")
    conn.execute(sql.SQL(ORDERS_DDL).format(o))
    conn.execute(sql.SQL(TRADES_DDL).format(t))
    _copy(
        conn,
        o,
        ("order_id", "client_id", "idempotency_key", "qty", "symbol"),
        ((r["order_id"], r["client_id"], r["idempotency_key"], r["qty"], r.get("symbol")) for r in orders),
    )
    _copy(
        conn,
        t,
        ("trade_id", "symbol", "seq", "buy_order_id", "sell_order_id", "qty"),
        (
            (r["trade_id"], r["symbol"], r["seq"], r["buy_order_id"], r["sell_order_id"], r["qty"])
            for r in trades
        ),
    )


def _copy(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    buf = CopyBuffer()
    for r in rows:
        buf.add(r)
    data = buf.take()
    if data:
        with conn.cursor() as cur, cur.copy(copy_statement(table, columns)) as cp:
            cp.write(data)


def detect(
    conn: psycopg.Connection[Any],
    config: IntegrityConfig,
    schema: str,
    *,
    ledger: Iterable[Any],
    accepted: Sequence[Event] = (),
    trade_events: Sequence[Event] = (),
    truncated: frozenset[str] = frozenset(),
) -> IntegrityFindings:
    """Load the work tables into ``schema`` (which must exist) and run every detector phase.

    Returns the findings as :func:`resgate.checks.integrity.gather` would (with ``incomplete`` entries for
    truncated topics, malformed events and a ledger without submits).
    """
    plan = Plan(config, schema, ledger_labels=["ledger"], truncated=set(truncated))
    findings = IntegrityFindings()
    for topic in sorted(truncated):
        findings.incomplete.append(f"topic {topic} was truncated by retention")
    led = load_ledger(conn, schema, ledger, config, config.examples_cap)
    if led.invalid:
        findings.incomplete.append(f"{led.invalid} ledger record(s) could not be read")
    if led.submits == 0:
        findings.incomplete.append("the ledger holds no submit records: nothing was proven")
    create_topic_tables(conn, plan)
    if config.accepted_events:
        _load_events(
            conn, plan.w("accepted"), ACCEPTED_COLUMNS, accepted, accepted_row(config.accepted_events)
        )
    if config.trade_events:
        n = len(config.trade_events.order_ids)
        _load_events(
            conn, plan.w("trade_events"), trade_columns(n), trade_events, trade_row(config.trade_events)
        )
    table_anomalies(conn, plan, findings)
    joined_anomalies(
        conn,
        plan,
        findings,
        {"submit_fields": led.submit_fields, "cancels": led.cancels, "read_fields": led.read_fields},
    )
    for kind in KINDS:
        findings.skip(kind, "its sources are not configured")
    return findings


def _load_events(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    columns: Sequence[str],
    events: Sequence[Event],
    make_row: Any,
) -> None:
    rows = []
    for p, off, d in events:
        row = make_row(d)
        assert not isinstance(row, str), row
        rows.append((p, off, *row))
    _copy(conn, table, columns, rows)


def config_for(schema: str, *, topics: bool = True, **overrides: Any) -> IntegrityConfig:
    """The paperbroker-shaped config over ``<schema>.orders`` / ``<schema>.rm_trades`` and two topics."""
    section: dict[str, Any] = {
        "orders": {"table": f"{schema}.orders", "qty": "qty"},
        "trades": {"table": f"{schema}.rm_trades", "order_ids": ["buy_order_id", "sell_order_id"]},
        "examples_cap": 5,
    }
    if topics:
        section["accepted_events"] = {"topic": "orders", "type_value": "OrderAccepted"}
        section["trade_events"] = {"topic": "executions", "type_value": "TradeExecuted"}
    section.update(overrides)
    return IntegrityConfig.from_dict({k: v for k, v in section.items() if v is not None})
