"""Replay checker: rebuild each read model from its topics into a shadow schema and compare with the live one.

For every configured read model (:class:`ReadModelSpec`) :func:`measure` records the topics' end offsets
and refuses to go on when a topic no longer starts at offset 0 (retention truncated the log, so a rebuild
could not be complete: "unknown" with that reason). Otherwise it creates a uniquely named shadow schema,
runs the configured rebuild into it — a Python callable ``fn(conn, schema, end_offsets, *, bootstrap)``
or a command that gets the same through environment variables — and compares the live and rebuilt
tables by row count and an order-independent checksum computed in SQL (the sum, as numeric, of a 64-bit
hash of each row's canonical text). On a mismatch it localises the difference by key-hash buckets and
lists capped example keys with their live and rebuilt values. The live checksum is computed while the
rebuild runs. Nothing holds rows or events in Python memory. The shadow schema is dropped afterwards
unless ``keep_shadow`` is set. :func:`check` is the pure judge over :class:`ReplayFindings`.

Read models that share a rebuild and topics (one projector process building several tables) are rebuilt
once, into one shadow schema.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector
from resgate.checks.sqlutil import (
    EndOffsets,
    Section,
    TableName,
    check_identifiers,
    create_schema,
    drop_schema,
    parse_table_name,
    table_columns,
    table_label,
    unique_name,
)
from resgate.contract.constants import DEFAULT_EXAMPLES_CAP
from resgate.contract.env import (
    ENV_KAFKA_BOOTSTRAP,
    ENV_REPLAY_DSN,
    ENV_REPLAY_END_OFFSETS,
    ENV_REPLAY_SCHEMA,
)
from resgate.contract.errors import ConfigError, GateError

# The environment contract of a rebuild command (paperbroker.projections uses the same names).

_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_OUTPUT_TAIL = 2000

RebuildFn = Callable[..., Any]
"""``fn(conn, schema, end_offsets, *, bootstrap)``: build the read model tables inside ``schema``."""


# --- configuration ----------------------------------------------------------------------------------


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
        s = Section(d, where, ("callable", "command", "timeout_s", "env", "cwd"))
        has_callable, has_command = s.d.get("callable") is not None, s.d.get("command") is not None
        if has_callable == has_command:
            raise ConfigError(
                "give exactly one of callable ('module:function') or command ([...])", where=where
            )
        fn = None
        cmd = None
        if has_callable:
            fn = s.d["callable"]
            if not isinstance(fn, str) or not _CALLABLE_RE.match(fn):
                raise ConfigError(
                    f"must look like 'package.module:function', got {fn!r}", where=s.at("callable")
                )
        else:
            raw = s.d["command"]
            if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
                raise ConfigError(
                    f"must be a non-empty list of arguments, got {raw!r}", where=s.at("command")
                )
            if not all(isinstance(a, str) and a for a in raw):
                raise ConfigError("every argument must be a non-empty string", where=s.at("command"))
            cmd = tuple(raw)
        env = s.d.get("env") or {}
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ConfigError("must map names to string values", where=s.at("env"))
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
        s = Section(
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
        if "table" not in s.d:
            raise ConfigError("is required", where=s.at("table"))
        table = parse_table_name(s.d["table"], s.at("table"))
        if "key_columns" not in s.d:
            raise ConfigError("is required", where=s.at("key_columns"))
        keys = check_identifiers(s.d["key_columns"], s.at("key_columns"))
        compared = None
        if s.d.get("compared_columns") is not None:
            compared = check_identifiers(s.d["compared_columns"], s.at("compared_columns"))
        excluded = check_identifiers(
            s.d.get("excluded_columns") or [], s.at("excluded_columns"), allow_empty=True
        )
        if compared is not None and excluded:
            raise ConfigError("give compared_columns or excluded_columns, not both", where=where)
        clash = sorted(set(keys) & set(excluded))
        if clash:
            raise ConfigError(f"key columns cannot be excluded: {clash}", where=s.at("excluded_columns"))
        if "topics" in s.d:
            topics = _topics(s.d["topics"], s.at("topics"))
        elif default_topics:
            topics = default_topics
        else:
            raise ConfigError("is required (here or at the replay level)", where=s.at("topics"))
        if s.d.get("rebuild") is not None:
            rebuild = RebuildSpec.from_dict(s.d["rebuild"], s.at("rebuild"))
        elif default_rebuild is not None:
            rebuild = default_rebuild
        else:
            raise ConfigError("is required (here or at the replay level)", where=s.at("rebuild"))
        return cls(
            name=s.text("name", table[-1]),  # type: ignore[arg-type]
            table=table,
            key_columns=keys,
            topics=topics,
            rebuild=rebuild,
            compared_columns=compared,
            excluded_columns=excluded,
            shadow_table=s.ident("shadow_table", None, optional=True),
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
        s = Section(d, where, ("examples_cap",))
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
        s = Section(
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
            RebuildSpec.from_dict(s.d["rebuild"], s.at("rebuild")) if s.d.get("rebuild") else None
        )
        default_topics = _topics(s.d["topics"], s.at("topics")) if s.d.get("topics") is not None else None
        models_raw = s.d.get("read_models")
        if isinstance(models_raw, str) or not isinstance(models_raw, Sequence) or not models_raw:
            raise ConfigError("must be a non-empty list of read models", where=s.at("read_models"))
        models = tuple(
            ReadModelSpec.from_dict(
                m,
                f"{s.at('read_models')}[{i}]",
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
                thresholds=ReplayThresholds.from_dict(s.d.get("thresholds") or {}, s.at("thresholds")),
            )
        except ConfigError as e:
            if where != "replay" and e.where and e.where.startswith("replay."):
                raise ConfigError(str(e).split(": ", 1)[-1], where=where + e.where[len("replay") :]) from None
            raise


# --- findings ---------------------------------------------------------------------------------------


@dataclass
class ModelFindings:
    """What was measured for one read model.

    ``unavailable`` says why it could not be compared (truncated topic, failed rebuild, missing table).
    Checksums are decimal strings (sums of signed 64-bit hashes). ``diff_counts`` has
    ``missing_in_rebuilt`` / ``extra_in_rebuilt`` / ``different`` (rows in the differing buckets);
    ``examples`` are ``{key, kind, live, rebuilt, columns}`` dicts.
    """

    name: str
    table: str
    unavailable: str | None = None
    end_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    truncated: list[tuple[str, int, int]] = field(default_factory=list)
    compared_columns: list[str] = field(default_factory=list)
    live_rows: int | None = None
    live_checksum: str | None = None
    rebuilt_rows: int | None = None
    rebuilt_checksum: str | None = None
    missing_columns: list[str] = field(default_factory=list)
    buckets: int = 0
    differing_buckets: int = 0
    diff_counts: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    shadow_schema: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def matches(self) -> bool:
        """True when rows and checksums agree and the rebuilt table has every compared column."""
        return (
            self.unavailable is None
            and not self.missing_columns
            and self.live_rows == self.rebuilt_rows
            and self.live_checksum == self.rebuilt_checksum
        )

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["truncated"] = [list(t) for t in self.truncated]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelFindings:
        kw = dict(d)
        kw["truncated"] = [tuple(t) for t in kw.get("truncated") or []]
        kw["end_offsets"] = {
            t: {int(p): int(o) for p, o in ps.items()} for t, ps in (kw.get("end_offsets") or {}).items()
        }
        return cls(**kw)


@dataclass
class ReplayFindings:
    """Per read model findings, in config order."""

    models: list[ModelFindings] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"models": [m.to_dict() for m in self.models]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReplayFindings:
        return cls(models=[ModelFindings.from_dict(m) for m in d.get("models") or []])


# --- the judge --------------------------------------------------------------------------------------


def check(findings: ReplayFindings, thresholds: ReplayThresholds | ReplayConfig | None = None) -> CheckResult:
    """Judge replay findings: false if any read model differs, else unknown if any could not be compared.

    Returns a CheckResult named ``replay`` with ``counts`` = ``{read_models, matching, mismatching,
    unknown, differing_rows}``, ``examples`` = ``[{read_model, key, kind, live, rebuilt, columns}]``
    (capped, shared round-robin between models), ``error`` = the reasons when unknown, and ``details`` =
    ``{read_model: {status, live_rows, rebuilt_rows, live_checksum, rebuilt_checksum, ...}}``. No read
    model at all is "unknown": nothing was proven.
    """
    if isinstance(thresholds, ReplayConfig):
        thresholds = thresholds.thresholds
    th = thresholds or ReplayThresholds()
    matching = mismatching = unknown = differing = 0
    reasons: list[str] = []
    details: dict[str, Any] = {}
    queues: list[tuple[str, list[dict[str, Any]]]] = []
    for m in findings.models:
        info: dict[str, Any] = {
            "table": m.table,
            "live_rows": m.live_rows,
            "rebuilt_rows": m.rebuilt_rows,
            "live_checksum": m.live_checksum,
            "rebuilt_checksum": m.rebuilt_checksum,
            "end_offsets": {t: {str(p): o for p, o in ps.items()} for t, ps in m.end_offsets.items()},
        }
        if m.unavailable is not None:
            unknown += 1
            info["status"] = UNKNOWN
            info["reason"] = m.unavailable
            reasons.append(f"{m.name}: {m.unavailable}")
        elif m.matches:
            matching += 1
            info["status"] = "match"
        else:
            mismatching += 1
            info["status"] = "mismatch"
            n = sum(m.diff_counts.values())
            differing += n
            info.update(
                diff_counts=dict(m.diff_counts),
                differing_buckets=m.differing_buckets,
                buckets=m.buckets,
                missing_columns=list(m.missing_columns),
            )
            queues.append((m.name, list(m.examples)))
        details[m.name] = info

    collector = ExampleCollector(th.examples_cap)
    while any(q for _n, q in queues) and len(collector.examples) < collector.cap:
        for name, q in queues:
            if q:
                collector.add({"read_model": name, **q.pop(0)})

    if mismatching:
        valid: bool | str = False
        error = None
    elif unknown or not findings.models:
        valid = UNKNOWN
        error = "; ".join(reasons) or "no read model was replayed"
    else:
        valid = True
        error = None
    return CheckResult(
        name="replay",
        valid=valid,  # type: ignore[arg-type]
        counts={
            "read_models": len(findings.models),
            "matching": matching,
            "mismatching": mismatching,
            "unknown": unknown,
            "differing_rows": differing,
        },
        examples=collector.examples,
        error=error,
        details=details,
    )


# --- SQL --------------------------------------------------------------------------------------------


def _row_text(columns: Sequence[str], alias: str = "t") -> sql.Composable:
    """The canonical row text ``ROW(c1, c2, ...)::text`` (NULL and '' stay distinct)."""
    cols = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns
    )
    return sql.SQL("ROW({})::text").format(cols)


def _row_hash(columns: Sequence[str], alias: str = "t") -> sql.Composable:
    return sql.SQL("hashtextextended({}, 0)").format(_row_text(columns, alias))


def _bucket(keys: Sequence[str], n: int, alias: str = "t") -> sql.Composable:
    # seed 1: independent of the row hash, so a bucket is not correlated with row content
    return sql.SQL("abs(mod(hashtextextended({}, 1), {}))").format(_row_text(keys, alias), sql.Literal(n))


def _fingerprint(
    conn: psycopg.Connection[Any], table: sql.Composable, columns: Sequence[str]
) -> tuple[int, str]:
    """``(row count, sum of row hashes as a decimal string)`` of ``table`` over ``columns``.

    ``sum(bigint)`` is numeric in Postgres, so the sum is exact (no wrap-around).
    """
    row = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum({h}), 0)::text FROM {t} t").format(
            h=_row_hash(columns), t=table
        )
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _bucket_sums(
    conn: psycopg.Connection[Any], table: sql.Composable, keys: Sequence[str], columns: Sequence[str], n: int
) -> dict[int, tuple[int, str]]:
    rows = conn.execute(
        sql.SQL("SELECT {b} AS b, count(*), sum({h})::text FROM {t} t GROUP BY 1").format(
            b=_bucket(keys, n), h=_row_hash(columns), t=table
        )
    ).fetchall()
    return {int(b): (int(c), str(s)) for b, c, s in rows}


def _localise(
    conn: psycopg.Connection[Any],
    live: sql.Composable,
    shadow: sql.Composable,
    keys: Sequence[str],
    columns: Sequence[str],
    n_buckets: int,
    cap: int,
) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
    """Find differing buckets, then differing keys in them: ``(buckets, diff_counts, examples)``."""
    a = _bucket_sums(conn, live, keys, columns, n_buckets)
    b = _bucket_sums(conn, shadow, keys, columns, n_buckets)
    differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not differing:
        return 0, {}, []
    side = "SELECT {kt} AS kt, {h} AS h FROM {t} t WHERE {b} = ANY(%(buckets)s)"
    diff_sql = sql.SQL(
        "WITH l AS (" + side + "), s AS (" + side.replace("{t}", "{s}") + ") "
        "SELECT coalesce(l.kt, s.kt) AS kt, CASE WHEN s.kt IS NULL THEN 'missing_in_rebuilt' "
        "WHEN l.kt IS NULL THEN 'extra_in_rebuilt' ELSE 'different' END AS kind "
        "FROM l FULL JOIN s ON l.kt = s.kt WHERE l.h IS DISTINCT FROM s.h"
    ).format(kt=_row_text(keys), h=_row_hash(columns), b=_bucket(keys, n_buckets), t=live, s=shadow)
    counts_sql = sql.SQL("SELECT kind, count(*) FROM ({}) d GROUP BY kind").format(diff_sql)
    params = {"buckets": differing}
    counts = {str(k): int(c) for k, c in conn.execute(counts_sql, params).fetchall()}
    picked = conn.execute(
        sql.SQL("SELECT kt, kind FROM ({}) d ORDER BY kt LIMIT {}").format(diff_sql, sql.Literal(cap)), params
    ).fetchall()
    if not picked:
        return len(differing), counts, []
    wanted = [kt for kt, _k in picked]
    shown = list(dict.fromkeys([*keys, *columns]))
    values = {
        "live": _rows_by_key(conn, live, keys, shown, wanted),
        "rebuilt": _rows_by_key(conn, shadow, keys, shown, wanted),
    }
    examples = []
    for kt, kind in picked:
        lv, rv = values["live"].get(kt), values["rebuilt"].get(kt)
        ref = lv if lv is not None else rv or {}
        ex: dict[str, Any] = {"key": {k: ref.get(k) for k in keys}, "kind": kind, "live": lv, "rebuilt": rv}
        if lv is not None and rv is not None:
            ex["columns"] = [c for c in columns if lv.get(c) != rv.get(c)]
        examples.append(ex)
    return len(differing), counts, examples


def _rows_by_key(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    keys: Sequence[str],
    shown: Sequence[str],
    wanted: list[str],
) -> dict[str, dict[str, Any]]:
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in shown)
    q = sql.SQL(
        "SELECT x.__kt, to_jsonb(x) - '__kt' FROM (SELECT {kt} AS __kt, {cols} FROM {t} t) x "
        "WHERE x.__kt = ANY(%s)"
    ).format(kt=_row_text(keys), cols=cols, t=table)
    return {kt: v for kt, v in conn.execute(q, [wanted]).fetchall()}


# --- rebuild ----------------------------------------------------------------------------------------


def _run_callable(
    fn: RebuildFn, dsn: str, schema: str, ends: EndOffsets, bootstrap: str, timeout_s: float
) -> None:
    """Call ``fn`` in a worker thread with its own connection; GateError on failure or timeout."""
    conn = psycopg.connect(dsn)
    box: dict[str, BaseException] = {}

    def work() -> None:
        try:
            fn(conn, schema, ends, bootstrap=bootstrap)
            if not conn.closed:
                conn.commit()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=work, name="resgate-replay-rebuild", daemon=True)
    t.start()
    t.join(timeout_s)
    try:
        if t.is_alive():
            conn.cancel()  # aborts its running statement; the thread ends at its next database call
            t.join(10)
            raise GateError(f"the rebuild did not finish within {timeout_s:.0f}s")
        if "error" in box:
            e = box["error"]
            raise GateError(f"the rebuild failed: {type(e).__name__}: {e}") from e
    finally:
        conn.close()


def _run_command(
    spec: RebuildSpec, dsn: str, schema: str, ends: EndOffsets, bootstrap: str, timeout_s: float
) -> None:
    """Run the rebuild command with the replay environment; GateError on a non-zero exit or timeout."""
    assert spec.command is not None
    env = dict(os.environ)
    env.update(
        {
            ENV_REPLAY_DSN: dsn,
            ENV_REPLAY_SCHEMA: schema,
            ENV_REPLAY_END_OFFSETS: json.dumps(
                {t: {str(p): o for p, o in ps.items()} for t, ps in ends.items()}
            ),
            ENV_KAFKA_BOOTSTRAP: bootstrap,
        }
    )
    env.update(dict(spec.env))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                list(spec.command), env=env, cwd=spec.cwd, stdout=out, stderr=err, start_new_session=True
            )
        except OSError as e:
            raise GateError(f"the rebuild command {list(spec.command)} could not start: {e}") from e
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # the command runs in its own session: stop it and anything it started
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
            raise GateError(
                f"the rebuild command {list(spec.command)} did not finish within {timeout_s:.0f}s"
            ) from None
        if rc != 0:
            err.seek(0, os.SEEK_END)
            size = err.tell()
            err.seek(max(0, size - _OUTPUT_TAIL))
            tail = err.read().decode("utf-8", errors="replace").strip()
            raise GateError(
                f"the rebuild command {list(spec.command)} exited with {rc}: {tail or '(no output)'}"
            )


# --- measure ----------------------------------------------------------------------------------------


@dataclass
class _Live:
    columns: list[str]
    compared: list[str]
    ident: sql.Identifier


def _live_model(conn: psycopg.Connection[Any], m: ReadModelSpec, where: str) -> _Live:
    cols = table_columns(conn, m.table)
    if cols is None:
        raise ConfigError(f"the live table {table_label(m.table)} does not exist", where=f"{where}.table")
    for field_name, names in (
        ("key_columns", m.key_columns),
        ("compared_columns", m.compared_columns or ()),
        ("excluded_columns", m.excluded_columns),
    ):
        missing = [c for c in names if c not in cols]
        if missing:
            raise ConfigError(
                f"columns {missing} are not in {table_label(m.table)} (it has {cols})",
                where=f"{where}.{field_name}",
            )
    compared = (
        list(m.compared_columns) if m.compared_columns else [c for c in cols if c not in m.excluded_columns]
    )
    return _Live(columns=cols, compared=compared, ident=sql.Identifier(*m.table))


def measure(dsn: str, config: ReplayConfig, *, bootstrap: str, run_id: str | None = None) -> ReplayFindings:
    """Rebuild every configured read model into a shadow schema and compare it with the live table.

    Returns :class:`ReplayFindings` (one :class:`ModelFindings` per read model, in config order). A model
    that cannot be compared (truncated topic, failed or timed-out rebuild, rebuilt table missing) carries
    the reason in ``unavailable``. Raises ConfigError, before creating anything, when a rebuild callable
    cannot be imported or a live table or column does not exist.
    """
    from resgate.local.kafka import topic_bounds, truncated_partitions

    if not bootstrap:
        raise ConfigError("a Kafka bootstrap is required", where="replay")
    fns = {
        i: m.rebuild.resolve(f"replay.read_models[{i}].rebuild.callable")
        for i, m in enumerate(config.read_models)
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        lives = {
            i: _live_model(conn, m, f"replay.read_models[{i}]") for i, m in enumerate(config.read_models)
        }

    results = {
        i: ModelFindings(name=m.name, table=table_label(m.table), buckets=config.buckets)
        for i, m in enumerate(config.read_models)
    }
    # One rebuild per (rebuild spec, topics): a projector that builds several tables runs once.
    groups: dict[tuple[RebuildSpec, tuple[str, ...]], list[int]] = {}
    for i, m in enumerate(config.read_models):
        groups.setdefault((m.rebuild, tuple(sorted(m.topics))), []).append(i)

    for (spec, topics), members in groups.items():
        t0 = time.perf_counter()
        try:
            bounds = topic_bounds(bootstrap, list(topics))
        except GateError as e:
            for i in members:
                results[i].unavailable = f"cannot read the topics' offsets: {e}"
            continue
        ends: EndOffsets = {t: {p: e for p, (_b, e) in parts.items()} for t, parts in bounds.items()}
        truncated = truncated_partitions(bounds)
        for i in members:
            results[i].end_offsets = ends
            results[i].truncated = truncated
            results[i].timings["bounds_s"] = round(time.perf_counter() - t0, 4)
        if truncated:
            what = ", ".join(f"{t}[{p}] starts at offset {b}" for t, p, b in truncated)
            for i in members:
                results[
                    i
                ].unavailable = (
                    f"retention truncated the log ({what}): a rebuild from the topics cannot be complete"
                )
            continue
        _replay_group(dsn, bootstrap, config, spec, fns[members[0]], ends, members, lives, results, run_id)
    return ReplayFindings(models=[results[i] for i in range(len(config.read_models))])


def _replay_group(
    dsn: str,
    bootstrap: str,
    config: ReplayConfig,
    spec: RebuildSpec,
    fn: RebuildFn | None,
    ends: EndOffsets,
    members: list[int],
    lives: dict[int, _Live],
    results: dict[int, ModelFindings],
    run_id: str | None,
) -> None:
    schema = unique_name(config.schema_prefix, tag=run_id)
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_schema(conn, schema)
    for i in members:
        results[i].shadow_schema = schema
        results[i].compared_columns = lives[i].compared
    try:
        # The live fingerprints are taken while the rebuild runs (the system is quiet by now).
        def live_fp(i: int) -> tuple[int, str]:
            t = time.perf_counter()
            with psycopg.connect(dsn, autocommit=True) as c:
                out = _fingerprint(c, lives[i].ident, lives[i].compared)
            results[i].timings["live_checksum_s"] = round(time.perf_counter() - t, 4)
            return out

        with ThreadPoolExecutor(max_workers=1) as pool:
            live_futures: dict[int, Future[tuple[int, str]]] = {i: pool.submit(live_fp, i) for i in members}
            t = time.perf_counter()
            failure: str | None = None
            try:
                if fn is not None:
                    _run_callable(fn, dsn, schema, ends, bootstrap, spec.timeout_s)
                else:
                    _run_command(spec, dsn, schema, ends, bootstrap, spec.timeout_s)
            except GateError as e:
                failure = str(e)
            rebuild_s = round(time.perf_counter() - t, 4)
            live_fps = {i: f.result() for i, f in live_futures.items()}
        for i in members:
            results[i].timings["rebuild_s"] = rebuild_s
            results[i].live_rows, results[i].live_checksum = live_fps[i]
            if failure is not None:
                results[i].unavailable = failure
                continue
            _compare(dsn, config, schema, config.read_models[i], lives[i], results[i])
    finally:
        if not config.keep_shadow:
            drop_schema(dsn, schema)


def _compare(
    dsn: str, config: ReplayConfig, schema: str, m: ReadModelSpec, live: _Live, out: ModelFindings
) -> None:
    t = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        shadow_name = (schema, m.rebuilt_table)
        shadow_cols = table_columns(conn, shadow_name)
        if shadow_cols is None:
            out.unavailable = f"the rebuild did not create {schema}.{m.rebuilt_table}"
            return
        missing_keys = [k for k in m.key_columns if k not in shadow_cols]
        if missing_keys:
            out.unavailable = (
                f"the rebuilt table {schema}.{m.rebuilt_table} lacks the key columns {missing_keys}"
            )
            return
        out.missing_columns = [c for c in live.compared if c not in shadow_cols]
        common = [c for c in live.compared if c in shadow_cols]
        shadow = sql.Identifier(*shadow_name)
        out.rebuilt_rows, out.rebuilt_checksum = _fingerprint(
            conn, shadow, live.compared if not out.missing_columns else common
        )
        if out.missing_columns:
            # compare what both have, so the examples still point at differing rows
            out.live_rows, out.live_checksum = _fingerprint(conn, live.ident, common)
        if not out.matches or out.missing_columns:
            out.differing_buckets, out.diff_counts, out.examples = _localise(
                conn, live.ident, shadow, m.key_columns, common, config.buckets, config.examples_cap
            )
    out.timings["compare_s"] = round(time.perf_counter() - t, 4)


def run(dsn: str, config: ReplayConfig, *, bootstrap: str, run_id: str | None = None) -> CheckResult:
    """Measure and judge; a run-time failure becomes "unknown" with the error, ConfigError propagates."""
    try:
        findings = measure(dsn, config, bootstrap=bootstrap, run_id=run_id)
    except ConfigError:
        raise
    except Exception as e:
        return CheckResult.unknown("replay", f"{type(e).__name__}: {e}")
    return check(findings, config.thresholds)
