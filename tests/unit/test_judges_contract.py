"""The small shared pieces every judge stands on, pinned rule by rule (found by ``make mutate``).

CheckResult's JSON shape (error and details only when set, a round trip that keeps everything, a
validity that is not one rejected), the example cap (counts every anomaly, keeps ``cap`` examples), the
false > unknown > true merge, and the integrity findings' bookkeeping (counts add up, examples stop at
the cap, a checked kind is never "not checked", only numbers become counts).
"""

from __future__ import annotations

import itertools

import pytest

from resgate.checks.compose import verdict
from resgate.checks.integrity import IntegrityFindings, IntegrityThresholds, KindFinding, check
from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector, interleave, merge_validity


def test_a_result_without_error_or_details_has_only_the_four_fields() -> None:
    assert CheckResult("slo", True).to_dict() == {"name": "slo", "valid": True, "counts": {}, "examples": []}


def test_a_result_with_an_error_and_details_keeps_them_through_a_round_trip() -> None:
    r = CheckResult("replay", UNKNOWN, {"n": 1}, [{"k": 1}], error="truncated", details={"why": "x"})
    d = r.to_dict()
    assert (d["error"], d["details"]) == ("truncated", {"why": "x"})
    assert CheckResult.from_dict(d) == r


def test_from_dict_fills_missing_parts_and_rejects_a_validity_that_is_not_one() -> None:
    assert CheckResult.from_dict({"name": "x", "valid": False}) == CheckResult("x", False)
    with pytest.raises(ValueError, match="not a validity"):
        CheckResult.from_dict({"name": "x", "valid": "maybe"})


def test_merge_rejects_a_value_that_is_not_a_validity_and_ranks_false_over_unknown_over_true() -> None:
    with pytest.raises(ValueError, match="not a validity"):
        merge_validity([True, "maybe"])  # type: ignore[list-item]
    assert merge_validity([UNKNOWN, False, True]) is False
    assert merge_validity([True, UNKNOWN]) == UNKNOWN
    assert merge_validity([True, True]) is True
    assert merge_validity([]) == UNKNOWN


def test_the_example_collector_counts_every_anomaly_and_keeps_exactly_the_cap() -> None:
    c = ExampleCollector(cap=2)
    assert (c.total, c.examples) == (0, [])
    for i in range(3):
        c.add({"i": i})
    assert (c.total, c.examples) == (3, [{"i": 0}, {"i": 1}])


def test_interleave_stops_at_the_cap_inside_a_round() -> None:
    assert interleave([[1, 2], [3, 4]], 1) == [1]
    assert interleave([[1, 2], [3, 4]], 3) == [1, 3, 2]


def test_interleave_takes_only_what_it_keeps_so_endless_groups_are_fine() -> None:
    assert interleave([itertools.count(), itertools.count(100)], 3) == [0, 100, 1]


def test_a_verdict_over_a_generator_of_results_keeps_every_result() -> None:
    v = verdict(r for r in [CheckResult("a", True), CheckResult("b", True)])
    assert (v.passed, [r.name for r in v.results]) == (True, ["a", "b"])


# --- the integrity findings' bookkeeping --------------------------------------------------------------


def test_a_kind_finding_adds_counts_and_keeps_examples_up_to_the_cap_across_calls() -> None:
    f = KindFinding()
    f.add(2, [{"a": 1}, {"a": 2}, {"a": 3}], cap=2)
    f.add(1, [{"a": 4}], cap=2)
    assert (f.count, f.examples) == (3, [{"a": 1}, {"a": 2}])


def test_a_kind_once_checked_is_no_longer_not_checked_and_a_skip_does_not_undo_it() -> None:
    f = IntegrityFindings()
    f.skip("lost", "no orders table")
    f.skip("lost", "a later reason")
    assert f.not_checked == {"lost": "no orders table"}
    k = f.kind("lost")
    assert k is f.kind("lost") and f.not_checked == {}
    f.skip("lost", "too late")
    assert f.not_checked == {} and "lost" in f.kinds


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        IntegrityFindings().kind("lots")


def test_findings_from_a_dict_without_examples_have_none() -> None:
    f = IntegrityFindings.from_dict({"kinds": {"lost": {"count": 2}}})
    assert (f.kinds["lost"].count, f.kinds["lost"].examples) == (2, [])


def test_only_numeric_stats_become_counts_and_never_hide_a_kind() -> None:
    f = IntegrityFindings(
        kinds={"lost": KindFinding(0)},
        stats={"ledger_submits": 3, "work_schema": "s1", "flag": True, "lost": 99, "timings": {"a": 1}},
    )
    assert check(f).counts == {"lost": 0, "ledger_submits": 3}


def test_a_prohibited_kind_is_a_violation_and_an_allowed_one_is_reported_only_when_found() -> None:
    th = IntegrityThresholds(prohibited=frozenset({"lost"}))
    none = check(IntegrityFindings(kinds={"lost": KindFinding(0), "recovered": KindFinding(0)}), th)
    assert (none.valid, none.details["violations"], none.details["reported"], none.error) == (
        True,
        [],
        [],
        None,
    )
    some = check(IntegrityFindings(kinds={"lost": KindFinding(1), "recovered": KindFinding(1)}), th)
    assert (some.details["violations"], some.details["reported"]) == (["lost"], ["recovered"])
    assert some.valid is False and some.error is None


def test_an_incomplete_source_with_a_violation_is_false_without_an_error() -> None:
    f = IntegrityFindings(kinds={"lost": KindFinding(1)}, incomplete=["topic t was truncated"])
    r = check(f)
    assert (r.valid, r.error) == (False, None)
    assert r.details["incomplete"] == ["topic t was truncated"]
