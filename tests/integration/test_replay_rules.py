"""The replay rules at their exact boundaries, each with the anomaly present and absent.

A topic whose earliest offset is 1 (not 0) was truncated; a truncated topic stops every read model that
shares its rebuild, and a rebuild that did not create one of its tables leaves only that model unknown;
the checksum covers every compared column, the last one included, and tells NULL from ''. The topics'
bounds are faked (``_replay_rows.fake_bounds``) and the rebuild writes rows the test chose
(``_replay_rows.rebuild_rows``): the real gather, shadow schema, fingerprints and localisation run on
the embedded Postgres, without Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql

import resgate.checks.topics
from resgate.checks.replay import ReplayConfig, ReplayFindings, check, gather
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError
from tests.integration import _replay_rows as rr

pytestmark = pytest.mark.integration

COLUMNS = [("account", "text"), ("currency", "text"), ("balance", "bigint"), ("last_event", "text")]
ROWS = [("a1", "EUR", 100, "e1"), ("a2", "USD", 7, "e2"), ("a3", "USD", 0, None)]


@pytest.fixture
def live(pg_dsn: str) -> Iterator[str]:
    """``public.balances`` and ``public.positions`` (live), the rebuild plan reset around the test."""
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for t in ("balances", "positions"):
            rr.create_table(c, sql.Identifier("public", t), COLUMNS, ROWS)
    rr.ROWS.clear()
    rr.CALLS.clear()
    yield pg_dsn
    rr.ROWS.clear()
    rr.CALLS.clear()


def _bounds(monkeypatch: pytest.MonkeyPatch, **earliest: int) -> None:
    """Topics ``t_<name>`` with 2 partitions; partition 1 starts at ``earliest[name]`` (default 0)."""
    bounds = {f"t_{n}": {0: (0, 10), 1: (earliest.get(n, 0), 10)} for n in ("a", "b")}
    monkeypatch.setattr(resgate.checks.topics, "topic_bounds", rr.fake_bounds(bounds))


def _config(models: Sequence[dict[str, Any]]) -> ReplayConfig:
    return ReplayConfig.from_dict(
        {"read_models": list(models), "rebuild": {"callable": rr.REBUILD}, "buckets": 4}
    )


def _model(table: str, topics: Sequence[str] = ("t_a",), **extra: Any) -> dict[str, Any]:
    return {
        "name": table,
        "table": f"public.{table}",
        "key_columns": ["account"],
        "topics": list(topics),
        **extra,
    }


def _replay(dsn: str, models: Sequence[dict[str, Any]]) -> tuple[ReplayFindings, Any]:
    config = _config(models)
    findings = gather(dsn, config, bootstrap="127.0.0.1:9")
    return findings, check(findings, config.thresholds)


def _rebuilt(table: str, rows: Sequence[Sequence[Any]] = ROWS) -> None:
    rr.ROWS[table] = (COLUMNS, rows)


# --- retention: the earliest offset ------------------------------------------------------------------


def test_a_topic_starting_at_offset_0_is_rebuilt_and_matches(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch)
    _rebuilt("balances")
    findings, result = _replay(live, [_model("balances")])
    assert result.valid is True, result.to_dict()
    assert len(rr.CALLS) == 1 and findings.models[0].truncated == []


def test_a_topic_whose_earliest_offset_is_exactly_1_was_truncated_and_is_not_rebuilt(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch, a=1)
    _rebuilt("balances")
    findings, result = _replay(live, [_model("balances")])
    assert result.valid == UNKNOWN
    assert "t_a[1] starts at offset 1" in (result.error or "")
    assert rr.CALLS == []
    assert findings.models[0].truncated == [("t_a", 1, 1)]


def test_a_truncated_topic_stops_every_read_model_sharing_its_rebuild(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch, a=1)
    _rebuilt("balances")
    _rebuilt("positions")
    findings, result = _replay(live, [_model("balances"), _model("positions")])
    assert result.counts["unknown"] == 2 and result.valid == UNKNOWN
    assert [m.unavailable is not None and "retention" in m.unavailable for m in findings.models] == [
        True,
        True,
    ]
    assert rr.CALLS == []


def test_a_truncated_topic_stops_only_the_models_rebuilt_from_it(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch, a=1)
    _rebuilt("balances")
    _rebuilt("positions")
    findings, result = _replay(live, [_model("balances", ["t_a"]), _model("positions", ["t_b"])])
    assert result.counts == {
        "read_models": 2,
        "matching": 1,
        "mismatching": 0,
        "unknown": 1,
        "differing_rows": 0,
    }
    assert findings.models[0].unavailable is not None and findings.models[1].unavailable is None
    assert len(rr.CALLS) == 1


def test_a_rebuild_missing_one_of_its_tables_leaves_only_that_model_unknown(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch)
    _rebuilt("balances")  # positions is never created
    findings, result = _replay(live, [_model("balances"), _model("positions")])
    assert result.counts["matching"] == 1 and result.counts["unknown"] == 1
    assert findings.models[1].unavailable is not None and "did not create" in findings.models[1].unavailable
    assert len(rr.CALLS) == 1  # the two models share one rebuild


def test_a_truncated_topic_and_a_missing_rebuilt_table_are_each_reported_for_their_own_model(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch, b=1)
    _rebuilt("balances")  # the model on t_a lacks its rebuilt table; the model on t_b is truncated
    findings, result = _replay(
        live, [_model("balances", ["t_a"], shadow_table="nowhere"), _model("positions", ["t_b"])]
    )
    assert result.valid == UNKNOWN and result.counts["unknown"] == 2
    reasons = [m.unavailable or "" for m in findings.models]
    assert "did not create" in reasons[0] and "retention" in reasons[1]


def test_a_missing_live_table_is_a_config_error_even_when_the_topic_is_truncated(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch, a=1)
    with pytest.raises(ConfigError) as e:
        _replay(live, [_model("balances"), _model("absent")])
    assert e.value.where == "replay.read_models[1].table"


# --- the checksum covers every compared column -------------------------------------------------------


@pytest.mark.parametrize("column", [1, 2, 3])
def test_a_difference_in_any_one_column_including_the_last_is_a_mismatch(
    live: str, monkeypatch: pytest.MonkeyPatch, column: int
) -> None:
    _bounds(monkeypatch)
    changed = list(ROWS[1])
    changed[column] = {1: "CHF", 2: 8, 3: "e2-again"}[column]
    _rebuilt("balances", [ROWS[0], tuple(changed), ROWS[2]])
    _findings, result = _replay(live, [_model("balances")])
    assert result.valid is False
    assert result.counts["differing_rows"] == 1
    (ex,) = result.examples
    assert (ex["kind"], ex["key"], ex["columns"]) == ("different", {"account": "a2"}, [COLUMNS[column][0]])


def test_a_difference_only_in_an_excluded_last_column_is_not_compared(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch)
    _rebuilt("balances", [ROWS[0], ("a2", "USD", 7, "other"), ROWS[2]])
    findings, result = _replay(live, [_model("balances", excluded_columns=["last_event"])])
    assert result.valid is True, result.to_dict()
    assert findings.models[0].compared_columns == ["account", "currency", "balance"]


def test_null_and_the_empty_string_in_the_last_column_differ(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch)
    _rebuilt("balances", [ROWS[0], ROWS[1], ("a3", "USD", 0, "")])
    _findings, result = _replay(live, [_model("balances")])
    assert result.valid is False
    assert result.examples[0]["columns"] == ["last_event"]


def test_a_rebuilt_table_without_the_last_compared_column_is_a_mismatch(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch)
    rr.ROWS["balances"] = (COLUMNS[:3], [r[:3] for r in ROWS])
    findings, result = _replay(live, [_model("balances")])
    assert result.valid is False
    assert findings.models[0].missing_columns == ["last_event"]
    assert result.details["balances"]["missing_columns"] == ["last_event"]
