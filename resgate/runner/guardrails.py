"""Guardrails: watch the live error ratio and p95 of the load and abort the faults when a bound is crossed.

The local counterpart of FIS stop conditions on CloudWatch alarms: the bound must be crossed for
``consecutive_windows`` windows in a row (an alarm's evaluation periods), then ``on_trip`` runs once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from resgate.config.schema import Guardrails


@dataclass(frozen=True)
class Window:
    """Figures of one live window of the load."""

    ts: float
    requests: int
    failures: int
    p95_ms: float | None

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


class GuardrailWatcher:
    """Feed it windows with :meth:`observe`; it calls ``on_trip(reason)`` once when a bound holds too long."""

    def __init__(self, cfg: Guardrails, on_trip: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.on_trip = on_trip
        self.streak = 0
        self.tripped: str | None = None

    def breach(self, w: Window) -> str | None:
        """The bound this window crosses, or None."""
        if w.requests and w.error_ratio > self.cfg.max_error_ratio:
            return f"error ratio {w.error_ratio:.1%} > {self.cfg.max_error_ratio:.1%}"
        if w.p95_ms is not None and w.p95_ms > self.cfg.max_p95_ms:
            return f"p95 {w.p95_ms:.0f} ms > {self.cfg.max_p95_ms:.0f} ms"
        return None

    def observe(self, w: Window) -> None:
        if self.tripped:
            return
        why = self.breach(w)
        self.streak = self.streak + 1 if why else 0
        if why and self.streak >= self.cfg.consecutive_windows:
            self.tripped = f"{why} for {self.streak} windows"
            self.on_trip(self.tripped)
