"""Gathering the replay evidence: rebuild each read model into a shadow schema and fingerprint both sides.

For every configured read model :func:`gather` records the topics' end offsets and refuses to go on when
a topic no longer starts at offset 0 (retention truncated the log, so a rebuild could not be complete).
Otherwise it creates a uniquely named shadow schema, runs the configured rebuild into it — a Python
callable ``fn(conn, schema, end_offsets, *, bootstrap)`` or a command that gets the same through
environment variables — and compares the live and rebuilt tables by row count and an order-independent
checksum computed in SQL (the sum, as numeric, of a 64-bit hash of each row's canonical text). On a
mismatch it localises the difference by key-hash buckets and lists capped example keys with their live
and rebuilt values. The live checksum is computed while the rebuild runs. Read models that share a
rebuild and topics are rebuilt once, into one shadow schema. Nothing holds rows or events in Python
memory; the shadow schema is dropped afterwards unless ``keep_shadow``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.identifiers import EndOffsets, table_label, unique_name
from resgate.checks.replay.check import ModelFindings, ReplayFindings
from resgate.checks.replay.config import ReadModelSpec, RebuildFn, RebuildSpec, ReplayConfig
from resgate.checks.replay.rebuild import RebuildJob, RebuildRunner, run_rebuild
from resgate.checks.sqlutil import create_schema, drop_schema, table_columns
from resgate.contract.errors import ConfigError, GateError
from resgate.sections.kafka import KafkaSettings

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


# --- gather -----------------------------------------------------------------------------------------


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


def gather(
    dsn: str,
    config: ReplayConfig,
    *,
    bootstrap: str,
    run_id: str | None = None,
    kafka: KafkaSettings | None = None,
    runner: RebuildRunner | None = None,
) -> ReplayFindings:
    """Rebuild every configured read model into a shadow schema and compare it with the live table.

    ``kafka`` is how to reach the brokers (default PLAINTEXT); ``runner`` runs the rebuilds that name an
    ``ecs_task`` (on AWS: the ECS runner; without one a spec's callable or command runs, else the task's
    command as a local subprocess; see :func:`resgate.checks.replay.rebuild.run_rebuild`).

    Returns :class:`ReplayFindings` (one :class:`ModelFindings` per read model, in config order). A model
    that cannot be compared (truncated topic, failed or timed-out rebuild, rebuilt table missing) carries
    the reason in ``unavailable``. Raises ConfigError, before creating anything, when a rebuild callable
    that will run cannot be imported or a live table or column does not exist.
    """
    from resgate.checks.topics import topic_bounds, truncated_partitions

    if not bootstrap:
        raise ConfigError("a Kafka bootstrap is required", where="replay")
    kafka = kafka or KafkaSettings()
    fns = {
        i: None
        if m.rebuild.ecs_task is not None and (runner is not None or not m.rebuild.local)
        else m.rebuild.resolve(f"replay.read_models[{i}].rebuild.callable")
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
            bounds = topic_bounds(bootstrap, list(topics), kafka)
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
        job = RebuildJob(spec, dsn, "", ends, bootstrap, kafka)
        _replay_group(job, config, fns[members[0]], runner, members, lives, results, run_id)
    return ReplayFindings(models=[results[i] for i in range(len(config.read_models))])


def _replay_group(
    job: RebuildJob,
    config: ReplayConfig,
    fn: RebuildFn | None,
    runner: RebuildRunner | None,
    members: list[int],
    lives: dict[int, _Live],
    results: dict[int, ModelFindings],
    run_id: str | None,
) -> None:
    dsn = job.dsn
    schema = unique_name(config.schema_prefix, tag=run_id)
    job = replace(job, schema=schema)
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
                run_rebuild(job, fn, runner)
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
