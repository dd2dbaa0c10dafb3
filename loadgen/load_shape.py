"""The overload load shape: the load's own users multiplied by a factor for a while, inside the load process.

:class:`OverloadShape` is a Locust ``LoadTestShape``. The ledger hook (``loadgen/resgate_ledger_hook.py``)
installs it only when ``RESGATE_LOAD_SHAPE`` holds steps (:mod:`resgate.contract.shape`: the gate's
``overload`` faults in their ``factor`` form), so a run without them keeps Locust's plain ``-u``/``-r``/
``-t``. It reads those three options itself (``use_common_options``): the base users, the spawn rate and the
run time, after which it ends the run, as ``-t`` would. Once a second Locust calls :meth:`tick`, which asks
for :func:`resgate.contract.shape.users_at` users and writes a sample and the step's fault rows to
``shape-<pid>.jsonl`` in the ledger directory (their meaning is :mod:`resgate.contract.shape`'s). A step's
extra users start, and stop, at its ``spawn_rate`` (default: all within a second; Locust ramps down at the
tick's rate too). Locust stops them gracefully (each after its request in flight, within
``--stop-timeout``), so every request they sent is in the ledger. An
:data:`~resgate.contract.shape.ABORT_FILE` in the ledger directory ends every held step at the next tick.

With ``--master``, Locust runs the shape in the master only; the workers never import it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from locust import LoadTestShape

from loadgen.ledger import LedgerWriter
from loadgen.ledger_plugin import CONFIG
from resgate.contract import env as env_names
from resgate.contract.shape import (
    ABORT_FILE,
    FAULT_KIND,
    SHAPE_PREFIX,
    ShapeStep,
    decode_steps,
    users_at,
)

STEPS = decode_steps(os.environ.get(env_names.ENV_LOAD_SHAPE))


class _StepState:
    """Where one step is: ``before`` → ``raising`` → ``held`` → ``lowering`` → ``done``."""

    def __init__(self, step: ShapeStep) -> None:
        self.step = step
        self.phase = "before"


class OverloadShape(LoadTestShape):
    """Base users from ``-u`` (spawned at ``-r``), multiplied by each step's factor while it holds; the run
    ends after ``-t``."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self.steps = [_StepState(s) for s in STEPS]
        self.writer = LedgerWriter(CONFIG.ledger_dir, prefix=SHAPE_PREFIX, flush_every=1_000_000)
        self.abort_path = Path(CONFIG.ledger_dir) / ABORT_FILE

    # -- Locust's options ---------------------------------------------------------------------------------
    def _option(self, name: str, default: Any) -> Any:
        opts = self.runner.environment.parsed_options if self.runner is not None else None
        value = getattr(opts, name, None) if opts is not None else None
        return default if value is None else value

    def _abort_reason(self) -> str | None:
        try:
            body = json.loads(self.abort_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return "aborted"
        return str(body.get("reason") or "aborted") if isinstance(body, dict) else "aborted"

    def _row(self, state: _StepState, event: str, detail: dict[str, Any]) -> None:
        self.writer.write(
            {
                "ts": time.time(),
                "fault_id": state.step.name,
                "kind": FAULT_KIND,
                "target": state.step.target,
                "event": event,
                "detail": detail,
            }
        )

    # -- the tick ---------------------------------------------------------------------------------------
    def tick(self) -> tuple[int, float] | None:
        """``(users, spawn rate)`` for now, or None once the run time is over."""
        base = int(self._option("num_users", 1))
        base_rate = float(self._option("spawn_rate", 1.0))
        run_time = self._option("run_time", None)
        t = self.get_run_time()
        running = self.get_current_user_count() if self.runner is not None else 0
        abort = self._abort_reason()
        if run_time is not None and t >= float(run_time):
            self._lift_all(running, base, abort or "the load's run time ended")
            self._write_sample(t, running, None)
            self.writer.flush()
            return None
        held = [s.step for s in self.steps if s.phase in ("before", "raising", "held")]
        target = base if abort else users_at(t, base, held)
        rate = base_rate
        for s in self.steps:
            rate = max(rate, self._advance(s, t, running, base, target, abort))
        self._write_sample(t, running, target)
        self.writer.flush()
        return target, rate

    def _advance(
        self, s: _StepState, t: float, running: int, base: int, target: int, abort: str | None
    ) -> float:
        """Move one step along; returns the spawn rate it needs now (0 when it needs none)."""
        step, users = s.step, s.step.users(base)
        active = step.active(t) and abort is None
        if s.phase == "before" and active:
            s.phase = "raising"
            held_s = step.duration_s
            self._row(
                s,
                "injecting",
                {"factor": step.factor, "base_users": base, "users": users, "duration_s": held_s},
            )
        if s.phase == "raising" and running >= users:
            s.phase = "held"
            self._row(s, "injected", {"users": running, "duration_s": step.duration_s})
            evidence = f"Locust ran {running} users ({base} base)"
            self._row(s, "effect", {"observed": True, "evidence": evidence})
        if s.phase in ("raising", "held") and not active:
            self._lift(s, running, users, abort)
        if s.phase == "lowering" and running <= target:
            s.phase = "done"
            self._row(s, "ended", {"users": running})
        if s.phase in ("raising", "lowering"):  # Locust starts and stops users at the tick's rate
            return step.spawn_rate or float(max(1, users - base))
        return 0.0

    def _lift(self, s: _StepState, running: int, users: int, abort: str | None) -> None:
        if s.phase == "raising":
            evidence = f"Locust ran only {running} of {users} users before the step ended"
            self._row(s, "effect", {"observed": False, "evidence": evidence})
        if abort is not None:
            self._row(s, "aborted", {"reason": abort})
        s.phase = "lowering"
        self._row(s, "lifting", {"users": running})

    def _lift_all(self, running: int, base: int, reason: str) -> None:
        """At the run's end: a step still held is aborted (the run ended before its window did)."""
        for s in self.steps:
            if s.phase in ("raising", "held"):
                self._lift(s, running, s.step.users(base), reason)

    def _write_sample(self, t: float, running: int, target: int | None) -> None:
        self.writer.write({"ts": time.time(), "t_s": round(t, 3), "users": running, "target_users": target})
