"""The guardrails on AWS: CloudWatch alarms on the load's error ratio and p95, the FIS stop conditions.

They read what the load task itself publishes (:mod:`loadgen.live_metrics`): high-resolution metrics in
the namespace ``ResilienceGate/Load`` with the dimension ``Gate=<gate>``, one datapoint per 10 s, the same
figures the local guardrail watcher judges (``resgate.runner.guardrails``):

- ``ErrorRatio`` > ``guardrails.max_error_ratio``;
- ``LatencyP95`` (ms) > ``guardrails.max_p95_ms``;

each over 10-s periods (``guardrails.window_s`` rounded up to a period a high-resolution alarm allows: 10,
20, 30 s or a whole number of minutes) for as many periods as the local watcher's breach lasts
(``consecutive_windows`` × ``window_s``, rounded up to whole periods), every one of them breaching
(``DatapointsToAlarm`` = ``EvaluationPeriods``), missing data not breaching (no traffic is no breach).
The load balancer's own metrics come once a minute and would trip an alarm long after a stop-task
experiment has ended; FIS only watches its stop conditions while an experiment runs, which is why each
experiment also holds them through an observation window after its fault
(:attr:`GuardrailAlarms.observation_window_s`, the experiments' ``aws:fis:wait``).
"""

from __future__ import annotations

import math

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from infra import constants as c
from resgate.config.schema import Guardrails


def alarm_period_s(window_s: float) -> int:
    """The guardrail window rounded up to a high-resolution alarm period (10, 20, 30 s, else minutes), at
    least the load task's publishing period."""
    seconds = max(float(window_s), float(c.LOAD_METRICS_PERIOD_S))
    for p in c.HIGH_RESOLUTION_PERIODS_S:
        if seconds <= p:
            return p
    return math.ceil(seconds / 60) * 60


def evaluation_periods(guardrails: Guardrails, period_s: int) -> int:
    """How many periods the alarm must breach: the local watcher's breach (``consecutive_windows`` windows
    of ``window_s``) in whole periods, at least one."""
    return max(1, math.ceil(guardrails.consecutive_windows * guardrails.window_s / period_s - 1e-9))


def observation_window_s(periods: int, period_s: int, configured: float | None = None) -> int:
    """How long each experiment keeps watching its stop conditions after its fault.

    ``configured`` (the gate config's ``guardrails.observation_s`` once it exists) wins; the default is
    long enough for a breach that starts with the fault to trip the alarm: the breaching periods plus one
    for the load task's publishing delay (a period is sent after it settled). Either is kept within what
    ``aws:fis:wait`` accepts (one minute to 12 hours).
    """
    seconds = math.ceil(configured) if configured is not None else (periods + 1) * period_s
    return min(max(seconds, c.OBSERVATION_WINDOW_MIN_S), c.OBSERVATION_WINDOW_MAX_S)


class GuardrailAlarms(Construct):
    """Attributes: ``error_ratio_alarm``, ``p95_alarm``, ``alarms`` (both, in that order), ``period_s``,
    ``evaluation_periods``, ``observation_window_s`` (for the experiments' ``aws:fis:wait``).

    ``load_balancer`` is accepted for the stack's wiring but no longer read: the alarms watch the load
    task's own metrics.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gate: str,
        guardrails: Guardrails,
        load_balancer: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        del load_balancer
        self.period_s = alarm_period_s(guardrails.window_s)
        self.evaluation_periods = evaluation_periods(guardrails, self.period_s)
        self.observation_window_s = observation_window_s(
            self.evaluation_periods, self.period_s, getattr(guardrails, "observation_s", None)
        )
        period = Duration.seconds(self.period_s)
        breach = f"for {self.evaluation_periods} x {self.period_s}s (FIS stop condition)"

        def metric(name: str) -> cw.Metric:
            # One datapoint per period: Maximum is that datapoint (and the worst, should two land in one).
            return cw.Metric(
                namespace=c.LOAD_METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={c.LOAD_METRICS_DIMENSION: gate},
                statistic="Maximum",
                period=period,
            )

        evaluation = {
            "evaluation_periods": self.evaluation_periods,
            "datapoints_to_alarm": self.evaluation_periods,
            "comparison_operator": cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            "treat_missing_data": cw.TreatMissingData.NOT_BREACHING,
        }
        self.error_ratio_alarm = cw.Alarm(
            self,
            "ErrorRatio",
            alarm_description=(
                f"ResilienceGate {gate} guardrail: the load's error ratio > {guardrails.max_error_ratio:g} "
                + breach
            ),
            metric=metric(c.LOAD_METRIC_ERROR_RATIO),
            threshold=guardrails.max_error_ratio,
            **evaluation,
        )
        self.p95_alarm = cw.Alarm(
            self,
            "LatencyP95",
            alarm_description=(
                f"ResilienceGate {gate} guardrail: the load's p95 > {guardrails.max_p95_ms:g} ms " + breach
            ),
            metric=metric(c.LOAD_METRIC_P95),
            threshold=guardrails.max_p95_ms,
            **evaluation,
        )
        self.alarms = (self.error_ratio_alarm, self.p95_alarm)
