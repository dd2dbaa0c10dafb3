"""Recovery end to end: a service whose health check says healthy after a partition but which serves
nothing fails the gate's recovery check, and the failure names the partition (issue 16, defect 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import processes_with_marker, run_gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

STALL = Path(__file__).with_name("stall")


def stall_config(tmp_path: Path) -> Path:
    """One replica of the stalling service, a 2 s partition from its database at 5 s of a 20 s load."""
    doc = {
        "gate": {"name": "stall-after-partition"},
        "target": {
            "environment": "local",
            "local": {
                "services": [
                    {
                        "name": "web",
                        "command": [sys.executable, str(STALL / "app.py")],
                        "replicas": 1,
                        "health_path": "/ready",
                        "expose": True,
                        "env": {"DATABASE_URL": "${pg.dsn}"},
                    }
                ]
            },
        },
        "load": {"users": 10, "duration_s": 20, "baseline_s": 4, "locustfile": str(STALL / "locustfile.py")},
        "faults": [
            {
                "name": "partition-db",
                "kind": "network_partition",
                "between": ["web", "postgres"],
                "mode": "hang",
                "duration_s": 2,
                "at_s": 5,
            }
        ],
        # nothing completes while the service is stuck: keep the guardrails from aborting the observation
        "guardrails": {"max_error_ratio": 1.0, "max_p95_ms": 60000, "window_s": 5, "consecutive_windows": 12},
        "quiesce": {"timeout_s": 20},
        "checks": {
            "slo": False,
            "recovery": {"rto_s": 30},
            "retryable": False,
            "integrity": False,
            "replay": False,
        },
    }
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_service_that_stops_serving_after_a_partition_fails_recovery_naming_that_fault(
    tmp_path: Path,
) -> None:
    r = run_gate(stall_config(tmp_path), tmp_path / "ev", timeout=240)
    assert r.exit_code == 1, r.output[-4000:]
    recovery = r.checks["recovery"]
    assert recovery["valid"] is False, recovery
    (fault,) = recovery["details"]["faults"]
    # the health check saw it healthy again, well within the RTO: only the throughput says it is not
    assert fault["fault_id"] == "partition-db" and fault["time_to_healthy_s"] <= 30, fault
    failing = [e for e in recovery["examples"] if e["kind"] == "throughput_not_back"]
    assert [e["fault_id"] for e in failing] == ["partition-db"], recovery["examples"]
    assert failing[0]["requests_after"] == 0 and failing[0]["baseline_ok_per_s"] > 0
    assert "throughput_not_back" in r.output
    assert not processes_with_marker(r.marker)
