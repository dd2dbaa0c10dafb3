"""Streaming the integrity evidence into the work schema: the client ledger and the event topics, by COPY.

The ledger loader hands the ledger's bytes to Postgres unparsed (a raw COPY, one text value a line) and
lets Postgres parse the JSON and extract the fields with SQL, so it runs at about the speed of COPY itself;
the topic loader reads each configured topic from its earliest offsets to the end offsets taken at the
start. Neither holds a history in Python memory: data leaves in ~1 MiB COPY chunks. Each returns counters
(records read, malformed ones named ``file:line`` or by offset, with capped examples) for
:func:`resgate.checks.integrity.gather`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.integrity.config import AcceptedEvents, CancelEvents, IntegrityConfig, TradeEvents
from resgate.checks.sqlutil import CopyBuffer, copy_statement
from resgate.checks.topics import consume_until
from resgate.contract.errors import ConfigError, GateError
from resgate.sections.kafka import KafkaSettings

LedgerInput = Any
"""A ledger file path, a list of paths, or an iterable of lines (bytes/str), dicts or LedgerRecords."""


def ledger_sources(ledger: LedgerInput) -> list[tuple[str, Iterable[Any], bool]]:
    """``[(label, lines_or_records, is_file)]``: one entry per file, or one for an in-memory iterable."""
    if isinstance(ledger, (str, os.PathLike)):
        return [(os.fspath(ledger), [], True)]
    if (
        isinstance(ledger, (list, tuple))
        and ledger
        and all(
            isinstance(x, os.PathLike) or (isinstance(x, str) and not x.lstrip().startswith("{"))
            for x in ledger
        )
    ):
        return [(os.fspath(x), [], True) for x in ledger]
    if isinstance(ledger, Iterable):
        return [("ledger", ledger, False)]
    raise ConfigError(f"the ledger must be a path, a list of paths or an iterable of records, got {ledger!r}")


@dataclass
class LedgerLoad:
    """What :func:`load_ledger` read: record counts, and the records it could not use (capped examples)."""

    lines: int = 0
    submits: int = 0
    acked: int = 0
    other_ops: int = 0
    without_key: int = 0
    acked_without_key: list[dict[str, Any]] = field(default_factory=list)
    acked_without_key_count: int = 0
    invalid: int = 0
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)
    cancels: int = 0
    reads: int = 0
    submit_fields: int = 0
    read_fields: int = 0
    raw_fallback_sources: int = 0
    timings: dict[str, float] = field(default_factory=dict)


LEDGER_VIEW = (
    "src, line, ts, client_id, ikey, outcome, status, order_id, symbol, side, qty, price",
    "kind = 'submit' AND reason IS NULL AND ikey IS NOT NULL",
)
"""The work ledger ``ledger``: one row per submit attempt that carries an idempotency key (what was sent,
and what the client was told); a view over ``ledger_all``."""

LEDGER_OPS_VIEW = (
    "src, line, ts, kind, client_id, order_id, outcome, status, order_status, filled_qty",
    "kind IN ('cancel', 'read') AND reason IS NULL",
)
"""The work ledger's ``ledger_ops``: cancels (``kind = 'cancel'``) and order reads (``'read'``), with
what a read saw; a view over ``ledger_all``."""

# The COPY of raw ledger bytes: CSV with a delimiter and a quote that valid JSON text never holds raw
# (JSON escapes every control character), so each line arrives whole as one text value, unparsed.
_RAW_COPY = "COPY {} (txt) FROM STDIN (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02', NULL E'\\x03')"
_CHUNK = 1 << 20


# The fields the work tables take from a ledger record, each extracted as text in one jsonb_to_record call
# per line (one parse of the line; a field read with ->> per use would cost a lookup and a copy each).
_RECORD_FIELDS = (
    "ts",
    "op",
    "client_id",
    "idempotency_key",
    "outcome",
    "status",
    "order_id",
    "symbol",
    "side",
    "qty",
    "price",
    "order_status",
    "filled_qty",
)
# A JSON number (or a numeric string) that float8 and numeric both accept; anything else is NULL.
_NUMERIC = "'^\\s*-?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$'"


def _number(field: str, cast: str, tolerant: bool) -> str:
    """SQL: the extracted text of ``field`` as ``cast``: a plain cast in the fast form (a value that is no
    number fails the statement, and the tolerant form runs instead), NULL unless it reads as a number in
    the tolerant form."""
    if not tolerant:
        return f"nullif(r.{field}, '')::{cast}"
    return f"(CASE WHEN r.{field} ~ {_NUMERIC} THEN r.{field}::{cast} END)"


def _text(field: str) -> str:
    """SQL: the extracted text of ``field`` (NULL for a missing field, JSON null or the empty string)."""
    return f"nullif(r.{field}, '')"


def load_ledger(
    conn: psycopg.Connection[Any],
    schema: str,
    ledger: LedgerInput,
    config: IntegrityConfig,
    cap: int,
) -> LedgerLoad:
    """Load the ledger into the work tables ``ledger`` (submits) and ``ledger_ops`` (cancels and reads).

    The ledger's bytes go to Postgres unparsed (a file in 1 MiB chunks, COPYed as one text value a line,
    numbered in file order) and Postgres parses the JSON and extracts the fields in one statement, so no
    record is parsed in Python and memory stays flat. A file Postgres cannot take as is (bytes that are not
    UTF-8, a NUL, a control character a JSON line never holds raw) is read again in Python, line by line,
    with undecodable bytes replaced. A line that is not a JSON object, or a submit with no client or no
    valid outcome, is counted and named ``file:line`` in ``invalid_examples``; blank lines are skipped.
    """
    raw = sql.Identifier(schema, "ledger_raw")
    conn.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE {} (src int NOT NULL DEFAULT 0, "
            "line bigint GENERATED BY DEFAULT AS IDENTITY, txt text)"
        ).format(raw)
    )
    stats = LedgerLoad()
    t0 = time.perf_counter()
    labels: list[str] = []
    for src, (label, items, is_file) in enumerate(ledger_sources(ledger)):
        labels.append(label)
        if is_file:
            try:
                if not _copy_file_raw(conn, raw, src, label):
                    stats.raw_fallback_sources += 1
                    with open(label, encoding="utf-8", errors="replace", newline="\n") as fh:
                        _copy_lines(conn, raw, src, fh)
            except OSError as e:
                raise GateError(f"cannot read the ledger {label}: {e}") from e
        else:
            _copy_lines(conn, raw, src, (_line_of(x) for x in items))
    t1 = time.perf_counter()
    _extract(conn, schema, config, cap, labels, stats)
    t2 = time.perf_counter()
    conn.execute(sql.SQL("DROP TABLE {}").format(raw))
    stats.timings.update(ledger_copy_s=t1 - t0, ledger_parse_s=t2 - t1)
    return stats


def _copy_file_raw(conn: psycopg.Connection[Any], raw: sql.Identifier, src: int, path: str) -> bool:
    """COPY the file's lines into ``raw`` as they are; False (nothing kept) if Postgres could not take them.

    Lines are numbered by the identity column, restarted at 1 for each file: COPY inserts in file order,
    and the number of rows must equal the number of lines (else a line was split or merged).
    """
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN src SET DEFAULT {}").format(raw, sql.Literal(src)))
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN line RESTART WITH 1").format(raw))
    lines = 0
    last = b"\n"
    try:
        with conn.transaction(), conn.cursor() as cur:
            with open(path, "rb") as fh, cur.copy(sql.SQL(_RAW_COPY).format(raw)) as cp:
                while chunk := fh.read(_CHUNK):
                    if b"\x02" in chunk or b"\x03" in chunk or b"\r" in chunk:
                        raise _NotRaw
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
                    cp.write(chunk)
            if last != b"\n":
                lines += 1
            if cur.rowcount != lines:
                raise _NotRaw
    except (_NotRaw, psycopg.errors.DataError, psycopg.errors.BadCopyFileFormat):
        return False
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN src SET DEFAULT 0").format(raw))
    return True


class _NotRaw(Exception):
    """The file holds bytes the raw COPY cannot carry line for line."""


def _line_of(item: Any) -> str | None:
    """One in-memory ledger item as a line of JSON text (None for an item that is no record at all)."""
    if type(item) is str:
        return item
    if isinstance(item, (bytes, bytearray)):
        return bytes(item).decode("utf-8", errors="replace")
    if isinstance(item, Mapping):
        return json.dumps(dict(item), default=str)
    if hasattr(item, "to_dict"):
        return json.dumps(item.to_dict(), default=str)
    return json.dumps(f"not a record: {type(item).__name__}")


def _copy_lines(conn: psycopg.Connection[Any], raw: sql.Identifier, src: int, lines: Iterable[Any]) -> None:
    """COPY ``lines`` (text) into ``raw`` with explicit numbers, escaped for COPY's text format."""
    buf = CopyBuffer()
    with conn.cursor() as cur, cur.copy(copy_statement(raw, ("src", "line", "txt"))) as cp:
        for lineno, line in enumerate(lines, start=1):
            text = line.rstrip("\r\n").replace("\x00", "\ufffd") if line is not None else None
            if buf.add((src, lineno, text)):
                cp.write(buf.take())
        cp.write(buf.take())


