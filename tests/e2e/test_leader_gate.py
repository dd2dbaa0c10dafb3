"""A leader loss under load: the matcher's leader paused past its lease (tests/e2e/gate_leader_short.yaml).

`make test` runs the seeded bug ``unfenced_leader`` once: the resumed leader matches beside its successor
and the gate fails on recovery, naming the split brain. The good build's run of the same gate (it passes:
the standby takes over within the pause, one leader at a time) runs behind ``RESGATE_MATRIX=1`` (``make
matrix``) and in the resilience suite's ``leader-loss`` scenario; its handover on real processes is also
proven in tests/integration/test_matcher_lease.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import processes_with_marker, run_gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

LEADER_CONFIG = Path(__file__).with_name("gate_leader_short.yaml")

matrix = pytest.mark.skipif(
    os.environ.get("RESGATE_MATRIX") != "1", reason="a second gate run: set RESGATE_MATRIX=1 (make matrix)"
)


def test_an_unfenced_leader_fails_the_leader_gate_on_recovery_with_split_brain(tmp_path: Path) -> None:
    r = run_gate(LEADER_CONFIG, tmp_path / "ev", env={"PAPERBROKER_BUGS": "unfenced_leader"})
    assert r.exit_code == 1, r.output[-4000:]
    assert r.verdict is not None and "recovery" in r.verdict["failed_checks"], r.verdict
    rec = r.checks["recovery"]
    assert rec["valid"] is False and rec["counts"]["split_brain"] > 0, rec["counts"]
    kinds = {e["kind"] for e in rec["examples"]}
    assert {"split_brain", "stale_leader"} <= kinds, rec["examples"]
    assert not processes_with_marker(r.marker)


@matrix
def test_the_good_build_hands_the_lease_over_and_passes_the_leader_gate(tmp_path: Path) -> None:
    r = run_gate(LEADER_CONFIG, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    rec = r.checks["recovery"]
    leader = rec["details"]["faults"][0]["leader"]
    assert leader["leader_flip"] and leader["readiness_flip"], leader
    assert leader["new_leader"] != leader["deposed"] and leader["time_to_leader_s"] < 6, leader
    assert rec["counts"]["split_brain"] == 0
