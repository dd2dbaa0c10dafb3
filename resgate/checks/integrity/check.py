"""The integrity judge: a pure function of the findings, and the findings' shape.

:func:`check` decides validity from counts alone: a prohibited kind with a count above zero makes the
result false; a source that could not be read fully (a topic truncated by retention, malformed records)
makes it "unknown" with the reason. Nothing here touches a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.integrity.config import KINDS, IntegrityThresholds
from resgate.checks.result import CheckResult, interleave, judge

NAME = "integrity"

# Pseudo-kinds that leave the check undecided (they are not anomalies of the system under test).
_INCOMPLETE = "incomplete_source"
_NOTHING_CHECKED = "nothing_checked"


@dataclass
class KindFinding:
    """How many anomalies of one kind were found, with a capped list of concrete examples."""

    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, count: int, examples: Iterable[dict[str, Any]], cap: int) -> None:
        self.count += count
        for ex in examples:
            if len(self.examples) < cap:
                self.examples.append(ex)


@dataclass
class IntegrityFindings:
    """What :func:`resgate.checks.integrity.gather` found (the evidence :func:`check` judges).

    ``kinds`` has an entry for every kind that was checked (count 0 when absent); ``not_checked`` maps the
    other kinds to the reason (not configured, or a source was incomplete); ``incomplete`` lists why some
    source could not be read fully; ``stats`` holds volumes and timings.
    """

    kinds: dict[str, KindFinding] = field(default_factory=dict)
    not_checked: dict[str, str] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def kind(self, name: str) -> KindFinding:
        if name not in KINDS:
            raise ValueError(f"unknown anomaly kind {name!r}")
        self.not_checked.pop(name, None)
        return self.kinds.setdefault(name, KindFinding())

    def skip(self, name: str, reason: str) -> None:
        if name not in self.kinds:
            self.not_checked.setdefault(name, reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{kinds: {kind: {count, examples}}, not_checked, incomplete, stats}``."""
        return {
            "kinds": {k: {"count": v.count, "examples": list(v.examples)} for k, v in self.kinds.items()},
            "not_checked": dict(self.not_checked),
            "incomplete": list(self.incomplete),
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntegrityFindings:
        return cls(
            kinds={
                k: KindFinding(int(v["count"]), list(v.get("examples") or []))
                for k, v in (d.get("kinds") or {}).items()
            },
            not_checked=dict(d.get("not_checked") or {}),
            incomplete=list(d.get("incomplete") or []),
            stats=dict(d.get("stats") or {}),
        )


def check(findings: IntegrityFindings, thresholds: IntegrityThresholds | None = None) -> CheckResult:
    """Judge findings: false if a prohibited kind has a count > 0, else unknown if a source was incomplete.

    Returns a CheckResult named ``integrity`` with ``counts`` = ``{kind: count}`` for every checked kind
    plus the volume stats, ``examples`` = ``[{kind, prohibited, ...}]`` capped at
    ``thresholds.examples_cap`` (shared round-robin between kinds, prohibited kinds first), ``error`` = the
    reasons when unknown, and ``details`` = ``{prohibited, violations, not_checked, incomplete}``.
    """
    th = thresholds or IntegrityThresholds()
    counts: dict[str, Any] = {k: f.count for k, f in findings.kinds.items()}
    for k, v in findings.stats.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in counts:
            counts[k] = v
    violations = sorted(k for k, f in findings.kinds.items() if f.count > 0 and k in th.prohibited)
    reported = sorted(k for k, f in findings.kinds.items() if f.count > 0 and k not in th.prohibited)
    examples = interleave(
        (
            [{"kind": k, "prohibited": k in th.prohibited, **e} for e in findings.kinds[k].examples]
            for k in violations + reported
        ),
        th.examples_cap,
    )

    details: dict[str, Any] = {
        "prohibited": sorted(th.prohibited),
        "violations": violations,
        "reported": reported,
    }
    if findings.not_checked:
        details["not_checked"] = dict(findings.not_checked)
    if findings.incomplete:
        details["incomplete"] = list(findings.incomplete)

    anomalies = [{"kind": k} for k in violations + reported]
    anomalies += [{"kind": _INCOMPLETE, "reason": r} for r in findings.incomplete]
    if not findings.kinds:
        anomalies.append({"kind": _NOTHING_CHECKED, "reason": "no anomaly kind could be checked"})
    valid = judge(anomalies, failing=th.prohibited, undecided=(_INCOMPLETE, _NOTHING_CHECKED))
    error = None
    if valid is not True and not violations:
        error = "; ".join(findings.incomplete) or "no anomaly kind could be checked"
    return CheckResult(name=NAME, valid=valid, counts=counts, examples=examples, error=error, details=details)