def _extract(
    conn: psycopg.Connection[Any],
    schema: str,
    config: IntegrityConfig,
    cap: int,
    labels: list[str],
    stats: LedgerLoad,
) -> None:
    """Parse the raw lines in Postgres, once each, into ``ledger_all``; count what cannot be used.

    ``ledger`` and ``ledger_ops`` are views over it, so every line is parsed once and written once more.
    """
    w = lambda name: sql.Identifier(schema, name)  # noqa: E731
    try:
        with conn.transaction():
            # The parse is the load's CPU: let Postgres split it over parallel workers (its default costs
            # rarely choose them for a CREATE TABLE AS over a function scan).
            conn.execute("SET LOCAL parallel_setup_cost = 0")
            conn.execute("SET LOCAL parallel_tuple_cost = 0")
            conn.execute(_extract_sql(schema, config, False))
    except psycopg.errors.DataError:
        # Some line is not a JSON object (or a field is not what it should be): parse again, each line in
        # its own subtransaction (slower, but only here), and name the lines that cannot be used.
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}(t text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$ "
                "BEGIN RETURN t::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$"
            ).format(w("try_jsonb"))
        )
        conn.execute(_extract_sql(schema, config, True))
    for name, (cols, where) in (("ledger", LEDGER_VIEW), ("ledger_ops", LEDGER_OPS_VIEW)):
        conn.execute(
            sql.SQL("CREATE VIEW {} AS SELECT {} FROM {} WHERE {}").format(
                w(name), sql.SQL(cols), w("ledger_all"), sql.SQL(where)
            )
        )
    t = time.perf_counter()
    # only the columns the detectors join and filter on (a full ANALYZE was a third of the parse's time)
    conn.execute(
        sql.SQL("ANALYZE {} (kind, reason, client_id, ikey, outcome, order_id)").format(w("ledger_all"))
    )
    stats.timings["ledger_analyze_s"] = time.perf_counter() - t
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE reason IS NOT NULL), "
            "  count(*) FILTER (WHERE kind = 'submit' AND reason IS NULL), "
            "  count(*) FILTER (WHERE kind = 'submit' AND reason IS NULL AND ikey IS NOT NULL "
            "    AND outcome = 'ok'), "
            "  count(*) FILTER (WHERE kind = 'submit' AND reason IS NULL AND ikey IS NULL), "
            "  count(*) FILTER (WHERE kind = 'submit' AND reason IS NULL AND ikey IS NULL "
            "    AND outcome = 'ok'), "
            "  count(*) FILTER (WHERE reason IS NULL AND kind IS DISTINCT FROM 'submit'), "
            "  count(*) FILTER (WHERE reason IS NULL AND kind = 'cancel'), "
            "  count(*) FILTER (WHERE reason IS NULL AND kind = 'read'), "
            "  count(*) FILTER (WHERE kind = 'submit' AND reason IS NULL "
            "    AND num_nonnulls(symbol, side, qty, price) > 0), "
            "  count(*) FILTER (WHERE reason IS NULL AND kind = 'read' "
            "    AND num_nonnulls(order_status, filled_qty) > 0) FROM {}"
        ).format(w("ledger_all"))
    ).fetchone()
    assert row is not None
    (lines, invalid, submits, acked, without_key, acked_no_key, others, cancels, reads, submit_fields,
     read_fields) = (int(x or 0) for x in row)  # fmt: skip
    stats.lines += lines
    stats.invalid += invalid
    stats.submits += submits
    stats.acked += acked
    stats.without_key += without_key
    stats.acked_without_key_count += acked_no_key
    stats.other_ops += others
    stats.cancels += cancels
    stats.reads += reads
    stats.submit_fields += submit_fields
    stats.read_fields += read_fields
    if invalid or acked_no_key:
        _examples(conn, schema, cap, labels, stats)


