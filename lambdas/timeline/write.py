"""The timeline step's work: read the run's FIS experiments and the target services' ECS tasks, write
``faults.jsonl`` and ``health.jsonl`` to the run's store in the local runner's formats.

The state machine calls it after the load and the quiesce wait, before the checks: the recovery check reads
these two files. Faults come from :mod:`lambdas.timeline.faults` (the FIS experiments) and from the load
shape's fault rows (its ``overload`` steps by ``factor``, which the load task ran and uploaded in
``load_shape.jsonl``: :func:`shape_rows`) and the load task's leader samples (one ``leader_samples`` row per
``leader_loss``, its detail :meth:`resgate.runner.leader.LeaderSampler.record`, uploaded in
``leader_samples.jsonl``: :func:`leader_rows`), health from :mod:`lambdas.timeline.health`.
The event is the run fields of :mod:`lambdas` plus :class:`lambdas.timeline.inputs.TimelineInputs`; the
output goes to ``$.timeline`` (``observed_until`` is handed to the recovery check). An invalid event raises
ConfigError; any AWS failure a GateError (the state machine retries it, then cleans up and fails the run).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.common.event import RunEvent
from lambdas.timeline.faults import fault_rows
from lambdas.timeline.health import fault_windows, service_health
from lambdas.timeline.inputs import TimelineInputs
from resgate.contract.shape import timeline_rows
from resgate.evidence.store import RunStore, read_jsonl, write_jsonl


def shape_rows(store: RunStore) -> list[dict[str, Any]]:
    """The fault rows of the load shape's overload steps (``load_shape.jsonl``, uploaded by the load task
    when it ran a shape; none without it), in the timeline's format (:mod:`resgate.contract.shape`)."""
    if not store.exists("load_shape"):
        return []
    return timeline_rows(read_jsonl(store, "load_shape"))


def leader_rows(store: RunStore) -> list[dict[str, Any]]:
    """The ``leader_samples`` rows of the run's leader losses (``leader_samples.jsonl``, uploaded by the load
    task that sampled the target's replicas around each one; none without it), as the local runner records
    them: ``{ts, fault_id, kind: "leader_loss", target, event: "leader_samples", detail}``. Other lines are
    left out."""
    if not store.exists("leader_samples"):
        return []
    return [
        {k: line.get(k) for k in ("ts", "fault_id", "kind", "target", "event", "detail")}
        for line in read_jsonl(store, "leader_samples")
        if line.get("event") == "leader_samples"
        and line.get("kind") == "leader_loss"
        and line.get("fault_id")
        and isinstance(line.get("detail"), dict)
        and isinstance(line.get("ts"), int | float)
    ]


def write_timeline(run: RunEvent, tools: Any, *, fis: Any, ecs: Any) -> dict[str, Any]:
    """Write the two timelines; return ``{faults_uri, health_uri, fault_events, health_events,
    observed_until, active_faults, not_started}``."""
    inputs = TimelineInputs.from_event(run)
    store = run.store()
    faults, active = fault_rows(fis, ecs, inputs.cluster, inputs.faults, now=time.time())
    surges = shape_rows(store)
    # only a run with a leader loss has samples to read (and its timeline role the grant to read them)
    leaders = leader_rows(store) if "leader_loss" in inputs.kinds else []
    faults = sorted([*faults, *surges, *leaders], key=lambda r: float(r["ts"]))
    if active:
        tools.logger.warning("experiments have not ended yet", extra={"faults": active})
    health, failures = service_health(
        ecs,
        inputs.cluster,
        inputs.services,
        start=inputs.started_at,
        end=inputs.ended_at,
        held=fault_windows(faults),
    )
    if failures:
        tools.logger.warning("ECS could not describe some listed tasks", extra={"failures": failures[:10]})
    uris = {
        "faults_uri": write_jsonl(store, "faults", faults),
        "health_uri": write_jsonl(store, "health", health),
    }
    tools.metrics.add_dimension(name="gate", value=run.gate)
    tools.metrics.add_metric(name="TimelineFaultEvents", unit=MetricUnit.Count, value=len(faults))
    tools.metrics.add_metric(name="TimelineHealthEvents", unit=MetricUnit.Count, value=len(health))
    tools.tracer.put_annotation(key="run_id", value=run.run_id)
    out = {
        **uris,
        "fault_events": len(faults),
        "health_events": len(health),
        "observed_until": inputs.ended_at,
        "active_faults": active,
        "not_started": list(inputs.not_started),
    }
    tools.logger.info("timeline written", extra=out)
    return out
