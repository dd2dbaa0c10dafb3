"""Progress display of a gate run: one line per update (phase, elapsed, live req/s, errors, p95, events).

Plain lines rather than a redrawn screen, so the same output reads well in a terminal and in CI logs.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Prints phase changes, periodic live figures and notable events with the elapsed time."""

    def __init__(self, out: TextIO | None = None, *, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.phase = "init"

    def _stamp(self) -> str:
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:02d}:{s % 60:02d}"

    def line(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self._stamp()}] {self.phase:<10} {text}", file=self.out, flush=True)

    def set_phase(self, phase: str, detail: str = "") -> None:
        self.phase = phase
        self.line(f"== {phase}{': ' + detail if detail else ''}")

    def live(self, rps: float, error_ratio: float, p95_ms: float | None, total: int) -> None:
        p95 = f"{p95_ms:.0f} ms" if p95_ms is not None else "-"
        self.line(f"{rps:7.1f} req/s  errors {error_ratio:6.2%}  p95 {p95:>8}  requests {total}")

    def event(self, ev: dict[str, Any]) -> None:
        """Show a supervisor or fault event (state changes of replicas, injections, recoveries)."""
        if "fault_id" in ev:
            if ev.get("event") in ("injecting", "lifting"):  # the moment before "injected" / "ended"
                return
            if ev.get("event") == "effect":  # said only when the fault was not seen to act
                d = ev.get("detail") or {}
                if not d.get("observed"):
                    self.line(
                        f"fault {ev['fault_id']} ({ev['kind']}) had NO observed effect: {d.get('evidence')}"
                    )
                return
            if ev.get("event") == "leader_samples":  # the raw samples go to faults.jsonl, not the console
                d = ev.get("detail") or {}
                n = len(d.get("samples") or [])
                self.line(f"fault {ev['fault_id']} ({ev['kind']}): {n} leader figure changes sampled")
                return
            detail = {k: v for k, v in (ev.get("detail") or {}).items() if v not in (None, [], {})}
            self.line(f"fault {ev['fault_id']} ({ev['kind']}) {ev['event']} {detail or ''}".rstrip())
        elif ev.get("event") in ("killed", "exited", "restarted", "healthy", "unhealthy", "hung", "resumed"):
            self.line(f"{ev.get('replica', ev.get('service'))}: {ev['event']}")
