"""Guardrails: watch the live error ratio and p95 of the load and abort the faults when a bound is crossed.

The local counterpart of FIS stop conditions on CloudWatch alarms: the bound must be crossed for
``consecutive_windows`` windows in a row (an alarm's evaluation periods), then ``on_trip`` runs once.

A window in which no request completed is not a healthy window: the latency of the requests still in flight
is unknown but at least as long as the time since the last request completed, so once that stall is longer
than ``max_p95_ms`` the window crosses the latency bound (a load with no request at all is the load's
problem, not the target's, and is not judged: the gate reads windows only once the load has made its first
request). The gate reads a window only once the load generator has written its last second
(:data:`SETTLE_S` after its end), so a second not yet flushed does not read as a quiet one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from resgate.config.schema import Guardrails

SETTLE_S = 1.5
"""How long after a window's end the gate reads it: the load's processes write each second's line just
after it ends (a loaded machine delays them), and a second read before its line exists would be lost."""


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

    def __init__(
        self, cfg: Guardrails, on_trip: Callable[[str], None], *, started_ts: float | None = None
    ) -> None:
        self.cfg = cfg
        self.on_trip = on_trip
        self.streak = 0
        self.tripped: str | None = None
        self.last_completed_ts = started_ts
        """End of the last window with a completed request (the load's first request before any)."""

    def breach(self, w: Window) -> str | None:
        """The bound this window crosses, or None."""
        if w.requests and w.error_ratio > self.cfg.max_error_ratio:
            return f"error ratio {w.error_ratio:.1%} > {self.cfg.max_error_ratio:.1%}"
        if w.p95_ms is not None and w.p95_ms > self.cfg.max_p95_ms:
            return f"p95 {w.p95_ms:.0f} ms > {self.cfg.max_p95_ms:.0f} ms"
        if not w.requests and self.last_completed_ts is not None:
            stalled_ms = (w.ts - self.last_completed_ts) * 1000
            if stalled_ms > self.cfg.max_p95_ms:
                return f"no request completed for {stalled_ms / 1000:.0f} s (> {self.cfg.max_p95_ms:.0f} ms)"
        return None

    def observe(self, w: Window) -> None:
        if self.tripped:
            return
        why = self.breach(w)
        if w.requests:
            self.last_completed_ts = w.ts
        self.streak = self.streak + 1 if why else 0
        if why and self.streak >= self.cfg.consecutive_windows:
            self.tripped = f"{why} for {self.streak} windows"
            self.on_trip(self.tripped)
