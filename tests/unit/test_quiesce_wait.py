"""The quiesce wait both conductors call (``resgate.evidence.quiesce.wait_quiet``): ``settled`` means the
data drained; health only bounds the wait, so a service slow to become healthy fails recovery, not the
state checks."""

from __future__ import annotations

import itertools

from resgate.evidence.quiesce import wait_quiet


def _wait(healthy, lag, timeout_s=1.0):
    return wait_quiet(healthy, lag, timeout_s, poll_s=0.0, sleep=lambda s: None)


def test_quiesce_ends_once_healthy_and_drained_twice_in_a_row():
    lags = iter([{"g": 3}, {"g": 0}, {"g": 0}])
    r = _wait(lambda: True, lambda: next(lags))
    assert r.settled and r.healthy and r.lag == {"g": 0} and r.reason == ""


def test_quiesce_is_settled_when_drained_though_a_replica_never_becomes_healthy():
    r = _wait(lambda: False, lambda: {"g": 0, "pending_rows": 0}, timeout_s=0.05)
    assert r.settled and not r.healthy
    assert r.reason == "not every replica is healthy"


def test_quiesce_is_not_settled_when_the_lag_never_drains():
    r = _wait(lambda: True, lambda: {"g": 2}, timeout_s=0.05)
    assert not r.settled and r.healthy and "consumer lag {'g': 2}" in r.reason


def test_a_probe_that_raises_counts_as_not_fine_and_is_the_reason():
    calls = itertools.count()

    def lag():
        next(calls)
        raise ConnectionError("broker down")

    r = _wait(lambda: True, lag, timeout_s=0.05)
    assert not r.settled and "lag unavailable: ConnectionError: broker down" in r.reason


def test_quiesce_polls_at_least_twice_even_with_no_time():
    n = itertools.count(1)
    r = _wait(lambda: False, lambda: {"g": 0, "polls": 0 * next(n)}, timeout_s=0)
    assert r.settled and next(n) == 3
