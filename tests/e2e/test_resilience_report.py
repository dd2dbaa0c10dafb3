"""`make resilience-report`'s command end to end on one short scenario: a real gate run under load, then
the report generated from its evidence (scorecard, per-fault figures, replay parity, a figure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resgate.contract.layout import table_glob

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "benchmarks" / "resilience" / "run_suite.py"


def test_one_short_scenario_goes_through_the_suite_into_the_report(tmp_path: Path) -> None:
    scenarios = {
        "scenarios": [
            {
                "name": "kill-half-gateways",
                "title": "Kill 50 % of the gateways",
                "load": {"duration_s": 22, "baseline_s": 4},
                "faults": [
                    {
                        "name": "kill-gateway",
                        "kind": "stop_task",
                        "target": "gateway",
                        "percent": 50,
                        "at_s": 8,
                    }
                ],
            }
        ]
    }
    spec = tmp_path / "scenarios.yaml"
    spec.write_text(yaml.safe_dump(scenarios))
    report = tmp_path / "out" / "resilience-report.md"
    report.parent.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(SUITE),
            "--scenarios",
            str(spec),
            "--evidence",
            str(tmp_path / "ev"),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=REPO,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "[1/1] kill-half-gateways: PASS (expected PASS: ok)" in out
    text = report.read_text()
    assert "scenarios passed: **1 of 1**" in text
    row = next(line for line in text.splitlines() if line.startswith("| kill-half-gateways | PASS |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    score, detected, healthy = cells[2], cells[3], cells[4]
    assert score.endswith("(Pass)") and int(score.split()[0]) >= 80, row
    assert float(detected) < 5 and float(healthy.split("/")[0]) < 30 and healthy.endswith("/ 30"), row
    assert "| kill-half-gateways | rm_orders |" in text and "| match |" in text
    assert (tmp_path / "out" / "resilience" / "figures" / "kill-half-gateways.png").stat().st_size > 1000
    # The score the report shows is the one the run's verdict.json stores (Athena trends it).
    [verdict_file] = (tmp_path / "ev" / "runs").glob(table_glob("verdicts"))
    verdict = json.loads(verdict_file.read_text())
    assert f"{verdict['score']} ({verdict['score_band']})" == score
