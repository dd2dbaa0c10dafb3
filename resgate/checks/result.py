"""The CheckResult contract shared by every checker, the local runner and the assertion Lambdas."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from resgate.contract.constants import DEFAULT_EXAMPLES_CAP

UNKNOWN: Literal["unknown"] = "unknown"
Validity = bool | Literal["unknown"]

_RANK = {False: 0, UNKNOWN: 1, True: 2}
_T = TypeVar("_T")


def merge_validity(values: Iterable[Validity]) -> Validity:
    """Merge validities as false > unknown > true; an empty input is "unknown" (nothing was proven)."""
    worst: Validity | None = None
    for v in values:
        if v not in _RANK:
            raise ValueError(f"not a validity: {v!r}")
        if worst is None or _RANK[v] < _RANK[worst]:
            worst = v
    return UNKNOWN if worst is None else worst


@dataclass
class CheckResult:
    """The outcome of one check.

    ``valid`` is True, False or "unknown"; ``counts`` holds named figures; ``examples`` is a capped list of
    concrete anomalies (ids, keys, offsets); ``error`` says why the check could not decide.
    """

    name: str
    valid: Validity
    counts: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    """How long building the evidence and judging it took (set by the conductor's ``run_check``)."""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict: ``{name, valid, counts, examples, error?, details?, duration_s?}``."""
        out: dict[str, Any] = {
            "name": self.name,
            "valid": self.valid,
            "counts": dict(self.counts),
            "examples": list(self.examples),
        }
        if self.error is not None:
            out["error"] = self.error
        if self.details:
            out["details"] = dict(self.details)
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        """Rebuild a CheckResult from :meth:`to_dict` output (e.g. a Step Functions payload)."""
        valid = d["valid"]
        if valid not in _RANK:
            raise ValueError(f"not a validity: {valid!r}")
        return cls(
            name=str(d["name"]),
            valid=valid,
            counts=dict(d.get("counts") or {}),
            examples=list(d.get("examples") or []),
            error=d.get("error"),
            details=dict(d.get("details") or {}),
            duration_s=None if d.get("duration_s") is None else float(d["duration_s"]),
        )

    @classmethod
    def unknown(cls, name: str, error: str, **counts: Any) -> CheckResult:
        """A result that could not decide, with the reason."""
        return cls(name=name, valid=UNKNOWN, counts=dict(counts), error=error)


class ExampleCollector:
    """Collects anomaly examples up to a cap while still counting every one of them.

    Writing out every anomaly of a large run is expensive and unreadable, so keep a few per kind.
    """

    def __init__(self, cap: int = DEFAULT_EXAMPLES_CAP) -> None:
        self.cap = cap
        self.examples: list[dict[str, Any]] = []
        self.total = 0

    def add(self, example: dict[str, Any]) -> None:
        self.total += 1
        if len(self.examples) < self.cap:
            self.examples.append(example)


def judge(
    anomalies: Iterable[Mapping[str, Any]], *, failing: Collection[str], undecided: Collection[str] = ()
) -> Validity:
    """The one verdict rule of every checker over its anomalies (dicts with a ``kind``).

    Returns False if any anomaly's kind is in ``failing``, else "unknown" if any is in ``undecided``, else
    True. Kinds in neither set are only reported.
    """
    kinds = {a["kind"] for a in anomalies}
    if kinds & set(failing):
        return False
    if kinds & set(undecided):
        return UNKNOWN
    return True


def interleave(groups: Iterable[Iterable[_T]], cap: int) -> list[_T]:
    """Take examples round-robin from ``groups`` (the first of each, then the second, ...) up to ``cap``.

    Returns a list of at most ``cap`` items, so a capped report shows every group that has examples
    before it shows a second example of any.
    """
    out: list[_T] = []
    iterators = [iter(g) for g in groups]
    while iterators and len(out) < cap:
        alive = []
        for it in iterators:
            for item in it:
                if len(out) < cap:
                    out.append(item)
                alive.append(it)
                break
        iterators = alive
    return out
