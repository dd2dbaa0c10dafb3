"""Quiesce's "drained" streak at the deadline (``resgate.evidence.quiesce.wait_quiet``).

``settled`` needs zero lag at the last two polls in a row: a lag that drained once and then grew again
(a consumer that rejoined and fell behind, an outbox relay that woke up) is not settled, even though it
was drained at some poll. The clock is a fake that advances only when the wait sleeps, so the deadline
falls on an exact poll.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resgate.evidence import quiesce


class _Clock:
    """``monotonic`` that moves only by the wait's own sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def _wait(
    monkeypatch: pytest.MonkeyPatch, lags: list[int], healthy: list[bool], timeout_s: float
) -> quiesce.QuiesceResult:
    clock = _Clock()
    monkeypatch.setattr(quiesce.time, "monotonic", clock.monotonic)
    lag_iter: Iterator[int] = iter(lags)
    healthy_iter: Iterator[bool] = iter(healthy)
    return quiesce.wait_quiet(
        lambda: next(healthy_iter),
        lambda: {"g": next(lag_iter)},
        timeout_s,
        poll_s=1.0,
        sleep=clock.sleep,
    )


def test_drained_once_then_lagging_again_at_the_deadline_is_not_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # polls at t=0, 1, 2 (deadline 2): lag 0, 0 would settle; 0 then 4 must not
    r = _wait(monkeypatch, [5, 0, 4], [False, False, False], timeout_s=2.0)
    assert (r.settled, r.lag) == (False, {"g": 4})
    assert "consumer lag" in r.reason


def test_drained_at_the_last_two_polls_before_the_deadline_is_settled_though_unhealthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = _wait(monkeypatch, [5, 0, 0], [False, False, False], timeout_s=2.0)
    assert (r.settled, r.healthy, r.lag) == (True, False, {"g": 0})
    assert r.reason == "not every replica is healthy"


def test_drained_only_at_the_last_poll_is_not_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    r = _wait(monkeypatch, [5, 5, 0], [False, False, False], timeout_s=2.0)
    assert r.settled is False


def test_drained_lagging_drained_is_not_a_streak_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    # Healthy throughout: it would end at once on two drained polls in a row; here it runs to the deadline.
    r = _wait(monkeypatch, [0, 3, 0], [True, True, True], timeout_s=2.0)
    assert (r.settled, r.waited_s) == (False, 2.0)


def test_healthy_and_drained_twice_in_a_row_ends_before_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    r = _wait(monkeypatch, [3, 0, 0, 9], [True, True, True, True], timeout_s=10.0)
    assert (r.settled, r.healthy, r.waited_s, r.reason) == (True, True, 2.0, "")


def test_the_wait_polls_until_the_deadline_is_reached_not_one_poll_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # deadline 3: polls at 0, 1, 2, 3; a drained streak completing at t=3 settles.
    r = _wait(monkeypatch, [5, 5, 0, 0], [False] * 4, timeout_s=3.0)
    assert (r.settled, r.waited_s) == (True, 3.0)


def test_a_health_probe_that_fails_after_being_healthy_is_unhealthy_and_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(quiesce.time, "monotonic", clock.monotonic)
    answers = iter([True, "boom"])

    def healthy() -> bool:
        a = next(answers)
        if a == "boom":
            raise RuntimeError("boom")
        return bool(a)

    lags = iter([{"g": 5}, {"g": 5}])
    r = quiesce.wait_quiet(healthy, lambda: next(lags), 1.0, poll_s=1.0, sleep=clock.sleep)
    assert r.healthy is False
    assert "health unavailable: RuntimeError: boom" in r.reason


def test_each_poll_is_reported_to_tick_with_health_and_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(quiesce.time, "monotonic", clock.monotonic)
    lags = iter([{}, {"g": 2}])
    seen: list[str] = []
    quiesce.wait_quiet(
        lambda: False, lambda: next(lags), 1.0, poll_s=1.0, sleep=clock.sleep, tick=seen.append
    )
    assert seen == ["healthy=False lag=-", "healthy=False lag={'g': 2}"]
