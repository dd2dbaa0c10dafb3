"""The seeded bugs that break a trading invariant fail the gate on the integrity kind that names them.

`make test` proves all six in ONE short gate run (the short config, its four faults plus a reset of the
clients' connections and a Kafka broker down for 5 s, the six bugs on together): each bug needs only the
fault that reaches its component, so they do not mask one another. ``gateway_sheds_after_write`` needs
the outbox to fall behind (the broker down); ``projector_skips_backlog`` a projector restart under load.
``gateway_retry_stale_copy`` needs retries: a killed replica cuts only the one or two requests in flight
on it (one retry in a whole run was measured), so its fault is a reset of every client connection with new
ones refused for 2 s, after which every user retries.
The matrix, one targeted run per bug (one fault each), runs behind ``RESGATE_MATRIX=1`` (``make matrix``).
The good build passing the same checks is tests/e2e/test_local_gate.py's good-build run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import SHORT_CONFIG, processes_with_marker, run_gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# bug -> (the check that must fail, its counter that must be > 0, the one fault that reaches the bug)
TRADING_MATRIX = {
    "matcher_restore_rounds_price": ("integrity", "price_outside_limit", "kill-matcher"),
    "matcher_snapshot_keeps_cancelled": ("integrity", "fill_after_cancel", "kill-matcher"),
    "gateway_retry_stale_copy": ("integrity", "order_mismatch", "reset-clients"),
    "positions_double_count": ("integrity", "position_mismatch", "redeliver-events"),
    "gateway_sheds_after_write": ("integrity", "aborted_read", "kafka-down"),
    "projector_skips_backlog": ("integrity", "offset_skip", "kill-projector"),
}

matrix = pytest.mark.skipif(
    os.environ.get("RESGATE_MATRIX") != "1", reason="one gate run per bug: set RESGATE_MATRIX=1 (make matrix)"
)


def _assert_failed_on(r: Any, check: str, counter: str) -> None:
    assert r.exit_code == 1, r.output[-4000:]
    assert r.verdict is not None and r.verdict["result"] == "FAIL"
    assert check in r.verdict["failed_checks"], (r.verdict, r.checks.get(check))
    assert r.checks[check]["valid"] is False
    assert r.checks[check]["counts"].get(counter, 0) > 0, (counter, r.checks[check])
    assert counter in r.checks[check]["details"]["violations"]


RESET_CLIENTS = {
    "name": "reset-clients",
    "kind": "connection_reset",
    "between": ["gateway", "clients"],
    "duration_s": 2,
    "at_s": 10,
}


# gateway_sheds_after_write needs the outbox to fall behind: a broker down holds its partitions' events
KAFKA_DOWN = {"name": "kafka-down", "kind": "kafka_broker_down", "broker": 1, "duration_s": 5, "at_s": 5}


def _config_with_reset(tmp_path: Path) -> dict[str, Any]:
    cfg = yaml.safe_load(SHORT_CONFIG.read_text())
    cfg["faults"] = sorted([*cfg["faults"], RESET_CLIENTS, KAFKA_DOWN], key=lambda f: f["at_s"])
    return cfg


def test_the_trading_bugs_together_fail_the_gate_on_each_of_their_kinds(tmp_path: Path) -> None:
    config = tmp_path / "gate_trading.yaml"
    config.write_text(yaml.safe_dump(_config_with_reset(tmp_path), sort_keys=False))
    r = run_gate(config, tmp_path / "ev", env={"PAPERBROKER_BUGS": ",".join(sorted(TRADING_MATRIX))})
    for check, counter, _fault in TRADING_MATRIX.values():
        _assert_failed_on(r, check, counter)
    assert not processes_with_marker(r.marker)


def _targeted_config(tmp_path: Path, fault: str) -> Path:
    """The short config with only ``fault``, fired 8 s into a 20 s load."""
    cfg = _config_with_reset(tmp_path)
    cfg["faults"] = [dict(f, at_s=8) for f in cfg["faults"] if f["name"] == fault]
    assert len(cfg["faults"]) == 1, fault
    cfg["load"]["duration_s"] = 20
    out = tmp_path / f"gate_{fault}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


@matrix
@pytest.mark.slow
@pytest.mark.parametrize("bug", sorted(TRADING_MATRIX))
def test_each_trading_bug_alone_fails_a_gate_with_its_one_fault(bug: str, tmp_path: Path) -> None:
    check, counter, fault = TRADING_MATRIX[bug]
    r = run_gate(_targeted_config(tmp_path, fault), tmp_path / "ev", env={"PAPERBROKER_BUGS": bug})
    _assert_failed_on(r, check, counter)
    assert not processes_with_marker(r.marker)
