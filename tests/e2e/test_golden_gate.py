"""The golden profile end to end: a passing run of the short gate becomes the golden profile (``resgate
baseline set latest``); the same gate on a build that answers every order 50 ms later (``slow_orders``)
then fails the SLO check with a regression naming the phase and the figure, while every absolute limit
still passes. Two gate runs (about 3 minutes):
``RESGATE_SLOW=1 pytest -m slow tests/e2e/test_golden_gate.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resgate import cli
from resgate.checks.slo import INFO_KINDS
from tests.e2e.conftest import SHORT_CONFIG, run_gate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.environ.get("RESGATE_SLOW") != "1", reason="two gate runs: set RESGATE_SLOW=1"),
]


def test_a_50_ms_slower_order_path_fails_the_regression_against_the_golden_profile(tmp_path: Path) -> None:
    root = tmp_path / "ev"
    good = run_gate(SHORT_CONFIG, root)
    assert good.exit_code == 0, good.output[-4000:]
    assert good.checks["slo"]["counts"]["golden"] == "no baseline"
    assert cli.main(["baseline", "set", "latest", "--root", str(root)]) == 0

    slow = run_gate(SHORT_CONFIG, root, env={"PAPERBROKER_BUGS": "slow_orders"})
    slo = slow.checks["slo"]
    assert slow.exit_code == 1, slow.output[-4000:]
    assert slow.verdict is not None and slow.verdict["failed_checks"] == ["slo"], slow.verdict
    kinds = {e["kind"] for e in slo["examples"]} - INFO_KINDS
    assert kinds == {"regression"}, slo["examples"]  # the absolute limits pass
    baseline_run = good.verdict["run_id"]  # type: ignore[index]
    assert slo["counts"]["golden"] == baseline_run
    regressed = {e["phase"]: e for e in slo["examples"] if e["kind"] == "regression"}
    assert "baseline" in regressed or "steady" in regressed, regressed
    for e in regressed.values():
        assert e["baseline_run_id"] == baseline_run and set(e["metrics"]) <= {"p95_ms", "p99_ms"}
