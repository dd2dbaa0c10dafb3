"""The SLO check: latency percentiles, error ratio and throughput under load; regression against a baseline.

Figures come from Locust's per-endpoint stats (``locust --json``: a list of ``{name, method, num_requests,
num_failures, num_none_requests, response_times: {"<ms>": count}, start_time, last_request_timestamp, …}``).
Percentiles of the whole run are read from the merged histogram of all endpoints (nearest rank, see
:mod:`resgate.checks.histogram`); the error ratio is ``sum(num_failures) / sum(num_requests)`` (Locust counts
a failed request in both); throughput is ``sum(num_requests) / duration_s``.

Regression mode compares the run with a stored golden baseline. A regression is reported only when both
hold: the run's p95 or p99 is more than ``max_ratio`` times the baseline's, **and** a one-sided
Mann-Whitney U test (``scipy.stats.mannwhitneyu(current, baseline, alternative="greater")``) on per-window
samples gives ``p < alpha``. The per-window samples are built by :func:`window_p95`: the ledger records are
cut into fixed windows of ``window_s`` seconds (default 5 s) aligned on the first record's ``ts``
(window ``i`` holds ``t0 + i*window_s <= ts < t0 + (i+1)*window_s``), and each non-empty window yields the
nearest-rank p95 of its records' ``latency_ms`` (all outcomes, as Locust's histograms include failures).
With fewer than ``min_windows`` (default 3) windows on either side the regression part is ``unknown``: a run
that short is no evidence either way. Note that with 3 windows a side the smallest possible one-sided
p-value is 0.05, so a significant result at ``alpha=0.05`` needs at least 4 windows a side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resgate.checks import histogram as h
from resgate.checks.ledger import LedgerRecord
from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector, Validity
from resgate.contract.errors import ConfigError, DependencyMissing

NAME = "slo"
DEFAULT_WINDOW_S = 5.0
DEFAULT_MAX_RATIO = 1.2
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_WINDOWS = 3

LIMIT_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_error_ratio", "min_throughput_rps")
_LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms")

# Anomaly kinds and what they decide. Violations fail the check; the others leave it undecided.
FAILING_KINDS = frozenset(
    {"latency_above_limit", "error_ratio_above_limit", "throughput_below_limit", "regression"}
)
UNDECIDED_KINDS = frozenset({"no_data", "regression_undecided"})


# --------------------------------------------------------------------------------------------- evidence


def _int_field(d: Mapping[str, Any], key: str, where: str, *, default: int | None = None) -> int:
    v = d.get(key, default)
    if v is None:
        raise ConfigError("is required", where=f"{where}.{key}")
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or (isinstance(v, float) and not v.is_integer())
    ):
        raise ConfigError(f"must be an integer, got {v!r}", where=f"{where}.{key}")
    if v < 0:
        raise ConfigError(f"must be >= 0, got {v!r}", where=f"{where}.{key}")
    return int(v)


def _opt_float(
    d: Mapping[str, Any], key: str, where: str, *, positive: bool = False, at_most: float | None = None
) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"must be a finite number, got {v!r}", where=f"{where}.{key}")
    if v < 0 or (positive and v == 0):
        raise ConfigError(f"must be {'> 0' if positive else '>= 0'}, got {v!r}", where=f"{where}.{key}")
    if at_most is not None and v > at_most:
        raise ConfigError(f"must be <= {at_most:g}, got {v!r}", where=f"{where}.{key}")
    return float(v)


def _samples(v: Any, where: str) -> tuple[float, ...] | None:
    if v is None:
        return None
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ConfigError("must be a list of numbers", where=where)
    out = []
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ConfigError(f"must be a finite number, got {x!r}", where=f"{where}[{i}]")
        out.append(float(x))
    return tuple(out)


@dataclass(frozen=True)
class EndpointStats:
    """One Locust stats entry: request and failure counts and the response-time histogram ``{ms: count}``."""

    name: str
    method: str
    num_requests: int
    num_failures: int
    response_times: Mapping[float, int]
    num_none_requests: int = 0
    start_time: float | None = None
    last_request_timestamp: float | None = None

    @property
    def key(self) -> str:
        """``"METHOD name"`` (or just the name when there is no method): how endpoints are told apart."""
        return f"{self.method} {self.name}" if self.method else self.name

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.slo.stats[0]") -> EndpointStats:
        """Validate one entry of Locust's ``--json`` output (extra keys like ``num_reqs_per_sec`` ignored)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"must be an object, got {type(d).__name__}", where=where)
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"must be a non-empty string, got {name!r}", where=f"{where}.name")
        method = d.get("method") or ""
        if not isinstance(method, str):
            raise ConfigError(f"must be a string, got {method!r}", where=f"{where}.method")
        num_requests = _int_field(d, "num_requests", where)
        num_failures = _int_field(d, "num_failures", where, default=0)
        num_none = _int_field(d, "num_none_requests", where, default=0)
        hist = h.normalize(d.get("response_times") or {}, where=f"{where}.response_times")
        if num_failures > num_requests:
            raise ConfigError(
                f"num_failures ({num_failures}) exceeds num_requests ({num_requests})",
                where=f"{where}.num_failures",
            )
        timed = h.total(hist)
        if timed != num_requests - num_none:
            # Locust logs every timed request into the histogram exactly once; a mismatch is broken evidence.
            raise ConfigError(
                f"histogram holds {timed} samples, expected num_requests - num_none_requests"
                f" = {num_requests - num_none}",
                where=f"{where}.response_times",
            )
        return cls(
            name=name,
            method=method,
            num_requests=num_requests,
            num_failures=num_failures,
            response_times=hist,
            num_none_requests=num_none,
            start_time=_opt_float(d, "start_time", where),
            last_request_timestamp=_opt_float(d, "last_request_timestamp", where),
        )


