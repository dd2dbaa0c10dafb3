"""The overload gate end to end (``tests/e2e/gate_overload_short.yaml``): the good build sheds a burst beyond
the gateways' capacity and passes; ``unbounded_queue`` queues it into client timeouts and fails on
backpressure, and on recovery: the queue of requests their clients gave up on is still being drained after
the lift, so the service is not back to its baseline throughput in the after-window. The same pair in
the factor form (``tests/e2e/gate_overload_factor.yaml``: the load's own
traders multiplied by 20 for 5 s through the load shape): the bug admits every order of the surge and
fails on the accepted requests' latency. About 70 s per run on a busy 2-core machine, so the pairs stay
out of `make test` (the integration tests ``tests/integration/test_overload_backpressure.py`` and
``test_overload_shape.py`` are the cheap proof there):
``RESGATE_OVERLOAD=1 .venv/bin/pytest -m e2e tests/e2e/test_overload_gate.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import processes_with_marker, run_gate

OVERLOAD = Path(__file__).with_name("gate_overload_short.yaml")
SURGE = Path(__file__).with_name("gate_overload_factor.yaml")  # the factor form: the load's users x 20

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        os.environ.get("RESGATE_OVERLOAD") != "1", reason="the overload gate: RESGATE_OVERLOAD=1"
    ),
]


def test_the_good_build_sheds_an_overload_burst_and_passes(tmp_path: Path) -> None:
    r = run_gate(OVERLOAD, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    bp = r.checks["backpressure"]
    assert bp["valid"] is True and bp["counts"]["shed"] > 0, bp
    rec = r.checks["recovery"]
    assert rec["counts"]["serving_unmeasured"] == 0, rec  # the after-window was judged, not cut short
    assert not processes_with_marker(r.marker)  # the burst's process is gone too


def test_unbounded_queue_fails_the_overload_gate_on_backpressure_and_recovery(tmp_path: Path) -> None:
    r = run_gate(OVERLOAD, tmp_path / "ev", env={"PAPERBROKER_BUGS": "unbounded_queue"})
    assert r.exit_code == 1, r.output[-4000:]
    assert {"backpressure", "recovery"} <= set(r.verdict["failed_checks"]), (r.verdict, r.checks)  # type: ignore[index]
    bp = r.checks["backpressure"]
    assert bp["counts"]["shed"] == 0 and bp["counts"]["unclear"] > 0, bp
    kinds = {e["kind"] for e in r.checks["recovery"]["examples"]}
    assert kinds & {"throughput_not_back", "error_ratio_not_back"}, r.checks["recovery"]
    assert not processes_with_marker(r.marker)


def test_the_good_build_sheds_a_surge_of_its_own_users_and_passes(tmp_path: Path) -> None:
    r = run_gate(SURGE, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    bp = r.checks["backpressure"]
    assert bp["valid"] is True and bp["counts"]["shed"] > 0, bp
    assert r.checks["retryable"]["valid"] is True  # no request of the extra users was cut mid-request


def test_unbounded_queue_fails_the_surge_gate_on_backpressure(tmp_path: Path) -> None:
    r = run_gate(SURGE, tmp_path / "ev", env={"PAPERBROKER_BUGS": "unbounded_queue"})
    assert r.exit_code == 1, r.output[-4000:]
    assert "backpressure" in r.verdict["failed_checks"], (r.verdict, r.checks)  # type: ignore[index]
    bp = r.checks["backpressure"]
    assert bp["counts"]["shed"] == 0, bp
    assert "accepted_latency_unbounded" in {e["kind"] for e in bp["examples"]}, bp