def _classified(schema: str, config: IntegrityConfig, tolerant: bool) -> sql.Composable:
    """SQL rows ``(src, line, r.<field>..., reason, kind)``: each non-blank raw line parsed once.

    ``reason`` says why a line cannot be used (NULL when it can); ``kind`` is ``'submit'``, ``'cancel'``,
    ``'read'`` or NULL (another op). The fast form (``tolerant`` False) takes every line as a JSON object
    and fails on the first that is not one; the tolerant form parses each line in a subtransaction
    (``try_jsonb``) and names the lines that are not JSON objects.
    """
    fields = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f)) for f in _RECORD_FIELDS)
    raw = sql.Identifier(schema, "ledger_raw")
    # Blank lines are skipped; a line that starts with "{" (nearly all of them) skips the whitespace test.
    blank = sql.SQL("txt IS NOT NULL AND (left(txt, 1) = '{' OR btrim(txt, E' \\t\\r\\n\\f\\v') <> '')")
    if tolerant:
        rows = sql.SQL(
            "SELECT x.src, x.line, r.*, x.j IS NOT NULL AS parsed, coalesce(x.is_object, false) AS is_object "
            "FROM (SELECT src, line, j, jsonb_typeof(j) = 'object' AS is_object FROM ("
            "        SELECT src, line, {try_jsonb}(txt) AS j FROM {raw} WHERE {blank} OFFSET 0) y) x"
            "  LEFT JOIN LATERAL jsonb_to_record(CASE WHEN x.is_object THEN x.j END) AS r({fields}) ON true"
        ).format(try_jsonb=sql.Identifier(schema, "try_jsonb"), raw=raw, blank=blank, fields=fields)
    else:
        # json, not jsonb: json_to_record reads the text once and builds nothing it does not return
        rows = sql.SQL(
            "SELECT x.src, x.line, r.*, true AS parsed, true AS is_object "
            "FROM {raw} x, json_to_record(x.txt::json) AS r({fields}) WHERE {blank}"
        ).format(raw=raw, blank=blank, fields=fields)
    return sql.SQL(
        "SELECT r.*, CASE WHEN NOT r.parsed THEN 'not JSON' WHEN NOT r.is_object THEN 'not a JSON object' "
        "  WHEN r.op = ANY({ops}) AND ({client} IS NULL OR coalesce(r.outcome, '') "
        "       NOT IN ('ok', 'fail', 'info')) "
        "  THEN 'a submit record needs client_id and outcome ok|fail|info' END AS reason, "
        "  CASE WHEN r.op = ANY({ops}) THEN 'submit' WHEN r.op = ANY({cancel_ops}) THEN 'cancel' "
        "    WHEN r.op = ANY({read_ops}) THEN 'read' END AS kind FROM ({rows}) r"
    ).format(
        ops=sql.Literal(list(config.submit_ops)),
        cancel_ops=sql.Literal(list(config.cancel_ops)),
        read_ops=sql.Literal(list(config.read_ops)),
        client=sql.SQL(_text("client_id")),
        rows=rows,
    )


