"""Gating a system that is not paperbroker: the config of issue 12 with the user's plain locustfile (no
ledger code in it) passes the good service and fails the one that answers a bare 500 while its database
is down, on retryable; the ledger plugin the gate loads beside the locustfile makes that possible."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import processes_with_marker, run_gate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HERE = Path(__file__).with_name("own_service")


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "gate.yaml"
    config.write_text((HERE / "gate.yaml").read_text().replace("@HERE@", str(HERE.resolve())))
    return config


def test_the_good_service_passes_with_its_plain_locustfile(tmp_path: Path) -> None:
    r = run_gate(_config(tmp_path), tmp_path / "ev", env={"OWN_SERVICE_BUG": ""}, timeout=240)
    assert r.exit_code == 0, (r.output[-4000:], r.checks)
    assert r.verdict is not None and r.verdict["result"] == "PASS"
    assert set(r.checks) == {"slo", "recovery", "retryable"}
    assert all(c["valid"] is True for c in r.checks.values()), r.checks
    assert r.checks["retryable"]["counts"]["unavailable_503_retry_after"] > 0  # the outage was seen
    assert not processes_with_marker(r.marker)


def test_a_bare_500_while_the_database_is_down_fails_on_retryable(tmp_path: Path) -> None:
    r = run_gate(_config(tmp_path), tmp_path / "ev", env={"OWN_SERVICE_BUG": "500_when_db_down"}, timeout=240)
    assert r.exit_code == 1, (r.output[-4000:], r.checks)
    assert r.verdict is not None and r.verdict["failed_checks"] == ["retryable"], (r.verdict, r.checks)
    assert r.checks["retryable"]["counts"]["server_error_5xx"] > 0, r.checks["retryable"]
    assert r.checks["recovery"]["valid"] is True and r.checks["slo"]["valid"] is True
    assert not processes_with_marker(r.marker)
