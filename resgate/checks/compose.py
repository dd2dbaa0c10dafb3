"""Composing checks into a verdict: run every check, turn a crash into "unknown", rank false > unknown > true.

A check that raises does not stop the others: its result is ``unknown`` with the error text (and the
traceback in ``details``), so the report still shows every sub-check. The verdict then fails closed on
unknown unless the gate config says otherwise.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from resgate.checks.result import UNKNOWN, CheckResult, Validity, merge_validity


def run_checks(named: Mapping[str, Callable[[], CheckResult]]) -> list[CheckResult]:
    """Call each check in order and return one :class:`CheckResult` per name, in the mapping's order.

    A check that raises an ``Exception`` (or returns something that is not a CheckResult) becomes
    ``CheckResult(name, "unknown", error="<Type>: <message>", details={"traceback": ...})``. Each result
    carries the mapping key as its ``name``.
    """
    out: list[CheckResult] = []
    for name, fn in named.items():
        try:
            result = fn()
        except Exception as e:
            out.append(
                CheckResult(
                    name=name,
                    valid=UNKNOWN,
                    error=f"{type(e).__name__}: {e}",
                    details={"traceback": traceback.format_exc()},
                )
            )
            continue
        if not isinstance(result, CheckResult):
            out.append(
                CheckResult.unknown(name, f"check returned {type(result).__name__}, not a CheckResult")
            )
            continue
        out.append(result if result.name == name else replace(result, name=name))
    return out


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict over its checks.

    ``valid`` merges the results' validities (false > unknown > true; "unknown" when there are none);
    ``passed`` is whether the gate passes (unknown counts as failure unless told otherwise; no results never
    pass); ``failed`` / ``unknown`` name the checks that were false / unknown.
    """

    valid: Validity
    passed: bool
    results: tuple[CheckResult, ...]
    failed: tuple[str, ...]
    unknown: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{valid, passed, failed: [name], unknown: [name], results: [CheckResult.to_dict()]}``."""
        return {
            "valid": self.valid,
            "passed": self.passed,
            "failed": list(self.failed),
            "unknown": list(self.unknown),
            "results": [r.to_dict() for r in self.results],
        }


def verdict(results: Iterable[CheckResult], *, unknown_is_failure: bool = True) -> Verdict:
    """Merge check results into a :class:`Verdict` (see its docstring for the fields)."""
    results = tuple(results)
    valid = merge_validity(r.valid for r in results)
    if not results:
        passed = False
    elif valid is True:
        passed = True
    else:
        passed = valid == UNKNOWN and not unknown_is_failure
    return Verdict(
        valid=valid,
        passed=passed,
        results=results,
        failed=tuple(r.name for r in results if r.valid is False),
        unknown=tuple(r.name for r in results if r.valid == UNKNOWN),
    )
