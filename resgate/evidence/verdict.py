"""The ``verdict.json`` record, written alike by a local run and by the verdict Lambda."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resgate.checks.compose import Verdict
from resgate.contract.constants import EXIT_CANNOT_RUN, EXIT_FAIL, EXIT_PASS
from resgate.contract.layout import RunKey


def verdict_record(
    key: RunKey,
    verdict: Verdict | None,
    *,
    error: str | None,
    started_at: float | None,
    ended_at: float,
    guardrail_tripped: str | None,
) -> dict[str, Any]:
    """``{gate, run_id, dt, result: PASS|FAIL|ERROR, passed, exit_code, reason, failed_checks,
    unknown_checks, started_at, ended_at, guardrail_tripped}``.

    An ``error`` (the gate itself failed or was interrupted) makes the result ERROR with exit code 2, or 1
    when a check had already failed; without results nothing was proven, so that is never a pass.
    """
    failed = list(verdict.failed) if verdict else []
    unknown = list(verdict.unknown) if verdict else []
    if error or verdict is None:
        exit_code = EXIT_FAIL if failed else EXIT_CANNOT_RUN
        result, reason = "ERROR", error or "no check results were received"
    else:
        exit_code = EXIT_PASS if verdict.passed else EXIT_FAIL
        result = "PASS" if verdict.passed else "FAIL"
        parts = []
        if failed:
            parts.append(f"failed: {', '.join(failed)}")
        if unknown:
            parts.append(f"unknown: {', '.join(unknown)}")
        if not verdict.results:
            parts.append("no check results were received")
        reason = "; ".join(parts)
    return {
        "gate": key.gate,
        "run_id": key.run_id,
        "dt": key.date,
        "result": result,
        "passed": exit_code == EXIT_PASS,
        "exit_code": exit_code,
        "reason": reason,
        "failed_checks": failed,
        "unknown_checks": unknown,
        "started_at": started_at,
        "ended_at": ended_at,
        "guardrail_tripped": guardrail_tripped,
    }


def exit_code_of(record: Mapping[str, Any]) -> int:
    """The exit code a stored ``verdict.json`` record stands for: its ``exit_code`` when it is an int
    (an interrupted run with a failed check is ERROR with exit code 1), else 0 for PASS, 1 for FAIL, 2."""
    code = record.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return {"PASS": EXIT_PASS, "FAIL": EXIT_FAIL}.get(record.get("result"), EXIT_CANNOT_RUN)  # type: ignore[arg-type]
