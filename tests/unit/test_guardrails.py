"""Guardrails trip only after the bound is crossed for the configured number of windows, and only once."""

from __future__ import annotations

from resgate.config.schema import Guardrails
from resgate.runner.guardrails import GuardrailWatcher, Window


def test_the_guardrail_trips_after_consecutive_bad_windows() -> None:
    trips: list[str] = []
    w = GuardrailWatcher(Guardrails(max_error_ratio=0.2, max_p95_ms=100, consecutive_windows=2), trips.append)
    w.observe(Window(1, 100, 50, 10))
    assert trips == []
    w.observe(Window(2, 100, 50, 10))
    assert len(trips) == 1 and "error ratio 50.0%" in trips[0]
    w.observe(Window(3, 100, 90, 10))
    assert len(trips) == 1


def test_a_good_window_resets_the_streak() -> None:
    trips: list[str] = []
    w = GuardrailWatcher(Guardrails(max_error_ratio=0.2, max_p95_ms=100, consecutive_windows=2), trips.append)
    w.observe(Window(1, 100, 0, 500))
    w.observe(Window(2, 100, 0, 50))
    w.observe(Window(3, 100, 0, 500))
    assert trips == []
    w.observe(Window(4, 100, 0, 500))
    assert trips and "p95 500 ms" in trips[0]


def test_healthy_windows_never_trip() -> None:
    trips: list[str] = []
    w = GuardrailWatcher(Guardrails(), trips.append)
    for i in range(20):
        w.observe(Window(i, 200, 1, 20))
    assert trips == []