def _extract_sql(schema: str, config: IntegrityConfig, tolerant: bool) -> sql.Composable:
    """``CREATE TABLE ledger_all AS``: every non-blank line's fields, typed, with its ``reason``/``kind``."""
    return sql.SQL(
        "CREATE UNLOGGED TABLE {all} AS SELECT src, line, reason, kind, {ts} AS ts, "
        "  {client} AS client_id, {key} AS ikey, r.outcome, {status} AS status, {order_id} AS order_id, "
        "  {symbol} AS symbol, {side} AS side, {qty} AS qty, {price} AS price, "
        "  {order_status} AS order_status, {filled} AS filled_qty FROM ({classified}) r"
    ).format(
        all=sql.Identifier(schema, "ledger_all"),
        classified=_classified(schema, config, tolerant),
        ts=sql.SQL(_number("ts", "float8", tolerant)),
        client=sql.SQL(_text("client_id")),
        key=sql.SQL(_text("idempotency_key")),
        status=sql.SQL(_text("status")),
        order_id=sql.SQL(_text("order_id")),
        symbol=sql.SQL(_text("symbol")),
        side=sql.SQL(_text("side")),
        qty=sql.SQL(_number("qty", "numeric", tolerant)),
        price=sql.SQL(_number("price", "numeric", tolerant)),
        order_status=sql.SQL(_text("order_status")),
        filled=sql.SQL(_number("filled_qty", "numeric", tolerant)),
    )


