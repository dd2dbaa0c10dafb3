"""Field readers for the JSON values the gate passes between its parts (environment values, task inputs).

One rule for a number everywhere: an int or a float, not a bool, finite (JSON text may carry ``NaN`` and
``Infinity``, which Python's ``json`` reads), and within its bounds; anything else is a ConfigError naming
the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from resgate.contract.errors import ConfigError


def number_field(
    d: Mapping[str, Any], key: str, where: str, *, lo: float, hi: float = math.inf, default: Any = None
) -> float:
    """``d[key]`` (``default`` when absent) as a float in ``[lo, hi]``; a ConfigError at ``where.key``
    otherwise."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        bounds = f">= {lo:g}" if math.isinf(hi) else f"in [{lo:g}, {hi:g}]"
        raise ConfigError(f"must be a finite number {bounds}, got {v!r}", where=f"{where}.{key}")
    return float(v)
