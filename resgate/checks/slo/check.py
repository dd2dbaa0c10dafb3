"""The SLO judge: the run's figures (percentiles, error ratio, throughput), its anomalies, the verdict.

Pure functions of :class:`~resgate.checks.slo.evidence.SloEvidence` and
:class:`~resgate.checks.slo.thresholds.SloThresholds`: :func:`run_figures` and
:func:`compare_with_baseline` compute, :func:`detect` lists anomalies, :func:`check` gathers them and
lets :func:`resgate.checks.result.judge` decide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks import histogram as h
from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector, judge
from resgate.checks.slo.evidence import EndpointStats, SloEvidence
from resgate.checks.slo.golden import compare_phases
from resgate.checks.slo.phases import PhaseFigures
from resgate.checks.slo.thresholds import RegressionThresholds, SloThresholds
from resgate.contract.errors import DependencyMissing

NAME = "slo"

_LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms")

# Anomaly kinds and what they decide. Violations fail the check; the others leave it undecided.
FAILING_KINDS = frozenset(
    {"latency_above_limit", "error_ratio_above_limit", "throughput_below_limit", "regression"}
)
UNDECIDED_KINDS = frozenset({"no_data", "regression_undecided"})
# Reported only: a golden-profile comparison that could not judge never fails or undecides the check.
INFO_KINDS = frozenset({"no_baseline", "phase_regression_not_judged"})


# --------------------------------------------------------------------------------------------- figures


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


def _scope_figures(stats: Sequence[EndpointStats], duration_s: float | None) -> Figures:
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


def run_figures(evidence: SloEvidence) -> SloMeasurement:
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
        overall=_scope_figures(evidence.stats, duration),
        endpoints={k: _scope_figures([s], duration) for k, s in merged.items()},
        endpoint_stats=merged,
        duration_s=duration,
    )


def _ratio(current: float | None, baseline: float | None) -> float | None:
    if current is None or baseline is None or baseline <= 0:
        return None
    return current / baseline


def compare_with_baseline(evidence: SloEvidence, regression: RegressionThresholds) -> dict[str, Any]:
    """Compare the run with the baseline.

    Returns ``{current_p95_ms, baseline_p95_ms, p95_ratio, current_p99_ms, baseline_p99_ms, p99_ratio,
    worse: [metric names beyond max_ratio], windows_current, windows_baseline, p_value, significant,
    reason}``; ``p_value``/``significant`` are ``None`` and ``reason`` says why when the test could not run.
    """
    assert regression.baseline is not None, "an inline baseline is compared only when given"
    cur = _scope_figures(evidence.stats, None)
    base = _scope_figures(regression.baseline.stats, None)
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
    scope: str, endpoint: str | None, fig: Figures | PhaseFigures, limits: Mapping[str, float | None]
) -> list:
    out: list[dict[str, Any]] = []
    base: dict[str, Any] = {"scope": scope}
    if endpoint is not None:
        base["phase" if scope == "phase" else "endpoint"] = endpoint
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


def phase_anomalies(phases: Sequence[PhaseFigures] | None, thresholds: SloThresholds) -> list[dict[str, Any]]:
    """Anomalies of each phase against its limits (:meth:`PhaseLimits.for_phase`): ``{kind, scope: "phase",
    phase: <key>, metric?, value?, limit?}``; ``no_data`` when phase limits are set but the run has no
    phases (no ledger) or a limited phase kind never occurred."""
    pl = thresholds.phases
    if not pl.judges_anything:
        return []
    if phases is None:
        return [{"kind": "no_data", "scope": "phase", "reason": "phase limits need the client ledger"}]
    out: list[dict[str, Any]] = []
    for p in phases:
        limits = pl.for_phase(p.phase, p.fault_id, p.fault_kind)
        if p.requests == 0 and not any(v is not None for v in limits.values()):
            continue
        out += _limit_anomalies("phase", p.key, p, limits)
    seen = {p.phase for p in phases}
    for kind in ("baseline", "steady"):
        if kind not in seen and any(v is not None for v in pl.limits.get(kind, {}).values()):
            out.append(
                {"kind": "no_data", "scope": "phase", "phase": kind, "reason": "the run has no such phase"}
            )
    return out


def golden_anomalies(golden: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Anomalies of the comparison with the golden profile (:func:`compare_phases`): ``regression`` per
    regressed phase (naming the phase, the figures and the baseline run), ``no_baseline`` and
    ``phase_regression_not_judged`` (reported only)."""
    if golden["status"] == "no baseline":
        return [{"kind": "no_baseline", "scope": "golden", "reason": "no golden profile is set: not judged"}]
    out: list[dict[str, Any]] = []
    for row in golden["phases"]:
        if row["regressed"]:
            out.append(
                {
                    "kind": "regression",
                    "scope": "phase",
                    "phase": row["key"],
                    "metrics": list(row["worse"]),
                    **{f"{m}_ratio": row["deltas"][m]["ratio"] for m in row["worse"]},
                    **{f"{m}_delta": row["deltas"][m]["delta"] for m in row["worse"]},
                    "p_value": row["p_value"],
                    "alpha": golden["alpha"],
                    "max_ratio": golden["max_ratio"],
                    "baseline_run_id": golden["baseline_run_id"],
                }
            )
        elif row["judged"] and row["reason"] is not None:
            out.append(
                {
                    "kind": "phase_regression_not_judged",
                    "scope": "phase",
                    "phase": row["key"],
                    "reason": row["reason"],
                }
            )
    return out


