"""The replay judge on hand-made findings, and the retention rule at offset 1.

A read model matches only when rows, checksum and columns all agree (one differing field is a mismatch);
a model that could not be compared is unknown; false outranks unknown; no model at all proves nothing.
A partition whose earliest offset is above 0 (1 included) was truncated by retention.
"""

from __future__ import annotations

import json
from typing import Any

from resgate.checks.replay import ReplayFindings, check
from resgate.checks.replay.check import ModelFindings
from resgate.checks.replay.config import ReplayConfig, ReplayThresholds
from resgate.checks.result import UNKNOWN
from resgate.checks.topics import truncated_partitions
from resgate.contract.layout import RunKey
from resgate.evidence.sources import Sources, run_check
from resgate.evidence.store import FolderStore


def _model(name: str = "balances", **kw: Any) -> ModelFindings:
    base: dict[str, Any] = {
        "name": name,
        "table": f"public.{name}",
        "live_rows": 3,
        "rebuilt_rows": 3,
        "live_checksum": "12345",
        "rebuilt_checksum": "12345",
    }
    base.update(kw)
    return ModelFindings(**base)


def _mismatch(name: str, n: int = 1) -> ModelFindings:
    examples = [
        {"key": {"account": f"a{i}"}, "kind": "different", "live": {}, "rebuilt": {}} for i in range(n)
    ]
    return _model(
        name, rebuilt_checksum="999", diff_counts={"different": n}, examples=examples, differing_buckets=1
    )


def test_equal_rows_and_checksums_match() -> None:
    result = check(ReplayFindings([_model()]))
    assert result.valid is True
    assert result.counts == {
        "read_models": 1,
        "matching": 1,
        "mismatching": 0,
        "unknown": 0,
        "differing_rows": 0,
    }
    assert result.details["balances"]["status"] == "match" and result.error is None


def test_one_row_more_or_a_different_checksum_or_a_missing_column_is_a_mismatch() -> None:
    for m in (
        _model(rebuilt_rows=4),
        _model(rebuilt_checksum="12346"),
        _model(missing_columns=["last_event"]),
    ):
        result = check(ReplayFindings([m]))
        assert result.valid is False, m
        assert result.details["balances"]["status"] == "mismatch"


def test_an_unavailable_model_is_unknown_with_its_reason_even_if_its_figures_agree() -> None:
    result = check(ReplayFindings([_model(unavailable="retention truncated the log")]))
    assert result.valid == UNKNOWN
    assert result.error == "balances: retention truncated the log"
    assert result.counts["unknown"] == 1 and result.counts["matching"] == 0


def test_a_mismatch_outranks_an_unknown_model_and_the_error_is_left_out() -> None:
    result = check(ReplayFindings([_model("a", unavailable="rebuild failed"), _mismatch("b", 2)]))
    assert result.valid is False
    assert result.error is None
    assert result.counts == {
        "read_models": 2,
        "matching": 0,
        "mismatching": 1,
        "unknown": 1,
        "differing_rows": 2,
    }


def test_no_read_model_at_all_is_unknown() -> None:
    result = check(ReplayFindings([]))
    assert result.valid == UNKNOWN and result.error == "no read model was replayed"


def test_examples_are_shared_round_robin_between_models_up_to_the_cap() -> None:
    result = check(ReplayFindings([_mismatch("a", 3), _mismatch("b", 3)]), ReplayThresholds(examples_cap=3))
    assert [(e["read_model"], e["key"]["account"]) for e in result.examples] == [
        ("a", "a0"),
        ("b", "a0"),
        ("a", "a1"),
    ]
    assert result.counts["differing_rows"] == 6


def test_findings_survive_a_round_trip_through_json_shapes() -> None:
    m = _model(truncated=[("t", 1, 1)], end_offsets={"t": {0: 10, 1: 12}})
    back = ReplayFindings.from_dict(ReplayFindings([m]).to_dict())
    assert back.models[0].truncated == [("t", 1, 1)]
    assert back.models[0].end_offsets == {"t": {0: 10, 1: 12}}
    assert check(back).details["balances"]["end_offsets"] == {"t": {"0": 10, "1": 12}}


def test_a_partition_whose_earliest_offset_is_1_was_truncated_and_0_was_not() -> None:
    bounds = {"t": {0: (0, 5), 1: (1, 5), 2: (0, 0)}, "u": {0: (0, 3)}}
    assert truncated_partitions(bounds) == [("t", 1, 1)]
    assert truncated_partitions({"t": {0: (0, 5)}}) == []


def test_the_details_name_an_unknown_models_reason_and_a_mismatchs_diff_counts() -> None:
    result = check(ReplayFindings([_model("a", unavailable="rebuild failed"), _mismatch("b", 2)]))
    assert result.details["a"]["reason"] == "rebuild failed"
    assert result.details["b"]["diff_counts"] == {"different": 2}
    assert result.details["b"]["differing_buckets"] == 1


def test_run_check_judges_replay_with_its_configs_thresholds_and_their_example_cap(tmp_path) -> None:
    config = ReplayConfig.from_dict(
        {
            "read_models": [{"table": "public.balances", "key_columns": ["account"]}],
            "topics": ["t"],
            "rebuild": {"command": ["true"]},
            "thresholds": {"examples_cap": 1},
        }
    )
    key = RunKey.new("pb")
    findings = ReplayFindings([_mismatch("b", 3)])
    result = run_check(
        "replay", FolderStore(tmp_path, key), config, Sources(key.run_id), gather=lambda: findings
    )
    assert result.valid is False and len(result.examples) == 1


def test_findings_survive_a_json_round_trip_with_integer_partitions() -> None:
    m = _model(truncated=[("t", 1, 1)], end_offsets={"t": {0: 10, 1: 12}})
    d = ReplayFindings([m]).to_dict()
    assert d["models"][0]["truncated"] == [["t", 1, 1]]
    back = ReplayFindings.from_dict(json.loads(json.dumps(d)))
    assert back.models[0].end_offsets == {"t": {0: 10, 1: 12}}
    assert back.models[0].truncated == [("t", 1, 1)]
