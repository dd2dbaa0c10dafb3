"""Unit tests for composing checks: a crash becomes unknown, all are reported, false > unknown > true."""

from __future__ import annotations

import pytest

from resgate.checks.compose import Verdict, run_checks, verdict
from resgate.checks.result import UNKNOWN, CheckResult


def ok(name="ok"):
    return lambda: CheckResult(name=name, valid=True)


def bad(name="bad"):
    return lambda: CheckResult(name=name, valid=False, examples=[{"kind": "lost_order"}])


def crash():
    raise RuntimeError("database went away")


def test_a_check_that_raises_becomes_unknown_with_the_error_and_traceback():
    (r,) = run_checks({"integrity": crash})
    assert r.name == "integrity" and r.valid == UNKNOWN
    assert r.error == "RuntimeError: database went away"
    assert "Traceback" in r.details["traceback"] and "crash" in r.details["traceback"]


def test_every_check_is_still_reported_in_order_when_one_crashes():
    results = run_checks({"slo": ok(), "integrity": crash, "replay": bad()})
    assert [r.name for r in results] == ["slo", "integrity", "replay"]
    assert [r.valid for r in results] == [True, UNKNOWN, False]


def test_a_check_that_returns_something_else_is_unknown():
    (r,) = run_checks({"slo": lambda: {"valid": True}})
    assert r.valid == UNKNOWN and "dict" in r.error


def test_results_take_the_name_they_were_registered_under():
    (r,) = run_checks({"slo.gateway": ok("slo")})
    assert r.name == "slo.gateway"


def test_keyboard_interrupt_is_not_swallowed():
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_checks({"x": interrupted})


@pytest.mark.parametrize(
    ("validities", "valid", "passed"),
    [
        ([True, True], True, True),
        ([True, UNKNOWN], UNKNOWN, False),
        ([True, False], False, False),
        ([UNKNOWN, False, True], False, False),
        ([UNKNOWN], UNKNOWN, False),
    ],
)
def test_verdict_ranks_false_over_unknown_over_true(validities, valid, passed):
    results = [CheckResult(name=f"c{i}", valid=v) for i, v in enumerate(validities)]
    v = verdict(results)
    assert v.valid == valid and v.passed is passed
    assert list(v.failed) == [r.name for r in results if r.valid is False]
    assert list(v.unknown) == [r.name for r in results if r.valid == UNKNOWN]


def test_unknown_passes_only_when_the_config_says_so():
    results = run_checks({"slo": ok(), "integrity": crash})
    assert verdict(results).passed is False
    v = verdict(results, unknown_is_failure=False)
    assert v.passed is True and v.valid == UNKNOWN and v.unknown == ("integrity",)
    assert verdict([*results, bad()()], unknown_is_failure=False).passed is False


def test_no_results_never_pass():
    for flag in (True, False):
        v = verdict([], unknown_is_failure=flag)
        assert v.valid == UNKNOWN and v.passed is False


def test_verdict_to_dict_is_json_ready():
    v = verdict(run_checks({"slo": ok(), "replay": bad()}))
    assert isinstance(v, Verdict)
    d = v.to_dict()
    assert d["valid"] is False and d["passed"] is False and d["failed"] == ["replay"]
    assert [r["name"] for r in d["results"]] == ["slo", "replay"]
