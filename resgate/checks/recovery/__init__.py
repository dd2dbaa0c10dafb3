"""The recovery check: after each injected fault, did the target become healthy again within the RTO, and
does the service serve again: its throughput back to a fraction of the baseline's, its error ratio back to
the baseline's?

Evidence is the fault timeline (``{ts, fault_id, kind, target, event}`` with ``event`` one of injecting,
injected, detected, recovered, lifting, aborted, ended), health observations of services (either ``{ts,
service, healthy}`` probes or the local supervisor's ``{ts, service, replica, event}`` timeline) and,
optionally, the client ledger's requests (:func:`served_requests`: when each started and completed) with
the load's end (from the load's per-second live lines, which run from its start to its stop even where no
request completed).

A fault whose conductor observed that it had **no effect** (its ``effect`` event says ``observed: false``: a
kill that found no live replica, a partition on a path no request took) is judged ``unknown``: a calm run
proves nothing about recovery.

Each fault has two moments at its start: its injection **started** (``injecting``; nothing of it acted
before) and it was **in effect** (``injected``). Faults are ordered and separated by their start: a fault's
windows end where the next fault's injection starts (a database that is being stopped already fails
requests), and a request in flight across a fault's start counts for neither side. Per fault, measured from
the moment it was in effect, or, for a fault *held* for a while (its injection carries
``detail.duration_s``: a hang, a database or broker outage, a partition, added latency…), from the end of
its lift (its ``ended`` event, else ``aborted``, else its scheduled end), since nothing recovers from a
partition while it lasts:

- **time to detection** — the first observation of the target service from the injection's start and
  before the next fault's start that signals a failure (``healthy: false``, or an event in
  :data:`UNHEALTHY_EVENTS` such as unhealthy/exited/killed), timed from the in-effect moment (0 when the
  failure was seen while the injection ran);
- **time to healthy** — the first moment after that detection (or after injection, when nothing was
  detected) at which every known replica of the target service is healthy; for a held fault, a target
  healthy at the moment the fault is lifted recovered then (0 s). A replica's state is its last
  observation; replicas whose last event is in :data:`RETIRED_EVENTS` no longer count. Only when the health
  observations say nothing about the target after injection does the fault timeline's own ``detected`` /
  ``recovered`` events stand in (``source: "fault_timeline"``);
- **RTO met** — time to healthy ``<= rto_s`` (default :data:`resgate.contract.constants.DEFAULT_RTO_SECONDS`);
- **serves again** — in the *after-window* (from recovery for ``after_window_s``, cut at the next fault's
  start and at the load's end), the completed ok requests per second are at least ``min_throughput_ratio``
  (default 0.5) of the baseline's (the requests completed before the first fault started), else
  ``throughput_not_back``: a window the load covered in which nothing completed is the outage itself, not
  a window without data. Its error ratio (outcome ``fail`` or ``info``) is at most the baseline's plus
  ``error_ratio_tolerance``, else ``error_ratio_not_back``. A window cut so short (by the next fault, or
  because the load had ended) that the baseline rate expects fewer than :data:`MIN_EXPECTED_REQUESTS`
  completions, or shorter than :data:`MIN_AFTER_WINDOW_S`, is ``serving_unmeasured`` (reported only);
  when the load's end is not known, the same silence is undecided (``unknown``), since it may be the
  outage.

A fault whose target was still unhealthy when the observation ended is a failure ("never recovered"); a run
in which nothing was injected, or with no completed request before the first fault (no load), is
``unknown``.

Modules: :mod:`.evidence` (the records and how they are read) and :mod:`.check` (thresholds, per-fault
figures, anomalies and the verdict). This package re-exports their public names.
"""

from __future__ import annotations

from resgate.checks.recovery.check import (
    DEFAULT_AFTER_WINDOW_S,
    DEFAULT_ERROR_RATIO_TOLERANCE,
    DEFAULT_MIN_THROUGHPUT_RATIO,
    FAILING_KINDS,
    INFO_KINDS,
    MIN_AFTER_WINDOW_S,
    MIN_EXPECTED_REQUESTS,
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
    FAULT_EVENTS,
    HEALTHY_EVENTS,
    RETIRED_EVENTS,
    UNHEALTHY_EVENTS,
    FaultEvent,
    HealthObservation,
    RecoveryEvidence,
    Served,
    evidence_from_run,
    load_end_from_live,
    served_requests,
)

Thresholds = RecoveryThresholds

__all__ = [
    "DEFAULT_AFTER_WINDOW_S",
    "DEFAULT_ERROR_RATIO_TOLERANCE",
    "DEFAULT_MIN_THROUGHPUT_RATIO",
    "FAILING_KINDS",
    "FAULT_EVENTS",
    "HEALTHY_EVENTS",
    "INFO_KINDS",
    "MIN_AFTER_WINDOW_S",
    "MIN_EXPECTED_REQUESTS",
    "NAME",
    "RETIRED_EVENTS",
    "UNDECIDED_KINDS",
    "UNHEALTHY_EVENTS",
    "FaultEvent",
    "FaultTimeline",
    "HealthObservation",
    "RecoveryEvidence",
    "RecoveryThresholds",
    "Served",
    "Thresholds",
    "check",
    "detect",
    "evidence_from_run",
    "fault_figures",
    "fault_recovery",
    "fault_timelines",
    "load_end_from_live",
    "served_requests",
    "target_service",
]
