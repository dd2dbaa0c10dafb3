"""The resilience score: one number from 0 to 100 per gate run, and its band (Pass, Marginal, Fail).

Correctness comes first, the way a critical metric fails a canary judgement outright: any integrity or
replay anomaly that the gate prohibits (a lost, duplicated or double-filled order, a read model that does
not replay) scores 0. Otherwise each injected fault earns points from three figures, weighted
:data:`WEIGHTS`:

- ``rto``: the margin against the recovery time objective. Healthy again within half the RTO earns all
  of it, at the RTO none, linearly in between; a fault that never recovered earns none.
- ``during``: the goodput kept while the fault acted (successful requests per second in the fault's
  *during* phase, :mod:`resgate.checks.slo.phases`, as a share of the baseline phase's, capped at 1).
- ``after``: the goodput in the fault's *recovery* phase (from its lift until healthy again, plus the
  settle time), as a share of the baseline's (capped at 1).

A component that could not be measured (no ledger, a phase too short for the baseline to serve one
request in it) is left out and the others are
re-weighted; the scorecard lists which were measured. The run's score is the mean over its faults,
rounded. Any other failed check (slo, retryable, recovery) caps the
score at :data:`FAIL_CAP`, so a failed gate is never in a passing band; an undecided check or a run
without faults is not scored at all (``value`` None, band ``Not scored``): no data is never good news.

Bands: ``Pass`` at :data:`PASS_AT` or more, ``Marginal`` at :data:`MARGINAL_AT` or more, else ``Fail``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from resgate.checks.integrity.config import KINDS as INTEGRITY_KINDS
from resgate.checks.result import UNKNOWN, CheckResult

Band = Literal["Pass", "Marginal", "Fail", "Not scored"]

PASS_AT = 80
MARGINAL_AT = 60
FAIL_CAP = MARGINAL_AT - 1
WEIGHTS: Mapping[str, float] = {"rto": 0.5, "during": 0.25, "after": 0.25}
CORRECTNESS_CHECKS = ("integrity", "replay")
SCORED_CHECKS = ("slo", "recovery", "retryable", "streaming", *CORRECTNESS_CHECKS)


@dataclass(frozen=True)
class FaultFigures:
    """What the score needs of one injected fault: ``time_to_healthy_s`` (None: never healthy again),
    ``goodput_during``/``goodput_after`` (successful requests per second as a share of the baseline's;
    None when not measurable)."""

    fault_id: str
    kind: str
    rto_s: float
    time_to_healthy_s: float | None
    goodput_during: float | None = None
    goodput_after: float | None = None


@dataclass(frozen=True)
class FaultScore:
    """One fault's points: each component in [0, 1] (None = not measured) and the weighted total 0–100."""

    fault_id: str
    kind: str
    rto: float
    during: float | None
    after: float | None
    points: float


@dataclass(frozen=True)
class Score:
    """``value`` 0–100 (None = not scored), its ``band``, the ``reasons`` that decided it, and the
    per-fault points."""

    value: int | None
    band: Band
    reasons: tuple[str, ...] = ()
    faults: tuple[FaultScore, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """``{value, band, reasons: [...], faults: [{fault_id, kind, rto, during, after, points}]}``."""
        return {
            "value": self.value,
            "band": self.band,
            "reasons": list(self.reasons),
            "faults": [asdict(f) for f in self.faults],
        }


def band_of(value: int | None) -> Band:
    """The band of a score: Pass ≥ 80, Marginal ≥ 60, Fail below; ``Not scored`` for None."""
    if value is None:
        return "Not scored"
    if value >= PASS_AT:
        return "Pass"
    return "Marginal" if value >= MARGINAL_AT else "Fail"


def rto_points(time_to_healthy_s: float | None, rto_s: float) -> float:
    """1.0 when healthy within half the RTO, 0.0 at the RTO or never, linear in between."""
    if time_to_healthy_s is None or time_to_healthy_s >= rto_s:
        return 0.0
    half = rto_s / 2
    if time_to_healthy_s <= half:
        return 1.0
    return (rto_s - time_to_healthy_s) / half


def share_points(share: float | None) -> float | None:
    """A goodput share clamped to [0, 1]; None stays None (not measured)."""
    if share is None:
        return None
    return min(1.0, max(0.0, share))


def fault_score(f: FaultFigures) -> FaultScore:
    """Weigh one fault's components (:data:`WEIGHTS`), re-weighting over those that were measured."""
    parts = {
        "rto": rto_points(f.time_to_healthy_s, f.rto_s),
        "during": share_points(f.goodput_during),
        "after": share_points(f.goodput_after),
    }
    measured = {k: v for k, v in parts.items() if v is not None}
    total_w = sum(WEIGHTS[k] for k in measured)
    points = 100.0 * sum(WEIGHTS[k] * v for k, v in measured.items()) / total_w
    return FaultScore(f.fault_id, f.kind, parts["rto"], parts["during"], parts["after"], points)  # type: ignore[arg-type]


def _anomaly_counts(result: CheckResult) -> str:
    shown = [f"{k}={v}" for k, v in result.counts.items() if isinstance(v, int) and v and k in ANOMALY_KEYS]
    return ", ".join(shown) or (result.error or "failed")


# Count names that are anomalies (integrity's kinds and replay's mismatches), not volumes.
ANOMALY_KEYS = frozenset(INTEGRITY_KINDS) | {"mismatching", "differing_rows"}


def resilience_score(results: Sequence[CheckResult], faults: Sequence[FaultFigures]) -> Score:
    """Score a run from its check results and its faults' figures (see the module docstring).

    Returns a :class:`Score`; ``reasons`` names what decided a 0, a cap or ``Not scored``.
    """
    by_name = {r.name: r for r in results}
    broken = [by_name[n] for n in CORRECTNESS_CHECKS if n in by_name and by_name[n].valid is False]
    if broken:
        reasons = tuple(f"{r.name}: {_anomaly_counts(r)}" for r in broken)
        return Score(0, "Fail", ("correctness anomaly: " + "; ".join(reasons),))
    undecided = [r.name for r in results if r.name in SCORED_CHECKS and r.valid == UNKNOWN]
    if undecided:
        return Score(None, "Not scored", (f"undecided checks: {', '.join(undecided)}",))
    if not faults:
        return Score(None, "Not scored", ("no fault was injected",))
    scored = tuple(fault_score(f) for f in faults)
    value = round(sum(s.points for s in scored) / len(scored))
    failed = [r.name for r in results if r.valid is False]
    reasons: tuple[str, ...] = ()
    if failed and value > FAIL_CAP:
        value = FAIL_CAP
        reasons = (f"capped at {FAIL_CAP}: failed checks {', '.join(failed)}",)
    return Score(value, band_of(value), reasons, scored)
