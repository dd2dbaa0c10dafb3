"""Field readers for the JSON values the gate passes between its parts (environment values, task inputs,
evidence rows, check thresholds).

One rule for a number everywhere: an int or a float, not a bool, finite (JSON text may carry ``NaN`` and
``Infinity``, which Python's ``json`` reads), and within its bounds; anything else is a ConfigError naming
the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from resgate.contract.errors import ConfigError


def _bounds(lo: float, hi: float) -> str:
    if math.isinf(lo) and math.isinf(hi):
        return ""
    if math.isinf(hi):
        return f" >= {lo:g}"
    if math.isinf(lo):
        return f" <= {hi:g}"
    return f" in [{lo:g}, {hi:g}]"


def _checked(v: Any, key: str, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ConfigError(f"must be a finite number{_bounds(lo, hi)}, got {v!r}", where=f"{where}.{key}")
    return float(v)


def number_field(
    d: Mapping[str, Any],
    key: str,
    where: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    default: Any = None,
) -> float:
    """``d[key]`` (``default`` when absent) as a float in ``[lo, hi]``; a ConfigError at ``where.key``
    otherwise ("is required" when it is absent without a default)."""
    v = d.get(key, default)
    if v is None:
        raise ConfigError("is required", where=f"{where}.{key}")
    return _checked(v, key, where, lo, hi)


def optional_number(
    d: Mapping[str, Any], key: str, where: str, *, lo: float = -math.inf, hi: float = math.inf
) -> float | None:
    """``d[key]`` as :func:`number_field` reads it, or None when it is absent (or null)."""
    v = d.get(key)
    return None if v is None else _checked(v, key, where, lo, hi)
