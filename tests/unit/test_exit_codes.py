"""Exit codes when an interruption (or any gate error) and the check results come together.

The rule (``resgate.evidence.verdict.verdict_record``): an error or interruption makes the result ERROR;
its exit code is 1 when a check had already failed (the build is proven bad, whatever else happened), and
2 otherwise (nothing was proven). ``resgate report`` must return the exit code the run itself returned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks.compose import verdict
from resgate.checks.result import UNKNOWN, CheckResult
from resgate.cli import main
from resgate.contract.constants import EXIT_CANNOT_RUN, EXIT_FAIL, EXIT_PASS
from resgate.contract.layout import RunKey
from resgate.evidence.store import FolderStore
from resgate.evidence.verdict import exit_code_of, verdict_record

KEY = RunKey.new("pb")


def _record(results: list[CheckResult] | None, error: str | None, **kw: bool) -> dict:
    v = verdict(results, **kw) if results is not None else None
    return verdict_record(KEY, v, error=error, started_at=1.0, ended_at=2.0, guardrail_tripped=None)


PASSED = CheckResult("slo", True)
FAILED = CheckResult("integrity", False)
UNDECIDED = CheckResult("replay", UNKNOWN)


def test_an_interruption_after_a_failed_check_exits_1_as_an_error() -> None:
    r = _record([PASSED, FAILED], "interrupted")
    assert (r["result"], r["exit_code"], r["passed"], r["failed_checks"]) == (
        "ERROR",
        EXIT_FAIL,
        False,
        ["integrity"],
    )
    assert r["reason"] == "interrupted"


def test_an_interruption_with_every_check_passed_exits_2() -> None:
    r = _record([PASSED], "interrupted")
    assert (r["result"], r["exit_code"], r["passed"]) == ("ERROR", EXIT_CANNOT_RUN, False)


def test_an_interruption_with_only_unknown_checks_exits_2_even_when_unknown_is_allowed() -> None:
    r = _record([PASSED, UNDECIDED], "interrupted", unknown_is_failure=False)
    assert (r["exit_code"], r["unknown_checks"]) == (EXIT_CANNOT_RUN, ["replay"])


def test_an_interruption_before_any_check_exits_2() -> None:
    r = _record(None, "interrupted")
    assert (r["result"], r["exit_code"]) == ("ERROR", EXIT_CANNOT_RUN)


def test_without_an_error_a_failed_check_exits_1_and_all_passed_exits_0() -> None:
    assert _record([PASSED, FAILED], None)["exit_code"] == EXIT_FAIL
    assert _record([PASSED], None)["exit_code"] == EXIT_PASS
    assert _record([], None)["exit_code"] == EXIT_FAIL  # no results never pass


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"result": "ERROR", "exit_code": 1}, EXIT_FAIL),
        ({"result": "ERROR", "exit_code": 2}, EXIT_CANNOT_RUN),
        ({"result": "PASS", "exit_code": 0}, EXIT_PASS),
        ({"result": "FAIL"}, EXIT_FAIL),  # an older verdict.json without exit_code
        ({"result": "PASS"}, EXIT_PASS),
        ({"result": "ERROR"}, EXIT_CANNOT_RUN),
        ({"result": "PASS", "exit_code": True}, EXIT_PASS),  # not an int: falls back to the result
        ({}, EXIT_CANNOT_RUN),
    ],
)
def test_a_stored_verdict_gives_back_the_exit_code_the_run_returned(record: dict, code: int) -> None:
    assert exit_code_of(record) == code


def test_resgate_report_of_an_interrupted_run_with_a_failed_check_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = FolderStore(tmp_path, KEY)
    store.write_text("verdicts", json.dumps(_record([FAILED], "interrupted")) + "\n")
    store.write_text("report", "# run\n")
    assert main(["report", KEY.run_id, "--root", str(tmp_path)]) == EXIT_FAIL
    capsys.readouterr()


def test_the_reason_names_the_failed_and_the_unknown_checks_or_says_nothing_was_received() -> None:
    assert _record([PASSED, FAILED, UNDECIDED], None)["reason"] == "failed: integrity; unknown: replay"
    assert _record([PASSED, UNDECIDED], None)["reason"] == "unknown: replay"
    assert _record([], None)["reason"] == "no check results were received"
    assert _record([PASSED], None)["reason"] == ""