def _examples(
    conn: psycopg.Connection[Any], schema: str, cap: int, labels: list[str], stats: LedgerLoad
) -> None:
    """The first few unusable records, named ``file:line``."""
    rows = conn.execute(
        sql.SQL(
            "(SELECT src, line, reason, NULL FROM {all} WHERE reason IS NOT NULL ORDER BY src, line "
            " LIMIT {cap}) UNION ALL (SELECT src, line, NULL, client_id FROM {all} WHERE kind = 'submit' "
            "  AND reason IS NULL AND ikey IS NULL AND outcome = 'ok' ORDER BY src, line LIMIT {cap})"
        ).format(all=sql.Identifier(schema, "ledger_all"), cap=sql.Literal(cap))
    ).fetchall()
    for src, line, reason, client in sorted(rows, key=lambda r: (r[0], r[1])):
        where = f"{labels[src]}:{line}"
        if reason is not None:
            stats.invalid_examples.append({"where": where, "reason": reason})
        else:
            stats.acked_without_key.append({"where": where, "client_id": str(client)})


# --- topics -----------------------------------------------------------------------------------------


def _getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    if "." not in path:
        return lambda d: d.get(path)
    parts = path.split(".")

    def get(d: Mapping[str, Any]) -> Any:
        cur: Any = d
        for p in parts:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(p)
        return cur

    return get


def _as_text(v: Any) -> str | None:
    if v is None or v == "" or isinstance(v, (dict, list, bool)):
        return None
    return str(v)


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return None
    return None


