"""The guardrails on AWS: CloudWatch alarms on the target's error ratio and p95, the FIS stop conditions.

They watch the target's Application Load Balancer (``AWS/ApplicationELB``, dimension ``LoadBalancer``):

- error ratio = (target 5xx + load-balancer 5xx) / requests, alarm when > ``guardrails.max_error_ratio``;
- p95 of ``TargetResponseTime`` (seconds), alarm when > ``guardrails.max_p95_ms`` / 1000;

each over ``guardrails.consecutive_windows`` periods of ``guardrails.window_s`` rounded up to a whole
minute (ALB metrics have one-minute resolution), missing data not breaching (no traffic is no breach).
The local runner judges the same bounds on the load's own live stats.
"""

from __future__ import annotations

import math

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from resgate.config.schema import Guardrails

NAMESPACE = "AWS/ApplicationELB"


def alarm_period_s(window_s: float) -> int:
    """The guardrail window rounded up to the ALB metrics' one-minute resolution."""
    return max(60, math.ceil(window_s / 60) * 60)


class GuardrailAlarms(Construct):
    """Attributes: ``error_ratio_alarm``, ``p95_alarm``, ``alarms`` (both, in that order), ``period_s``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, gate: str, load_balancer: str, guardrails: Guardrails
    ) -> None:
        super().__init__(scope, construct_id)
        self.period_s = alarm_period_s(guardrails.window_s)
        period = Duration.seconds(self.period_s)
        dims = {"LoadBalancer": load_balancer}

        def metric(name: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace=NAMESPACE, metric_name=name, dimensions_map=dims, statistic=statistic, period=period
            )

        ratio = cw.MathExpression(
            expression="IF(requests > 0, (target5xx + elb5xx) / requests, 0)",
            using_metrics={
                "requests": metric("RequestCount", "Sum"),
                "target5xx": metric("HTTPCode_Target_5XX_Count", "Sum"),
                "elb5xx": metric("HTTPCode_ELB_5XX_Count", "Sum"),
            },
            label="error ratio",
            period=period,
        )
        evaluation = {
            "evaluation_periods": guardrails.consecutive_windows,
            "datapoints_to_alarm": guardrails.consecutive_windows,
            "comparison_operator": cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            "treat_missing_data": cw.TreatMissingData.NOT_BREACHING,
        }
        self.error_ratio_alarm = cw.Alarm(
            self,
            "ErrorRatio",
            alarm_description=(
                f"ResilienceGate {gate} guardrail: error ratio > {guardrails.max_error_ratio:g} "
                f"for {guardrails.consecutive_windows} x {self.period_s}s (FIS stop condition)"
            ),
            metric=ratio,
            threshold=guardrails.max_error_ratio,
            **evaluation,
        )
        self.p95_alarm = cw.Alarm(
            self,
            "LatencyP95",
            alarm_description=(
                f"ResilienceGate {gate} guardrail: p95 > {guardrails.max_p95_ms:g} ms "
                f"for {guardrails.consecutive_windows} x {self.period_s}s (FIS stop condition)"
            ),
            metric=metric("TargetResponseTime", "p95"),
            threshold=guardrails.max_p95_ms / 1000.0,
            **evaluation,
        )
        self.alarms = (self.error_ratio_alarm, self.p95_alarm)
