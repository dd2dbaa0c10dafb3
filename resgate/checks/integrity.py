"""Integrity checker (Jepsen-style): the client ledger against the orders/trades tables and event topics.

The ledger is the ground truth of what clients asked for and were told. :func:`measure` loads it into a
per-run work schema in the target database with COPY, streams the configured topics (order-accepted
events, trade events, with partition and offset) into the same schema from their earliest offsets to the
end offsets taken at the start, and finds anomalies with SQL set operations (anti-joins, grouped
aggregates, window functions) — never Python loops over rows, and never a history held in Python memory.
It returns :class:`IntegrityFindings`: a count and capped examples per anomaly kind. :func:`check` is the
pure judge: a prohibited kind with a count above zero makes the result false; a source that could not be
read fully (a topic truncated by retention, malformed records) makes it "unknown" with the reason.

Nothing here knows paperbroker: tables, columns, topics, event types and JSON fields come from
:class:`IntegrityConfig`.

Anomaly kinds (:data:`KINDS`):

- ``lost`` — a submit acknowledged ok in the ledger whose (client, idempotency key) has no orders row;
  ``lost_in_topic`` — the same against the accepted-events topic.
- ``duplicated`` — more than one orders row for one (client, key); ``duplicated_in_topic`` — more than one
  distinct accepted order id for one (client, key).
- ``phantom`` / ``phantom_in_topic`` — an order (event) whose (client, key) no client ever submitted.
- ``recovered`` — a key with only failed or indeterminate attempts whose order landed (allowed by default).
- ``double_fill`` — the quantity traded against an order (distinct trade ids) exceeds the order quantity.
- ``duplicate_trade`` — one trade id more than once: two table rows, or two events with different event
  ids (or, without event ids, different offsets). Redeliveries of one event id are counted, not flagged.
- ``orphan_trade`` — a trade referencing an order id that is not a known order.
- ``seq_gap`` / ``seq_duplicate`` — per symbol, trade sequence numbers must be exactly 1..n.
- ``seq_reorder`` — in the trades topic, within a partition, a symbol's seq must strictly increase with
  the offset.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector
from resgate.checks.sqlutil import (
    CopyBuffer,
    Section,
    TableName,
    check_identifiers,
    consume_until,
    copy_statement,
    copy_text,
    create_schema,
    drop_schema,
    parse_table_name,
    table_columns,
    table_ident,
    table_label,
    unique_name,
)
from resgate.contract.constants import DEFAULT_EXAMPLES_CAP
from resgate.contract.errors import ConfigError, GateError
from resgate.contract.ledger import OUTCOMES

KINDS: tuple[str, ...] = (
    "lost",
    "lost_in_topic",
    "duplicated",
    "duplicated_in_topic",
    "phantom",
    "phantom_in_topic",
    "recovered",
    "double_fill",
    "duplicate_trade",
    "orphan_trade",
    "seq_gap",
    "seq_duplicate",
    "seq_reorder",
)
ALLOWED_BY_DEFAULT: frozenset[str] = frozenset({"recovered"})
DEFAULT_PROHIBITED: frozenset[str] = frozenset(KINDS) - ALLOWED_BY_DEFAULT


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrdersTable:
    """The system's orders table: one row per accepted order.

    ``qty`` may be None (then double fills are judged on the accepted events' quantity, if any).
    """

    table: TableName
    order_id: str = "order_id"
    client_id: str = "client_id"
    idempotency_key: str = "idempotency_key"
    qty: str | None = "qty"

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.orders") -> OrdersTable:
        s = Section(d, where, ("table", "order_id", "client_id", "idempotency_key", "qty"))
        if "table" not in s.d:
            raise ConfigError("is required", where=s.at("table"))
        return cls(
            table=parse_table_name(s.d["table"], s.at("table")),
            order_id=s.ident("order_id", "order_id"),  # type: ignore[arg-type]
            client_id=s.ident("client_id", "client_id"),  # type: ignore[arg-type]
            idempotency_key=s.ident("idempotency_key", "idempotency_key"),  # type: ignore[arg-type]
            qty=s.ident("qty", "qty", optional=True),
        )


@dataclass(frozen=True)
class TradesTable:
    """A table with one row per trade (a read model such as a trade blotter, or the matcher's own table).

    ``order_ids`` are the columns that reference orders (e.g. buy and sell side). ``symbol``/``seq`` may be
    None to skip the sequence checks; ``qty`` None skips double fills.
    """

    table: TableName
    trade_id: str = "trade_id"
    symbol: str | None = "symbol"
    seq: str | None = "seq"
    qty: str | None = "qty"
    order_ids: tuple[str, ...] = ("buy_order_id", "sell_order_id")

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.trades") -> TradesTable:
        s = Section(d, where, ("table", "trade_id", "symbol", "seq", "qty", "order_ids"))
        if "table" not in s.d:
            raise ConfigError("is required", where=s.at("table"))
        return cls(
            table=parse_table_name(s.d["table"], s.at("table")),
            trade_id=s.ident("trade_id", "trade_id"),  # type: ignore[arg-type]
            symbol=s.ident("symbol", "symbol", optional=True),
            seq=s.ident("seq", "seq", optional=True),
            qty=s.ident("qty", "qty", optional=True),
            order_ids=check_identifiers(
                s.d.get("order_ids", ("buy_order_id", "sell_order_id")), s.at("order_ids")
            ),
        )


def _event_common(s: Section) -> dict[str, Any]:
    topic = s.text("topic", None)
    return {
        "topic": topic,
        "type_field": s.text("type_field", "type", optional=True),
        "type_value": s.text("type_value", None, optional=True),
        "event_id": s.text("event_id", "event_id", optional=True),
    }


_EVENT_KEYS = ("topic", "type_field", "type_value", "event_id")


@dataclass(frozen=True)
class AcceptedEvents:
    """A topic of order-accepted events. Field names are JSON keys (``a.b`` reaches into nested objects).

    Only events whose ``type_field`` equals ``type_value`` are read (every event when ``type_value`` is
    None). ``event_id`` names the field that identifies an event across redeliveries (None if there is
    none).
    """

    topic: str
    type_field: str | None = "type"
    type_value: str | None = None
    event_id: str | None = "event_id"
    order_id: str = "order_id"
    client_id: str = "client_id"
    idempotency_key: str = "idempotency_key"
    qty: str | None = "qty"

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.accepted_events") -> AcceptedEvents:
        s = Section(d, where, (*_EVENT_KEYS, "order_id", "client_id", "idempotency_key", "qty"))
        return cls(
            **_event_common(s),
            order_id=s.text("order_id", "order_id"),  # type: ignore[arg-type]
            client_id=s.text("client_id", "client_id"),  # type: ignore[arg-type]
            idempotency_key=s.text("idempotency_key", "idempotency_key"),  # type: ignore[arg-type]
            qty=s.text("qty", "qty", optional=True),
        )


@dataclass(frozen=True)
class TradeEvents:
    """A topic of trade events (see :class:`AcceptedEvents` for the field conventions)."""

    topic: str
    type_field: str | None = "type"
    type_value: str | None = None
    event_id: str | None = "event_id"
    trade_id: str = "trade_id"
    symbol: str | None = "symbol"
    seq: str | None = "seq"
    qty: str | None = "qty"
    order_ids: tuple[str, ...] = ("buy_order_id", "sell_order_id")

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.trade_events") -> TradeEvents:
        s = Section(d, where, (*_EVENT_KEYS, "trade_id", "symbol", "seq", "qty", "order_ids"))
        return cls(
            **_event_common(s),
            trade_id=s.text("trade_id", "trade_id"),  # type: ignore[arg-type]
            symbol=s.text("symbol", "symbol", optional=True),
            seq=s.text("seq", "seq", optional=True),
            qty=s.text("qty", "qty", optional=True),
            order_ids=s.texts("order_ids", ("buy_order_id", "sell_order_id")),
        )


@dataclass(frozen=True)
class IntegrityThresholds:
    """Which anomaly kinds fail the check (the others are only reported) and how many examples to keep."""

    prohibited: frozenset[str] = DEFAULT_PROHIBITED
    examples_cap: int = DEFAULT_EXAMPLES_CAP

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.thresholds") -> IntegrityThresholds:
        s = Section(d, where, ("prohibited", "allowed", "examples_cap"))
        if "prohibited" in s.d and "allowed" in s.d:
            raise ConfigError("give either prohibited or allowed, not both", where=where)
        prohibited = DEFAULT_PROHIBITED
        for key in ("prohibited", "allowed"):
            if key in s.d:
                v = s.d[key]
                if isinstance(v, str) or not isinstance(v, Sequence):
                    raise ConfigError(f"must be a list of anomaly kinds, got {v!r}", where=s.at(key))
                bad = sorted(str(k) for k in v if k not in KINDS)
                if bad:
                    raise ConfigError(f"unknown anomaly kinds {bad}; known: {list(KINDS)}", where=s.at(key))
                prohibited = frozenset(v) if key == "prohibited" else frozenset(KINDS) - frozenset(v)
        return cls(
            prohibited=prohibited, examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0)
        )


@dataclass(frozen=True)
class IntegrityConfig:
    """Where the integrity evidence lives. At least one of ``orders`` / ``accepted_events`` is required.

    ``submit_ops`` are the ledger ``op`` values that submit an order. The work schema (unlogged tables,
    named ``<work_schema_prefix>_<hex>``) is dropped afterwards unless ``keep_work_schema``.
    """

    orders: OrdersTable | None = None
    trades: TradesTable | None = None
    accepted_events: AcceptedEvents | None = None
    trade_events: TradeEvents | None = None
    submit_ops: tuple[str, ...] = ("submit_order",)
    examples_cap: int = DEFAULT_EXAMPLES_CAP
    work_schema_prefix: str = "resgate_integrity"
    keep_work_schema: bool = False
    consume_timeout_s: float = 300.0
    work_mem: str = "256MB"
    thresholds: IntegrityThresholds = field(default_factory=IntegrityThresholds)

    def __post_init__(self) -> None:
        if self.orders is None and self.accepted_events is None:
            raise ConfigError(
                "configure orders (a table) and/or accepted_events (a topic)", where="integrity"
            )
        unique_name(self.work_schema_prefix, where="integrity.work_schema_prefix")

    @property
    def topics(self) -> list[str]:
        """The configured topics, without repeats."""
        out: list[str] = []
        for src in (self.accepted_events, self.trade_events):
            if src is not None and src.topic not in out:
                out.append(src.topic)
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity") -> IntegrityConfig:
        """Validate a config mapping (the ``integrity`` section of the gate config)."""
        s = Section(
            d,
            where,
            (
                "orders",
                "trades",
                "accepted_events",
                "trade_events",
                "submit_ops",
                "examples_cap",
                "work_schema_prefix",
                "keep_work_schema",
                "consume_timeout_s",
                "work_mem",
                "thresholds",
            ),
        )

        def sub(key: str, parse: Callable[[Any, str], Any]) -> Any:
            v = s.d.get(key)
            return None if v is None else parse(v, s.at(key))

        work_mem = s.text("work_mem", "256MB")
        if not str(work_mem).replace(" ", "").rstrip("kMGTBb").isdigit():
            raise ConfigError(
                f"must be a Postgres memory size like '256MB', got {work_mem!r}", where=s.at("work_mem")
            )
        try:
            return cls(
                orders=sub("orders", OrdersTable.from_dict),
                trades=sub("trades", TradesTable.from_dict),
                accepted_events=sub("accepted_events", AcceptedEvents.from_dict),
                trade_events=sub("trade_events", TradeEvents.from_dict),
                submit_ops=s.texts("submit_ops", ("submit_order",)),
                examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0),
                work_schema_prefix=s.text("work_schema_prefix", "resgate_integrity"),  # type: ignore[arg-type]
                keep_work_schema=s.flag("keep_work_schema", False),
                consume_timeout_s=s.number("consume_timeout_s", 300.0, minimum=1),
                work_mem=work_mem,  # type: ignore[arg-type]
                thresholds=IntegrityThresholds.from_dict(s.d.get("thresholds") or {}, s.at("thresholds")),
            )
        except ConfigError as e:
            # errors raised by __post_init__ name the default section; re-anchor them under ``where``
            if (
                where != "integrity"
                and e.where
                and (e.where == "integrity" or e.where.startswith("integrity."))
            ):
                raise ConfigError(
                    str(e).split(": ", 1)[-1], where=where + e.where[len("integrity") :]
                ) from None
            raise


# --- findings ---------------------------------------------------------------------------------------


@dataclass
class KindFinding:
    """How many anomalies of one kind were found, with a capped list of concrete examples."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, count: int, examples: Iterable[dict[str, Any]], cap: int) -> None:
        self.count += count
        for ex in examples:
            if len(self.examples) < cap:
                self.examples.append(ex)


@dataclass
class IntegrityFindings:
    """What :func:`measure` found (raw evidence for :func:`check`).

    ``kinds`` has an entry for every kind that was checked (count 0 when absent); ``not_checked`` maps the
    other kinds to the reason (not configured, or a source was incomplete); ``incomplete`` lists why some
    source could not be read fully; ``stats`` holds volumes and timings.
    """

    kinds: dict[str, KindFinding] = field(default_factory=dict)
    not_checked: dict[str, str] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def kind(self, name: str) -> KindFinding:
        if name not in KINDS:
            raise ValueError(f"unknown anomaly kind {name!r}")
        self.not_checked.pop(name, None)
        return self.kinds.setdefault(name, KindFinding())

    def skip(self, name: str, reason: str) -> None:
        if name not in self.kinds:
            self.not_checked.setdefault(name, reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{kinds: {kind: {count, examples}}, not_checked, incomplete, stats}``."""
        return {
            "kinds": {k: {"count": v.count, "examples": list(v.examples)} for k, v in self.kinds.items()},
            "not_checked": dict(self.not_checked),
            "incomplete": list(self.incomplete),
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntegrityFindings:
        return cls(
            kinds={
                k: KindFinding(int(v["count"]), list(v.get("examples") or []))
                for k, v in (d.get("kinds") or {}).items()
            },
            not_checked=dict(d.get("not_checked") or {}),
            incomplete=list(d.get("incomplete") or []),
            stats=dict(d.get("stats") or {}),
        )


# --- the judge --------------------------------------------------------------------------------------


def check(
    findings: IntegrityFindings, thresholds: IntegrityThresholds | IntegrityConfig | None = None
) -> CheckResult:
    """Judge findings: false if a prohibited kind has a count > 0, else unknown if a source was incomplete.

    Returns a CheckResult named ``integrity`` with ``counts`` = ``{kind: count}`` for every checked kind
    plus the volume stats, ``examples`` = ``[{kind, prohibited, ...}]`` capped at
    ``thresholds.examples_cap`` (shared round-robin between kinds, prohibited kinds first; an
    IntegrityConfig may be passed for its ``thresholds``), ``error`` = the
    reasons when unknown, and ``details`` = ``{prohibited, violations, not_checked, incomplete}``.
    """
    th = (
        thresholds.thresholds
        if isinstance(thresholds, IntegrityConfig)
        else thresholds or IntegrityThresholds()
    )
    counts: dict[str, Any] = {k: f.count for k, f in findings.kinds.items()}
    for k, v in findings.stats.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in counts:
            counts[k] = v
    violations = sorted(k for k, f in findings.kinds.items() if f.count > 0 and k in th.prohibited)
    reported = sorted(k for k, f in findings.kinds.items() if f.count > 0 and k not in th.prohibited)

    collector = ExampleCollector(th.examples_cap)
    queues = [(k, list(findings.kinds[k].examples)) for k in violations + reported]
    while any(q for _k, q in queues) and len(collector.examples) < collector.cap:
        for k, q in queues:
            if q:
                collector.add({"kind": k, "prohibited": k in th.prohibited, **q.pop(0)})

    details: dict[str, Any] = {
        "prohibited": sorted(th.prohibited),
        "violations": violations,
        "reported": reported,
    }
    if findings.not_checked:
        details["not_checked"] = dict(findings.not_checked)
    if findings.incomplete:
        details["incomplete"] = list(findings.incomplete)

    if violations:
        valid: bool | str = False
        error = None
    elif findings.incomplete:
        valid = UNKNOWN
        error = "; ".join(findings.incomplete)
    elif not findings.kinds:
        valid = UNKNOWN
        error = "no anomaly kind could be checked"
    else:
        valid = True
        error = None
    return CheckResult(
        name="integrity",
        valid=valid,  # type: ignore[arg-type]
        counts=counts,
        examples=collector.examples,
        error=error,
        details=details,
    )


# --- the ledger -------------------------------------------------------------------------------------

LedgerInput = Any
"""A ledger file path, a list of paths, or an iterable of lines (bytes/str), dicts or LedgerRecords."""

_LEDGER_COLUMNS = ("src", "line", "ts", "client_id", "ikey", "outcome", "status", "order_id")


def _ledger_sources(ledger: LedgerInput) -> list[tuple[str, Iterable[Any], bool]]:
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
class _LedgerLoad:
    lines: int = 0
    submits: int = 0
    acked: int = 0
    other_ops: int = 0
    without_key: int = 0
    acked_without_key: list[dict[str, Any]] = field(default_factory=list)
    acked_without_key_count: int = 0
    invalid: int = 0
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)


def _load_ledger(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    ledger: LedgerInput,
    submit_ops: tuple[str, ...],
    cap: int,
) -> _LedgerLoad:
    """Stream the ledger's submit records into ``table`` with COPY; count what cannot be matched."""
    stats = _LedgerLoad()
    with conn.cursor() as cur, cur.copy(copy_statement(table, _LEDGER_COLUMNS)) as cp:
        for src, (label, items, is_file) in enumerate(_ledger_sources(ledger)):
            try:
                if is_file:
                    with open(label, encoding="utf-8", errors="replace") as fh:
                        _load_ledger_source(cp.write, src, label, fh, frozenset(submit_ops), cap, stats)
                else:
                    _load_ledger_source(cp.write, src, label, items, frozenset(submit_ops), cap, stats)
            except OSError as e:
                raise GateError(f"cannot read the ledger {label}: {e}") from e
    return stats


def _load_ledger_source(
    write: Callable[[str], Any],
    src: int,
    label: str,
    items: Iterable[Any],
    ops: frozenset[str],
    cap: int,
    stats: _LedgerLoad,
) -> None:
    # The hot loop of the integrity check: one json.loads and one hand-formatted COPY line per record,
    # counters in locals, output flushed in ~1 MiB chunks. Keep it lean: it sets the checker's floor.
    loads = json.loads
    text = copy_text
    parts: list[str] = []
    size = 0
    lines = submits = acked = other = without_key = 0
    invalid = stats.invalid_examples

    def bad(lineno: int, reason: str) -> None:
        stats.invalid += 1
        if len(invalid) < cap:
            invalid.append({"where": f"{label}:{lineno}", "reason": reason})

    for lineno, item in enumerate(items, start=1):
        if type(item) is str:
            try:
                d = loads(item)
            except ValueError as e:
                if not item.strip():
                    continue
                bad(lineno, f"not JSON: {e}")
                lines += 1
                continue
        elif isinstance(item, (bytes, bytearray)):
            if not item.strip():
                continue
            try:
                d = loads(item.decode("utf-8", errors="replace"))
            except ValueError as e:
                bad(lineno, f"not JSON: {e}")
                lines += 1
                continue
        elif isinstance(item, Mapping):
            d = item
        elif hasattr(item, "to_dict"):
            d = item.to_dict()
        else:
            bad(lineno, f"not a record: {type(item).__name__}")
            lines += 1
            continue
        lines += 1
        if type(d) is not dict and not isinstance(d, Mapping):
            bad(lineno, "not a JSON object")
            continue
        if d.get("op") not in ops:
            other += 1
            continue
        client = d.get("client_id")
        outcome = d.get("outcome")
        if client is None or client == "" or outcome not in OUTCOMES:
            bad(lineno, "a submit record needs client_id and outcome ok|fail|info")
            continue
        submits += 1
        key = d.get("idempotency_key")
        if key is None or key == "":
            without_key += 1
            if outcome == "ok":
                stats.acked_without_key_count += 1
                if len(stats.acked_without_key) < cap:
                    stats.acked_without_key.append({"where": f"{label}:{lineno}", "client_id": str(client)})
            continue
        if outcome == "ok":
            acked += 1
        ts = d.get("ts")
        if type(ts) is not float and type(ts) is not int:
            ts = None
        line = (
            f"{src}\t{lineno}\t{text(ts)}\t{text(client)}\t{text(key)}\t"
            f"{outcome}\t{text(d.get('status'))}\t{text(d.get('order_id'))}\n"
        )
        parts.append(line)
        size += len(line)
        if size >= 1 << 20:
            write("".join(parts))
            parts.clear()
            size = 0
    if parts:
        write("".join(parts))
    stats.lines += lines
    stats.submits += submits
    stats.acked += acked
    stats.other_ops += other
    stats.without_key += without_key


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


_ACCEPTED_COLUMNS = ("p", "off", "eid", "order_id", "client_id", "ikey", "qty")


def _accepted_row(src: AcceptedEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
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


def _trade_columns(n_orders: int) -> tuple[str, ...]:
    return ("p", "off", "eid", "trade_id", "symbol", "seq", "qty", *(f"o{i}" for i in range(n_orders)))


def _trade_row(src: TradeEvents) -> Callable[[Mapping[str, Any]], tuple[Any, ...] | str]:
    eid = _getter(src.event_id) if src.event_id else None
    tid = _getter(src.trade_id)
    sym = _getter(src.symbol) if src.symbol else None
    seq = _getter(src.seq) if src.seq else None
    qty = _getter(src.qty) if src.qty else None
    oids = [_getter(f) for f in src.order_ids]

    def row(d: Mapping[str, Any]) -> tuple[Any, ...] | str:
        t = _as_text(tid(d))
        if t is None:
            return f"missing {src.trade_id}"
        s = n = q = None
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
        if sym is not None:
            s = _as_text(sym(d))
        return (_as_text(eid(d)) if eid else None, t, s, n, q, *(_as_text(g(d)) for g in oids))

    return row


@dataclass
class _TopicLoad:
    topic: str
    events: int = 0
    matched: int = 0
    malformed: int = 0
    malformed_examples: list[dict[str, Any]] = field(default_factory=list)


async def _load_topic(
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
) -> _TopicLoad:
    """Stream one topic's matching events into ``table`` (``p, off, ...``) with COPY."""
    stats = _TopicLoad(topic)
    type_get = _getter(type_field) if type_field and type_value is not None else None
    loads = json.loads
    buf = CopyBuffer()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn, conn.cursor() as cur, cur.copy(copy_statement(table, columns)) as cp:
        async for batch in consume_until(bootstrap, {topic: ranges}, timeout_s=timeout_s):
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


# --- measure ----------------------------------------------------------------------------------------


def _fetch(
    conn: psycopg.Connection[Any], query: sql.Composable, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def _counted(rows: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Split rows carrying a ``_total`` window count into (total, examples without it)."""
    if not rows:
        return 0, []
    total = int(rows[0]["_total"])
    return total, [{k: _jsonable(v) for k, v in r.items() if k != "_total" and v is not None} for r in rows]


def _jsonable(v: Any) -> Any:
    from decimal import Decimal

    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


class _Plan:
    """The SQL of one measure run: work-schema tables and the configured sources as subqueries."""

    def __init__(self, config: IntegrityConfig, schema: str) -> None:
        self.c = config
        self.schema = schema
        self.cap = config.examples_cap
        self.ledger_labels: list[str] = []

    def w(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def orders(self) -> sql.Composable:
        """``(oid, c, k, qty)`` from the orders table, all as text except qty (numeric)."""
        o = self.c.orders
        assert o is not None
        qty = sql.SQL("{}::numeric").format(sql.Identifier(o.qty)) if o.qty else sql.SQL("NULL::numeric")
        return sql.SQL(
            "(SELECT {oid}::text AS oid, {c}::text AS c, {k}::text AS k, {qty} AS qty FROM {t})"
        ).format(
            oid=sql.Identifier(o.order_id),
            c=sql.Identifier(o.client_id),
            k=sql.Identifier(o.idempotency_key),
            qty=qty,
            t=table_ident(o.table),
        )

    def accepted(self) -> sql.Composable:
        """``(oid, c, k, qty, p, off, eid)`` from the loaded accepted events."""
        return sql.SQL(
            "(SELECT order_id AS oid, client_id AS c, ikey AS k, qty, p, off, eid FROM {})"
        ).format(self.w("accepted"))

    def trades_table(self) -> sql.Composable:
        t = self.c.trades
        assert t is not None

        def col(name: str | None, cast: str) -> sql.Composable:
            if name is None:
                return sql.SQL("NULL::{}").format(sql.SQL(cast))
            return sql.SQL("{}::{}").format(sql.Identifier(name), sql.SQL(cast))

        oids = sql.SQL(", ").join(
            sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(f"o{i}"))
            for i, c in enumerate(t.order_ids)
        )
        return sql.SQL(
            "(SELECT {tid} AS trade_id, {sym} AS symbol, {seq} AS seq, {qty} AS qty, {oids}, "
            "NULL::int AS p, NULL::bigint AS off, ctid::text AS ident FROM {t})"
        ).format(
            tid=col(t.trade_id, "text"),
            sym=col(t.symbol, "text"),
            seq=col(t.seq, "bigint"),
            qty=col(t.qty, "numeric"),
            oids=oids,
            t=table_ident(t.table),
        )

    def trades_topic(self) -> sql.Composable:
        t = self.c.trade_events
        assert t is not None
        oids = sql.SQL(", ").join(sql.Identifier(f"o{i}") for i in range(len(t.order_ids)))
        return sql.SQL(
            "(SELECT trade_id, symbol, seq, qty, {oids}, p, off, coalesce(eid, p || ':' || off) AS ident "
            "FROM {})"
        ).format(self.w("trade_events"), oids=oids)


def _order_refs(n: int, alias: str = "d") -> sql.Composable:
    """LATERAL rows ``(oid)`` for each order-id column of a trade, each distinct order once."""
    vals = []
    for i in range(n):
        col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(f"o{i}"))
        prev = [sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(f"o{j}")) for j in range(i)]
        if prev:
            cond = sql.SQL(" AND ").join(sql.SQL("{} IS DISTINCT FROM {}").format(col, p) for p in prev)
            vals.append(sql.SQL("(CASE WHEN {} THEN {} END)").format(cond, col))
        else:
            vals.append(sql.SQL("({})").format(col))
    return sql.SQL("CROSS JOIN LATERAL (VALUES {}) AS r(oid)").format(sql.SQL(", ").join(vals))


def measure(
    dsn: str,
    config: IntegrityConfig,
    ledger: LedgerInput,
    *,
    bootstrap: str | None = None,
    run_id: str | None = None,
) -> IntegrityFindings:
    """Load the ledger and topics into a work schema and detect every anomaly kind in SQL.

    ``ledger`` is a JSON-lines file path, a list of paths, or an iterable of lines / dicts / LedgerRecords.
    ``bootstrap`` is required when topics are configured; ``run_id`` goes into the work schema's name.
    Returns :class:`IntegrityFindings`. Raises ConfigError before any side effect when the input is
    invalid (including a configured table or column that does not exist), GateError when a source fails.
    """
    from resgate.local.kafka import topic_bounds, truncated_partitions

    if config.topics and not bootstrap:
        raise ConfigError("topics are configured but no Kafka bootstrap was given", where="integrity")
    ledger_labels = [label for label, _items, _f in _ledger_sources(ledger)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        _check_tables(conn, config)
    findings = IntegrityFindings()
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    bounds: dict[str, dict[int, tuple[int, int]]] = {}
    truncated: set[str] = set()
    if config.topics:
        assert bootstrap is not None
        bounds = topic_bounds(bootstrap, config.topics)
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
    plan = _Plan(config, schema)
    plan.ledger_labels = ledger_labels
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_schema(conn, schema)
    findings.stats["work_schema"] = schema
    try:
        _measure_in(dsn, bootstrap, config, plan, ledger, bounds, truncated, findings, timings)
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
        }
        specs.append(("integrity.orders", o.table, fields))
    if config.trades:
        t = config.trades
        fields = {"trade_id": t.trade_id, "symbol": t.symbol, "seq": t.seq, "qty": t.qty}
        fields.update({f"order_ids[{i}]": c for i, c in enumerate(t.order_ids)})
        specs.append(("integrity.trades", t.table, fields))
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


def _measure_in(
    dsn: str,
    bootstrap: str | None,
    config: IntegrityConfig,
    plan: _Plan,
    ledger: LedgerInput,
    bounds: dict[str, dict[int, tuple[int, int]]],
    truncated: set[str],
    findings: IntegrityFindings,
    timings: dict[str, float],
) -> None:
    cap = config.examples_cap
    with _connect(dsn, config.work_mem) as conn:
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE {} (src int, line bigint, ts float8, client_id text, ikey text, "
                "outcome text, status text, order_id text)"
            ).format(plan.w("ledger"))
        )
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
                    "seq bigint, qty numeric, {})"
                ).format(plan.w("trade_events"), cols)
            )

    # Phase 1, concurrently: the ledger load (Python-bound), the topic loads (Kafka), and the checks that
    # read only the system's own tables (Postgres-bound).
    def load_ledger() -> _LedgerLoad:
        t = time.perf_counter()
        with _connect(dsn, config.work_mem) as c:
            out = _load_ledger(c, plan.w("ledger"), ledger, config.submit_ops, cap)
            c.execute(sql.SQL("ANALYZE {}").format(plan.w("ledger")))
        timings["ledger_load_s"] = time.perf_counter() - t
        return out

    def load_topics() -> list[_TopicLoad]:
        t = time.perf_counter()
        out = asyncio.run(_load_topics(dsn, bootstrap, config, plan, bounds, cap))
        with _connect(dsn, config.work_mem) as c:
            for name in ("accepted", "trade_events"):
                if (name == "accepted" and config.accepted_events) or (
                    name == "trade_events" and config.trade_events
                ):
                    c.execute(sql.SQL("ANALYZE {}").format(plan.w(name)))
        timings["topics_load_s"] = time.perf_counter() - t
        return out

    def table_checks() -> None:
        t = time.perf_counter()
        with _connect(dsn, config.work_mem) as c:
            _table_only_checks(c, config, plan, findings)
        timings["table_checks_s"] = time.perf_counter() - t

    with ThreadPoolExecutor(max_workers=3) as pool:
        f_ledger = pool.submit(load_ledger)
        f_topics = pool.submit(load_topics) if config.topics else None
        f_tables = pool.submit(table_checks)
        led = f_ledger.result()
        topic_loads = f_topics.result() if f_topics else []
        f_tables.result()

    findings.stats.update(
        ledger_records=led.lines,
        ledger_submits=led.submits,
        ledger_acked=led.acked,
        ledger_other_ops=led.other_ops,
        ledger_submits_without_key=led.without_key,
    )
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

    # Phase 2: everything that joins the ledger or the topics.
    t = time.perf_counter()
    with _connect(dsn, config.work_mem) as conn:
        _ledger_checks(conn, config, plan, findings, truncated)
        if config.trade_events:
            _trade_checks(
                conn,
                config,
                plan,
                findings,
                source=f"topic:{config.trade_events.topic}",
                rows=plan.trades_topic(),
                n_orders=len(config.trade_events.order_ids),
                has_symbol=config.trade_events.symbol is not None and config.trade_events.seq is not None,
                has_qty=config.trade_events.qty is not None,
                is_topic=True,
                truncated=config.trade_events.topic in truncated,
                truncated_known=truncated,
            )
    timings["ledger_checks_s"] = time.perf_counter() - t


async def _load_topics(
    dsn: str,
    bootstrap: str | None,
    config: IntegrityConfig,
    plan: _Plan,
    bounds: dict[str, dict[int, tuple[int, int]]],
    cap: int,
) -> list[_TopicLoad]:
    assert bootstrap is not None
    jobs = []
    if config.accepted_events:
        a = config.accepted_events
        jobs.append(
            _load_topic(
                dsn,
                bootstrap,
                plan.w("accepted"),
                _ACCEPTED_COLUMNS,
                a.topic,
                a.type_field,
                a.type_value,
                bounds[a.topic],
                _accepted_row(a),
                timeout_s=config.consume_timeout_s,
                cap=cap,
            )
        )
    if config.trade_events:
        te = config.trade_events
        jobs.append(
            _load_topic(
                dsn,
                bootstrap,
                plan.w("trade_events"),
                _trade_columns(len(te.order_ids)),
                te.topic,
                te.type_field,
                te.type_value,
                bounds[te.topic],
                _trade_row(te),
                timeout_s=config.consume_timeout_s,
                cap=cap,
            )
        )
    return list(await asyncio.gather(*jobs))


# --- detectors --------------------------------------------------------------------------------------


def _table_only_checks(
    conn: psycopg.Connection[Any], config: IntegrityConfig, plan: _Plan, findings: IntegrityFindings
) -> None:
    """Checks that read only the system's tables: duplicates in the orders table, trade-table checks."""
    cap = plan.cap
    if config.orders:
        label = f"table:{table_label(config.orders.table)}"
        rows = _fetch(
            conn,
            sql.SQL(
                "SELECT c AS client_id, k AS idempotency_key, n AS rows, ids AS order_ids, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT c, k, count(*) AS n, (array_agg(oid ORDER BY oid))[1:5] AS ids FROM {o} o"
                "  WHERE (c, k) IN (SELECT c, k FROM {o} x WHERE k IS NOT NULL"
                "                   GROUP BY c, k HAVING count(*) > 1)"
                "  GROUP BY c, k) d ORDER BY c, k LIMIT {cap}"
            ).format(o=plan.orders(), cap=sql.Literal(cap)),
        )
        total, ex = _counted(rows)
        findings.kind("duplicated").add(total, ({"source": label, **e} for e in ex), cap)
        n = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(table_ident(config.orders.table))
        ).fetchone()
        findings.stats["orders_rows"] = int(n[0]) if n else 0
    else:
        findings.skip("duplicated", "no orders table configured")
        findings.skip("phantom", "no orders table configured")
        findings.skip("lost", "no orders table configured")
    if config.trades:
        t = config.trades
        _trade_checks(
            conn,
            config,
            plan,
            findings,
            source=f"table:{table_label(t.table)}",
            rows=plan.trades_table(),
            n_orders=len(t.order_ids),
            has_symbol=t.symbol is not None and t.seq is not None,
            has_qty=t.qty is not None,
            is_topic=False,
            truncated=False,
            truncated_known=None,
        )


def _ledger_checks(
    conn: psycopg.Connection[Any],
    config: IntegrityConfig,
    plan: _Plan,
    findings: IntegrityFindings,
    truncated: set[str],
) -> None:
    cap = plan.cap
    landed_label = None
    landed: sql.Composable | None = None
    if config.orders:
        landed, landed_label = plan.orders(), f"table:{table_label(config.orders.table)}"
    elif config.accepted_events and config.accepted_events.topic not in truncated:
        landed, landed_label = plan.accepted(), f"topic:{config.accepted_events.topic}"

    # (lost kind, phantom kind, order source, label, complete): a truncated topic still shows phantoms,
    # but its missing history is no evidence of loss.
    targets: list[tuple[str, str, sql.Composable, str, bool]] = []
    if config.orders:
        targets.append(("lost", "phantom", plan.orders(), f"table:{table_label(config.orders.table)}", True))
    if config.accepted_events:
        a = config.accepted_events
        complete = a.topic not in truncated
        if not complete:
            findings.skip("lost_in_topic", f"topic {a.topic} was truncated by retention")
        targets.append(("lost_in_topic", "phantom_in_topic", plan.accepted(), f"topic:{a.topic}", complete))

    for lost_kind, phantom_kind, src, label, complete in targets:
        if complete:
            _lost(conn, plan, findings, lost_kind, src, label)
        _phantom_and_recovered(
            conn, plan, findings, lost_kind, phantom_kind, src, label, recovered=label == landed_label
        )
    if landed is None:
        findings.skip("recovered", "no complete source of landed orders (orders table or untruncated topic)")

    if config.accepted_events:
        a = config.accepted_events
        label = f"topic:{a.topic}"
        rows = _fetch(
            conn,
            sql.SQL(
                "SELECT c AS client_id, k AS idempotency_key, n AS order_ids_count, ids AS order_ids, "
                "positions, count(*) OVER () AS _total FROM ("
                "  SELECT c, k, count(*) AS n, (array_agg(oid ORDER BY pos))[1:5] AS ids,"
                "         (array_agg(pos ORDER BY pos))[1:5] AS positions FROM ("
                "    SELECT c, k, oid, min(p || ':' || off) AS pos FROM {a} a GROUP BY c, k, oid) x"
                "  GROUP BY c, k HAVING count(*) > 1) d ORDER BY c, k LIMIT {cap}"
            ).format(a=plan.accepted(), cap=sql.Literal(cap)),
        )
        total, ex = _counted(rows)
        findings.kind("duplicated_in_topic").add(total, ({"source": label, **e} for e in ex), cap)
        redelivered = conn.execute(
            sql.SQL("SELECT count(*) - count(DISTINCT coalesce(eid, p || ':' || off)) FROM {}").format(
                plan.w("accepted")
            )
        ).fetchone()
        findings.stats[f"redelivered_events[{a.topic}]"] = int(redelivered[0]) if redelivered else 0
    else:
        for k in ("lost_in_topic", "duplicated_in_topic", "phantom_in_topic"):
            findings.skip(k, "no accepted-events topic configured")


def _lost(
    conn: psycopg.Connection[Any],
    plan: _Plan,
    findings: IntegrityFindings,
    kind: str,
    src: sql.Composable,
    label: str,
) -> None:
    """Acknowledged keys with no order in ``src`` (an anti-join; parallel hash on the order side)."""
    cap = plan.cap
    rows = _fetch(
        conn,
        sql.SQL(
            "SELECT client_id, ikey AS idempotency_key, order_id, attempts, first_ts AS ts, "
            "at AS ledger_at, count(*) OVER () AS _total FROM ("
            "  SELECT l.client_id, l.ikey, min(l.order_id) AS order_id, count(*) AS attempts,"
            "         min(l.ts) AS first_ts, min(ARRAY[l.src, l.line]) AS at"
            "  FROM {L} l WHERE l.outcome = 'ok'"
            "    AND NOT EXISTS (SELECT 1 FROM {src} o WHERE o.c = l.client_id AND o.k = l.ikey)"
            "  GROUP BY l.client_id, l.ikey) x ORDER BY first_ts, client_id, ikey LIMIT {cap}"
        ).format(L=plan.w("ledger"), src=src, cap=sql.Literal(cap)),
    )
    total, ex = _counted(rows)
    for e in ex:
        src_index, line = e.pop("ledger_at")
        e["ledger_at"] = f"{plan.ledger_labels[src_index]}:{line}"
    findings.kind(kind).add(total, ({"source": label, **e} for e in ex), cap)


def _phantom_and_recovered(
    conn: psycopg.Connection[Any],
    plan: _Plan,
    findings: IntegrityFindings,
    tag: str,
    phantom_kind: str,
    src: sql.Composable,
    label: str,
    *,
    recovered: bool,
) -> None:
    """Orders in ``src`` with no acknowledged attempt: never attempted (phantom) or recovered.

    First the orders with no ok attempt (an anti-join; usually few rows), then one ledger scan for just
    those keys tells the never-attempted from the failed-or-indeterminate ones.
    """
    cap = plan.cap
    L = plan.w("ledger")
    unacked, seen = plan.w(f"unacked_{tag}"), plan.w(f"seen_{tag}")
    is_topic = tag == "lost_in_topic"
    extra = sql.SQL(", p, off") if is_topic else sql.SQL("")
    conn.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE {u} AS SELECT oid, c, k{extra} FROM {src} o WHERE NOT EXISTS "
            "(SELECT 1 FROM {L} l WHERE l.outcome = 'ok' AND l.client_id = o.c AND l.ikey = o.k)"
        ).format(u=unacked, src=src, L=L, extra=extra)
    )
    conn.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE {s} AS SELECT l.client_id AS c, l.ikey AS k, count(*) AS attempts, "
            "(array_agg(DISTINCT l.outcome || ':' || coalesce(l.status, '')))[1:5] AS statuses "
            "FROM {L} l WHERE (l.client_id, l.ikey) IN (SELECT c, k FROM {u}) GROUP BY 1, 2"
        ).format(s=seen, L=L, u=unacked)
    )
    pos = sql.SQL(", u.p AS partition, u.off AS offset") if is_topic else sql.SQL("")
    rows = _fetch(
        conn,
        sql.SQL(
            "SELECT u.c AS client_id, u.k AS idempotency_key, u.oid AS order_id{pos}, "
            "count(*) OVER () AS _total FROM {u} u "
            "WHERE NOT EXISTS (SELECT 1 FROM {s} s WHERE s.c = u.c AND s.k = u.k) "
            "ORDER BY u.c, u.k, u.oid LIMIT {cap}"
        ).format(u=unacked, s=seen, cap=sql.Literal(cap), pos=pos),
    )
    total, ex = _counted(rows)
    findings.kind(phantom_kind).add(total, ({"source": label, **e} for e in ex), cap)
    if recovered:
        rows = _fetch(
            conn,
            sql.SQL(
                "SELECT u.c AS client_id, u.k AS idempotency_key, min(u.oid) AS order_id, "
                "min(s.attempts) AS attempts, min(s.statuses) AS statuses, count(*) OVER () AS _total "
                "FROM {u} u JOIN {s} s ON s.c = u.c AND s.k = u.k "
                "GROUP BY u.c, u.k ORDER BY u.c, u.k LIMIT {cap}"
            ).format(u=unacked, s=seen, cap=sql.Literal(cap)),
        )
        total, ex = _counted(rows)
        findings.kind("recovered").add(total, ({"source": label, **e} for e in ex), cap)


def _trade_checks(
    conn: psycopg.Connection[Any],
    config: IntegrityConfig,
    plan: _Plan,
    findings: IntegrityFindings,
    *,
    source: str,
    rows: sql.Composable,
    n_orders: int,
    has_symbol: bool,
    has_qty: bool,
    is_topic: bool,
    truncated: bool,
    truncated_known: set[str] | None,
) -> None:
    """Trade-side kinds for one source of trades (a table, or the loaded trade events)."""
    cap = plan.cap
    tag = "topic" if is_topic else "table"

    # duplicate_trade: one trade id under more than one identity (table row; event id or offset)
    dup = _fetch(
        conn,
        sql.SQL(
            "SELECT trade_id, copies, positions, count(*) OVER () AS _total FROM ("
            "  SELECT trade_id, count(*) AS copies, (array_agg(pos ORDER BY pos))[1:5] AS positions FROM ("
            "    SELECT trade_id, ident, min(p || ':' || off) AS pos FROM {rows} r"
            "    GROUP BY trade_id, ident) x"
            "  GROUP BY trade_id HAVING count(*) > 1) d ORDER BY trade_id LIMIT {cap}"
        ).format(rows=rows, cap=sql.Literal(cap)),
    )
    total, ex = _counted(dup)
    if not is_topic:
        for e in ex:
            e.pop("positions", None)  # table rows have no offsets
    findings.kind("duplicate_trade").add(total, ({"source": source, **e} for e in ex), cap)

    # One row per trade id (first position) for the per-order and per-symbol checks.
    repeats = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {rows} r GROUP BY trade_id HAVING count(*) > 1)").format(
            rows=rows
        )
    ).fetchone()
    if repeats and repeats[0]:
        dedup = plan.w(f"trades_{tag}")
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE {d} AS SELECT DISTINCT ON (trade_id) * FROM {rows} r "
                "ORDER BY trade_id, p NULLS FIRST, off NULLS FIRST"
            ).format(d=dedup, rows=rows)
        )
        conn.execute(sql.SQL("ANALYZE {}").format(dedup))
        trades: sql.Composable = dedup
    else:
        trades = rows
    refs = _order_refs(n_orders)

    # Known orders: the orders table, else the (complete) accepted-events topic.
    known: sql.Composable | None = None
    qty_src: sql.Composable | None = None
    if config.orders:
        known = plan.orders()
        if config.orders.qty:
            qty_src = sql.SQL("(SELECT oid, min(qty) AS qty FROM {} o GROUP BY oid)").format(plan.orders())
    acc_ok = (
        config.accepted_events is not None
        and truncated_known is not None
        and config.accepted_events.topic not in truncated_known
    )
    if known is None and acc_ok:
        known = plan.accepted()
    if qty_src is None and acc_ok and config.accepted_events and config.accepted_events.qty:
        qty_src = sql.SQL("(SELECT oid, min(qty) AS qty FROM {} a GROUP BY oid)").format(plan.accepted())

    if known is not None:
        orphans = _fetch(
            conn,
            sql.SQL(
                "SELECT d.trade_id, r.oid AS order_id, d.p AS partition, d.off AS offset, "
                "count(*) OVER () AS _total FROM {t} d {refs} "
                "WHERE r.oid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {k} k WHERE k.oid = r.oid) "
                "ORDER BY d.trade_id, r.oid LIMIT {cap}"
            ).format(t=trades, refs=refs, k=known, cap=sql.Literal(cap)),
        )
        total, ex = _counted(orphans)
        findings.kind("orphan_trade").add(total, ({"source": source, **e} for e in ex), cap)
    else:
        findings.skip("orphan_trade", "no complete source of known orders")

    if has_qty and qty_src is not None:
        fills = _fetch(
            conn,
            sql.SQL(
                "SELECT f.oid AS order_id, q.qty AS order_qty, f.filled AS filled_qty, f.trades, "
                "count(*) OVER () AS _total FROM ("
                "  SELECT r.oid, sum(d.qty) AS filled, count(*) AS trades FROM {t} d {refs}"
                "  WHERE r.oid IS NOT NULL GROUP BY r.oid) f "
                "JOIN {q} q ON q.oid = f.oid WHERE f.filled > q.qty ORDER BY f.oid LIMIT {cap}"
            ).format(t=trades, refs=refs, q=qty_src, cap=sql.Literal(cap)),
        )
        total, ex = _counted(fills)
        if ex:
            ids = _fetch(
                conn,
                sql.SQL(
                    "SELECT r.oid, (array_agg(d.trade_id ORDER BY d.trade_id))[1:10] AS ids "
                    "FROM {t} d {refs} WHERE r.oid = ANY(%s) GROUP BY r.oid"
                ).format(t=trades, refs=refs),
                [[e["order_id"] for e in ex]],
            )
            by_oid = {r["oid"]: r["ids"] for r in ids}
            for e in ex:
                e["trade_ids"] = by_oid.get(e["order_id"], [])
        findings.kind("double_fill").add(total, ({"source": source, **e} for e in ex), cap)
    else:
        findings.skip("double_fill", "no trade quantity or no order quantity configured")

    if not has_symbol:
        for k in ("seq_gap", "seq_duplicate", "seq_reorder"):
            findings.skip(k, "no symbol/seq configured for the trades")
        return

    sdup = _fetch(
        conn,
        sql.SQL(
            "SELECT symbol, seq, n AS trades, ids AS trade_ids, count(*) OVER () AS _total FROM ("
            "  SELECT symbol, seq, count(*) AS n, ARRAY[min(trade_id), max(trade_id)] AS ids FROM {t} d"
            "  WHERE seq IS NOT NULL GROUP BY symbol, seq HAVING count(*) > 1) x"
            " ORDER BY symbol, seq LIMIT {cap}"
        ).format(t=trades, cap=sql.Literal(cap)),
    )
    total, ex = _counted(sdup)
    findings.kind("seq_duplicate").add(total, ({"source": source, **e} for e in ex), cap)

    # Gaps: consecutive distinct seqs of one symbol that differ by more than 1 (or a first seq above 1).
    # On a truncated topic the first retained seq of a symbol is not evidence of a gap.
    first_gap = sql.SQL("") if truncated else sql.SQL(" OR (prev IS NULL AND seq > 1)")
    gaps = _fetch(
        conn,
        sql.SQL(
            "SELECT symbol, coalesce(prev, 0) AS after_seq, seq AS next_seq, "
            "seq - coalesce(prev, 0) - 1 AS missing, "
            "count(*) OVER () AS _total FROM ("
            "  SELECT symbol, seq, lag(seq) OVER (PARTITION BY symbol ORDER BY seq) AS prev FROM ("
            "    SELECT DISTINCT symbol, seq FROM {t} d WHERE seq IS NOT NULL) s) g "
            "WHERE (prev IS NOT NULL AND seq - prev > 1){first} ORDER BY symbol, seq LIMIT {cap}"
        ).format(t=trades, first=first_gap, cap=sql.Literal(cap)),
    )
    total, ex = _counted(gaps)
    findings.kind("seq_gap").add(total, ({"source": source, **e} for e in ex), cap)

    if is_topic:
        reorder = _fetch(
            conn,
            sql.SQL(
                "SELECT symbol, p AS partition, off AS offset, seq, prev_off AS previous_offset, "
                "prev_seq AS previous_seq, trade_id, count(*) OVER () AS _total FROM ("
                "  SELECT symbol, p, off, seq, trade_id,"
                "         lag(seq) OVER w AS prev_seq, lag(off) OVER w AS prev_off FROM {t} d"
                "  WHERE seq IS NOT NULL WINDOW w AS (PARTITION BY p, symbol ORDER BY off)) x "
                "WHERE seq <= prev_seq ORDER BY p, off LIMIT {cap}"
            ).format(t=trades, cap=sql.Literal(cap)),
        )
        total, ex = _counted(reorder)
        findings.kind("seq_reorder").add(total, ({"source": source, **e} for e in ex), cap)
    elif config.trade_events is None:
        findings.skip("seq_reorder", "needs a trades topic (offset order)")


# --- convenience ------------------------------------------------------------------------------------


def run(
    dsn: str,
    config: IntegrityConfig,
    ledger: LedgerInput,
    *,
    bootstrap: str | None = None,
    run_id: str | None = None,
    thresholds: IntegrityThresholds | None = None,
) -> CheckResult:
    """Measure and judge. A run-time failure becomes "unknown" with the error; ConfigError propagates."""
    try:
        findings = measure(dsn, config, ledger, bootstrap=bootstrap, run_id=run_id)
    except ConfigError:
        raise
    except Exception as e:
        return CheckResult.unknown("integrity", f"{type(e).__name__}: {e}")
    return check(findings, thresholds or config.thresholds)
