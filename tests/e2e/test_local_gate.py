"""The local gate end to end: it passes the good paperbroker build and fails every seeded bug, for the
right reason; a bad config starts nothing; an interrupted run leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from resgate.contract.layout import file_of_run, table_glob
from tests.e2e.conftest import SHORT_CONFIG, processes_with_marker, run_gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# bug -> (check that must fail, counter in its result that must be > 0, or None)
DETECTION_MATRIX = {
    "no_idempotency": ("integrity", "duplicated"),
    "ack_before_commit": ("integrity", "lost"),
    "matcher_double_fill": ("integrity", "double_fill"),
    "projector_double_apply": ("replay", None),
    "projection_drift": ("replay", None),
    "slow_start": ("recovery", "rto_missed"),
}
# slow_start's replicas become ready this long after each start, past the RTO of its run.
SLOW_START_S, SLOW_START_RTO_S = 15, 10


def test_the_good_build_passes_with_faults_under_load(tmp_path: Path) -> None:
    r = run_gate(SHORT_CONFIG, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    assert r.verdict is not None and r.verdict["result"] == "PASS"
    assert set(r.checks) == {"slo", "recovery", "retryable", "integrity", "replay"}
    assert all(c["valid"] is True for c in r.checks.values()), r.checks
    faults = next((tmp_path / "ev").glob(table_glob("faults"))).read_text()
    assert '"kind":"stop_task"' in faults and '"event":"injected"' in faults
    assert r.checks["recovery"]["counts"]["faults"] >= 1
    # the run cut into phases by its fault timeline: every request in exactly one phase
    phases = [
        json.loads(x) for x in next((tmp_path / "ev").glob(table_glob("phases"))).read_text().splitlines()
    ]
    keys = [p["key"] for p in phases]
    assert keys[0] == "baseline" and "during:kill-gateway" in keys, keys
    assert sum(p["requests"] for p in phases) == r.checks["slo"]["counts"]["requests"]
    assert r.checks["slo"]["counts"]["golden"] == "no baseline"
    assert not processes_with_marker(r.marker)


@pytest.mark.parametrize("bug", sorted(DETECTION_MATRIX))
def test_each_seeded_bug_fails_the_gate_with_the_check_that_names_it(bug: str, tmp_path: Path) -> None:
    check, counter = DETECTION_MATRIX[bug]
    env = {"PAPERBROKER_BUGS": bug, "PB_SLOW_START_S": str(SLOW_START_S)}
    config = SHORT_CONFIG
    if bug == "slow_start":
        # Every start is slow, the first one too: a 10 s RTO and a 15 s start keep the run short.
        text = SHORT_CONFIG.read_text()
        assert "rto_s: 30" in text
        config = tmp_path / "gate_rto_10s.yaml"
        config.write_text(text.replace("rto_s: 30", f"rto_s: {SLOW_START_RTO_S}"))
    r = run_gate(config, tmp_path / "ev", env=env)
    assert r.exit_code == 1, r.output[-4000:]
    assert r.verdict is not None and r.verdict["result"] == "FAIL"
    assert check in r.verdict["failed_checks"], (r.verdict, r.checks.get(check))
    assert r.checks[check]["valid"] is False
    if counter is not None:
        assert r.checks[check]["counts"][counter] > 0, r.checks[check]
    assert not processes_with_marker(r.marker)


def test_a_bad_config_exits_2_names_the_field_and_starts_nothing(tmp_path: Path) -> None:
    text = SHORT_CONFIG.read_text().replace("kind: duplicate_delivery", "kind: duplicate_everything")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = run_gate(bad, tmp_path / "ev")
    assert r.exit_code == 2
    assert "faults[1].kind" in r.output and "bad.yaml:" in r.output
    assert "nothing was started" in r.output
    assert r.verdict is None
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("    duration_s: 30", "    duration_s: -5", "load.duration_s"),
        ("topics: [pb.orders, pb.executions]\n    fraction", "topics: []\n    fraction", "faults[1].topics"),
    ],
)
def test_other_config_errors_exit_2_with_the_field(old: str, new: str, field: str, tmp_path: Path) -> None:
    text = SHORT_CONFIG.read_text()
    assert old.strip() in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old.strip(), new.strip(), 1))
    r = run_gate(bad, tmp_path / "ev")
    assert r.exit_code == 2
    assert field in r.output


def test_sigint_during_the_fault_phase_stops_everything_and_exits_non_zero(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    env = {**os.environ, "RESGATE_TEST_MARKER": marker}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "resgate.cli",
            "run",
            str(SHORT_CONFIG),
            "--evidence-root",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "injected" in line:
            break
    assert any("injected" in s for s in seen), "".join(seen)
    assert processes_with_marker(marker), "the gate should have running children during the fault phase"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode in (1, 2), "".join(seen) + out
    assert "interrupted" in out
    gone_by = time.monotonic() + 1  # the same 1 s as before, but no longer than the children take
    while processes_with_marker(marker) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not processes_with_marker(marker)
    verdicts = list(tmp_path.glob(table_glob("verdicts")))
    assert verdicts, "partial evidence must be written on interrupt"


def test_infrastructure_faults_are_injected_reverted_and_survived(tmp_path: Path) -> None:
    """A hung gateway, a Postgres outage, a Kafka broker down and a slow broker, each for 3 s: the good
    build keeps every order (integrity, replay) and answers with retryable errors meanwhile."""
    config = Path(__file__).with_name("gate_infra_faults.yaml")
    r = run_gate(config, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    run_dir = next((tmp_path / "ev").glob("gate=*/dt=*/run_id=*"))
    events = [json.loads(line) for line in file_of_run(run_dir, "faults.jsonl").read_text().splitlines()]
    for name in ("hang-gateway", "db-blip", "broker-down", "slow-broker"):
        kinds = [e["event"] for e in events if e["fault_id"] == name]
        # a hang and a database outage are seen acting; the Kafka mock's controls record no observation
        effect = ["effect"] if name in ("hang-gateway", "db-blip") else []
        assert kinds == ["injecting", "injected", *effect, "lifting", "ended"], (name, kinds)
    assert r.checks["retryable"]["counts"]["unavailable_503_retry_after"] > 0
    assert r.checks["integrity"]["counts"]["lost"] == 0
    assert not processes_with_marker(r.marker)


def test_a_crossed_guardrail_aborts_the_remaining_faults(tmp_path: Path) -> None:
    """A p95 bound of 1 ms is crossed at the first window: no fault may be injected after that, the
    verdict records the trip, and the run still stops cleanly."""
    text = SHORT_CONFIG.read_text()
    text = text.replace("  max_p95_ms: 5000", "  max_p95_ms: 1").replace(
        "  consecutive_windows: 3", "  consecutive_windows: 1"
    )
    config = tmp_path / "guarded.yaml"
    config.write_text(text)
    r = run_gate(config, tmp_path / "ev")
    assert r.verdict is not None and r.verdict["guardrail_tripped"], r.output[-3000:]
    assert "p95" in r.verdict["guardrail_tripped"]
    run_dir = next((tmp_path / "ev").glob("gate=*/dt=*/run_id=*"))
    events = [json.loads(line) for line in file_of_run(run_dir, "faults.jsonl").read_text().splitlines()]
    assert events and all(e["event"] == "skipped" for e in events), events
    assert all("guardrail" in e["detail"]["reason"] for e in events)
    # nothing was injected, so recovery cannot be proven: the gate fails closed
    assert r.exit_code == 1
    assert r.checks["recovery"]["valid"] == "unknown"
    assert not processes_with_marker(r.marker)
