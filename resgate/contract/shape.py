"""The overload load shape's vocabulary: its steps (``overload`` faults in their ``factor`` form), the user
count they ask for at each moment, and the rows the shape writes, which become the fault timeline.

An ``overload`` fault with ``factor`` multiplies the load's own users by ``factor`` from ``at_s`` for
``duration_s`` (seconds from the load's start), through a Locust ``LoadTestShape``
(:class:`loadgen.load_shape.OverloadShape`) inside the load process, locally and on Fargate alike. The
conductor hands the steps to the load as JSON in ``RESGATE_LOAD_SHAPE`` (:func:`encode_steps`); the shape
reads them back with :func:`decode_steps` and asks Locust, once a second, for :func:`users_at` users.

The shape writes ``<ledger dir>/shape-<pid>.jsonl``: a *sample* per tick ``{ts, t_s, users, target_users}``
(the users Locust runs and the count the shape asks for: the shape's user counts over time) and, per step,
*fault rows* in the fault timeline's format ``{ts, fault_id, kind: "overload", target, event, detail}``:

- ``injecting`` at the tick that first asked for the raised count (``detail``: ``factor``, ``base_users``,
  ``users``, ``duration_s``: the window it holds);
- ``injected`` at the first tick that saw Locust run the raised count (every extra user started), with an
  ``effect`` row (``observed`` true); if the window closes first, ``effect`` observed false and no
  ``injected``: the burst never reached its size, and the backpressure check judges no burst;
- ``aborted`` (``detail``: ``reason``) when the conductor asked the shape to stop early
  (:data:`ABORT_FILE` in the ledger directory: locally a guardrail's abort) or the run ended first;
- ``lifting`` at the tick that asked for the base count again; ``ended`` at the first tick that saw Locust
  back at it (the extra users stopped, each after its request in flight: their requests are in the ledger);
  ``detail``: ``users``, the users Locust ran then.

Every ``detail`` is an object.

:func:`timeline_rows` picks the fault rows out of the shape's lines: the local fault runner records them as
they come, and on AWS the timeline Lambda reads them from the load's uploaded ``load_shape.jsonl`` and adds
them to ``faults.jsonl``, so the backpressure check finds the burst window in the same place either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from resgate.contract.env import ENV_LOAD_SHAPE
from resgate.contract.errors import ConfigError
from resgate.contract.fields import number_field

FAULT_KIND = "overload"
SHAPE_PREFIX = "shape"
"""Each load process with a shape writes ``<ledger dir>/shape-<pid>.jsonl``."""
SHAPE_FILE = "load_shape.jsonl"
"""The shape's lines of a run, merged, as the load uploads them to the run's folder."""
ABORT_FILE = "shape-abort.json"
"""Written into the ledger directory by the conductor to end every held step now (``{"reason": ...}``)."""
FAULT_ROW_EVENTS = frozenset({"injecting", "injected", "effect", "aborted", "lifting", "ended"})
MAX_FACTOR = 100.0


@dataclass(frozen=True)
class ShapeStep:
    """One overload step: ``factor`` × the base users from ``at_s`` for ``duration_s`` (seconds from the
    load's start), the extra users started at ``spawn_rate`` per second (None: all within a second).
    ``name`` is the fault's name (the timeline's ``fault_id``), ``target`` the service it is judged by."""

    name: str
    at_s: float
    duration_s: float
    factor: float
    target: str = ""
    spawn_rate: float | None = None

    def users(self, base_users: int) -> int:
        """The user count this step asks for over ``base_users`` (at least the base)."""
        return max(base_users, surge_users(base_users, self.factor))

    def active(self, t_s: float) -> bool:
        """Whether the step holds at ``t_s`` seconds from the load's start (``[at_s, at_s + duration_s)``)."""
        return self.at_s <= t_s < self.at_s + self.duration_s


def surge_users(base_users: int, factor: float) -> int:
    """``base_users`` × ``factor``, rounded up (a fraction of a user is a user)."""
    return math.ceil(base_users * factor - 1e-9)


def encode_steps(steps: Sequence[ShapeStep]) -> str:
    """The steps as the JSON of ``RESGATE_LOAD_SHAPE`` (``""`` for none)."""
    if not steps:
        return ""
    return json.dumps({"steps": [asdict(s) for s in steps]}, sort_keys=True, separators=(",", ":"))


def decode_steps(raw: str | None, *, where: str = ENV_LOAD_SHAPE) -> tuple[ShapeStep, ...]:
    """The steps of ``RESGATE_LOAD_SHAPE`` (empty for an empty value); ConfigError naming the variable and
    the step's field for anything else than :func:`encode_steps` writes."""
    if not raw or not raw.strip():
        return ()
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"must be JSON {{'steps': [...]}}: {e}", where=where) from None
    items = body.get("steps") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError("must be an object with a non-empty list 'steps'", where=where)
    out = []
    for i, d in enumerate(items):
        w = f"{where}.steps[{i}]"
        if not isinstance(d, dict):
            raise ConfigError("must be an object", where=w)
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"must be a non-empty string, got {name!r}", where=f"{w}.name")
        rate = d.get("spawn_rate")
        out.append(
            ShapeStep(
                name=name,
                at_s=number_field(d, "at_s", w, lo=0, hi=1e7),
                duration_s=number_field(d, "duration_s", w, lo=0.5, hi=1e7),
                factor=number_field(d, "factor", w, lo=1, hi=MAX_FACTOR),
                target=str(d.get("target") or ""),
                spawn_rate=None if rate is None else number_field(d, "spawn_rate", w, lo=0.1, hi=1e6),
            )
        )
    return tuple(out)


def users_at(t_s: float, base_users: int, steps: Iterable[ShapeStep]) -> int:
    """The user count the shape asks for at ``t_s``: the largest of the steps holding then, else the base."""
    return max((s.users(base_users) for s in steps if s.active(t_s)), default=base_users)


def timeline_rows(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fault rows among a shape's lines (its samples left out), in time order, as ``faults.jsonl``
    rows ``{ts, fault_id, kind, target, event, detail}``."""
    rows = [
        {k: line.get(k) for k in ("ts", "fault_id", "kind", "target", "event", "detail")}
        for line in lines
        if line.get("event") in FAULT_ROW_EVENTS and line.get("kind") == FAULT_KIND and line.get("fault_id")
    ]
    return sorted(rows, key=lambda r: float(r["ts"]))


def samples(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The shape's per-tick samples ``{ts, t_s, users, target_users}`` among its lines, in time order."""
    out = [dict(line) for line in lines if "users" in line and "event" not in line]
    return sorted(out, key=lambda r: float(r["ts"]))
