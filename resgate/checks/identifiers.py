"""Validation of the database object names a checker's config gives (tables, columns, schema prefixes).

Table and column names come from the gate config, so everything that names a database object is checked
here first (raising ``ConfigError`` naming the field) and quoted later with ``psycopg.sql``
(:mod:`resgate.checks.sqlutil`). Nothing here imports a database driver, so the checkers' config and judges
can be imported without one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from resgate.contract.errors import ConfigError
from resgate.sections.fields import Section

_MAX_IDENT_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by Postgres
_SCHEMA_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

TableName = tuple[str, ...]
"""A table name as ``(table,)`` or ``(schema, table)``."""

EndOffsets = dict[str, dict[int, int]]
"""``{topic: {partition: end_offset}}``: read each partition up to (excluding) its end offset."""


def check_identifier(name: Any, where: str) -> str:
    """Return ``name`` if it is usable as one SQL identifier (any text, quoted later); else ConfigError."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"must be a non-empty string, got {name!r}", where=where)
    if "\x00" in name:
        raise ConfigError("must not contain NUL", where=where)
    if len(name.encode()) > _MAX_IDENT_BYTES:
        raise ConfigError(f"longer than {_MAX_IDENT_BYTES} bytes: {name!r}", where=where)
    return name


def check_identifiers(names: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """Validate a list of identifiers (no duplicates); return them as a tuple."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"must be a list of names, got {names!r}", where=where)
    out = tuple(check_identifier(n, f"{where}[{i}]") for i, n in enumerate(names))
    if not out and not allow_empty:
        raise ConfigError("must not be empty", where=where)
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ConfigError(f"names listed more than once: {dup}", where=where)
    return out


def parse_table_name(value: Any, where: str) -> TableName:
    """Parse ``"table"``, ``"schema.table"`` or ``[schema, table]`` into a validated tuple."""
    if isinstance(value, str):
        parts: Sequence[Any] = value.split(".")
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        parts = list(value)
    else:
        raise ConfigError(f"must be 'table' or 'schema.table', got {value!r}", where=where)
    if not 1 <= len(parts) <= 2:
        raise ConfigError(f"must be 'table' or 'schema.table', got {value!r}", where=where)
    return tuple(check_identifier(p, where) for p in parts)


def table_label(name: TableName) -> str:
    """A readable ``schema.table`` label for messages and examples."""
    return ".".join(name)


def unique_name(prefix: str, *, where: str = "schema_prefix", tag: str | None = None) -> str:
    """A fresh lower-case identifier ``<prefix>[_<tag>]_<12 hex>`` (fits Postgres' 63-byte limit).

    ``tag`` (e.g. the run id) is reduced to ``[a-z0-9_]`` and shortened so the name says which run made it.
    """
    if not _SCHEMA_PREFIX_RE.match(prefix) or len(prefix) > 30:
        raise ConfigError(
            f"must be a lower-case identifier of at most 30 characters, got {prefix!r}", where=where
        )
    middle = ""
    if tag:
        cleaned = re.sub(r"[^a-z0-9_]+", "_", tag.lower()).strip("_")[:18]
        middle = f"_{cleaned}" if cleaned else ""
    return f"{prefix}{middle}_{uuid.uuid4().hex[:12]}"


def ident(s: Section, key: str, default: str | None, *, optional: bool = False) -> str | None:
    """``s.text(key, ...)`` that must also be usable as one SQL identifier (see :func:`check_identifier`)."""
    v = s.text(key, default, optional=optional)
    return None if v is None else check_identifier(v, s.p(key))
