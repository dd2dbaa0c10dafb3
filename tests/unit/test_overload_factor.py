"""The ``overload`` fault's ``factor`` form: the config (exactly one of ``rps`` and ``factor``, the users
budget at its edge, per profile), the shape's steps and user counts at their window's edges, the load's
environment, the fault runner following the shape's rows (and aborting it), and the backpressure check
judging a burst window that came from the shape."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from resgate.checks import backpressure as bp
from resgate.checks.ledger import LedgerRecord
from resgate.config.faults import OVERLOAD_END_MARGIN_S, shape_steps
from resgate.config.model import MAX_LOAD_USERS
from resgate.config.schema import load_config_text
from resgate.contract.env import ENV_LOAD_SHAPE
from resgate.contract.errors import ConfigError, ConfigErrors
from resgate.contract.shape import (
    ABORT_FILE,
    ShapeStep,
    decode_steps,
    encode_steps,
    samples,
    surge_users,
    timeline_rows,
    users_at,
)
from resgate.runner.faults import FaultRunner
from resgate.runner.load import load_env

_BASE = """
gate: {name: surge}
target:
  local:
    services:
      - {name: gateway, command: [python3], expose: true}
load: {users: %d, duration_s: 30, baseline_s: 5}
faults:
  - %s
%s
"""


def _cfg(fault: str, users: int = 20, extra: str = "") -> Any:
    return load_config_text(_BASE % (users, fault, extra), "gate.yaml")


def _error(fault: str, users: int = 20, extra: str = "") -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        _cfg(fault, users, extra)
    return str(e.value)


# ------------------------------------------------------------------------------------------------ config
def test_an_overload_by_factor_parses_with_its_users_and_targets_the_exposed_service() -> None:
    f = _cfg("{name: surge, kind: overload, factor: 4, duration_s: 6, at_s: 8}").faults[0]
    assert f.kind == "overload" and f.target == "gateway"
    assert f.params == {"duration_s": 6.0, "factor": 4.0, "users": 80}
    g = _cfg("{kind: overload, factor: 2.5, duration_s: 6, at_s: 8, spawn_rate: 50}", users=3).faults[0]
    assert g.params == {"duration_s": 6.0, "factor": 2.5, "users": 8, "spawn_rate": 50.0}


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ("{kind: overload, duration_s: 4, at_s: 6}", "faults[0].rps"),
        ("{kind: overload, rps: 100, factor: 3, duration_s: 4, at_s: 6}", "faults[0].factor"),
        ("{kind: overload, factor: 1, duration_s: 4, at_s: 6}", "faults[0].factor"),
        ("{kind: overload, factor: 101, duration_s: 4, at_s: 6}", "faults[0].factor"),
        ("{kind: overload, factor: 3, duration_s: 0.4, at_s: 6}", "faults[0].duration_s"),
        ("{kind: overload, factor: 3, duration_s: 4, at_s: 6, spawn_rate: 0}", "faults[0].spawn_rate"),
        ("{kind: overload, factor: 3, duration_s: 4, at_s: 6, timeout_s: 2}", "timeout_s"),
        ("{kind: overload, rps: 100, duration_s: 4, at_s: 6, spawn_rate: 9}", "spawn_rate"),
    ],
)
def test_a_bad_overload_by_factor_is_a_config_error_naming_the_field(fault: str, field: str) -> None:
    assert field in _error(fault)


def test_neither_form_names_both_in_its_message() -> None:
    msg = _error("{kind: overload, duration_s: 4, at_s: 6}")
    assert "rps" in msg and "factor" in msg


def test_users_times_factor_may_reach_the_users_budget_but_not_exceed_it() -> None:
    at_budget = MAX_LOAD_USERS // 100
    assert _cfg("{kind: overload, factor: 100, duration_s: 4, at_s: 6}", users=at_budget).faults[0].params[
        "users"
    ] == (MAX_LOAD_USERS)
    msg = _error("{kind: overload, factor: 100, duration_s: 4, at_s: 6}", users=at_budget + 1)
    assert "faults[0].factor" in msg and f"({MAX_LOAD_USERS})" in msg and "10100" in msg


def test_a_profile_whose_users_would_exceed_the_budget_under_the_factor_is_named() -> None:
    profile = "profiles:\n  big: {load: {users: 2001}}\n  small: {load: {users: 2000}}\n"
    fault = "{name: surge, kind: overload, factor: 5, duration_s: 4, at_s: 6}"
    msg = _error(fault, users=20, extra=profile)
    assert "profiles.big" in msg and "factor" in msg and "profiles.small" not in msg


def test_the_surge_must_end_a_margin_before_the_load_ends() -> None:
    duration = 30 - 6 - OVERLOAD_END_MARGIN_S
    assert _cfg(f"{{kind: overload, factor: 3, duration_s: {duration}, at_s: 6}}").faults[0]
    msg = _error(f"{{kind: overload, factor: 3, duration_s: {duration + 0.5}, at_s: 6}}")
    assert "faults[0].duration_s" in msg and "load.duration_s" in msg


def test_the_load_gets_the_shape_only_for_overloads_by_factor() -> None:
    cfg = _cfg("{name: surge, kind: overload, factor: 4, duration_s: 6, at_s: 8}")
    steps = decode_steps(load_env(cfg)[ENV_LOAD_SHAPE])
    assert steps == (ShapeStep(name="surge", at_s=8.0, duration_s=6.0, factor=4.0, target="gateway"),)
    assert steps == tuple(shape_steps(cfg.faults))
    burst = _cfg("{kind: overload, rps: 100, duration_s: 4, at_s: 6}")
    assert ENV_LOAD_SHAPE not in load_env(burst) and shape_steps(burst.faults) == []


# ------------------------------------------------------------------------------------------------- shape
STEP = ShapeStep(name="surge", at_s=10.0, duration_s=5.0, factor=3.0)


@pytest.mark.parametrize(("t", "users"), [(0.0, 4), (9.999, 4), (10.0, 12), (14.999, 12), (15.0, 4)])
def test_the_shape_asks_for_factor_times_the_users_exactly_inside_its_window(t: float, users: int) -> None:
    assert users_at(t, 4, [STEP]) == users


def test_overlapping_steps_ask_for_the_larger_count_and_a_fraction_of_a_user_is_a_user() -> None:
    small = ShapeStep(name="small", at_s=12.0, duration_s=10.0, factor=1.5)
    assert users_at(13.0, 4, [STEP, small]) == 12
    assert users_at(16.0, 3, [STEP, small]) == 5 == surge_users(3, 1.5)
    assert surge_users(10, 1.1) == 11


def test_steps_survive_the_environment_and_a_bad_one_is_named() -> None:
    steps = (STEP, ShapeStep(name="b", at_s=1, duration_s=2, factor=2, target="gw", spawn_rate=5.0))
    assert decode_steps(encode_steps(steps)) == steps
    assert encode_steps(()) == "" and decode_steps("") == ()
    bad = json.dumps({"steps": [{"name": "x", "at_s": 1, "duration_s": 2, "factor": 0.5}]})
    with pytest.raises(ConfigError) as e:
        decode_steps(bad)
    assert e.value.where == f"{ENV_LOAD_SHAPE}.steps[0].factor"
    with pytest.raises(ConfigError) as e:
        decode_steps("{not json")
    assert e.value.where == ENV_LOAD_SHAPE


def _row(ts: float, event: str, detail: Any = None, fault_id: str = "surge") -> dict[str, Any]:
    return {
        "ts": ts,
        "fault_id": fault_id,
        "kind": "overload",
        "target": "gateway",
        "event": event,
        "detail": detail or {},
    }


def test_the_timeline_takes_the_shapes_fault_rows_and_leaves_its_samples() -> None:
    lines = [
        {"ts": 5.0, "t_s": 0.5, "users": 4, "target_users": 4},
        _row(11.0, "injecting", {"duration_s": 5}),
        {"ts": 11.0, "t_s": 10.0, "users": 4, "target_users": 12},
        _row(10.5, "effect", {"observed": True, "evidence": "x"}),
        {**_row(12.0, "injected"), "kind": "stop_task"},
    ]
    assert [r["event"] for r in timeline_rows(lines)] == ["effect", "injecting"]
    assert [s["users"] for s in samples(lines)] == [4, 4]


# -------------------------------------------------------------------------------------------- the runner
def _surge_fault() -> Any:
    return _cfg("{name: surge, kind: overload, factor: 4, duration_s: 6, at_s: 8}").faults[0]


def _write(folder: Path, rows: list[dict[str, Any]]) -> None:
    with open(folder / "shape-123.jsonl", "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_the_fault_runner_records_the_shapes_rows_with_the_shapes_times(tmp_path: Path) -> None:
    fault = _surge_fault()
    seen: list[dict[str, Any]] = []  # what the progress printer gets: every detail an object
    runner = FaultRunner(
        SimpleNamespace(supervisor=None), [fault], ledger_dir=tmp_path, on_event=lambda ev: seen.append(ev)
    )
    _write(
        tmp_path, [_row(100.0, "injecting", {"duration_s": 6}), _row(101.0, "injected", {"duration_s": 6})]
    )
    _write(tmp_path, [_row(100.5, "injecting", fault_id="other")])
    runner._inject(fault)
    _write(tmp_path, [_row(106.0, "lifting"), _row(107.0, "ended", {"users": 20})])
    runner.join(1)
    got = [(e["ts"], e["event"], e["kind"], e["fault_id"]) for e in runner.timeline()]
    assert got == [
        (100.0, "injecting", "overload", "surge"),
        (101.0, "injected", "overload", "surge"),
        (106.0, "lifting", "overload", "surge"),
        (107.0, "ended", "overload", "surge"),
    ]
    assert [dict(e["detail"].items()) for e in seen][-1] == {"users": 20}
    assert not (tmp_path / ABORT_FILE).exists()


def test_an_abort_asks_the_shape_to_stop_holding(tmp_path: Path) -> None:
    runner = FaultRunner(SimpleNamespace(supervisor=None), [_surge_fault()], ledger_dir=tmp_path)
    runner.abort("guardrail: p95 over 2000 ms")
    assert json.loads((tmp_path / ABORT_FILE).read_text()) == {"reason": "guardrail: p95 over 2000 ms"}


# ------------------------------------------------------------------------------------ the check judges it
def _rec(ts: float, status: int | str = 201, latency_ms: float = 10.0, **extra: Any) -> LedgerRecord:
    ok = isinstance(status, int) and 200 <= status < 300
    return LedgerRecord(
        ts=ts,
        op="submit_order",
        client_id="c1",
        idempotency_key=f"k{ts}",
        status=status,
        outcome="ok" if ok else "fail" if status == 503 else "info",
        latency_ms=latency_ms,
        **extra,
    )


def _shape_run(rejection: dict[str, Any]) -> Any:
    """A baseline (10 s), a surge window from the shape's rows ([10, 16): injecting to ended, the users
    lowered at 15) with 100 accepted and 100 rejections like ``rejection``, then 20 s back at baseline."""
    rows = timeline_rows(
        [
            _row(10.0, "injecting", {"factor": 4.0, "base_users": 20, "users": 80, "duration_s": 5.0}),
            _row(11.0, "injected", {"users": 80, "duration_s": 5.0}),
            _row(11.0, "effect", {"observed": True, "evidence": "Locust ran 80 users (20 base)"}),
            _row(15.0, "lifting", {"users": 80}),
            _row(16.0, "ended", {"users": 20}),
        ]
    )
    steady = [_rec(t / 10) for t in range(0, 100)] + [_rec(16 + t / 10) for t in range(0, 200)]
    surge = [_rec(10.02 + i * 0.05, latency_ms=30) for i in range(100)]
    surge += [_rec(10.03 + i * 0.05, **rejection) for i in range(100)]
    ev = bp.evidence_from_run(rows, [*steady, *surge])
    assert [(b.start, b.lift) for b in ev.bursts] == [(10.0, 16.0)]
    return bp.check(ev, bp.BackpressureThresholds())


def test_the_backpressure_check_judges_a_surge_window_that_came_from_the_shape() -> None:
    shed = _shape_run({"status": 503, "retry_after": 1.0, "latency_ms": 2})
    assert shed.valid is True and shed.counts["shed"] == 100
    timeouts = _shape_run({"status": "timeout", "latency_ms": 3000})
    assert timeouts.valid is False and "unclear_rejections" in {e["kind"] for e in timeouts.examples}


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ('{"steps": []}', ENV_LOAD_SHAPE),
        ('{"stairs": [{"name": "x"}]}', ENV_LOAD_SHAPE),
        ('{"steps": ["x"]}', f"{ENV_LOAD_SHAPE}.steps[0]"),
        ('{"steps": [{"at_s": 1, "duration_s": 2, "factor": 2}]}', f"{ENV_LOAD_SHAPE}.steps[0].name"),
        (
            '{"steps": [{"name": "", "at_s": 1, "duration_s": 2, "factor": 2}]}',
            f"{ENV_LOAD_SHAPE}.steps[0].name",
        ),
        (
            '{"steps": [{"name": "x", "at_s": -0.5, "duration_s": 2, "factor": 2}]}',
            f"{ENV_LOAD_SHAPE}.steps[0].at_s",
        ),
        (
            '{"steps": [{"name": "x", "at_s": 0, "duration_s": 2, "factor": 100.5}]}',
            f"{ENV_LOAD_SHAPE}.steps[0].factor",
        ),
    ],
)
def test_a_shape_the_conductor_did_not_write_is_named_where_it_is_wrong(raw: str, where: str) -> None:
    with pytest.raises(ConfigError) as e:
        decode_steps(raw)
    assert e.value.where == where


def test_the_shapes_bounds_are_inclusive_and_blank_means_no_shape() -> None:
    edge = json.dumps(
        {
            "steps": [
                {"name": "x", "at_s": 0, "duration_s": 0.5, "factor": 100},
                {"name": "y", "at_s": 1, "duration_s": 2, "factor": 1},
            ]
        }
    )
    assert [(s.at_s, s.duration_s, s.factor) for s in decode_steps(edge)] == [
        (0.0, 0.5, 100.0),
        (1.0, 2.0, 1.0),
    ]
    assert decode_steps("   ") == () and decode_steps(None) == ()
    # the same steps always give the same text (keys sorted), whatever order they were written in
    assert encode_steps([STEP]).startswith(
        '{"steps":[{"at_s":10.0,"duration_s":5.0,"factor":3.0,"name":"surge"'
    )
    assert samples([{"ts": 1.0}]) == []  # neither a sample nor a fault row
