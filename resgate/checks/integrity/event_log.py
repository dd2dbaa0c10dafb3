"""The event log's own anomalies, as Jepsen's Kafka workload checks them, each a set operation in SQL.

Where :mod:`resgate.checks.integrity.anomalies` asks whether what clients were told landed, these ask
what the event log's consumers saw: an event whose producing request failed (an aborted read), and a
consumer group whose consumption of a partition (Jepsen's Kafka *key*) went backwards or skipped
offsets. Each detector's docstring defines its anomaly with a small example and returns its
:class:`~resgate.checks.integrity.plan.Cases`; :func:`record_event_log` runs those the configured sources
allow and names the reason for each kind it could not check (never a pass).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.identifiers import table_label
from resgate.checks.integrity.check import IntegrityFindings
from resgate.checks.integrity.plan import Cases, Plan, counted, fetch
from resgate.checks.sqlutil import table_ident

Conn = psycopg.Connection[Any]


def _record(findings: IntegrityFindings, kind: str, label: str, cases: Cases, cap: int) -> None:
    findings.kind(kind).add(cases.total, ({"source": label, **e} for e in cases.examples), cap)


def aborted_reads(conn: Conn, plan: Plan) -> Cases:
    """An event in the accepted-events topic whose producing request failed: every attempt of its key did.

    The client was told its request certainly did not take effect (outcome ``fail``: a 4xx, a 503, a
    refused connection), yet the event is in the log, where every consumer reads it (Jepsen's aborted
    read: a read of a write that failed). One indeterminate or ok attempt of the key explains the event,
    so it is no case. Example: ``(c1, k4)`` was answered 503 once and never retried; ``OrderAccepted(order
    7, c1, k4)`` sits at partition 0 offset 12. Case: ``{client_id, idempotency_key, order_id, partition,
    offset, event_id, attempts, statuses, ledger_at: "file:line"}`` (the event's first position).
    """
    cases = counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT a.c AS client_id, a.k AS idempotency_key, a.oid AS order_id, a.p AS partition, "
                "a.off AS offset, a.eid AS event_id, s.attempts, s.statuses, s.at AS ledger_at, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT DISTINCT ON (c, k, oid) c, k, oid, p, off, eid FROM {a} x"
                "  ORDER BY c, k, oid, p, off) a "
                "JOIN (SELECT l.client_id, l.ikey, count(*) AS attempts,"
                "             (array_agg(DISTINCT l.status))[1:5] AS statuses,"
                "             min(ARRAY[l.src, l.line]) AS at"
                "      FROM {L} l WHERE (l.client_id, l.ikey) IN (SELECT c, k FROM {a} y)"
                "      GROUP BY l.client_id, l.ikey HAVING bool_and(l.outcome = 'fail')) s"
                "  ON s.client_id = a.c AND s.ikey = a.k "
                "ORDER BY a.p, a.off, a.c, a.k LIMIT {cap}"
            ).format(a=plan.accepted(), L=plan.w("ledger"), cap=sql.Literal(plan.cap)),
        )
    )
    for e in cases.examples:
        at = e.pop("ledger_at", None)
        if at:
            e["ledger_at"] = f"{plan.ledger_labels[at[0]]}:{at[1]}"
    return cases


def _consumed(plan: Plan) -> sql.Composable:
    """``(grp, topic, p, off, o)``: each (group, topic, partition, offset) once, at its first consumption."""
    co = plan.c.consumed_offsets
    assert co is not None
    grp = sql.SQL("{}::text").format(sql.Identifier(co.group)) if co.group else sql.SQL("''::text")
    return sql.SQL(
        "(SELECT {grp} AS grp, {topic}::text AS topic, {p}::int AS p, {off}::bigint AS off, min({o}) AS o "
        "FROM {t} GROUP BY 1, 2, 3, 4)"
    ).format(
        grp=grp,
        topic=sql.Identifier(co.topic),
        p=sql.Identifier(co.partition),
        off=sql.Identifier(co.offset),
        o=sql.Identifier(co.order),
        t=table_ident(co.table),
    )


def offsets_backwards(conn: Conn, plan: Plan) -> Cases:
    """A consumer group that consumed an offset of a partition for the first time after a higher one.

    Per (group, topic, partition), in consumption order, the offsets consumed for the first time must
    increase (Jepsen's nonmonotonic poll, per key). A redelivery (consuming again from the committed
    offset after a crash) repeats offsets already consumed and is not a case. Example: group ``proj``
    consumed ``orders``/0 offsets 5, 7, then 6: offset 6 came after 7. Case: ``{group, topic, partition,
    offset, after_offset}`` (``after_offset``: the highest offset consumed before it).
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT grp AS group, topic, p AS partition, off AS offset, prev_max AS after_offset, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT grp, topic, p, off, max(off) OVER (PARTITION BY grp, topic, p ORDER BY o, off"
                "    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max FROM {c} c) x "
                "WHERE off < prev_max ORDER BY grp, topic, p, off LIMIT {cap}"
            ).format(c=_consumed(plan), cap=sql.Literal(plan.cap)),
        )
    )


