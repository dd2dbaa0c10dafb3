"""The golden profile: a passing run's per-phase SLO figures, kept as the gate's reference, and the
regression test of a new run against it.

``resgate baseline set RUN|latest`` records the profile (:class:`GoldenProfile`) in the evidence store;
the SLO check compares each new run's phases with it (:func:`compare_phases`) by phase key (``baseline``,
``steady``, ``during:<fault>``, ``recovery:<fault>``). A phase regresses when, as in the whole-run
regression mode, its p95 or p99 is more than ``max_ratio`` times the profile's **and** a one-sided
Mann-Whitney U test on its per-second p95s gives ``p < alpha``. Only the phase kinds in
``regression.phases`` (default baseline and steady: what users live with) are judged; every common phase's
deltas are reported. A phase with fewer than ``min_windows`` samples on either side is reported as not
judged; no golden profile at all is "no baseline": not judged, never a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.slo.phases import PhaseFigures
from resgate.checks.slo.thresholds import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_RATIO,
    DEFAULT_MIN_WINDOWS,
    DEFAULT_REGRESSION_PHASES,
    RegressionThresholds,
)
from resgate.contract.errors import ConfigError

PROFILE_VERSION = 1
DELTA_METRICS: tuple[str, ...] = ("error_ratio", "throughput_rps", "p50_ms", "p95_ms", "p99_ms")


@dataclass(frozen=True)
class GoldenProfile:
    """A gate's golden profile: the run it was taken from and that run's phases."""

    gate: str
    run_id: str
    recorded_at: float
    phases: tuple[PhaseFigures, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{version, gate, run_id, recorded_at, phases: [phases table rows]}``."""
        return {
            "version": PROFILE_VERSION,
            "gate": self.gate,
            "run_id": self.run_id,
            "recorded_at": self.recorded_at,
            "phases": [p.to_row() for p in self.phases],
        }

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "golden") -> GoldenProfile:
        """Validate a stored profile; ConfigError naming the field when it is malformed."""
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        for key in ("gate", "run_id", "recorded_at", "phases"):
            if d.get(key) is None:
                raise ConfigError("is required", where=f"{where}.{key}")
        if not isinstance(d["phases"], Sequence) or isinstance(d["phases"], (str, bytes)):
            raise ConfigError("must be a list of phases", where=f"{where}.phases")
        phases = []
        for i, row in enumerate(d["phases"]):
            try:
                phases.append(PhaseFigures.from_row(row))
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"malformed phase: {e}", where=f"{where}.phases[{i}]") from e
        return cls(
            gate=str(d["gate"]),
            run_id=str(d["run_id"]),
            recorded_at=float(d["recorded_at"]),
            phases=tuple(phases),
        )


def _ratio(current: float | None, baseline: float | None) -> float | None:
    if current is None or baseline is None or baseline <= 0:
        return None
    return current / baseline


def phase_deltas(current: PhaseFigures, golden: PhaseFigures) -> dict[str, Any]:
    """``{<metric>: {current, baseline, delta, ratio}}`` for each of :data:`DELTA_METRICS`."""
    out = {}
    for m in DELTA_METRICS:
        c, b = getattr(current, m), getattr(golden, m)
        out[m] = {
            "current": c,
            "baseline": b,
            "delta": None if c is None or b is None else c - b,
            "ratio": _ratio(c, b),
        }
    return out


def compare_phases(
    current: Sequence[PhaseFigures],
    golden: GoldenProfile | None,
    regression: RegressionThresholds | None = None,
) -> dict[str, Any]:
    """Compare the run's phases with the golden profile.

    Returns ``{baseline_run_id, status, max_ratio, alpha, min_windows, judged_phases, phases: [{key, judged,
    deltas, worse: [metric], windows_current, windows_baseline, p_value, significant, regressed, reason}],
    missing: [golden keys absent from the run]}``; ``status`` is ``"no baseline"`` (no profile), or
    ``"compared"``. ``regressed`` is True only for a judged phase that is worse **and** significant.
    """
    max_ratio = regression.max_ratio if regression else DEFAULT_MAX_RATIO
    alpha = regression.alpha if regression else DEFAULT_ALPHA
    min_windows = regression.min_windows if regression else DEFAULT_MIN_WINDOWS
    judged = regression.phases if regression else DEFAULT_REGRESSION_PHASES
    out: dict[str, Any] = {
        "baseline_run_id": None if golden is None else golden.run_id,
        "max_ratio": max_ratio,
        "alpha": alpha,
        "min_windows": min_windows,
        "judged_phases": list(judged),
    }
    if golden is None:
        return {**out, "status": "no baseline", "phases": [], "missing": []}
    from resgate.checks.slo.check import mann_whitney_greater

    by_key = {p.key: p for p in golden.phases}
    rows = []
    for cur in current:
        base = by_key.get(cur.key)
        if base is None:
            continue
        row: dict[str, Any] = {
            "key": cur.key,
            "phase": cur.phase,
            "judged": cur.phase in judged,
            "deltas": phase_deltas(cur, base),
            "worse": [],
            "windows_current": len(cur.samples),
            "windows_baseline": len(base.samples),
            "p_value": None,
            "significant": None,
            "regressed": False,
            "reason": None,
        }
        for m in ("p95_ms", "p99_ms"):
            c, b = getattr(cur, m), getattr(base, m)
            if c is not None and b is not None and ((b > 0 and c > b * max_ratio) or (b == 0 and c > 0)):
                row["worse"].append(m)
        if len(cur.samples) < min_windows or len(base.samples) < min_windows:
            row["reason"] = (
                f"too few windows for the significance test: run {len(cur.samples)}, baseline "
                f"{len(base.samples)}, need >= {min_windows} each"
            )
        else:
            p = mann_whitney_greater(cur.samples, base.samples)
            row["p_value"] = p
            row["significant"] = p < alpha
        row["regressed"] = bool(row["judged"] and row["worse"] and row["significant"])
        rows.append(row)
    current_keys = {p.key for p in current}
    return {
        **out,
        "status": "compared",
        "phases": rows,
        "missing": [k for k in by_key if k not in current_keys],
    }
