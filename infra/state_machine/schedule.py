"""The fault schedule on AWS: each fault's fire time, an absolute timestamp from the moment the load started.

Locally a fault fires at ``load start + at_s`` (``resgate.runner.faults.FaultRunner``). The state machine
once turned ``at_s`` into delays between faults, and every fault's poll loop (at least one ``poll_s`` of
15 s) pushed the next one later: 10/25/30 s became 10/40/60 s, after the 45-s load had ended. Now one
state, ``Schedule faults``, computes every time once, as soon as the load task is seen RUNNING, from the
task's own ``StartedAt`` (``ecs:DescribeTasks``; when absent, the moment the state is entered): the end
of the baseline, each fault's time and the end of the load. Each later Wait waits *until* its timestamp
(``TimestampPath``; a time already past does not wait), so nothing a fault does can delay another.

Why JSONata: a Wait needs an ISO-8601 timestamp, and JSONPath's intrinsic functions have no date
arithmetic (``States.MathAdd`` adds integers; ``$$.Execution.StartTime`` and ``$$.State.EnteredTime``
are ISO strings). JSONata, which Step Functions runs per state (``QueryLanguage``) in a JSONPath state
machine, has ``$toMillis`` / ``$fromMillis``: the one JSONata state adds the offsets and no Lambda is
needed. The offsets are the execution input's ``waits`` (``baseline_s``, ``load_s`` and ``at_<fault
key>``, seconds from the load's start, defaults from the gate config; see
:func:`infra.state_machine.preflight.default_waits`), so a rehearsal can scale them.

The state writes ``$.schedule``::

    {"load_start": "2026-01-01T10:00:00Z", "baseline_end": "...", "load_end": "...",
     "faults": {"kill_gateway": "2026-01-01T10:00:10Z", ...}, "skipped": {}}

Times are written to the second, truncated, as Step Functions reads a Wait's timestamp anyway: a fault
fires at most a second before its exact time, plus the transition and API latency.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_stepfunctions as sfn

from infra import constants as c
from infra.state_machine.steps import Steps

# Where the load task's StartedAt is, as the load phase leaves the described task.
STARTED_AT = "$states.input.load_status.task.StartedAt"
SCHEDULE_PATH = "$.schedule"
# Whole seconds, ``2026-01-01T10:00:10Z``: a Wait reads its timestamp to the second anyway, and a Choice's
# timestamp comparison (the load-end check) then compares like with like.
TIMESTAMP_PICTURE = "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z"


def offset_key(fault_key: str) -> str:
    """The ``waits`` key of a fault's offset from the load's start (``at_kill_gateway``)."""
    return f"{c.FAULT_OFFSET_PREFIX}{fault_key}"


def fault_time_path(fault_key: str) -> str:
    """The JSONPath of a fault's fire time in the state's data."""
    return f"{SCHEDULE_PATH}.faults.{fault_key}"


def schedule_expression(fault_keys: Sequence[str]) -> str:
    """The JSONata ``Output`` of ``Schedule faults``: the input with ``schedule`` added (module docstring).

    ``StartedAt`` is an ISO-8601 string in the SDK integration's output; epoch seconds (or milliseconds)
    are accepted too, so the computation does not depend on how a timestamp is serialised.
    """
    waits = "$states.input.waits"
    faults = ", ".join(f"'{k}': $at({waits}.{offset_key(k)})" for k in fault_keys)
    return (
        "{% ("
        f"$t := {STARTED_AT}; "
        "$start := $type($t) = 'string' ? $toMillis($t) : ($type($t) = 'number' "
        "? ($t > 100000000000 ? $t : $t * 1000) : $toMillis($states.context.State.EnteredTime)); "
        f"$at := function($s) {{ $fromMillis($start + $s * 1000, '{TIMESTAMP_PICTURE}') }}; "
        "$merge([$states.input, {'schedule': {"
        "'load_start': $at(0), "
        f"'baseline_end': $at({waits}.baseline_s), "
        f"'load_end': $at({waits}.load_s), "
        f"'faults': {{{faults}}}, "
        "'skipped': {}"
        "}}])"
        ") %}"
    )


def build_schedule(steps: Steps, fault_keys: Sequence[str]) -> sfn.Pass:
    """``Schedule faults``: a JSONata Pass that writes ``$.schedule`` (its only JSONata state)."""
    return sfn.Pass.jsonata(steps.scope, "Schedule faults", outputs=schedule_expression(fault_keys))