def _loaded_events(plan: Plan) -> sql.Composable:
    """``(topic, p, off)`` of every event loaded from the configured topics."""
    parts = []
    c = plan.c
    for src, table in (
        (c.accepted_events, "accepted"),
        (c.trade_events, "trade_events"),
        (c.cancel_events, "cancels"),
    ):
        if src is not None:
            parts.append(
                sql.SQL("SELECT {topic}::text AS topic, p, off FROM {t}").format(
                    topic=sql.Literal(src.topic), t=plan.w(table)
                )
            )
    return sql.SQL("(SELECT DISTINCT topic, p, off FROM ({}) u)").format(sql.SQL(" UNION ALL ").join(parts))


def offsets_skipped(conn: Conn, plan: Plan) -> Cases:
    """An event of a loaded topic that a consumer group never consumed, below an offset it did consume.

    Per (group, topic, partition), every event of the topic at an offset under the highest offset the group
    consumed must have been consumed (Jepsen's poll skip, per key). An event above it is lag, not a skip.
    Example: ``orders``/1 holds events at offsets 0..9; group ``proj`` consumed 0..3 and 5..9, never 4.
    Case: ``{group, topic, partition, offset, max_consumed}``.
    """
    return counted(
        fetch(
            conn,
            sql.SQL(
                "SELECT g.grp AS group, e.topic, e.p AS partition, e.off AS offset, "
                "g.max_off AS max_consumed, "
                "count(*) OVER () AS _total FROM {e} e "
                "JOIN (SELECT grp, topic, p, max(off) AS max_off FROM {c} c GROUP BY 1, 2, 3) g"
                "  ON g.topic = e.topic AND g.p = e.p AND e.off < g.max_off "
                "WHERE NOT EXISTS (SELECT 1 FROM {c} x WHERE x.grp = g.grp AND x.topic = e.topic"
                "                  AND x.p = e.p AND x.off = e.off) "
                "ORDER BY g.grp, e.topic, e.p, e.off LIMIT {cap}"
            ).format(e=_loaded_events(plan), c=_consumed(plan), cap=sql.Literal(plan.cap)),
        )
    )


def record_event_log(conn: Conn, plan: Plan, findings: IntegrityFindings) -> None:
    """The event log's kinds: aborted_read, offset_backwards, offset_skip (each recorded or skipped)."""
    c = plan.c
    cap = plan.cap
    if c.accepted_events is None:
        findings.skip("aborted_read", "no accepted_events topic configured")
    else:
        label = f"topic:{c.accepted_events.topic}"
        _record(findings, "aborted_read", label, aborted_reads(conn, plan), cap)
    co = c.consumed_offsets
    if co is None:
        for k in ("offset_backwards", "offset_skip"):
            findings.skip(k, "no consumed_offsets table configured")
        return
    label = f"table:{table_label(co.table)}"
    _record(findings, "offset_backwards", label, offsets_backwards(conn, plan), cap)
    if not c.topics:
        findings.skip("offset_skip", "no topic configured to compare the consumed offsets with")
    else:
        _record(findings, "offset_skip", label, offsets_skipped(conn, plan), cap)
