"""The integrity judge on hand-made findings: prohibited kinds fail, allowed kinds are reported, a source
that could not be read fully gives "unknown" with the reason; and the config is validated up front."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resgate.checks.integrity import (
    DEFAULT_PROHIBITED,
    KINDS,
    AcceptedEvents,
    IntegrityConfig,
    IntegrityFindings,
    IntegrityThresholds,
    KindFinding,
    check,
)
from resgate.checks.result import UNKNOWN
from resgate.contract.errors import ConfigError


def _clean(**overrides: KindFinding) -> IntegrityFindings:
    """Findings where every kind was checked and found absent, except the given overrides."""
    kinds = {k: KindFinding() for k in KINDS}
    kinds.update(overrides)
    return IntegrityFindings(kinds=kinds, stats={"ledger_submits": 10, "orders_rows": 10})


EXAMPLES = {
    "lost": {"client_id": "c1", "idempotency_key": "k1", "source": "table:orders"},
    "lost_in_topic": {"client_id": "c1", "idempotency_key": "k1", "source": "topic:pb.orders"},
    "duplicated": {"client_id": "c1", "idempotency_key": "k2", "order_ids": ["a", "b"]},
    "duplicated_in_topic": {"client_id": "c1", "idempotency_key": "k2", "order_ids": ["a", "b"]},
    "phantom": {"client_id": "c9", "idempotency_key": "kx", "order_id": "z"},
    "phantom_in_topic": {"client_id": "c9", "idempotency_key": "kx", "partition": 0, "offset": 4},
    "recovered": {"client_id": "c1", "idempotency_key": "k3", "statuses": ["info:timeout"]},
    "double_fill": {"order_id": "a", "order_qty": 10, "filled_qty": 15},
    "duplicate_trade": {"trade_id": "t1", "copies": 2},
    "orphan_trade": {"trade_id": "t2", "order_id": "nope"},
    "seq_gap": {"symbol": "AAPL", "after_seq": 2, "next_seq": 4},
    "seq_duplicate": {"symbol": "AAPL", "seq": 3, "trade_ids": ["t3", "t4"]},
    "seq_reorder": {"symbol": "AAPL", "partition": 0, "offset": 7, "seq": 2, "previous_seq": 3},
    "price_outside_limit": {
        "trade_id": "t5",
        "order_id": "a",
        "side": "buy",
        "limit_price": 100,
        "trade_price": 100.01,
    },
    "order_mismatch": {"client_id": "c1", "idempotency_key": "k4", "fields": ["price"]},
    "fill_after_cancel": {"trade_id": "t6", "order_id": "b", "cancel_offset": 4, "trade_offset": 5},
    "cancel_still_open": {"client_id": "c1", "order_id": "b", "status": "open"},
    "position_not_conserved": {"symbol": "AAPL", "net_qty": 5, "clients": 3},
    "position_mismatch": {"client_id": "c1", "symbol": "AAPL", "position": 16, "fills": 6},
    "unseen_by_projector": {
        "event_id": "e7",
        "order_id": "a",
        "client_id": "c1",
        "partition": 1,
        "offset": 30,
    },
    "non_monotonic_read": {"client_id": "c1", "order_id": "a", "filled_qty": 9, "previous_max_filled": 10},
    "aborted_read": {"client_id": "c1", "idempotency_key": "k5", "partition": 0, "offset": 12},
    "offset_backwards": {"group": "g", "topic": "pb.orders", "partition": 0, "offset": 6, "after_offset": 7},
    "offset_skip": {"group": "g", "topic": "pb.orders", "partition": 1, "offset": 4, "max_consumed": 9},
}


def test_a_history_with_no_anomaly_is_valid() -> None:
    result = check(_clean())
    assert result.valid is True
    assert result.examples == []
    assert all(result.counts[k] == 0 for k in KINDS)
    assert result.counts["ledger_submits"] == 10


@pytest.mark.parametrize("kind", sorted(DEFAULT_PROHIBITED))
def test_each_prohibited_kind_present_makes_the_result_false_and_is_named(kind: str) -> None:
    result = check(_clean(**{kind: KindFinding(3, [EXAMPLES[kind]])}))
    assert result.valid is False
    assert result.counts[kind] == 3
    assert result.details["violations"] == [kind]
    assert result.examples[0]["kind"] == kind
    assert result.examples[0]["prohibited"] is True
    assert {k: v for k, v in result.examples[0].items() if k not in ("kind", "prohibited")} == EXAMPLES[kind]


@pytest.mark.parametrize("kind", sorted(DEFAULT_PROHIBITED))
def test_each_prohibited_kind_absent_leaves_the_result_true(kind: str) -> None:
    result = check(_clean(**{kind: KindFinding(0, [])}))
    assert result.valid is True
    assert result.counts[kind] == 0


def test_recovered_orders_are_reported_but_allowed_by_default() -> None:
    result = check(_clean(recovered=KindFinding(2, [EXAMPLES["recovered"]])))
    assert result.valid is True
    assert result.counts["recovered"] == 2
    assert result.details["reported"] == ["recovered"]
    assert result.examples == [{"kind": "recovered", "prohibited": False, **EXAMPLES["recovered"]}]


def test_a_kind_can_be_prohibited_or_allowed_by_thresholds() -> None:
    findings = _clean(recovered=KindFinding(1, [EXAMPLES["recovered"]]), phantom=KindFinding(1, []))
    strict = IntegrityThresholds.from_dict({"prohibited": list(KINDS)})
    assert check(findings, strict).valid is False
    lenient = IntegrityThresholds.from_dict({"allowed": ["recovered", "phantom"]})
    assert check(findings, lenient).valid is True


def test_a_truncated_source_gives_unknown_with_the_reason() -> None:
    findings = _clean()
    del findings.kinds["lost_in_topic"]
    findings.not_checked["lost_in_topic"] = "topic pb.orders was truncated by retention"
    findings.incomplete.append("topic pb.orders partition 0 starts at offset 120, not 0")
    result = check(findings)
    assert result.valid == UNKNOWN
    assert "pb.orders partition 0 starts at offset 120" in (result.error or "")
    assert result.details["not_checked"]["lost_in_topic"].startswith("topic pb.orders")


def test_a_prohibited_anomaly_outranks_an_incomplete_source() -> None:
    findings = _clean(lost=KindFinding(1, [EXAMPLES["lost"]]))
    findings.incomplete.append("topic pb.orders partition 0 starts at offset 120, not 0")
    result = check(findings)
    assert result.valid is False
    assert result.details["incomplete"]


def test_findings_where_nothing_could_be_checked_are_unknown() -> None:
    assert check(IntegrityFindings()).valid == UNKNOWN


def test_examples_are_capped_and_shared_between_kinds_prohibited_first() -> None:
    many = [{"client_id": "c", "idempotency_key": f"k{i}"} for i in range(20)]
    findings = _clean(
        lost=KindFinding(500, many),
        phantom=KindFinding(7, many[:7]),
        recovered=KindFinding(9, many[:9]),
    )
    result = check(findings, IntegrityThresholds(examples_cap=6))
    assert len(result.examples) == 6
    assert {e["kind"] for e in result.examples} == {"lost", "phantom", "recovered"}
    assert [e["kind"] for e in result.examples[:2]] == ["lost", "phantom"]
    assert result.counts["lost"] == 500


def test_findings_survive_a_round_trip_through_json_shape() -> None:
    findings = _clean(lost=KindFinding(1, [EXAMPLES["lost"]]))
    findings.not_checked["seq_reorder"] = "needs a trades topic"
    again = IntegrityFindings.from_dict(findings.to_dict())
    assert check(again).to_dict() == check(findings).to_dict()


@given(st.dictionaries(st.sampled_from(KINDS), st.integers(min_value=0, max_value=5)))
def test_the_verdict_is_false_exactly_when_a_prohibited_kind_has_a_count(counts: dict[str, int]) -> None:
    findings = _clean(**{k: KindFinding(n, [{"n": n}] if n else []) for k, n in counts.items()})
    result = check(findings)
    expected_false = any(n > 0 for k, n in counts.items() if k in DEFAULT_PROHIBITED)
    assert (result.valid is False) == expected_false
    if not expected_false:
        assert result.valid is True


def test_config_parses_the_paperbroker_example() -> None:
    cfg = IntegrityConfig.from_dict(
        {
            "orders": {"table": "public.orders", "qty": "qty"},
            "trades": {"table": "rm_trades"},
            "accepted_events": {"topic": "pb.orders", "type_value": "OrderAccepted"},
            "trade_events": {"topic": "pb.executions", "type_value": "TradeExecuted"},
            "thresholds": {"allowed": ["recovered"]},
        }
    )
    assert cfg.orders is not None and cfg.orders.table == ("public", "orders")
    assert cfg.accepted_events == AcceptedEvents(topic="pb.orders", type_value="OrderAccepted")
    assert cfg.topics == ["pb.orders", "pb.executions"]
    assert cfg.thresholds.prohibited == DEFAULT_PROHIBITED


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({}, "integrity"),
        ({"orders": {}}, "integrity.orders.table"),
        ({"orders": {"table": "a.b.c"}}, "integrity.orders.table"),
        ({"orders": {"table": "orders", "qty": ""}}, "integrity.orders.qty"),
        ({"orders": {"table": "orders", "colour": "red"}}, "integrity.orders"),
        (
            {"orders": {"table": "orders"}, "trades": {"table": "t", "order_ids": []}},
            "integrity.trades.order_ids",
        ),
        ({"accepted_events": {"type_value": "X"}}, "integrity.accepted_events.topic"),
        (
            {"orders": {"table": "orders"}, "thresholds": {"prohibited": ["nope"]}},
            "integrity.thresholds.prohibited",
        ),
        ({"orders": {"table": "orders"}, "submit_ops": "submit_order"}, "integrity.submit_ops"),
        ({"orders": {"table": "orders"}, "work_schema_prefix": "Bad-Name"}, "integrity.work_schema_prefix"),
    ],
)
def test_invalid_config_raises_one_config_error_naming_the_field(section: dict, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        IntegrityConfig.from_dict(section)
    assert err.value.where == where


def test_config_errors_name_the_section_the_config_came_from() -> None:
    with pytest.raises(ConfigError) as err:
        IntegrityConfig.from_dict(
            {"orders": {"table": "o"}, "work_schema_prefix": "X"}, where="checks.integrity"
        )
    assert err.value.where == "checks.integrity.work_schema_prefix"
    with pytest.raises(ConfigError) as err:
        IntegrityConfig.from_dict({"orders": {"table": "o", "qty": 3}}, where="checks.integrity")
    assert err.value.where == "checks.integrity.orders.qty"
