"""A leader loss under load: the matcher's leader paused past its lease (tests/e2e/gate_leader_short.yaml),
or cut off from its lease store by a partition on its own path to Postgres (gate_leader_partition.yaml).

`make test` runs the seeded bug ``unfenced_leader`` once: the resumed leader matches beside its successor
and the gate fails on recovery, naming the split brain, and on integrity, naming the trades emitted twice
with different contents. The good build's run of the same gate (it passes: the standby takes over within
the pause, one leader at a time) and the partition gate's pair run behind ``RESGATE_MATRIX=1`` (``make
matrix``); the good build's pause also in the resilience suite's ``leader-loss`` scenario. Both handovers
on real processes are also proven in tests/integration/test_matcher_lease.py.

With two symbol groups (gate_leader_groups.yaml: ``PB_SYMBOL_GROUPS=2``, two matcher replicas each leading
one group, quiesce waiting for both groups' consumer groups), `make test` runs the good build: the leader
of one group is paused, the other replica takes that group, recovery is judged for that group alone and
integrity is clean (30–50 s here by load). The same gate with ``unfenced_leader`` runs behind
``RESGATE_MATRIX=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import GateRunResult, processes_with_marker, run_gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

LEADER_CONFIG = Path(__file__).with_name("gate_leader_short.yaml")
PARTITION_CONFIG = Path(__file__).with_name("gate_leader_partition.yaml")
GROUPS_CONFIG = Path(__file__).with_name("gate_leader_groups.yaml")
SYMBOL_GROUPS = ("symbols-0-of-2", "symbols-1-of-2")

matrix = pytest.mark.skipif(
    os.environ.get("RESGATE_MATRIX") != "1", reason="a second gate run: set RESGATE_MATRIX=1 (make matrix)"
)


def _split_brain_caught(r: GateRunResult) -> None:
    """The gate failed on recovery (two leaders seen on /health) and on integrity (trades the two leaders
    emitted under one id with different contents, or one symbol's seq twice)."""
    assert r.exit_code == 1, r.output[-4000:]
    assert r.verdict is not None and {"recovery", "integrity"} <= set(r.verdict["failed_checks"]), r.verdict
    rec = r.checks["recovery"]
    assert rec["valid"] is False and rec["counts"]["split_brain"] > 0, rec["counts"]
    assert "split_brain" in {e["kind"] for e in rec["examples"]}, rec["examples"]
    counts = r.checks["integrity"]["counts"]
    assert counts.get("duplicate_trade", 0) + counts.get("seq_duplicate", 0) > 0, counts
    assert not processes_with_marker(r.marker)


def test_an_unfenced_leader_fails_the_leader_gate_on_recovery_and_integrity(tmp_path: Path) -> None:
    r = run_gate(LEADER_CONFIG, tmp_path / "ev", env={"PAPERBROKER_BUGS": "unfenced_leader"})
    _split_brain_caught(r)
    assert "stale_leader" in {e["kind"] for e in r.checks["recovery"]["examples"]}


@matrix
def test_the_good_build_hands_the_lease_over_and_passes_the_leader_gate(tmp_path: Path) -> None:
    r = run_gate(LEADER_CONFIG, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    rec = r.checks["recovery"]
    leader = rec["details"]["faults"][0]["leader"]
    assert leader["leader_flip"] and leader["readiness_flip"], leader
    assert leader["new_leader"] != leader["deposed"] and leader["time_to_leader_s"] < 6, leader
    assert rec["counts"]["split_brain"] == 0


@matrix
def test_a_leader_partitioned_from_its_lease_store_hands_over_and_passes_the_partition_gate(
    tmp_path: Path,
) -> None:
    r = run_gate(PARTITION_CONFIG, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    rec = r.checks["recovery"]
    leader = rec["details"]["faults"][0]["leader"]
    assert leader["leader_flip"] and leader["readiness_flip"], leader
    assert leader["new_leader"] != leader["deposed"] and leader["time_to_leader_s"] < 6, leader
    assert leader["time_to_pause_s"] <= leader["time_to_leader_s"], leader
    assert rec["counts"]["split_brain"] == 0


@matrix
def test_an_unfenced_leader_partitioned_from_its_lease_store_fails_on_recovery_and_integrity(
    tmp_path: Path,
) -> None:
    _split_brain_caught(
        run_gate(PARTITION_CONFIG, tmp_path / "ev", env={"PAPERBROKER_BUGS": "unfenced_leader"})
    )


def test_two_symbol_groups_hand_one_groups_lease_over_and_pass_the_leader_gate(tmp_path: Path) -> None:
    r = run_gate(GROUPS_CONFIG, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    assert "quiesce    settled=True" in r.output, r.output[-4000:]  # both groups' lag drained
    rec = r.checks["recovery"]
    leader = rec["details"]["faults"][0]["leader"]
    assert leader["group"] in SYMBOL_GROUPS, leader  # judged for the lost leader's group
    assert leader["leader_flip"] and leader["readiness_flip"], leader
    assert leader["new_leader"] != leader["deposed"] and leader["new_token"] > leader["deposed_token"], leader
    assert leader["time_to_pause_s"] <= leader["time_to_leader_s"] < 8, leader  # within the 8 s pause
    assert rec["counts"]["split_brain"] == 0
    integrity = r.checks["integrity"]
    assert integrity["valid"] is True, integrity["counts"]
    assert not processes_with_marker(r.marker)


@matrix
def test_an_unfenced_leader_of_one_symbol_group_fails_the_groups_gate_on_recovery_and_integrity(
    tmp_path: Path,
) -> None:
    r = run_gate(GROUPS_CONFIG, tmp_path / "ev", env={"PAPERBROKER_BUGS": "unfenced_leader"})
    _split_brain_caught(r)
    assert r.checks["recovery"]["details"]["faults"][0]["leader"]["group"] in SYMBOL_GROUPS
