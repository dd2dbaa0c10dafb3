"""Gathering the integrity evidence: load the ledger and the topics into a per-run work schema, then detect.

:func:`gather` checks the configured tables exist, records the topics' end offsets (a topic that no
longer starts at offset 0 was truncated by retention: its history is incomplete), creates a uniquely named
work schema in the target database, and fills it concurrently: the ledger (:func:`load.load_ledger`), the
topics (:func:`load.load_topic`), and meanwhile the detectors that read only the system's own tables.
Then the detectors that join the ledger and topics run on the same two connections: the submit join in
two parts, one on each, then the order-source kinds on one and the trading and event-log kinds on the
other. The
work schema is dropped afterwards unless ``keep_work_schema``. It returns :class:`IntegrityFindings`;
judging them is :func:`check.check`'s job.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.identifiers import TableName, table_label, unique_name
from resgate.checks.integrity.anomalies import (
    JOIN_PARTS,
    ledger_anomalies,
    one_row_per_trade,
    submit_joins,
    table_anomalies,
    trade_anomalies,
)
from resgate.checks.integrity.check import IntegrityFindings
from resgate.checks.integrity.config import KINDS, IntegrityConfig
from resgate.checks.integrity.event_log import record_event_log
from resgate.checks.integrity.load import (
    ACCEPTED_COLUMNS,
    CANCEL_COLUMNS,
    LedgerInput,
    LedgerLoad,
    TopicLoad,
    accepted_row,
    cancel_row,
    ledger_sources,
    load_ledger,
    load_topic,
    trade_columns,
    trade_row,
)
from resgate.checks.integrity.plan import Plan, TradeSource
from resgate.checks.integrity.trading import record_trading
from resgate.checks.sqlutil import create_schema, drop_schema, table_columns
from resgate.contract.errors import ConfigError
from resgate.sections.kafka import KafkaSettings


def gather(
    dsn: str,
    config: IntegrityConfig,
    ledger: LedgerInput,
    *,
    bootstrap: str | None = None,
    run_id: str | None = None,
    kafka: KafkaSettings | None = None,
) -> IntegrityFindings:
    """Load the ledger and topics into a work schema and detect every anomaly kind in SQL.

    ``ledger`` is a JSON-lines file path, a list of paths, or an iterable of lines / dicts / LedgerRecords.
    ``bootstrap`` is required when topics are configured (reached with ``kafka``, default PLAINTEXT);
    ``run_id`` goes into the work schema's name.
    Returns :class:`IntegrityFindings`. Raises ConfigError before any side effect when the input is
    invalid (including a configured table or column that does not exist), GateError when a source fails.
    """
    from resgate.checks.topics import topic_bounds, truncated_partitions

    if config.topics and not bootstrap:
        raise ConfigError("topics are configured but no Kafka bootstrap was given", where="integrity")
    ledger_labels = [label for label, _items, _f in ledger_sources(ledger)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        _check_tables(conn, config)
    findings = IntegrityFindings()
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    bounds: dict[str, dict[int, tuple[int, int]]] = {}
    truncated: set[str] = set()
    if config.topics:
        assert bootstrap is not None
        bounds = topic_bounds(bootstrap, config.topics, kafka)
        for topic, p, earliest in truncated_partitions(bounds):
            truncated.add(topic)
            findings.incomplete.append(
                f"topic {topic} partition {p} starts at offset {earliest}, not 0: retention dropped its "
                "oldest events, so the topic's history cannot be checked in full"
            )
        findings.stats["topic_end_offsets"] = {
            t: {p: e for p, (_b, e) in parts.items()} for t, parts in bounds.items()
        }
    timings["bounds_s"] = time.perf_counter() - t_start

    schema = unique_name(config.work_schema_prefix, tag=run_id)
    plan = Plan(config, schema, ledger_labels=ledger_labels, truncated=truncated)
    with _connect(dsn, config.work_mem) as a, ExitStack() as connections:
        create_schema(a, schema)
        findings.stats["work_schema"] = schema
        try:
            _gather_in(a, connections, dsn, bootstrap, plan, ledger, bounds, findings, timings, kafka)
        finally:
            if not config.keep_work_schema:
                t = time.perf_counter()
                drop_schema(dsn, schema)
                timings["drop_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start
    findings.stats["timings"] = {k: round(v, 4) for k, v in timings.items()}
    for kind in KINDS:
        findings.skip(kind, "its sources are not configured")
    return findings


def _check_tables(conn: psycopg.Connection[Any], config: IntegrityConfig) -> None:
    """The configured tables and columns exist (ConfigError naming the field otherwise)."""
    specs: list[tuple[str, TableName, dict[str, str | None]]] = []
    if config.orders:
        o = config.orders
        fields = {
            "order_id": o.order_id,
            "client_id": o.client_id,
            "idempotency_key": o.idempotency_key,
            "qty": o.qty,
            "symbol": o.symbol,
            "side": o.side,
            "price": o.price,
        }
        specs.append(("integrity.orders", o.table, fields))
    if config.trades:
        t = config.trades
        fields = {"trade_id": t.trade_id, "symbol": t.symbol, "seq": t.seq, "qty": t.qty, "price": t.price}
        fields.update({f"order_ids[{i}]": c for i, c in enumerate(t.order_ids)})
        specs.append(("integrity.trades", t.table, fields))
    if config.order_states:
        st = config.order_states
        specs.append(("integrity.order_states", st.table, {"order_id": st.order_id, "status": st.status}))
    if config.projected_events:
        pe = config.projected_events
        specs.append(("integrity.projected_events", pe.table, {"event_id": pe.event_id}))
    if config.consumed_offsets:
        co = config.consumed_offsets
        fields = {"group": co.group, "topic": co.topic, "partition": co.partition, "offset": co.offset}
        fields["order"] = co.order
        specs.append(("integrity.consumed_offsets", co.table, fields))
    if config.positions:
        ps = config.positions
        fields = {"client_id": ps.client_id, "symbol": ps.symbol, "net_qty": ps.net_qty}
        specs.append(("integrity.positions", ps.table, fields))
    for where, table, fields in specs:
        cols = table_columns(conn, table)
        if cols is None:
            raise ConfigError(f"table {table_label(table)} does not exist", where=f"{where}.table")
        for name, col in fields.items():
            if col is not None and col not in cols:
                raise ConfigError(
                    f"column {col!r} is not in {table_label(table)} (it has {cols})", where=f"{where}.{name}"
                )


def _connect(dsn: str, work_mem: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(sql.SQL("SET work_mem = {}").format(sql.Literal(work_mem)))
    return conn


def _gather_in(
    a: psycopg.Connection[Any],
    connections: ExitStack,
    dsn: str,
    bootstrap: str | None,
    plan: Plan,
    ledger: LedgerInput,
    bounds: dict[str, dict[int, tuple[int, int]]],
    findings: IntegrityFindings,
    timings: dict[str, float],
    kafka: KafkaSettings | None = None,
) -> None:
    """Fill the work schema and detect, on connection ``a`` and a second one, ``b``, opened beside the
    load into ``connections`` (which closes it); each is used by one thread at a time."""
    config = plan.c
    cap = config.examples_cap
    create_topic_tables(a, plan)

    # Phase 1, concurrently: the ledger load (Python-bound, on a), the topic loads (Kafka), and the checks
    # that read only the system's own tables (Postgres-bound, on b).
    def ledger_phase() -> LedgerLoad:
        t = time.perf_counter()
        out = load_ledger(a, plan.schema, ledger, config, cap)
        timings.update(out.timings)
        timings["ledger_load_s"] = time.perf_counter() - t
        return out

    def topics_phase() -> list[TopicLoad]:
        t = time.perf_counter()
        out = asyncio.run(_load_topics(dsn, bootstrap, config, plan, bounds, cap, kafka))
        with _connect(dsn, config.work_mem) as c:
            for name, src in (
                ("accepted", config.accepted_events),
                ("trade_events", config.trade_events),
                ("cancels", config.cancel_events),
            ):
                if src is not None:
                    c.execute(sql.SQL("ANALYZE {}").format(plan.w(name)))
        timings["topics_load_s"] = time.perf_counter() - t
        return out

    def tables_phase() -> psycopg.Connection[Any]:
        t = time.perf_counter()
        b = connections.enter_context(_connect(dsn, config.work_mem))
        table_anomalies(b, plan, findings)
        timings["table_checks_s"] = time.perf_counter() - t
        return b

    with ThreadPoolExecutor(max_workers=3) as pool:
        f_ledger = pool.submit(ledger_phase)
        f_topics = pool.submit(topics_phase) if config.topics else None
        f_tables = pool.submit(tables_phase)
        led = f_ledger.result()
        topic_loads = f_topics.result() if f_topics else []
        b = f_tables.result()

    findings.stats.update(
        ledger_records=led.lines,
        ledger_submits=led.submits,
        ledger_acked=led.acked,
        ledger_other_ops=led.other_ops,
        ledger_submits_without_key=led.without_key,
        ledger_cancels=led.cancels,
        ledger_reads=led.reads,
    )
    if led.not_utf8:
        findings.stats["ledger_lines_not_utf8"] = led.not_utf8
    if led.invalid:
        findings.incomplete.append(
            f"{led.invalid} ledger record(s) could not be read, e.g. "
            + "; ".join(f"{e['where']}: {e['reason']}" for e in led.invalid_examples[:3])
        )
    if led.acked_without_key_count:
        findings.incomplete.append(
            f"{led.acked_without_key_count} acknowledged submit(s) carry no idempotency key and cannot be "
            f"matched, e.g. {led.acked_without_key[0]['where']}"
        )
    if led.submits == 0:
        findings.incomplete.append("the ledger holds no submit records: nothing was proven")
    for tl in topic_loads:
        findings.stats[f"events[{tl.topic}]"] = tl.events
        if tl.malformed:
            findings.incomplete.append(
                f"{tl.malformed} event(s) in topic {tl.topic} could not be read, e.g. "
                + "; ".join(
                    f"partition {e['partition']} offset {e['offset']}: {e['reason']}"
                    for e in tl.malformed_examples[:3]
                )
            )

    # Phase 2: everything that joins the ledger or the topics, on both connections (Postgres runs them on
    # two cores). The submit join runs in JOIN_PARTS parts, one per connection; then a reads the
    # order-source kinds from it while b runs the trade, trading and event-log kinds (they share no work
    # table, and b's part is the shorter: it starts while the other still runs). Each connection records
    # into its own findings, merged in a fixed order.
    t = time.perf_counter()
    fields = {"submit_fields": led.submit_fields, "cancels": led.cancels, "read_fields": led.read_fields}
    part1: Future[None] = Future()

    def on_a() -> IntegrityFindings:
        submit_joins(a, plan, fields, 0, JOIN_PARTS)
        part1.result()  # the other part, on b
        out = IntegrityFindings()
        ledger_anomalies(a, plan, out, fields, JOIN_PARTS)
        return out

    def on_b() -> IntegrityFindings:
        try:
            submit_joins(b, plan, fields, 1, JOIN_PARTS)
        except BaseException as e:
            part1.set_exception(e)
            raise
        part1.set_result(None)
        out = IntegrityFindings()
        trading_and_event_log(b, plan, out, fields)
        return out

    with ThreadPoolExecutor(max_workers=2) as pool:
        f_a, f_b = pool.submit(on_a), pool.submit(on_b)
        branches = [f_a.result(), f_b.result()]
    for part in branches:
        merge_findings(findings, part, config.examples_cap)
    timings["ledger_checks_s"] = time.perf_counter() - t


def merge_findings(into: IntegrityFindings, part: IntegrityFindings, cap: int) -> None:
    """Add one branch's findings to ``into``: its kinds (examples capped at ``cap`` per kind), the kinds it
    could not check (unless checked elsewhere), its incomplete sources and its stats."""
    for name, found in part.kinds.items():
        into.kind(name).add(found.count, found.examples, cap)
    for name, reason in part.not_checked.items():
        into.skip(name, reason)
    into.incomplete.extend(part.incomplete)
    into.stats.update(part.stats)


def create_topic_tables(conn: psycopg.Connection[Any], plan: Plan) -> None:
    """The work tables the configured topics load into: ``accepted``, ``trade_events`` and ``cancels``.

    Each row is one event with its partition ``p``, offset ``off`` and event id ``eid``; the columns after
    them are those of :data:`~resgate.checks.integrity.load.ACCEPTED_COLUMNS`,
    :func:`~resgate.checks.integrity.load.trade_columns` and
    :data:`~resgate.checks.integrity.load.CANCEL_COLUMNS`. The one DDL of these tables (the tests' work
    tables are made by it too).
    """
    config = plan.c
    if config.accepted_events:
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE {} (p int, off bigint, eid text, order_id text, client_id text, "
                "ikey text, qty numeric)"
            ).format(plan.w("accepted"))
        )
    if config.trade_events:
        n = len(config.trade_events.order_ids)
        cols = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f"o{i}")) for i in range(n))
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE {} (p int, off bigint, eid text, trade_id text, symbol text, "
                "seq bigint, qty numeric, price numeric, {})"
            ).format(plan.w("trade_events"), cols)
        )
    if config.cancel_events:
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (p int, off bigint, eid text, order_id text)").format(
                plan.w("cancels")
            )
        )


def joined_anomalies(
    conn: psycopg.Connection[Any], plan: Plan, findings: IntegrityFindings, ledger_fields: dict[str, int]
) -> None:
    """Every detector that joins the loaded ledger or topics (gather's second phase), into ``findings``.

    ``ledger_fields`` counts the ledger records carrying what the trading kinds need (``submit_fields``,
    ``cancels``, ``read_fields``).
    """
    for part in range(JOIN_PARTS):
        submit_joins(conn, plan, ledger_fields, part, JOIN_PARTS)
    ledger_anomalies(conn, plan, findings, ledger_fields, JOIN_PARTS)
    trading_and_event_log(conn, plan, findings, ledger_fields)


def trading_and_event_log(
    conn: psycopg.Connection[Any], plan: Plan, findings: IntegrityFindings, ledger_fields: dict[str, int]
) -> None:
    """The trade kinds, then the trading kinds (which check positions against those trades) and the
    event-log kinds: :func:`joined_anomalies` less the order-source kinds."""
    config = plan.c
    positions_trades: TradeSource | None = None
    if config.trade_events:
        topic_trades = trade_anomalies(conn, plan, findings, plan.topic_trades())
        if not topic_trades.truncated:
            positions_trades = topic_trades
    if positions_trades is None and config.trades:
        positions_trades = one_row_per_trade(conn, plan, plan.table_trades())
    record_trading(conn, plan, findings, positions_trades, ledger_fields)
    record_event_log(conn, plan, findings)


async def _load_topics(
    dsn: str,
    bootstrap: str | None,
    config: IntegrityConfig,
    plan: Plan,
    bounds: dict[str, dict[int, tuple[int, int]]],
    cap: int,
    kafka: KafkaSettings | None = None,
) -> list[TopicLoad]:
    assert bootstrap is not None
    jobs = []
    if config.accepted_events:
        a = config.accepted_events
        jobs.append(
            load_topic(
                dsn,
                bootstrap,
                plan.w("accepted"),
                ACCEPTED_COLUMNS,
                a.topic,
                a.type_field,
                a.type_value,
                bounds[a.topic],
                accepted_row(a),
                timeout_s=config.consume_timeout_s,
                cap=cap,
                kafka=kafka,
            )
        )
    if config.trade_events:
        te = config.trade_events
        jobs.append(
            load_topic(
                dsn,
                bootstrap,
                plan.w("trade_events"),
                trade_columns(len(te.order_ids)),
                te.topic,
                te.type_field,
                te.type_value,
                bounds[te.topic],
                trade_row(te),
                timeout_s=config.consume_timeout_s,
                cap=cap,
                kafka=kafka,
            )
        )
    if config.cancel_events:
        ce = config.cancel_events
        jobs.append(
            load_topic(
                dsn,
                bootstrap,
                plan.w("cancels"),
                CANCEL_COLUMNS,
                ce.topic,
                ce.type_field,
                ce.type_value,
                bounds[ce.topic],
                cancel_row(ce),
                timeout_s=config.consume_timeout_s,
                cap=cap,
                kafka=kafka,
            )
        )
    return list(await asyncio.gather(*jobs))
