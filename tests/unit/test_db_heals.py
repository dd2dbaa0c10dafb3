"""Unit tests of :class:`paperbroker.db.Heals`: which waiting calls a heal of the database ends.

A heal is seen by a probe that began at some moment and got its answer; a call subscribed before that
moment was sent into the outage, one subscribed at it or later was sent into a path that already worked.
"""

from __future__ import annotations

import pytest

from paperbroker import db


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic clock paperbroker.db reads, set by the test: ``clock[0] = t``."""
    now = [100.0]
    monkeypatch.setattr(db.time, "monotonic", lambda: now[0])
    return now


def test_a_heal_ends_the_calls_subscribed_before_its_probe_began_and_not_one_subscribed_at_that_moment(
    clock: list[float],
) -> None:
    heals, ended = db.Heals(), []
    clock[0] = 9.999
    heals.subscribe(lambda: ended.append("before"))
    clock[0] = 10.0
    heals.subscribe(lambda: ended.append("at"))
    assert heals.healed(probe_started=10.0) == 1
    assert ended == ["before"]


def test_a_call_is_ended_by_one_heal_only_and_the_later_heal_ends_the_call_left_waiting(
    clock: list[float],
) -> None:
    heals, ended = db.Heals(), []
    clock[0] = 1.0
    heals.subscribe(lambda: ended.append("a"))
    heals.subscribe(lambda: ended.append("b"))
    assert heals.healed(probe_started=2.0) == 2
    assert heals.healed(probe_started=3.0) == 0
    clock[0] = 4.0
    heals.subscribe(lambda: ended.append("c"))
    assert heals.healed(probe_started=3.5) == 0  # c was sent after that probe began
    assert heals.healed(probe_started=4.5) == 1
    assert ended == ["a", "b", "c"]


def test_an_unsubscribed_call_is_not_ended_by_a_heal(clock: list[float]) -> None:
    heals, ended = db.Heals(), []
    unsubscribe = heals.subscribe(lambda: ended.append("done"))
    unsubscribe()
    unsubscribe()  # twice is harmless (the block's exit after a heal already removed it)
    assert heals.healed(probe_started=clock[0] + 1) == 0
    assert ended == []
