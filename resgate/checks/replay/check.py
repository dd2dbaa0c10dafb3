"""The replay judge: a pure function of the per-read-model findings, and the findings' shape.

A read model is exact, so a mismatch of any size fails; a model that could not be compared (truncated
topic, failed rebuild, missing table) leaves the check "unknown" with the reason. Nothing here touches a
database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.replay.config import ReplayThresholds
from resgate.checks.result import UNKNOWN, CheckResult, interleave, judge

NAME = "replay"


@dataclass
class ModelFindings:
    """What was gathered for one read model.

    ``unavailable`` says why it could not be compared (truncated topic, failed rebuild, missing table).
    Checksums are decimal strings (sums of signed 64-bit hashes). ``diff_counts`` has
    ``missing_in_rebuilt`` / ``extra_in_rebuilt`` / ``different`` (rows in the differing buckets);
    ``examples`` are ``{key, kind, live, rebuilt, columns}`` dicts.
    """

    name: str
    table: str
    unavailable: str | None = None
    end_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    truncated: list[tuple[str, int, int]] = field(default_factory=list)
    compared_columns: list[str] = field(default_factory=list)
    live_rows: int | None = None
    live_checksum: str | None = None
    rebuilt_rows: int | None = None
    rebuilt_checksum: str | None = None
    missing_columns: list[str] = field(default_factory=list)
    buckets: int = 0
    differing_buckets: int = 0
    diff_counts: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    shadow_schema: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def matches(self) -> bool:
        """True when rows and checksums agree and the rebuilt table has every compared column."""
        return (
            self.unavailable is None
            and not self.missing_columns
            and self.live_rows == self.rebuilt_rows
            and self.live_checksum == self.rebuilt_checksum
        )

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["truncated"] = [list(t) for t in self.truncated]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelFindings:
        kw = dict(d)
        kw["truncated"] = [tuple(t) for t in kw.get("truncated") or []]
        kw["end_offsets"] = {
            t: {int(p): int(o) for p, o in ps.items()} for t, ps in (kw.get("end_offsets") or {}).items()
        }
        return cls(**kw)


@dataclass
class ReplayFindings:
    """Per read model findings, in config order."""

    models: list[ModelFindings] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"models": [m.to_dict() for m in self.models]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReplayFindings:
        return cls(models=[ModelFindings.from_dict(m) for m in d.get("models") or []])


# --- the judge --------------------------------------------------------------------------------------


def check(findings: ReplayFindings, thresholds: ReplayThresholds | None = None) -> CheckResult:
    """Judge replay findings: false if any read model differs, else unknown if any could not be compared.

    Returns a CheckResult named ``replay`` with ``counts`` = ``{read_models, matching, mismatching,
    unknown, differing_rows}``, ``examples`` = ``[{read_model, key, kind, live, rebuilt, columns}]``
    (capped, shared round-robin between models), ``error`` = the reasons when unknown, and ``details`` =
    ``{read_model: {status, live_rows, rebuilt_rows, live_checksum, rebuilt_checksum, ...}}``. No read
    model at all is "unknown": nothing was proven.
    """
    th = thresholds or ReplayThresholds()
    matching = mismatching = unknown = differing = 0
    reasons: list[str] = []
    details: dict[str, Any] = {}
    queues: list[tuple[str, list[dict[str, Any]]]] = []
    anomalies: list[dict[str, Any]] = []  # one {kind: match | mismatch | unknown} per read model
    for m in findings.models:
        info: dict[str, Any] = {
            "table": m.table,
            "live_rows": m.live_rows,
            "rebuilt_rows": m.rebuilt_rows,
            "live_checksum": m.live_checksum,
            "rebuilt_checksum": m.rebuilt_checksum,
            "end_offsets": {t: {str(p): o for p, o in ps.items()} for t, ps in m.end_offsets.items()},
        }
        if m.unavailable is not None:
            unknown += 1
            info["status"] = UNKNOWN
            info["reason"] = m.unavailable
            reasons.append(f"{m.name}: {m.unavailable}")
        elif m.matches:
            matching += 1
            info["status"] = "match"
        else:
            mismatching += 1
            info["status"] = "mismatch"
            n = sum(m.diff_counts.values())
            differing += n
            info.update(
                diff_counts=dict(m.diff_counts),
                differing_buckets=m.differing_buckets,
                buckets=m.buckets,
                missing_columns=list(m.missing_columns),
            )
            queues.append((m.name, list(m.examples)))
        details[m.name] = info
        anomalies.append({"kind": info["status"]})

    examples = interleave(([{"read_model": name, **e} for e in q] for name, q in queues), th.examples_cap)

    if not findings.models:
        anomalies.append({"kind": UNKNOWN})
    valid = judge(anomalies, failing=("mismatch",), undecided=(UNKNOWN,))
    error = None
    if valid == UNKNOWN:
        error = "; ".join(reasons) or "no read model was replayed"
    return CheckResult(
        name=NAME,
        valid=valid,
        counts={
            "read_models": len(findings.models),
            "matching": matching,
            "mismatching": mismatching,
            "unknown": unknown,
            "differing_rows": differing,
        },
        examples=examples,
        error=error,
        details=details,
    )
