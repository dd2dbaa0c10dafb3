"""`resgate query`: SQL over local evidence with DuckDB, with the same table names as the Athena tables.

Each table is a view over ``<root>/gate=*/dt=*/run_id=*/<file>`` with Hive partitioning, so the partition
columns ``gate``, ``dt`` and ``run_id`` exist exactly as in the Glue tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resgate.contract.errors import ConfigError
from resgate.contract.layout import TABLES


def connect(root: str | Path) -> Any:
    """A DuckDB connection with one view per evidence table that has at least one file under ``root``."""
    import duckdb

    con = duckdb.connect()
    root = Path(root)
    for table, filename in TABLES.items():
        files = list(root.glob(f"gate=*/dt=*/run_id=*/{filename}"))
        if not files:
            continue
        pattern = str(root / "gate=*" / "dt=*" / "run_id=*" / filename).replace("'", "''")
        fmt = "newline_delimited" if filename.endswith(".jsonl") else "auto"
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_json_auto('{pattern}', format='{fmt}', "
            "hive_partitioning=true, hive_types_autocast=false, union_by_name=true, sample_size=-1)"
        )
    return con


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


def format_table(cols: list[str], rows: list[tuple[Any, ...]], max_width: int = 60) -> str:
    """Render rows as a plain-text table."""

    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    out = [line, sep] + ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
