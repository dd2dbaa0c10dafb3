"""The replay checker's configuration: the read models, how each is rebuilt, and the example cap.

Validated up front (``ConfigError`` naming the field) by each class's ``from_dict``. A rebuild is either a
Python callable ``"module:function"`` or a command; :meth:`RebuildSpec.resolve` imports the callable.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.identifiers import TableName, check_identifiers, ident, parse_table_name, unique_name
from resgate.config.fields import Section
from resgate.contract.constants import DEFAULT_EXAMPLES_CAP
from resgate.contract.errors import ConfigError

_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

RebuildFn = Callable[..., Any]
"""``fn(conn, schema, end_offsets, *, bootstrap)``: build the read model tables inside ``schema``."""


@dataclass(frozen=True)
class RebuildSpec:
    """How to rebuild read models: exactly one of ``callable`` (``"module:function"``) or ``command``.

    A callable is called as ``fn(conn, schema, end_offsets, *, bootstrap)`` with a psycopg connection to
    the target database (committed afterwards) and ``end_offsets`` = ``{topic: {partition: end}}``. A
    command runs with ``RESGATE_REPLAY_DSN``, ``RESGATE_REPLAY_SCHEMA``, ``RESGATE_REPLAY_END_OFFSETS``
    (JSON) and ``RESGATE_KAFKA_BOOTSTRAP`` added to the environment (plus ``env``), in ``cwd``; a non-zero
    exit is a failed rebuild. Either is stopped after ``timeout_s``.
    """

    callable: str | None = None
    command: tuple[str, ...] | None = None
    timeout_s: float = 600.0
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "replay.rebuild") -> RebuildSpec:
        s = Section.closed(d, where, ("callable", "command", "timeout_s", "env", "cwd"))
        has_callable, has_command = s.data.get("callable") is not None, s.data.get("command") is not None
        if has_callable == has_command:
            raise ConfigError(
                "give exactly one of callable ('module:function') or command ([...])", where=where
            )
        fn = None
        cmd = None
        if has_callable:
            fn = s.data["callable"]
            if not isinstance(fn, str) or not _CALLABLE_RE.match(fn):
                raise ConfigError(
                    f"must look like 'package.module:function', got {fn!r}", where=s.p("callable")
                )
        else:
            raw = s.data["command"]
            if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
                raise ConfigError(f"must be a non-empty list of arguments, got {raw!r}", where=s.p("command"))
            if not all(isinstance(a, str) and a for a in raw):
                raise ConfigError("every argument must be a non-empty string", where=s.p("command"))
            cmd = tuple(raw)
        env = s.data.get("env") or {}
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ConfigError("must map names to string values", where=s.p("env"))
        cwd = s.text("cwd", None, optional=True)
        return cls(
            callable=fn,
            command=cmd,
            timeout_s=s.number("timeout_s", 600.0, minimum=1),
            env=tuple(sorted(env.items())),
            cwd=cwd,
        )

    def resolve(self, where: str = "replay.rebuild.callable") -> RebuildFn | None:
        """Import the callable (None for a command); ConfigError when it cannot be imported."""
        if self.callable is None:
            return None
        module, _, name = self.callable.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"cannot import {self.callable}: {e}", where=where) from e
        if not callable(fn):
            raise ConfigError(f"{self.callable} is not callable", where=where)
        return fn  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ReadModelSpec:
    """One read model: its live table, how rows are identified and compared, and how it is rebuilt.

    ``compared_columns`` defaults to every column of the live table except ``excluded_columns`` (e.g.
    wall-clock timestamps a rebuild cannot reproduce). The rebuilt table is ``<shadow schema>.<shadow_table>``
    (default: the live table's name without its schema).
    """

    name: str
    table: TableName
    key_columns: tuple[str, ...]
    topics: tuple[str, ...]
    rebuild: RebuildSpec
    compared_columns: tuple[str, ...] | None = None
    excluded_columns: tuple[str, ...] = ()
    shadow_table: str | None = None

    @property
    def rebuilt_table(self) -> str:
        return self.shadow_table or self.table[-1]

    @classmethod
    def from_dict(
        cls,
        d: Any,
        where: str = "replay.read_models[0]",
        *,
        default_rebuild: RebuildSpec | None = None,
        default_topics: tuple[str, ...] | None = None,
    ) -> ReadModelSpec:
        s = Section.closed(
            d,
            where,
            (
                "name",
                "table",
                "key_columns",
                "compared_columns",
                "excluded_columns",
                "topics",
                "rebuild",
                "shadow_table",
            ),
        )
        if "table" not in s.data:
            raise ConfigError("is required", where=s.p("table"))
        table = parse_table_name(s.data["table"], s.p("table"))
        if "key_columns" not in s.data:
            raise ConfigError("is required", where=s.p("key_columns"))
        keys = check_identifiers(s.data["key_columns"], s.p("key_columns"))
        compared = None
        if s.data.get("compared_columns") is not None:
            compared = check_identifiers(s.data["compared_columns"], s.p("compared_columns"))
        excluded = check_identifiers(
            s.data.get("excluded_columns") or [], s.p("excluded_columns"), allow_empty=True
        )
        if compared is not None and excluded:
            raise ConfigError("give compared_columns or excluded_columns, not both", where=where)
        clash = sorted(set(keys) & set(excluded))
        if clash:
            raise ConfigError(f"key columns cannot be excluded: {clash}", where=s.p("excluded_columns"))
        if "topics" in s.data:
            topics = _topics(s.data["topics"], s.p("topics"))
        elif default_topics:
            topics = default_topics
        else:
            raise ConfigError("is required (here or at the replay level)", where=s.p("topics"))
        if s.data.get("rebuild") is not None:
            rebuild = RebuildSpec.from_dict(s.data["rebuild"], s.p("rebuild"))
        elif default_rebuild is not None:
            rebuild = default_rebuild
        else:
            raise ConfigError("is required (here or at the replay level)", where=s.p("rebuild"))
        return cls(
            name=s.text("name", table[-1]),  # type: ignore[arg-type]
            table=table,
            key_columns=keys,
            topics=topics,
            rebuild=rebuild,
            compared_columns=compared,
            excluded_columns=excluded,
            shadow_table=ident(s, "shadow_table", None, optional=True),
        )


def _topics(v: Any, where: str) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, Sequence) or not v:
        raise ConfigError(f"must be a non-empty list of topic names, got {v!r}", where=where)
    for i, t in enumerate(v):
        if not isinstance(t, str) or not t:
            raise ConfigError(f"must be a non-empty string, got {t!r}", where=f"{where}[{i}]")
    return tuple(dict.fromkeys(v))


@dataclass(frozen=True)
class ReplayThresholds:
    """How many examples the result keeps (a mismatch of any size fails: a read model is exact)."""

    examples_cap: int = DEFAULT_EXAMPLES_CAP

    @classmethod
    def from_dict(cls, d: Any, where: str = "replay.thresholds") -> ReplayThresholds:
        s = Section.closed(d, where, ("examples_cap",))
        return cls(examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0))


@dataclass(frozen=True)
class ReplayConfig:
    """The read models to replay. ``rebuild`` / ``topics`` at this level are defaults for every model.

    ``buckets`` is the number of key-hash buckets used to localise a mismatch. Shadow schemas are named
    ``<schema_prefix>[_<run id>]_<hex>`` and dropped afterwards unless ``keep_shadow``.
    """

    read_models: tuple[ReadModelSpec, ...]
    buckets: int = 64
    keep_shadow: bool = False
    examples_cap: int = DEFAULT_EXAMPLES_CAP
    schema_prefix: str = "resgate_replay"
    thresholds: ReplayThresholds = field(default_factory=ReplayThresholds)

    def __post_init__(self) -> None:
        if not self.read_models:
            raise ConfigError("configure at least one read model", where="replay.read_models")
        names = [m.name for m in self.read_models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"read model names must be unique: {dup}", where="replay.read_models")
        unique_name(self.schema_prefix, where="replay.schema_prefix")

    @classmethod
    def from_dict(cls, d: Any, where: str = "replay") -> ReplayConfig:
        """Validate the ``replay`` section of the gate config."""
        s = Section.closed(
            d,
            where,
            (
                "read_models",
                "rebuild",
                "topics",
                "buckets",
                "keep_shadow",
                "examples_cap",
                "schema_prefix",
                "thresholds",
            ),
        )
        default_rebuild = (
            RebuildSpec.from_dict(s.data["rebuild"], s.p("rebuild")) if s.data.get("rebuild") else None
        )
        default_topics = (
            _topics(s.data["topics"], s.p("topics")) if s.data.get("topics") is not None else None
        )
        models_raw = s.data.get("read_models")
        if isinstance(models_raw, str) or not isinstance(models_raw, Sequence) or not models_raw:
            raise ConfigError("must be a non-empty list of read models", where=s.p("read_models"))
        models = tuple(
            ReadModelSpec.from_dict(
                m,
                f"{s.p('read_models')}[{i}]",
                default_rebuild=default_rebuild,
                default_topics=default_topics,
            )
            for i, m in enumerate(models_raw)
        )
        try:
            return cls(
                read_models=models,
                buckets=s.integer("buckets", 64, minimum=1),
                keep_shadow=s.flag("keep_shadow", False),
                examples_cap=s.integer("examples_cap", DEFAULT_EXAMPLES_CAP, minimum=0),
                schema_prefix=s.text("schema_prefix", "resgate_replay"),  # type: ignore[arg-type]
                thresholds=ReplayThresholds.from_dict(s.data.get("thresholds") or {}, s.p("thresholds")),
            )
        except ConfigError as e:
            if where != "replay" and e.where and e.where.startswith("replay."):
                raise ConfigError(str(e).split(": ", 1)[-1], where=where + e.where[len("replay") :]) from None
            raise
