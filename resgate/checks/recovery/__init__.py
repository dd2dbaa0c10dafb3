"""The recovery check: after each injected fault, did the target become healthy again within the RTO, and
did the client error ratio return to its pre-fault level?

Evidence is the fault timeline (``{ts, fault_id, kind, target, event}`` with ``event`` one of injected,
detected, recovered, aborted, ended), health observations of services (either ``{ts, service, healthy}``
probes or the local supervisor's ``{ts, service, replica, event}`` timeline) and, optionally, error-ratio
windows derived from the client ledger (:func:`error_ratio_windows`).

Per fault, measured from its ``injected`` event — or, for a fault *held* for a while (its injected event
carries ``detail.duration_s``: a hang, a database or broker outage, a partition, added latency…), from the
moment it was lifted (its ``ended``/``aborted`` event, else its scheduled end), since nothing recovers from
a partition while it lasts:

- **time to detection** — the first observation of the target service at or after injection, and before
  the next fault's injection, that signals a failure (``healthy: false``, or an event in
  :data:`UNHEALTHY_EVENTS` such as unhealthy/exited/killed);
- **time to healthy** — the first moment after that detection (or after injection, when nothing was
  detected) at which every known replica of the target service is healthy; for a held fault, a target
  healthy at the moment the fault is lifted recovered then (0 s). A replica's state is its last
  observation; replicas whose last event is in :data:`RETIRED_EVENTS` no longer count. Only when the health
  observations say nothing about the target after injection does the fault timeline's own ``detected`` /
  ``recovered`` events stand in (``source: "fault_timeline"``);
- **RTO met** — time to healthy ``<= rto_s`` (default :data:`resgate.contract.constants.DEFAULT_RTO_SECONDS`);
- **error ratio back** — the ledger error ratio (outcome ``fail`` or ``info``) in the windows starting
  within ``after_window_s`` after recovery (and ending before the next injection) is at most the baseline
  ratio (windows ending before the first injection) plus ``error_ratio_tolerance``.

A fault whose target was still unhealthy when the observation ended is a failure ("never recovered"); a run
in which nothing was injected is ``unknown``.

Modules: :mod:`.evidence` (the records and how they are read) and :mod:`.check` (thresholds, per-fault
figures, anomalies and the verdict). This package re-exports their public names.
"""

from __future__ import annotations

from resgate.checks.recovery.check import (
    DEFAULT_AFTER_WINDOW_S,
    DEFAULT_ERROR_RATIO_TOLERANCE,
    FAILING_KINDS,
    INFO_KINDS,
    NAME,
    UNDECIDED_KINDS,
    FaultTimeline,
    RecoveryThresholds,
    check,
    detect,
    fault_figures,
    fault_recovery,
    fault_timelines,
    target_service,
)
from resgate.checks.recovery.evidence import (
    DEFAULT_WINDOW_S,
    FAULT_EVENTS,
    HEALTHY_EVENTS,
    RETIRED_EVENTS,
    UNHEALTHY_EVENTS,
    ErrorWindow,
    FaultEvent,
    HealthObservation,
    RecoveryEvidence,
    error_ratio_windows,
    evidence_from_run,
)

Thresholds = RecoveryThresholds

__all__ = [
    "DEFAULT_AFTER_WINDOW_S",
    "DEFAULT_ERROR_RATIO_TOLERANCE",
    "DEFAULT_WINDOW_S",
    "FAILING_KINDS",
    "FAULT_EVENTS",
    "HEALTHY_EVENTS",
    "INFO_KINDS",
    "NAME",
    "RETIRED_EVENTS",
    "UNDECIDED_KINDS",
    "UNHEALTHY_EVENTS",
    "ErrorWindow",
    "FaultEvent",
    "FaultTimeline",
    "HealthObservation",
    "RecoveryEvidence",
    "RecoveryThresholds",
    "Thresholds",
    "check",
    "detect",
    "error_ratio_windows",
    "evidence_from_run",
    "fault_figures",
    "fault_recovery",
    "fault_timelines",
    "target_service",
]
