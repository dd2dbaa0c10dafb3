"""The integrity checker's configuration: where the evidence lives (tables, topics) and which kinds fail.

Nothing here knows paperbroker: tables, columns, topics, event types and JSON fields are all data, validated
up front (``ConfigError`` naming the field) by each class's ``from_dict``. :data:`KINDS` lists the anomaly
kinds :mod:`resgate.checks.integrity.anomalies` detects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.identifiers import TableName, check_identifiers, ident, parse_table_name, unique_name
from resgate.contract.constants import DEFAULT_EXAMPLES_CAP
from resgate.contract.errors import ConfigError
from resgate.sections.fields import Section

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
    "price_outside_limit",
    "order_mismatch",
    "fill_after_cancel",
    "cancel_still_open",
    "position_not_conserved",
    "position_mismatch",
    "non_monotonic_read",
    "unseen_by_projector",
    "aborted_read",
    "offset_backwards",
    "offset_skip",
)
ALLOWED_BY_DEFAULT: frozenset[str] = frozenset({"recovered"})
DEFAULT_PROHIBITED: frozenset[str] = frozenset(KINDS) - ALLOWED_BY_DEFAULT


@dataclass(frozen=True)
class OrdersTable:
    """The system's orders table: one row per accepted order.

    ``qty`` may be None (then double fills are judged on the accepted events' quantity, if any).
    ``symbol``, ``side`` and ``price`` (the limit) are None unless configured: the stored fields are
    compared with what the client sent (``order_mismatch``), ``side``/``price`` bound the trades
    (``price_outside_limit``) and ``side``/``symbol`` sign the fills (``position_mismatch``). ``buy_side``
    and ``sell_side`` are the values of the side column.
    """

    table: TableName
    order_id: str = "order_id"
    client_id: str = "client_id"
    idempotency_key: str = "idempotency_key"
    qty: str | None = "qty"
    symbol: str | None = None
    side: str | None = None
    price: str | None = None
    buy_side: str = "buy"
    sell_side: str = "sell"

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.orders") -> OrdersTable:
        s = Section.closed(
            d,
            where,
            (
                "table",
                "order_id",
                "client_id",
                "idempotency_key",
                "qty",
                "symbol",
                "side",
                "price",
                "buy_side",
                "sell_side",
            ),
        )
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        buy, sell = s.text("buy_side", "buy"), s.text("sell_side", "sell")
        if buy == sell:
            raise ConfigError(f"must differ from buy_side ({buy!r})", where=s.p("sell_side"))
        return cls(
            table=parse_table_name(s.data["table"], s.p("table")),
            order_id=ident(s, "order_id", "order_id"),  # type: ignore[arg-type]
            client_id=ident(s, "client_id", "client_id"),  # type: ignore[arg-type]
            idempotency_key=ident(s, "idempotency_key", "idempotency_key"),  # type: ignore[arg-type]
            qty=ident(s, "qty", "qty", optional=True),
            symbol=ident(s, "symbol", None, optional=True),
            side=ident(s, "side", None, optional=True),
            price=ident(s, "price", None, optional=True),
            buy_side=buy,  # type: ignore[arg-type]
            sell_side=sell,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class TradesTable:
    """A table with one row per trade (a read model such as a trade blotter, or the matcher's own table).

    ``order_ids`` are the columns that reference orders (e.g. buy and sell side). ``symbol``/``seq`` may be
    None to skip the sequence checks; ``qty`` None skips double fills; ``price`` (None unless configured)
    is the trade's price, checked against each order's limit.
    """

    table: TableName
    trade_id: str = "trade_id"
    symbol: str | None = "symbol"
    seq: str | None = "seq"
    qty: str | None = "qty"
    order_ids: tuple[str, ...] = ("buy_order_id", "sell_order_id")
    price: str | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.trades") -> TradesTable:
        s = Section.closed(d, where, ("table", "trade_id", "symbol", "seq", "qty", "order_ids", "price"))
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        return cls(
            table=parse_table_name(s.data["table"], s.p("table")),
            trade_id=ident(s, "trade_id", "trade_id"),  # type: ignore[arg-type]
            symbol=ident(s, "symbol", "symbol", optional=True),
            seq=ident(s, "seq", "seq", optional=True),
            qty=ident(s, "qty", "qty", optional=True),
            order_ids=check_identifiers(
                s.data.get("order_ids", ("buy_order_id", "sell_order_id")), s.p("order_ids")
            ),
            price=ident(s, "price", None, optional=True),
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
        s = Section.closed(d, where, (*_EVENT_KEYS, "order_id", "client_id", "idempotency_key", "qty"))
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
    price: str | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.trade_events") -> TradeEvents:
        s = Section.closed(d, where, (*_EVENT_KEYS, "trade_id", "symbol", "seq", "qty", "order_ids", "price"))
        return cls(
            **_event_common(s),
            trade_id=s.text("trade_id", "trade_id"),  # type: ignore[arg-type]
            symbol=s.text("symbol", "symbol", optional=True),
            seq=s.text("seq", "seq", optional=True),
            qty=s.text("qty", "qty", optional=True),
            order_ids=s.texts("order_ids", ("buy_order_id", "sell_order_id")),
            price=s.text("price", None, optional=True),
        )


@dataclass(frozen=True)
class CancelEvents:
    """A topic of the system's cancel confirmations (e.g. ``OrderCancelled``), with the order id they name.

    Fills after a confirmation are found by offset order, so this must be the trade events' topic (a
    symbol keyed topic keeps an order's cancel and its trades in one partition).
    """

    topic: str
    type_field: str | None = "type"
    type_value: str | None = None
    event_id: str | None = "event_id"
    order_id: str = "order_id"

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.cancel_events") -> CancelEvents:
        s = Section.closed(d, where, (*_EVENT_KEYS, "order_id"))
        return cls(**_event_common(s), order_id=s.text("order_id", "order_id"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class OrderStates:
    """A table holding each order's state after the system settled (e.g. an order blotter read model).

    ``open_statuses`` are the values of ``status`` that mean the order can still trade: an order whose
    cancel was acknowledged must not end in one of them (``cancel_still_open``).
    """

    table: TableName
    order_id: str = "order_id"
    status: str = "status"
    open_statuses: tuple[str, ...] = ("open", "partially_filled")

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.order_states") -> OrderStates:
        s = Section.closed(d, where, ("table", "order_id", "status", "open_statuses"))
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        return cls(
            table=parse_table_name(s.data["table"], s.p("table")),
            order_id=ident(s, "order_id", "order_id"),  # type: ignore[arg-type]
            status=ident(s, "status", "status"),  # type: ignore[arg-type]
            open_statuses=s.texts("open_statuses", ("open", "partially_filled")),
        )


@dataclass(frozen=True)
class ProjectedEvents:
    """A table in which a projector records each event id it applied (its dedupe table).

    An accepted event whose id is not in it was never seen by the projector (``unseen_by_projector``).
    """

    table: TableName
    event_id: str = "event_id"

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.projected_events") -> ProjectedEvents:
        s = Section.closed(d, where, ("table", "event_id"))
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        return cls(
            table=parse_table_name(s.data["table"], s.p("table")),
            event_id=ident(s, "event_id", "event_id"),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ConsumedOffsets:
    """A table in which a consumer records each event it consumed: group, topic, partition, offset, order.

    ``order`` is a column that increases with the order of consumption (a sequence or a commit
    timestamp); ``group`` is None (the default) when the table holds one consumer group. Per group and
    partition (Jepsen's Kafka key), the offsets first consumed must increase in consumption order
    (``offset_backwards``), and no event of a loaded topic may be left out below an offset the group
    consumed (``offset_skip``).
    """

    table: TableName
    group: str | None = None
    topic: str = "topic"
    partition: str = "partition"
    offset: str = "offset"
    order: str = "seq"

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.consumed_offsets") -> ConsumedOffsets:
        s = Section.closed(d, where, ("table", "group", "topic", "partition", "offset", "order"))
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        return cls(
            table=parse_table_name(s.data["table"], s.p("table")),
            group=ident(s, "group", None, optional=True),
            topic=ident(s, "topic", "topic"),  # type: ignore[arg-type]
            partition=ident(s, "partition", "partition"),  # type: ignore[arg-type]
            offset=ident(s, "offset", "offset"),  # type: ignore[arg-type]
            order=ident(s, "order", "seq"),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class PositionsTable:
    """A positions read model: one row per (client, symbol) with its net quantity (bought minus sold)."""

    table: TableName
    client_id: str = "client_id"
    symbol: str = "symbol"
    net_qty: str = "net_qty"

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.positions") -> PositionsTable:
        s = Section.closed(d, where, ("table", "client_id", "symbol", "net_qty"))
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        return cls(
            table=parse_table_name(s.data["table"], s.p("table")),
            client_id=ident(s, "client_id", "client_id"),  # type: ignore[arg-type]
            symbol=ident(s, "symbol", "symbol"),  # type: ignore[arg-type]
            net_qty=ident(s, "net_qty", "net_qty"),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class IntegrityThresholds:
    """Which anomaly kinds fail the check (the others are only reported) and how many examples to keep."""

    prohibited: frozenset[str] = DEFAULT_PROHIBITED
    examples_cap: int = DEFAULT_EXAMPLES_CAP

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity.thresholds") -> IntegrityThresholds:
        s = Section.closed(d, where, ("prohibited", "allowed", "examples_cap"))
        if "prohibited" in s.data and "allowed" in s.data:
            raise ConfigError("give either prohibited or allowed, not both", where=where)
        prohibited = DEFAULT_PROHIBITED
        for key in ("prohibited", "allowed"):
            if key in s.data:
                v = s.data[key]
                if isinstance(v, str) or not isinstance(v, Sequence):
                    raise ConfigError(f"must be a list of anomaly kinds, got {v!r}", where=s.p(key))
                bad = sorted(str(k) for k in v if k not in KINDS)
                if bad:
                    raise ConfigError(f"unknown anomaly kinds {bad}; known: {list(KINDS)}", where=s.p(key))
                prohibited = frozenset(v) if key == "prohibited" else frozenset(KINDS) - frozenset(v)
        return cls(
            prohibited=prohibited, examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0)
        )


@dataclass(frozen=True)
class IntegrityConfig:
    """Where the integrity evidence lives. At least one of ``orders`` / ``accepted_events`` is required.

    ``submit_ops`` are the ledger ``op`` values that submit an order, ``cancel_ops`` those that cancel one
    (the ledger record's ``order_id`` names it), ``read_ops`` those that read one back (``order_status``
    and ``filled_qty`` in the record); ``terminal_statuses`` are the read statuses an order never leaves.
    The work schema (unlogged tables, named ``<work_schema_prefix>_<hex>``) is dropped afterwards unless
    ``keep_work_schema``.
    """

    orders: OrdersTable | None = None
    trades: TradesTable | None = None
    accepted_events: AcceptedEvents | None = None
    trade_events: TradeEvents | None = None
    cancel_events: CancelEvents | None = None
    order_states: OrderStates | None = None
    positions: PositionsTable | None = None
    projected_events: ProjectedEvents | None = None
    consumed_offsets: ConsumedOffsets | None = None
    submit_ops: tuple[str, ...] = ("submit_order",)
    cancel_ops: tuple[str, ...] = ("cancel_order",)
    read_ops: tuple[str, ...] = ("get_order",)
    terminal_statuses: tuple[str, ...] = ("filled", "cancelled")
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
        overlap = (set(self.submit_ops) & set(self.cancel_ops + self.read_ops)) | (
            set(self.cancel_ops) & set(self.read_ops)
        )
        if overlap:
            raise ConfigError(
                f"an op is one of submit_ops, cancel_ops or read_ops, not several: {sorted(overlap)}",
                where="integrity.cancel_ops",
            )

    @property
    def topics(self) -> list[str]:
        """The configured topics, without repeats."""
        out: list[str] = []
        for src in (self.accepted_events, self.trade_events, self.cancel_events):
            if src is not None and src.topic not in out:
                out.append(src.topic)
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str = "integrity") -> IntegrityConfig:
        """Validate a config mapping (the ``integrity`` section of the gate config)."""
        s = Section.closed(
            d,
            where,
            (
                "orders",
                "trades",
                "accepted_events",
                "trade_events",
                "cancel_events",
                "order_states",
                "positions",
                "projected_events",
                "consumed_offsets",
                "submit_ops",
                "cancel_ops",
                "read_ops",
                "terminal_statuses",
                "examples_cap",
                "work_schema_prefix",
                "keep_work_schema",
                "consume_timeout_s",
                "work_mem",
                "thresholds",
            ),
        )

        def sub(key: str, parse: Callable[[Any, str], Any]) -> Any:
            v = s.data.get(key)
            return None if v is None else parse(v, s.p(key))

        work_mem = s.text("work_mem", "256MB")
        if not str(work_mem).replace(" ", "").rstrip("kMGTBb").isdigit():
            raise ConfigError(
                f"must be a Postgres memory size like '256MB', got {work_mem!r}", where=s.p("work_mem")
            )
        try:
            return cls(
                orders=sub("orders", OrdersTable.from_dict),
                trades=sub("trades", TradesTable.from_dict),
                accepted_events=sub("accepted_events", AcceptedEvents.from_dict),
                trade_events=sub("trade_events", TradeEvents.from_dict),
                cancel_events=sub("cancel_events", CancelEvents.from_dict),
                order_states=sub("order_states", OrderStates.from_dict),
                positions=sub("positions", PositionsTable.from_dict),
                projected_events=sub("projected_events", ProjectedEvents.from_dict),
                consumed_offsets=sub("consumed_offsets", ConsumedOffsets.from_dict),
                submit_ops=s.texts("submit_ops", ("submit_order",)),
                cancel_ops=s.texts("cancel_ops", ("cancel_order",)),
                read_ops=s.texts("read_ops", ("get_order",)),
                terminal_statuses=s.texts("terminal_statuses", ("filled", "cancelled")),
                examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0),
                work_schema_prefix=s.text("work_schema_prefix", "resgate_integrity"),  # type: ignore[arg-type]
                keep_work_schema=s.flag("keep_work_schema", False),
                consume_timeout_s=s.number("consume_timeout_s", 300.0, minimum=1),
                work_mem=work_mem,  # type: ignore[arg-type]
                thresholds=IntegrityThresholds.from_dict(s.data.get("thresholds") or {}, s.p("thresholds")),
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
