"""The run dashboard: one CloudWatch dashboard per gate, opened on one run's window from that run's links.

A dashboard *per run* would need the state machine to ``PutDashboard`` (a write permission on
dashboards, and one dashboard per execution left behind to clean up). A dashboard is a view over
metrics, and the console opens any dashboard on a given time range from its URL
(``…#dashboards/dashboard/<name>?start=<ISO-8601>&end=<ISO-8601>``), so one dashboard serves every run:
the state machine links it with the run's window (:func:`run_url_format`, ``States.Format`` of the
execution's start and the verdict's time) in the notification and the execution's output. No run-time
permission at all, one resource.

Widgets: the load task's own 10-s metrics (``ResilienceGate/Load``: ``Requests``, ``ErrorRatio``,
``LatencyP95``, dimension ``Gate``; :mod:`loadgen.live_metrics`) with the guardrails' thresholds drawn
in; the guardrail alarms' states; the checks' EMF metrics (``ResilienceGate``: ``CheckValid``,
``CheckFailed``, ``CheckUnknown``, dimensions ``service, gate, check``: a ``SEARCH`` on the gate, since
the service dimension is per function); and the fault markers: each target service's running task count
(Container Insights ``RunningTaskCount``), in which every ``stop_task`` fault is a dip and its recovery
the climb back. The same dashboard is each FIS experiment report's data source
(:mod:`infra.fault_experiments`), so a report carries these graphs around its experiment.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from infra import constants as c
from infra.guardrail_alarms import GuardrailAlarms
from resgate.config.schema import Guardrails


def dashboard_name(gate: str) -> str:
    """The dashboard's name: ``ResilienceGate-<gate>`` (known at synth, so links need no lookup)."""
    return f"ResilienceGate-{gate}"


def dashboard_arn(scope: Construct, gate: str) -> str:
    """``arn:<partition>:cloudwatch::<account>:dashboard/<name>`` (dashboards are global: no region)."""
    return Stack.of(scope).format_arn(
        service="cloudwatch", region="", resource="dashboard", resource_name=dashboard_name(gate)
    )


def run_url_format(gate: str) -> str:
    """The console URL of the dashboard as a ``States.Format`` template with two ``{}``: the run's start
    and end (ISO-8601). Nothing in it needs ``States.Format``'s escaping (no quote, brace or backslash)."""
    return (
        f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
        f"#dashboards/dashboard/{dashboard_name(gate)}?start={{}}&end={{}}"
    )


class RunDashboard(Construct):
    """The gate's dashboard. Attributes: ``dashboard``, ``name``, ``arn``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gate: str,
        guardrails: Guardrails,
        alarms: GuardrailAlarms,
        target_cluster: str,
        target_services: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.name = dashboard_name(gate)
        self.arn = dashboard_arn(self, gate)
        period = Duration.seconds(c.LOAD_METRICS_PERIOD_S)

        def load(metric: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace=c.LOAD_METRICS_NAMESPACE,
                metric_name=metric,
                dimensions_map={c.LOAD_METRICS_DIMENSION: gate},
                statistic=statistic,
                period=period,
            )

        checks = [
            cw.MathExpression(
                expression=(
                    f'SEARCH(\'{{{c.METRICS_NAMESPACE},check,gate,service}} gate="{gate}" '
                    f"MetricName=\"{name}\"', 'Sum', 60)"
                ),
                label=name,
                period=Duration.minutes(1),
            )
            for name in c.CHECK_METRICS
        ]
        tasks = [
            cw.Metric(
                namespace="ECS/ContainerInsights",
                metric_name="RunningTaskCount",
                dimensions_map={"ClusterName": target_cluster, "ServiceName": service},
                statistic="Minimum",
                # Container Insights publishes RunningTaskCount once a minute: a 10 s period shows gaps.
                period=Duration.minutes(1),
                label=service,
            )
            for service in target_services
        ]
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self.name,
            default_interval=Duration.hours(3),
            widgets=[
                [
                    cw.TextWidget(
                        markdown=(
                            f"# ResilienceGate {gate}\nA run's report and notification link this dashboard "
                            "on that run's window. Dips in *running tasks* are the faults (FIS "
                            "`aws:ecs:stop-task`); the climb back is the recovery."
                        ),
                        width=24,
                        height=2,
                    )
                ],
                [
                    cw.GraphWidget(
                        title="Load: requests per 10 s", left=[load(c.LOAD_METRIC_REQUESTS, "Sum")]
                    ),
                    cw.GraphWidget(
                        title="Load: error ratio",
                        left=[load(c.LOAD_METRIC_ERROR_RATIO, "Maximum")],
                        left_annotations=[
                            cw.HorizontalAnnotation(value=guardrails.max_error_ratio, label="guardrail")
                        ],
                    ),
                    cw.GraphWidget(
                        title="Load: p95 latency (ms)",
                        left=[load(c.LOAD_METRIC_P95, "Maximum")],
                        left_annotations=[
                            cw.HorizontalAnnotation(value=guardrails.max_p95_ms, label="guardrail")
                        ],
                    ),
                    cw.AlarmStatusWidget(
                        title="Guardrails (FIS stop conditions)", alarms=list(alarms.alarms)
                    ),
                ],
                [
                    cw.GraphWidget(
                        title="Faults: running tasks of the target services", left=tasks, width=12
                    ),
                    cw.GraphWidget(title="Checks (valid / failed / unknown)", left=checks, width=12),
                ],
            ],
        )
