"""Latency histograms: validate, merge and read nearest-rank percentiles from ``{ms: count}`` maps.

Locust keeps, per endpoint, a histogram of response times rounded to about two significant digits
(``{"150": 3, "3400": 1}`` once written as JSON). Percentiles of a whole run, or of several endpoints or
load workers together, are read from the *merged* histogram; an average of per-part percentiles is not a
percentile of anything and is never computed here.

Percentile definition (nearest rank): for ``N`` samples and ``p`` in ``(0, 100]``, the p-th percentile is
the smallest bucket value ``v`` such that at least ``ceil(p/100 * N)`` samples are ``<= v``. It is always
one of the recorded values. Locust's own ``calculate_response_time_percentile`` rounds the rank down and
so can report one bucket higher on small counts; the gate uses the textbook definition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from resgate.contract.errors import ConfigError

Histogram = dict[float, int]
"""A latency histogram: bucket value in milliseconds -> number of samples in that bucket."""

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)


def _bucket_value(key: Any, where: str) -> float:
    if isinstance(key, bool):
        raise ConfigError(f"histogram bucket {key!r} is not a number of milliseconds", where=where)
    if isinstance(key, (int, float)):
        value = float(key)
    elif isinstance(key, str):
        try:
            value = float(key.strip())
        except ValueError:
            raise ConfigError(
                f"histogram bucket {key!r} is not a number of milliseconds", where=where
            ) from None
    else:
        raise ConfigError(f"histogram bucket {key!r} is not a number of milliseconds", where=where)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"histogram bucket {key!r} must be a finite number >= 0", where=where)
    return value


def _count(value: Any, key: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"count for bucket {key!r} must be an integer, got {value!r}", where=where)
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"count for bucket {key!r} must be an integer, got {value!r}", where=where)
    if value < 0:
        raise ConfigError(f"count for bucket {key!r} must be >= 0, got {value!r}", where=where)
    return int(value)


def normalize(hist: Mapping[Any, Any], *, where: str = "histogram") -> Histogram:
    """Validate a histogram as read from JSON and return ``{ms: count}`` with float keys.

    Keys may be numbers or numeric strings (JSON object keys are strings); counts must be non-negative
    integers. Empty buckets are dropped. Raises :class:`ConfigError` naming ``where`` on a bad entry.
    """
    if not isinstance(hist, Mapping):
        raise ConfigError(
            f"must be a mapping of milliseconds to counts, got {type(hist).__name__}", where=where
        )
    out: Histogram = {}
    for key, value in hist.items():
        ms = _bucket_value(key, where)
        n = _count(value, key, where)
        if n:
            out[ms] = out.get(ms, 0) + n
    return out


def from_samples(samples: Iterable[float]) -> Histogram:
    """Build an exact histogram ``{ms: count}`` from raw latency samples (no rounding)."""
    out: Histogram = {}
    for s in samples:
        ms = float(s)
        out[ms] = out.get(ms, 0) + 1
    return out


def merge(hists: Iterable[Mapping[float, int]]) -> Histogram:
    """Merge already-normalized histograms by adding counts per bucket; returns a new ``{ms: count}``."""
    out: Histogram = {}
    for h in hists:
        for ms, n in h.items():
            if n:
                out[ms] = out.get(ms, 0) + n
    return out


def total(hist: Mapping[float, int]) -> int:
    """Number of samples in the histogram."""
    return sum(hist.values())


def percentile(hist: Mapping[float, int], p: float) -> float | None:
    """Nearest-rank p-th percentile (``0 < p <= 100``) of the histogram, in ms; ``None`` when it is empty.

    Returns the smallest bucket value ``v`` with at least ``ceil(p/100 * N)`` samples ``<= v``.
    """
    if not (0 < p <= 100):
        raise ValueError(f"percentile must be in (0, 100], got {p!r}")
    n = total(hist)
    if n == 0:
        return None
    # Fraction(str(p)) keeps 99.9 exact, so the rank of 99.9 over 1000 samples is 999 and not 1000.
    rank = max(1, math.ceil(Fraction(str(p)) * n / 100))
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return ms
    raise AssertionError("unreachable: rank <= total")  # pragma: no cover


def percentiles(
    hist: Mapping[float, int], ps: Iterable[float] = DEFAULT_PERCENTILES
) -> dict[str, float | None]:
    """Several nearest-rank percentiles at once: ``{"p50": ms | None, "p95": ..., "p99.9": ...}``."""
    return {f"p{p:g}": percentile(hist, p) for p in ps}


def nearest_rank(samples: Iterable[float], p: float) -> float | None:
    """Nearest-rank p-th percentile of raw samples (as :func:`percentile`); ``None`` if empty."""
    return percentile(from_samples(samples), p)
