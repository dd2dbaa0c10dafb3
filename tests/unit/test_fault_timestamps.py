"""A fault's ``injecting`` event is stamped with the moment its injection began and ``injected`` when it
was in effect: stopping Postgres takes a few hundred milliseconds, and the errors of that time belong to
this fault, not to the one before it (whose recovery window ends at this injection's start)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from resgate.config.schema import Fault
from resgate.runner.faults import FaultRunner


class _SlowPostgres:
    controllable = True

    def __init__(self) -> None:
        self.stopped_at: float | None = None

    def stop(self, mode: str) -> None:
        time.sleep(0.3)  # pg_ctl stop: the database goes down somewhere in here
        self.stopped_at = time.time()

    def start(self) -> None:
        pass


def test_an_injection_records_when_it_began_and_when_it_was_in_effect() -> None:
    pg = _SlowPostgres()
    target = SimpleNamespace(supervisor=None, pg=pg, kafka=None, bootstrap="")
    runner = FaultRunner(target, [Fault("db-down", "db_blip", 0.0, None, {"duration_s": 0.0})])  # type: ignore[arg-type]
    t0 = time.time()

    runner.start(t0)
    runner.join(5)

    [injecting] = [e for e in runner.timeline() if e["event"] == "injecting"]
    [injected] = [e for e in runner.timeline() if e["event"] == "injected"]
    assert pg.stopped_at is not None and t0 <= injecting["ts"] < pg.stopped_at - 0.25
    assert injected["ts"] >= pg.stopped_at