def detect(
    measurement: SloMeasurement,
    thresholds: SloThresholds,
    regression: Mapping[str, Any] | None = None,
    *,
    phases: Sequence[PhaseFigures] | None = None,
    golden: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Anomalies of the run against the limits, as dicts ``{kind, scope, endpoint?, phase?, metric?, value?,
    limit?, reason?}``; ``kind`` is one of :data:`FAILING_KINDS`, :data:`UNDECIDED_KINDS` or
    :data:`INFO_KINDS` (reported only). ``phases`` are the run's phases, ``golden`` the comparison with the
    golden profile (:func:`resgate.checks.slo.golden.compare_phases`)."""
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
    out += phase_anomalies(phases, thresholds)
    if golden is not None:
        out += golden_anomalies(golden)
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


def check(evidence: SloEvidence, thresholds: SloThresholds) -> CheckResult:
    """Judge the run's SLO figures against the thresholds.

    Returns a :class:`CheckResult` named ``"slo"`` with counts ``{requests, failures, error_ratio,
    throughput_rps, duration_s, p50_ms, p95_ms, p99_ms, endpoints, anomalies}`` (plus ``p95_ratio``,
    ``p99_ratio``, ``p_value`` in regression mode), capped anomaly ``examples`` (see :func:`detect`) and
    ``details = {endpoints: {key: figures}, limits, regression?}``. ``valid`` is "unknown" with a reason when
    there is nothing to judge (no requests, no limits configured) or the regression test could not run.
    """
    m = run_figures(evidence)
    inline = thresholds.regression if thresholds.regression and thresholds.regression.baseline else None
    reg = compare_with_baseline(evidence, inline) if inline is not None else None
    golden = (
        compare_phases(evidence.phases, evidence.golden, thresholds.regression)
        if evidence.phases is not None
        else None
    )
    anomalies = detect(m, thresholds, reg, phases=evidence.phases, golden=golden)
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
    if evidence.phases is not None:
        counts["phases"] = len(evidence.phases)
        details["phases"] = [p.to_row() for p in evidence.phases]
        details["limits"]["phases"] = {
            "limits": {k: dict(v) for k, v in thresholds.phases.limits.items()},
            "per_fault": {
                k: {n: dict(v) for n, v in by.items()} for k, by in thresholds.phases.per_fault.items()
            },
        }
    if golden is not None:
        counts["golden"] = golden["baseline_run_id"] or golden["status"]
        counts["phases_regressed"] = sum(1 for r in golden["phases"] if r["regressed"])
        details["golden"] = golden
    if m.overall.requests == 0:
        anomalies.append({"kind": "no_data", "scope": "overall", "reason": "no requests were recorded"})
    if not thresholds.judges_anything:
        anomalies.append({"kind": "no_data", "scope": "thresholds", "reason": "no SLO limit is configured"})
    ex = ExampleCollector()
    for a in anomalies:
        ex.add(a)
    counts["anomalies"] = ex.total
    valid = judge(anomalies, failing=FAILING_KINDS, undecided=UNDECIDED_KINDS)
    error = None
    if valid == UNKNOWN:
        reasons = []
        for a in anomalies:
            if a["kind"] in UNDECIDED_KINDS:
                where = a.get("endpoint") or a.get("phase") or a["scope"]
                reason = f"{where}: {a['reason']}"
                if reason not in reasons:
                    reasons.append(reason)
        error = "; ".join(reasons[:5]) + (f" (+{len(reasons) - 5} more)" if len(reasons) > 5 else "")
    return CheckResult(
        name=NAME, valid=valid, counts=counts, examples=ex.examples, error=error, details=details
    )