@dataclass(frozen=True)
class SloEvidence:
    """What the SLO check judges.

    ``stats``: Locust endpoint stats; ``duration_s``: length of the load phase (``None`` = derive it from the
    stats' ``start_time``/``last_request_timestamp``); ``samples``: per-window p95 latencies in ms from
    :func:`window_p95`, used only by regression mode.
    """

    stats: tuple[EndpointStats, ...]
    duration_s: float | None = None
    samples: tuple[float, ...] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Sequence[Any], *, where: str = "evidence.slo") -> SloEvidence:
        """Build from ``{stats: [...], duration_s?, samples?}`` or from Locust's bare ``--json`` list.

        An ``"Aggregated"`` entry without a method (Locust's total row, present in some exports) is skipped so
        that requests are not counted twice.
        """
        if isinstance(d, Sequence) and not isinstance(d, (str, bytes)):
            d = {"stats": d}
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"must be an object or a list of Locust stats, got {type(d).__name__}", where=where
            )
        unknown = set(d) - {"stats", "duration_s", "samples"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        raw = d.get("stats")
        if raw is None or isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
            raise ConfigError("must be a list of Locust endpoint stats", where=f"{where}.stats")
        stats = tuple(
            EndpointStats.from_dict(e, where=f"{where}.stats[{i}]")
            for i, e in enumerate(raw)
            if not (isinstance(e, Mapping) and e.get("name") == "Aggregated" and not e.get("method"))
        )
        return cls(
            stats=stats,
            duration_s=_opt_float(d, "duration_s", where, positive=True),
            samples=_samples(d.get("samples"), f"{where}.samples"),
        )


def window_p95(
    records: Iterable[LedgerRecord | Mapping[str, Any]],
    window_s: float = DEFAULT_WINDOW_S,
    *,
    min_samples: int = 1,
) -> list[float]:
    """Per-window nearest-rank p95 of ``latency_ms``, one float per non-empty window, in time order.

    Windows are ``window_s`` seconds long and aligned on the earliest ``ts``; windows with fewer than
    ``min_samples`` records are dropped. Records are :class:`LedgerRecord` s or mappings with ``ts`` and
    ``latency_ms``. Returns ``[]`` for no records.
    """
    if not (window_s > 0):
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    points: list[tuple[float, float]] = []
    for r in records:
        if isinstance(r, Mapping):
            points.append((float(r["ts"]), float(r["latency_ms"])))
        else:
            points.append((r.ts, r.latency_ms))
    if not points:
        return []
    t0 = min(ts for ts, _ in points)
    windows: dict[int, list[float]] = {}
    for ts, ms in points:
        windows.setdefault(int((ts - t0) // window_s), []).append(ms)
    out = []
    for i in sorted(windows):
        if len(windows[i]) >= min_samples:
            p = h.nearest_rank(windows[i], 95.0)
            assert p is not None
            out.append(p)
    return out


def evidence_from_run(
    locust_stats: Sequence[Mapping[str, Any]],
    *,
    duration_s: float | None = None,
    records: Iterable[LedgerRecord | Mapping[str, Any]] | None = None,
    window_s: float = DEFAULT_WINDOW_S,
) -> SloEvidence:
    """Build :class:`SloEvidence` from Locust's ``--json`` list and, optionally, the ledger (``samples``)."""
    ev = SloEvidence.from_dict({"stats": list(locust_stats), "duration_s": duration_s})
    if records is None:
        return ev
    return SloEvidence(stats=ev.stats, duration_s=ev.duration_s, samples=tuple(window_p95(records, window_s)))


# --------------------------------------------------------------------------------------------- thresholds


def _limits(d: Mapping[str, Any], where: str, *, allowed: Iterable[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in allowed:
        if key not in d:
            continue
        if key == "max_error_ratio":
            out[key] = _opt_float(d, key, where, at_most=1.0)
        elif key == "min_throughput_rps":
            out[key] = _opt_float(d, key, where)
        else:
            out[key] = _opt_float(d, key, where, positive=True)
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
        max_ratio = _opt_float(d, "max_ratio", where, positive=True)
        if max_ratio is not None and max_ratio < 1.0:
            raise ConfigError(
                f"must be >= 1 (a tolerated slowdown), got {max_ratio!r}", where=f"{where}.max_ratio"
            )
        alpha = _opt_float(d, "alpha", where, positive=True, at_most=1.0)
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


# --------------------------------------------------------------------------------------------- measure


@dataclass(frozen=True)
class Figures:
    """Measured figures for one scope (the run or one endpoint); latencies in ms, ``None`` when no data."""

    requests: int
    failures: int
    timed: int
    error_ratio: float | None
    throughput_rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """``{requests, failures, timed, error_ratio, throughput_rps, p50_ms, p95_ms, p99_ms}``."""
        return {
            "requests": self.requests,
            "failures": self.failures,
            "timed": self.timed,
            "error_ratio": self.error_ratio,
            "throughput_rps": self.throughput_rps,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True)
class SloMeasurement:
    """Figures of a run: ``overall`` from the merged histogram, ``endpoints`` keyed by ``"METHOD name"``."""

    overall: Figures
    endpoints: dict[str, Figures]
    endpoint_stats: dict[str, EndpointStats]
    duration_s: float | None


def _figures(stats: Sequence[EndpointStats], duration_s: float | None) -> Figures:
    hist = h.merge(s.response_times for s in stats)
    requests = sum(s.num_requests for s in stats)
    failures = sum(s.num_failures for s in stats)
    return Figures(
        requests=requests,
        failures=failures,
        timed=h.total(hist),
        error_ratio=failures / requests if requests else None,
        throughput_rps=requests / duration_s if duration_s else None,
        p50_ms=h.percentile(hist, 50.0),
        p95_ms=h.percentile(hist, 95.0),
        p99_ms=h.percentile(hist, 99.0),
    )


def run_duration(evidence: SloEvidence) -> float | None:
    """``duration_s`` if given, else last request minus first start across the stats; ``None`` if unknown."""
    if evidence.duration_s is not None:
        return evidence.duration_s
    starts = [s.start_time for s in evidence.stats if s.start_time is not None]
    ends = [s.last_request_timestamp for s in evidence.stats if s.last_request_timestamp is not None]
    if not starts or not ends:
        return None
    d = max(ends) - min(starts)
    return d if d > 0 else None


def measure(evidence: SloEvidence) -> SloMeasurement:
    """Compute the run's figures; entries with the same ``"METHOD name"`` (e.g. per worker) are merged."""
    duration = run_duration(evidence)
    groups: dict[str, list[EndpointStats]] = {}
    for s in evidence.stats:
        groups.setdefault(s.key, []).append(s)
    merged: dict[str, EndpointStats] = {}
    for key, parts in groups.items():
        merged[key] = EndpointStats(
            name=parts[0].name,
            method=parts[0].method,
            num_requests=sum(p.num_requests for p in parts),
            num_failures=sum(p.num_failures for p in parts),
            response_times=h.merge(p.response_times for p in parts),
            num_none_requests=sum(p.num_none_requests for p in parts),
        )
    return SloMeasurement(
        overall=_figures(evidence.stats, duration),
        endpoints={k: _figures([s], duration) for k, s in merged.items()},
        endpoint_stats=merged,
        duration_s=duration,
    )


def _ratio(current: float | None, baseline: float | None) -> float | None:
    if current is None or baseline is None or baseline <= 0:
        return None
    return current / baseline


def measure_regression(evidence: SloEvidence, regression: RegressionThresholds) -> dict[str, Any]:
    """Compare the run with the baseline.

    Returns ``{current_p95_ms, baseline_p95_ms, p95_ratio, current_p99_ms, baseline_p99_ms, p99_ratio,
    worse: [metric names beyond max_ratio], windows_current, windows_baseline, p_value, significant,
    reason}``; ``p_value``/``significant`` are ``None`` and ``reason`` says why when the test could not run.
    """
    cur = _figures(evidence.stats, None)
    base = _figures(regression.baseline.stats, None)
    out: dict[str, Any] = {"max_ratio": regression.max_ratio, "alpha": regression.alpha}
    worse = []
    reasons = []
    for metric in ("p95_ms", "p99_ms"):
        c, b = getattr(cur, metric), getattr(base, metric)
        out[f"current_{metric}"] = c
        out[f"baseline_{metric}"] = b
        out[f"{metric[:3]}_ratio"] = _ratio(c, b)
        if c is None or b is None:
            reasons.append(f"{metric} missing ({'run' if c is None else 'baseline'} has no timed requests)")
        elif (b > 0 and c > b * regression.max_ratio) or (b == 0 and c > 0):
            worse.append(metric)
    out["worse"] = worse
    cur_s = list(evidence.samples or ())
    base_s = list(regression.baseline.samples or ())
    out["windows_current"] = len(cur_s)
    out["windows_baseline"] = len(base_s)
    out["p_value"] = None
    out["significant"] = None
    if len(cur_s) < regression.min_windows or len(base_s) < regression.min_windows:
        reasons.append(
            f"too few windows for the significance test: run {len(cur_s)}, baseline {len(base_s)}, "
            f"need >= {regression.min_windows} each"
        )
    else:
        p = mann_whitney_greater(cur_s, base_s)
        out["p_value"] = p
        out["significant"] = p < regression.alpha
    out["reason"] = "; ".join(reasons) or None
    return out


def mann_whitney_greater(current: Sequence[float], baseline: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value that ``current`` tends to be greater than ``baseline``.

    Returns a float in ``[0, 1]``; identical samples (no spread at all) give ``1.0``.
    """
    try:
        from scipy.stats import mannwhitneyu
    except ImportError as e:  # pragma: no cover - scipy is a declared dependency
        raise DependencyMissing("regression mode needs scipy: pip install 'scipy>=1.11'") from e
    p = float(mannwhitneyu(current, baseline, alternative="greater").pvalue)
    return 1.0 if math.isnan(p) else p


# --------------------------------------------------------------------------------------------- detect


def _limit_anomalies(
    scope: str, endpoint: str | None, fig: Figures, limits: Mapping[str, float | None]
) -> list:
    out: list[dict[str, Any]] = []
    base: dict[str, Any] = {"scope": scope} if endpoint is None else {"scope": scope, "endpoint": endpoint}
    active = {k: v for k, v in limits.items() if v is not None}
    if not active:
        return out
    if fig.requests == 0:
        return [{"kind": "no_data", **base, "reason": "no requests were recorded"}]
    for metric in _LATENCY_KEYS:
        limit = active.get(metric)
        if limit is None:
            continue
        value = getattr(fig, metric)
        if value is None:
            out.append(
                {"kind": "no_data", **base, "metric": metric, "reason": "no request has a response time"}
            )
        elif value > limit:
            out.append(
                {"kind": "latency_above_limit", **base, "metric": metric, "value": value, "limit": limit}
            )
    limit = active.get("max_error_ratio")
    if limit is not None and fig.error_ratio is not None and fig.error_ratio > limit:
        out.append(
            {
                "kind": "error_ratio_above_limit",
                **base,
                "metric": "error_ratio",
                "value": fig.error_ratio,
                "limit": limit,
                "failures": fig.failures,
                "requests": fig.requests,
            }
        )
    limit = active.get("min_throughput_rps")
    if limit is not None:
        if fig.throughput_rps is None:
            out.append(
                {"kind": "no_data", **base, "metric": "throughput_rps", "reason": "run duration is unknown"}
            )
        elif fig.throughput_rps < limit:
            out.append(
                {
                    "kind": "throughput_below_limit",
                    **base,
                    "metric": "throughput_rps",
                    "value": fig.throughput_rps,
                    "limit": limit,
                }
            )
    return out


def detect(
    measurement: SloMeasurement, thresholds: SloThresholds, regression: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Anomalies of the run against the limits, as dicts ``{kind, scope, endpoint?, metric?, value?, limit?,
    reason?}``; ``kind`` is one of :data:`FAILING_KINDS` or :data:`UNDECIDED_KINDS`."""
    out = _limit_anomalies("overall", None, measurement.overall, thresholds.overall_limits())
    for key, fig in measurement.endpoints.items():
        out += _limit_anomalies(
            "endpoint", key, fig, thresholds.endpoint_limits(measurement.endpoint_stats[key])
        )
    known = set(measurement.endpoints) | {s.name for s in measurement.endpoint_stats.values()}
    for ep, lim in thresholds.per_endpoint.items():
        if ep not in known and any(v is not None for v in lim.values()):
            out.append(
                {
                    "kind": "no_data",
                    "scope": "endpoint",
                    "endpoint": ep,
                    "reason": "endpoint has limits but no requests",
                }
            )
    if regression is not None:
        if regression["worse"] and regression["significant"]:
            out.append(
                {
                    "kind": "regression",
                    "scope": "regression",
                    "metrics": list(regression["worse"]),
                    "p95_ratio": regression["p95_ratio"],
                    "p99_ratio": regression["p99_ratio"],
                    "p_value": regression["p_value"],
                    "alpha": regression["alpha"],
                    "max_ratio": regression["max_ratio"],
                }
            )
        elif regression["reason"] is not None:
            # Missing windows or a missing percentile on either side: no regression can be ruled out.
            out.append(
                {"kind": "regression_undecided", "scope": "regression", "reason": regression["reason"]}
            )
    return out


# --------------------------------------------------------------------------------------------- judge


def judge(anomalies: Iterable[Mapping[str, Any]]) -> Validity:
    """False if any anomaly is a violation, else ``"unknown"`` if any left the check undecided, else True."""
    kinds = {a["kind"] for a in anomalies}
    if kinds & FAILING_KINDS:
        return False
    if kinds & UNDECIDED_KINDS:
        return UNKNOWN
    return True


def check(evidence: SloEvidence, thresholds: SloThresholds) -> CheckResult:
    """Judge the run's SLO figures against the thresholds.

    Returns a :class:`CheckResult` named ``"slo"`` with counts ``{requests, failures, error_ratio,
    throughput_rps, duration_s, p50_ms, p95_ms, p99_ms, endpoints, anomalies}`` (plus ``p95_ratio``,
    ``p99_ratio``, ``p_value`` in regression mode), capped anomaly ``examples`` (see :func:`detect`) and
    ``details = {endpoints: {key: figures}, limits, regression?}``. ``valid`` is "unknown" with a reason when
    there is nothing to judge (no requests, no limits configured) or the regression test could not run.
    """
    m = measure(evidence)
    reg = measure_regression(evidence, thresholds.regression) if thresholds.regression is not None else None
    anomalies = detect(m, thresholds, reg)
    counts: dict[str, Any] = {
        "requests": m.overall.requests,
        "failures": m.overall.failures,
        "error_ratio": m.overall.error_ratio,
        "throughput_rps": m.overall.throughput_rps,
        "duration_s": m.duration_s,
        "p50_ms": m.overall.p50_ms,
        "p95_ms": m.overall.p95_ms,
        "p99_ms": m.overall.p99_ms,
        "endpoints": len(m.endpoints),
    }
    details: dict[str, Any] = {
        "endpoints": {k: f.to_dict() for k, f in m.endpoints.items()},
        "limits": {
            "overall": thresholds.overall_limits(),
            "per_endpoint": {k: dict(v) for k, v in thresholds.per_endpoint.items()},
        },
    }
    if reg is not None:
        counts.update(p95_ratio=reg["p95_ratio"], p99_ratio=reg["p99_ratio"], p_value=reg["p_value"])
        details["regression"] = reg
    if m.overall.requests == 0:
        anomalies.append({"kind": "no_data", "scope": "overall", "reason": "no requests were recorded"})
    if not thresholds.judges_anything:
        anomalies.append({"kind": "no_data", "scope": "thresholds", "reason": "no SLO limit is configured"})
    ex = ExampleCollector()
    for a in anomalies:
        ex.add(a)
    counts["anomalies"] = ex.total
    valid = judge(anomalies)
    error = None
    if valid == UNKNOWN:
        reasons = []
        for a in anomalies:
            if a["kind"] in UNDECIDED_KINDS:
                where = a.get("endpoint") or a["scope"]
                reason = f"{where}: {a['reason']}"
                if reason not in reasons:
                    reasons.append(reason)
        error = "; ".join(reasons[:5]) + (f" (+{len(reasons) - 5} more)" if len(reasons) > 5 else "")
    return CheckResult(
        name=NAME, valid=valid, counts=counts, examples=ex.examples, error=error, details=details
    )
