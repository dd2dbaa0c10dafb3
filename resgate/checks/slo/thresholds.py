"""The SLO check's thresholds: limits for the whole run and per endpoint, and regression mode.

``None`` means "not judged". Each class validates its config block in ``from_dict`` (``ConfigError``
naming the key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.slo.evidence import EndpointStats, SloEvidence, opt_float
from resgate.contract.errors import ConfigError

DEFAULT_MAX_RATIO = 1.2
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_WINDOWS = 3

LIMIT_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_error_ratio", "min_throughput_rps")


def _limits(d: Mapping[str, Any], where: str, *, allowed: Iterable[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in allowed:
        if key not in d:
            continue
        if key == "max_error_ratio":
            out[key] = opt_float(d, key, where, at_most=1.0)
        elif key == "min_throughput_rps":
            out[key] = opt_float(d, key, where)
        else:
            out[key] = opt_float(d, key, where, positive=True)
    return out


@dataclass(frozen=True)
class RegressionThresholds:
    """Regression mode: the golden ``baseline`` run, the tolerated p95/p99 ``max_ratio``, the test's
    ``alpha`` and the ``min_windows`` needed on each side."""

    baseline: SloEvidence
    max_ratio: float = DEFAULT_MAX_RATIO
    alpha: float = DEFAULT_ALPHA
    min_windows: int = DEFAULT_MIN_WINDOWS

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, where: str = "thresholds.slo.regression"
    ) -> RegressionThresholds:
        """Validate ``{baseline: {stats, duration_s?, samples}, max_ratio?, alpha?, min_windows?}``."""
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        unknown = set(d) - {"baseline", "max_ratio", "alpha", "min_windows"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        if d.get("baseline") is None:
            raise ConfigError("is required in regression mode", where=f"{where}.baseline")
        baseline = SloEvidence.from_dict(d["baseline"], where=f"{where}.baseline")
        max_ratio = opt_float(d, "max_ratio", where, positive=True)
        if max_ratio is not None and max_ratio < 1.0:
            raise ConfigError(
                f"must be >= 1 (a tolerated slowdown), got {max_ratio!r}", where=f"{where}.max_ratio"
            )
        alpha = opt_float(d, "alpha", where, positive=True, at_most=1.0)
        min_windows = d.get("min_windows", DEFAULT_MIN_WINDOWS)
        if isinstance(min_windows, bool) or not isinstance(min_windows, int) or min_windows < 2:
            raise ConfigError(f"must be an integer >= 2, got {min_windows!r}", where=f"{where}.min_windows")
        return cls(
            baseline=baseline,
            max_ratio=DEFAULT_MAX_RATIO if max_ratio is None else max_ratio,
            alpha=DEFAULT_ALPHA if alpha is None else alpha,
            min_windows=min_windows,
        )


@dataclass(frozen=True)
class SloThresholds:
    """The SLO limits; ``None`` means "not judged".

    Latency limits (``p50_ms``, ``p95_ms``, ``p99_ms``) and ``max_error_ratio`` apply to the whole run and to
    every endpoint; ``min_throughput_rps`` applies to the whole run only. ``per_endpoint`` maps an endpoint
    (``"name"`` or ``"METHOD name"``) to overrides of any of the five keys for that endpoint (``null``
    switches a limit off there). ``regression`` enables regression mode.
    """

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_ratio: float | None = None
    min_throughput_rps: float | None = None
    per_endpoint: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    regression: RegressionThresholds | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, *, where: str = "thresholds.slo") -> SloThresholds:
        """Validate the ``thresholds.slo`` config block; raises :class:`ConfigError` naming the key."""
        d = d or {}
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        unknown = set(d) - {*LIMIT_KEYS, "per_endpoint", "regression"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        top = _limits(d, where, allowed=LIMIT_KEYS)
        per: dict[str, dict[str, float | None]] = {}
        raw_per = d.get("per_endpoint") or {}
        if not isinstance(raw_per, Mapping):
            raise ConfigError("must be an object of endpoint -> limits", where=f"{where}.per_endpoint")
        for ep, lim in raw_per.items():
            w = f"{where}.per_endpoint.{ep}"
            if not isinstance(lim, Mapping):
                raise ConfigError("must be an object of limits", where=w)
            bad = set(lim) - set(LIMIT_KEYS)
            if bad:
                raise ConfigError(f"unknown keys {sorted(bad)}", where=w)
            per[str(ep)] = _limits(lim, w, allowed=LIMIT_KEYS)
        reg = d.get("regression")
        return cls(
            **top,
            per_endpoint=per,
            regression=None
            if reg is None
            else RegressionThresholds.from_dict(reg, where=f"{where}.regression"),
        )

    def overall_limits(self) -> dict[str, float | None]:
        """The limits for the whole run: ``{p50_ms, p95_ms, p99_ms, max_error_ratio, min_throughput_rps}``."""
        return {k: getattr(self, k) for k in LIMIT_KEYS}

    def endpoint_limits(self, stats: EndpointStats) -> dict[str, float | None]:
        """The limits of one endpoint: top-level latency/error limits, then its ``per_endpoint`` overrides."""
        out = {k: getattr(self, k) for k in LIMIT_KEYS}
        out["min_throughput_rps"] = None
        for key in (stats.key, stats.name):
            if key in self.per_endpoint:
                out.update(self.per_endpoint[key])
                break
        return out

    @property
    def judges_anything(self) -> bool:
        """True when at least one limit (anywhere) or regression mode is set."""
        return (
            any(getattr(self, k) is not None for k in LIMIT_KEYS)
            or any(v is not None for lim in self.per_endpoint.values() for v in lim.values())
            or self.regression is not None
        )
