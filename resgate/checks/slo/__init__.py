"""The SLO check: latency percentiles, error ratio and throughput under load; regression against a baseline.

Figures come from Locust's per-endpoint stats (``locust --json``: a list of ``{name, method, num_requests,
num_failures, num_none_requests, response_times: {"<ms>": count}, start_time, last_request_timestamp, …}``).
Percentiles of the whole run are read from the merged histogram of all endpoints (nearest rank, see
:mod:`resgate.checks.histogram`); the error ratio is ``sum(num_failures) / sum(num_requests)`` (Locust counts
a failed request in both); throughput is ``sum(num_requests) / duration_s``.

Regression mode compares the run with a stored golden baseline. A regression is reported only when both
hold: the run's p95 or p99 is more than ``max_ratio`` times the baseline's, **and** a one-sided
Mann-Whitney U test (``scipy.stats.mannwhitneyu(current, baseline, alternative="greater")``) on per-window
samples gives ``p < alpha``. The per-window samples are built by :func:`window_p95`: the ledger records are
cut into fixed windows of ``window_s`` seconds (default 5 s) aligned on the first record's ``ts``
(window ``i`` holds ``t0 + i*window_s <= ts < t0 + (i+1)*window_s``), and each non-empty window yields the
nearest-rank p95 of its records' ``latency_ms`` (all outcomes, as Locust's histograms include failures).
With fewer than ``min_windows`` (default 3) windows on either side the regression part is ``unknown``: a run
that short is no evidence either way. Note that with 3 windows a side the smallest possible one-sided
p-value is 0.05, so a significant result at ``alpha=0.05`` needs at least 4 windows a side.

Per phase (:mod:`.phases`: baseline, each fault's during and recovery, steady, cut from the fault timeline),
the same figures come from the ledger's merged per-second histograms and are judged against
``phases:`` limits; each run's phases are also compared with the gate's golden profile (:mod:`.golden`,
recorded by ``resgate baseline set``) when one is set, and "no baseline" is reported, not judged, when not.

Modules: :mod:`.evidence` (Locust stats and ledger windows), :mod:`.thresholds` (limits and regression
mode), :mod:`.phases`, :mod:`.golden` and :mod:`.check` (figures, anomalies and the verdict). This package
re-exports their public names.
"""

from __future__ import annotations

from resgate.checks.slo.check import (
    FAILING_KINDS,
    INFO_KINDS,
    NAME,
    UNDECIDED_KINDS,
    Figures,
    SloMeasurement,
    check,
    compare_with_baseline,
    detect,
    mann_whitney_greater,
    run_duration,
    run_figures,
)
from resgate.checks.slo.evidence import (
    DEFAULT_WINDOW_S,
    EndpointStats,
    SloEvidence,
    evidence_from_run,
    stats_from_ledger,
    window_p95,
)
from resgate.checks.slo.golden import GoldenProfile, compare_phases
from resgate.checks.slo.phases import PHASES, PhaseFigures, PhaseWindow, phase_windows, run_phases
from resgate.checks.slo.thresholds import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_RATIO,
    DEFAULT_MIN_WINDOWS,
    LIMIT_KEYS,
    PhaseLimits,
    RegressionThresholds,
    SloThresholds,
)

Thresholds = SloThresholds

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MAX_RATIO",
    "DEFAULT_MIN_WINDOWS",
    "DEFAULT_WINDOW_S",
    "FAILING_KINDS",
    "INFO_KINDS",
    "LIMIT_KEYS",
    "NAME",
    "PHASES",
    "UNDECIDED_KINDS",
    "EndpointStats",
    "Figures",
    "GoldenProfile",
    "PhaseFigures",
    "PhaseLimits",
    "PhaseWindow",
    "RegressionThresholds",
    "SloEvidence",
    "SloMeasurement",
    "SloThresholds",
    "Thresholds",
    "check",
    "compare_phases",
    "compare_with_baseline",
    "detect",
    "evidence_from_run",
    "mann_whitney_greater",
    "phase_windows",
    "run_duration",
    "run_figures",
    "run_phases",
    "stats_from_ledger",
    "window_p95",
]
