"""The streaming gate end to end: market-data subscribers (Locust's StreamUser over websocket-client)
through the local ALB while one of the two feed replicas (the gateways) is killed and then every client
connection is reset (new ones refused for 2 s), so every subscriber reconnects and resumes whichever
replica the balancer had put it on.

In `make test`, ONE short run (tests/e2e/gate_streaming_short.yaml, a 15 s load, 30-40 s on a busy
machine): the good build passes ``streaming`` with every trade the topic holds received by every
subscriber (each gap resent on resume). That the seeded bug ``feed_no_resend`` fails
the check naming the gap's range is proven in `make test` at the integration level
(tests/integration/test_market_feed.py: the real feed, ALB, subscriber and checker); its full gate run is
here too, behind ``RESGATE_MATRIX=1`` (``make matrix``), as are the projector-restart runs
(tests/e2e/gate_streaming_projector.yaml: the projector killed once; the good build's feed closes its
subscribers so they resume, ``feed_drops_silently`` leaves them silent, proven in `make test` by
tests/integration/test_market_feed.py over a real Postgres ``NOTIFY``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import processes_with_marker, run_gate

STREAMING_CONFIG = Path(__file__).with_name("gate_streaming_short.yaml")
PROJECTOR_CONFIG = Path(__file__).with_name("gate_streaming_projector.yaml")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

matrix = pytest.mark.skipif(
    os.environ.get("RESGATE_MATRIX") != "1", reason="one gate run per bug: set RESGATE_MATRIX=1 (make matrix)"
)


def test_the_good_build_passes_the_streaming_gate_through_a_feed_replica_kill(tmp_path: Path) -> None:
    r = run_gate(STREAMING_CONFIG, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    s = r.checks["streaming"]
    assert s["valid"] is True, s
    c = s["counts"]
    assert c["subscribers"] == 4 and c["published"] > 0 and c["owed"] > 0
    assert c["completeness"] == 1.0 and c["unhealed"] == 0
    assert c["reconnects"] >= 4, c  # every subscriber came back through the balancer after the reset
    assert not processes_with_marker(r.marker)


@matrix
def test_feed_no_resend_fails_the_streaming_gate_naming_the_unhealed_ranges(tmp_path: Path) -> None:
    r = run_gate(STREAMING_CONFIG, tmp_path / "ev", env={"PAPERBROKER_BUGS": "feed_no_resend"})
    assert r.exit_code == 1, r.output[-4000:]
    assert r.verdict is not None and "streaming" in r.verdict["failed_checks"]
    s = r.checks["streaming"]
    assert s["counts"]["unhealed"] > 0 and s["counts"]["completeness"] < 1.0
    gap = next(e for e in s["examples"] if e["kind"] == "gap_not_healed")
    assert gap["symbol"] and gap["from_seq"] <= gap["to_seq"]


@matrix
def test_the_good_build_passes_the_streaming_gate_through_a_projector_restart(tmp_path: Path) -> None:
    r = run_gate(PROJECTOR_CONFIG, tmp_path / "ev")
    assert r.exit_code == 0, r.output[-4000:]
    c = r.checks["streaming"]["counts"]
    assert c["completeness"] == 1.0 and c["silent"] == 0
    assert c["reconnects"] >= 4, c  # the feed closed every subscriber when the projector came back


@matrix
def test_feed_drops_silently_fails_the_streaming_gate_naming_the_silent_subscribers(tmp_path: Path) -> None:
    r = run_gate(PROJECTOR_CONFIG, tmp_path / "ev", env={"PAPERBROKER_BUGS": "feed_drops_silently"})
    assert r.exit_code == 1, r.output[-4000:]
    assert r.verdict is not None and "streaming" in r.verdict["failed_checks"]
    s = r.checks["streaming"]
    assert s["counts"]["silent_subscribers"] >= 1 and s["counts"]["reconnects"] == 0, s["counts"]
    silent = next(e for e in s["examples"] if e["kind"] == "silent_subscriber")
    assert silent["symbol"] and silent["from_seq"] <= silent["to_seq"] and silent["silent_s"] > 5.0
