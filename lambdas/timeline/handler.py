"""Lambda handler of the timeline step: write the run's ``faults.jsonl`` and ``health.jsonl`` from AWS.

The state machine calls it after the load and the quiesce wait, before the checks: the recovery check reads
these two files. Faults come from the run's FIS experiments (:mod:`lambdas.timeline.faults`), health from
the target services' ECS tasks and service events (:mod:`lambdas.timeline.health`). The event is the run
fields of :mod:`lambdas` plus :class:`lambdas.timeline.inputs.TimelineInputs`; the output
``{faults_uri, health_uri, fault_events, health_events, observed_until, active_faults, not_started}`` goes
to ``$.timeline`` (``observed_until`` is handed to the recovery check).

An invalid event raises :class:`resgate.contract.errors.ConfigError`; any AWS failure a
:class:`resgate.contract.errors.GateError` (the state machine retries it, then cleans up and fails the run).
"""

from __future__ import annotations

from typing import Any

from lambdas.common.aws import client
from lambdas.common.event import RunEvent
from lambdas.common.handler import Tools, lambda_handler
from lambdas.timeline.write import write_timeline

NAME = "timeline"


def _timeline(event: dict[str, Any], tools: Tools) -> dict[str, Any]:
    return write_timeline(RunEvent.from_event(event), tools, fis=client("fis"), ecs=client("ecs"))


handler = lambda_handler(NAME, _timeline)
