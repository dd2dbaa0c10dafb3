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


def test_a_stall_longer_than_the_latency_bound_crosses_it_even_with_no_completed_request() -> None:
    """No completed request for longer than ``max_p95_ms`` means every request in flight is slower than the
    bound: a stalled target is not a quiet one (issue 16, "no data" read as fine)."""
    trips: list[str] = []
    g = Guardrails(max_error_ratio=0.5, max_p95_ms=5000, window_s=5, consecutive_windows=2)
    w = GuardrailWatcher(g, trips.append, started_ts=100.0)
    w.observe(Window(105.0, 100, 0, 20))
    w.observe(Window(110.0, 0, 0, None))  # stalled for 5 s: exactly the bound, not above it
    assert w.streak == 0
    w.observe(Window(115.0, 0, 0, None))  # 10 s
    assert w.streak == 1 and trips == []
    w.observe(Window(120.0, 0, 0, None))
    assert trips == ["no request completed for 15 s (> 5000 ms) for 2 windows"]


def test_a_short_gap_without_completed_requests_does_not_cross_the_bound() -> None:
    trips: list[str] = []
    g = Guardrails(max_error_ratio=0.5, max_p95_ms=60000, window_s=5, consecutive_windows=1)
    w = GuardrailWatcher(g, trips.append, started_ts=100.0)
    for t in (105.0, 110.0, 115.0):
        w.observe(Window(t, 0, 0, None))
    w.observe(Window(120.0, 50, 0, 10))
    w.observe(Window(125.0, 0, 0, None))
    assert trips == []
