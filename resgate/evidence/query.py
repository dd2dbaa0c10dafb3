"""`resgate query`: SQL over local evidence with DuckDB, with the same table names as the Athena tables.

Each table is a view over its own folder, ``<root>/gate=*/<table>/dt=*/run_id=*/<file>``
(:func:`resgate.contract.layout.table_glob`), with Hive partitioning: ``gate`` and ``dt`` are the Glue
tables' projected partitions, ``run_id`` a column of every row (from the path when a row lacks it); a
column of the Glue schema (:data:`resgate.contract.layout.COLUMNS`) that no file has yet is NULL. Athena's
``from_unixtime`` exists here too (a macro), so the named queries of ``infra/evidence_bucket.py`` run
unchanged in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resgate.contract.errors import ConfigError
from resgate.contract.layout import COLUMNS, TABLES, table_glob

# Presto/Trino functions the Athena named queries use, defined for DuckDB.
# from_unixtime: a UTC timestamp (without a zone, which would need pytz in the Python client).
ATHENA_MACROS = ("CREATE MACRO from_unixtime(x) AS make_timestamp(CAST(round(x * 1000000) AS BIGINT))",)


def connect(root: str | Path) -> Any:
    """A DuckDB connection with one view per evidence table that has at least one file under ``root``."""
    import duckdb

    con = duckdb.connect()
    for macro in ATHENA_MACROS:
        con.execute(macro)
    root = Path(root)
    for table, filename in TABLES.items():
        if next(root.glob(table_glob(table)), None) is None:
            continue
        pattern = str(root / table_glob(table)).replace("'", "''")
        fmt = "newline_delimited" if filename.endswith(".jsonl") else "auto"
        raw = f"_files_{table}"
        con.execute(
            f"CREATE VIEW {raw} AS SELECT * FROM read_json_auto('{pattern}', format='{fmt}', "
            "hive_partitioning=true, hive_types_autocast=false, union_by_name=true, sample_size=-1)"
        )
        present = {row[0] for row in con.execute(f"DESCRIBE {raw}").fetchall()}
        missing = [
            f"CAST(NULL AS {_DUCKDB_TYPES.get(ty, 'VARCHAR')}) AS {name}"
            for name, ty in (("run_id", "string"), *COLUMNS[table])
            if name not in present
        ]
        con.execute(f"CREATE VIEW {table} AS SELECT {', '.join(['*', *missing])} FROM {raw}")
    return con


# Hive types of the Glue columns -> DuckDB types, for the columns no file of a table has yet.
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "array<string>": "VARCHAR[]",
    "array<double>": "DOUBLE[]",
}


def run_query(root: str | Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the evidence under ``root``; return (column names, rows)."""
    import duckdb

    if not Path(root).exists():
        raise ConfigError(f"no evidence folder at {root}", where="evidence.root")
    con = connect(root)
    try:
        cur = con.execute(sql)
    except duckdb.Error as e:
        raise ConfigError(f"query failed: {e}", where="sql") from e
    cols = [d[0] for d in cur.description or []]
    return cols, cur.fetchall()


def _text(v: Any) -> str:
    """A value as table text; a struct (dict) as ``key=value, ...`` without its null fields: DuckDB gives
    every row of a JSON column the union of all rows' keys, so a check's ``counts`` would otherwise be
    padded with the other checks' keys as nulls."""
    if v is None:
        return ""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items() if x is not None)
    return str(v)


def format_table(cols: list[str], rows: list[tuple[Any, ...]], max_width: int = 60) -> str:
    """Render rows as a plain-text table; every column but the last is cut at ``max_width`` characters."""

    def cell(v: Any, last: bool) -> str:
        s = _text(v)
        return s if last or len(s) <= max_width else s[: max_width - 1] + "…"

    body = [[cell(v, i == len(r) - 1) for i, v in enumerate(r)] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(cols)]
    widths[-1] = min(widths[-1], max_width)  # the last column runs on; its rule stops at max_width
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    out = [line, sep] + ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in body]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