def _as_number(v: Any) -> str | None:
    """A finite number as text for a numeric column, or None."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return v.strip() if math.isfinite(f) else None
    return None


ACCEPTED_COLUMNS = ("p", "off", "eid", "order_id", "client_id", "ikey", "qty")


def accepted_row(src: AcceptedEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    oid, cli, key = _getter(src.order_id), _getter(src.client_id), _getter(src.idempotency_key)
    qty = _getter(src.qty) if src.qty else None

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        o, c, k = _as_text(oid(d)), _as_text(cli(d)), _as_text(key(d))
        if o is None or c is None or k is None:
            return f"missing {src.order_id}, {src.client_id} or {src.idempotency_key}"
        q = None
        if qty is not None:
            raw = qty(d)
            q = _as_number(raw)
            if raw is not None and q is None:
                return f"{src.qty} is not a number: {raw!r}"
        return (_as_text(eid(d)) if eid else None, o, c, k, q)

    return row


def trade_columns(n_orders: int) -> tuple[str, ...]:
    return (
        "p",
        "off",
        "eid",
        "trade_id",
        "symbol",
        "seq",
        "qty",
        "price",
        *(f"o{i}" for i in range(n_orders)),
    )


CANCEL_COLUMNS = ("p", "off", "eid", "order_id")


def cancel_row(src: CancelEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    oid = _getter(src.order_id)

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        o = _as_text(oid(d))
        if o is None:
            return f"missing {src.order_id}"
        return (_as_text(eid(d)) if eid else None, o)

    return row


def trade_row(src: TradeEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    tid = _getter(src.trade_id)
    sym = _getter(src.symbol) if src.symbol else None
    seq = _getter(src.seq) if src.seq else None
    qty = _getter(src.qty) if src.qty else None
    price = _getter(src.price) if src.price else None
    oids = [_getter(f) for f in src.order_ids]

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        t = _as_text(tid(d))
        if t is None:
            return f"missing {src.trade_id}"
        s = n = q = pr = None
        if seq is not None:
            raw = seq(d)
            n = _as_int(raw)
            if raw is not None and n is None:
                return f"{src.seq} is not an integer: {raw!r}"
        if qty is not None:
            raw = qty(d)
            q = _as_number(raw)
            if raw is not None and q is None:
                return f"{src.qty} is not a number: {raw!r}"
        if price is not None:
            raw = price(d)
            pr = _as_number(raw)
            if raw is not None and pr is None:
                return f"{src.price} is not a number: {raw!r}"
        if sym is not None:
            s = _as_text(sym(d))
        return (_as_text(eid(d)) if eid else None, t, s, n, q, pr, *(_as_text(g(d)) for g in oids))

    return row


@dataclass
class TopicLoad:
    """What :func:`load_topic` read from one topic: events, those of the configured type, malformed ones."""

    topic: str
    events: int = 0
    matched: int = 0
    malformed: int = 0
    malformed_examples: list[dict[str, Any]] = field(default_factory=list)


async def load_topic(
    dsn: str,
    bootstrap: str,
    table: sql.Composable,
    columns: tuple[str, ...],
    topic: str,
    type_field: str | None,
    type_value: str | None,
    ranges: Mapping[int, tuple[int, int]],
    make_row: Callable[[Mapping[str, Any]], tuple[Any, ...] | str],
    *,
    timeout_s: float,
    cap: int,
    kafka: KafkaSettings | None = None,
) -> TopicLoad:
    """Stream one topic's matching events into ``table`` (``p, off, ...``) with COPY."""
    stats = TopicLoad(topic)
    type_get = _getter(type_field) if type_field and type_value is not None else None
    loads = json.loads
    buf = CopyBuffer()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn, conn.cursor() as cur, cur.copy(copy_statement(table, columns)) as cp:
        async for batch in consume_until(bootstrap, {topic: ranges}, timeout_s=timeout_s, kafka=kafka):
            for m in batch:
                stats.events += 1
                try:  # decode first: json.loads(bytes) sniffs the encoding and is about 2x slower
                    d = loads(m.value.decode()) if m.value is not None else None
                except (ValueError, UnicodeDecodeError):
                    d = None
                if not isinstance(d, dict):
                    row: tuple[Any, ...] | str = "not a JSON object"
                elif type_get is not None and type_get(d) != type_value:
                    continue
                else:
                    row = make_row(d)
                if isinstance(row, str):
                    stats.malformed += 1
                    if len(stats.malformed_examples) < cap:
                        stats.malformed_examples.append(
                            {"topic": topic, "partition": m.partition, "offset": m.offset, "reason": row}
                        )
                    continue
                stats.matched += 1
                if buf.add((m.partition, m.offset, *row)):
                    await cp.write(buf.take())
        await cp.write(buf.take())
    return stats
