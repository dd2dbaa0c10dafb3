"""An overload burst against a real paperbroker gateway (a subprocess on the embedded Postgres and Kafka),
judged by the backpressure check: the good build sheds the burst with 503 + Retry-After and is back to its
baseline at once; the seeded bug ``unbounded_queue`` queues it, times it out and drains it for seconds.

The fault is injected by the gate's own :class:`~resgate.runner.faults.FaultRunner` (``overload``: a
:class:`~resgate.local.burst.Burst` writing the client ledger) while a steady open-loop trickle of orders
(the load) runs before, during and after it; the ledger and the fault timeline are what a gate run would
store. Everything talks to 127.0.0.1 and every wait is bounded. About 15 s per build on a busy machine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from loadgen.ledger import merge_ledgers
from paperbroker.slow_db import SLOW_ORDERS_SQL
from paperbroker.system import GatewayProcess, init_system
from resgate.checks import backpressure
from resgate.checks.ledger import iter_ledger
from resgate.config.model import Fault
from resgate.local.burst import Burst, BurstSpec
from resgate.runner.faults import FaultRunner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BASELINE_S = 2.0
BURST_S = 2.5
AFTER_S = 6.0
TRICKLE_RPS = 10.0
BURST_RPS = 150.0
# Back to baseline within 3 s (the gate's default window is 10 s). The accepted p95 is not what tells
# the builds apart here: the burst's 3 s client deadline caps it in both, and on a busy 2-core machine
# (load average 16-20 when this was written) the good gateway's accepted requests waited 2.6-2.7 s for
# the CPU behind the flood it was shedding. Its bound is pinned by the unit tests; here: sheds against
# timeouts, and the drain after the burst (the bug's queue was still draining 7 s after it).
THRESHOLDS = backpressure.BackpressureThresholds(recover_within_s=3.0, max_accepted_p95_ms=10_000.0)


# The database takes ORDER_DB_S per order (paperbroker.slow_db), so the gateway's capacity is known
# whatever the machine: 8 pooled connections / 200 ms = 40 orders/s, and the burst is almost 4 times that,
# yet slow enough for a starved gateway process to read and shed (at 400/s and a load average of 16 the
# good gateway could not even read the requests in time: 306 of 631 timed out in the client).


@pytest.fixture
def system(pg_dsn: str, kafka: Any) -> Iterator[dict[str, Any]]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    init_system(pg_dsn, kafka.bootstrap, prefix, kafka=kafka)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SLOW_ORDERS_SQL)
    yield {"dsn": pg_dsn, "bootstrap": kafka.bootstrap, "prefix": prefix}


def overload_run(system: dict[str, Any], tmp_path: Path, bugs: str = "") -> dict[str, Any]:
    """Trickle for the baseline, inject a burst through the fault runner, trickle on after it; returns
    ``{result, timeline, burst, orders}`` (the check's result on the merged ledger)."""
    ledger_dir = tmp_path / "ledger"
    with GatewayProcess(
        dsn=system["dsn"], bootstrap=system["bootstrap"], topic_prefix=system["prefix"], bugs=bugs
    ) as gw:
        trickle = Burst(
            gw.url,
            BurstSpec(rps=TRICKLE_RPS, duration_s=BASELINE_S + BURST_S + AFTER_S, timeout_s=3.0, clients=20),
            ledger_dir,
            tag="load",
        )
        fault = Fault(
            name="burst",
            kind="overload",
            at_s=BASELINE_S,
            target="gateway",
            params={"rps": BURST_RPS, "duration_s": BURST_S, "timeout_s": 3.0, "max_in_flight": 1000},
        )
        runner = FaultRunner(SimpleNamespace(host=gw.url, supervisor=None), [fault], ledger_dir=ledger_dir)  # type: ignore[arg-type]
        trickle.start()
        runner.start(time.time())
        try:
            trickle.wait()
        finally:
            runner.revert_all()
            runner.join(5)
            trickle.stop()
        with psycopg.connect(system["dsn"]) as conn:
            orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    records = list(iter_ledger(merge_ledgers(ledger_dir)))
    timeline = runner.timeline()
    ev = backpressure.evidence_from_run(timeline, records)
    return {
        "result": backpressure.check(ev, THRESHOLDS),
        "timeline": timeline,
        "records": records,
        "orders": orders,
    }


def test_the_good_gateway_sheds_a_burst_clearly_and_is_back_to_baseline_at_once(
    system: dict[str, Any], tmp_path: Path
) -> None:
    out = overload_run(system, tmp_path)
    r = out["result"]
    assert r.valid is True, (r.examples, r.details)
    row = r.details["bursts"][0]
    assert row["shed"] > 0 and row["clear_shed_ratio"] >= THRESHOLDS.min_clear_shed_ratio, row
    assert row["back_after_s"] is not None and row["back_after_s"] <= THRESHOLDS.recover_within_s
    events = [e["event"] for e in out["timeline"]]
    assert events[:2] == ["injecting", "injected"] and events[-2:] == ["lifting", "ended"]
    effect = next(e for e in out["timeline"] if e["event"] == "effect")
    assert effect["detail"]["observed"] is True
    # every acknowledged order is in the database (what integrity judges in a gate run)
    acked = {x.order_id for x in out["records"] if x.outcome == "ok" and x.order_id}
    assert out["orders"] >= len(acked) > 0


def test_the_unbounded_queue_bug_fails_backpressure_under_the_same_burst(
    system: dict[str, Any], tmp_path: Path
) -> None:
    out = overload_run(system, tmp_path, bugs="unbounded_queue")
    r = out["result"]
    assert r.valid is False, (r.examples, r.details)
    kinds = {e["kind"] for e in r.examples}
    assert "unclear_rejections" in kinds, r.examples  # timeouts, not sheds
    assert kinds & {"not_back_to_baseline", "slow_to_recover"}, r.examples  # the queue drains after it
    row = r.details["bursts"][0]
    assert row["shed"] == 0 and row["unclear"] > 0, row
