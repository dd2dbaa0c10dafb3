"""The gate's faults on AWS: one FIS experiment template per ``stop_task`` fault of the gate config.

Each template is ``fis_templates/stop_task.json`` (the FIS API's ``CreateExperimentTemplate`` shape, so it
also works with ``aws fis create-experiment-template --cli-input-json`` once filled in) with its
``{{PLACEHOLDERS}}`` filled by :func:`render_template`: action ``aws:ecs:stop-task`` on the tasks that carry
the config's target tags *and* the ECS managed tags of the fault's service (``aws:ecs:clusterName``,
``aws:ecs:serviceName``: the target services need ``enableECSManagedTags`` and ``propagateTags``), selected
with ``PERCENT(<percent>)``, then ``aws:fis:wait`` for the observation window (``ObserveRecovery``,
``startAfter`` the stop): FIS watches an experiment's stop conditions, the guardrail alarms, only while
the experiment runs, and a stop-task action ends in seconds, so without the wait no alarm could ever stop
an experiment. A breach while the service recovers now stops the experiment (status *stopped*), which
the state machine reads as a tripped guardrail.

Fault kinds without an AWS counterpart here (``hang``, ``db_blip``, ``kafka_*``, ``duplicate_delivery``)
are listed in ``skipped`` and reported as a synth warning; they run in the local gate only.

The FIS role may describe tasks of the target cluster only (``ecs:DescribeTasks``, conditioned on
``ecs:cluster``), stop only those of its tasks that carry the gate's target tags (``ecs:StopTask``
conditioned on ``ecs:cluster`` *and* ``aws:ResourceTag/<key>`` for every target tag: the same tags the
templates select tasks by), and resolve targets by tag (``tag:GetResources``, which has no resource-level
permission).

Every template carries an experiment report configuration: FIS writes each experiment's report (PDF)
to the evidence bucket under ``fis-reports/gate=<gate>/`` with the graphs of the gate's dashboard
(:mod:`infra.run_dashboard`) around the experiment. For that the role may put and get objects under that
prefix only, read that one dashboard (``cloudwatch:GetDashboard``) and render its graphs
(``cloudwatch:GetMetricWidgetImage``, which has no resource-level permission).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_fis as fis
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.guardrail_alarms import GuardrailAlarms
from resgate.config.schema import Fault
from resgate.contract.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def render_template(template: Any, values: Mapping[str, Any], *, source: str = "template") -> Any:
    """Fill ``{{NAME}}`` placeholders in a parsed JSON template.

    A string that is exactly one placeholder becomes the value itself (an object, a list, a token);
    placeholders inside longer strings are replaced by ``str(value)``. Raises :class:`ConfigError` for a
    placeholder without a value and for a value that no placeholder uses (template and code drifted).
    """
    used: set[str] = set()

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str):
            whole = _PLACEHOLDER.fullmatch(node)
            names = _PLACEHOLDER.findall(node)
            for n in names:
                if n not in values:
                    raise ConfigError(f"no value for placeholder {{{{{n}}}}}", where=source)
                used.add(n)
            if whole:
                return copy.deepcopy(values[whole.group(1)])
            return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
        return node

    out = fill(template)
    unused = set(values) - used
    if unused:
        raise ConfigError(f"values given for placeholders the template lacks: {sorted(unused)}", where=source)
    return out


def iso_duration(seconds: int) -> str:
    """``seconds`` as an ISO-8601 duration the way FIS writes them: ``PT1M``, ``PT1M30S``, ``PT2H``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ConfigError(
            f"must be a whole number of seconds >= 1, got {seconds!r}", where="observation window"
        )
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "PT" + "".join(f"{v}{u}" for v, u in ((h, "H"), (m, "M"), (s, "S")) if v)


def _observation_window(given: int | None, alarms: Sequence[cw.IAlarm]) -> int:
    """The observation window: ``given``, else the one the stop conditions' :class:`GuardrailAlarms` chose
    from the gate config, else the shortest ``aws:fis:wait``."""
    if given is not None:
        return given
    owners = {a.node.scope for a in alarms if isinstance(a.node.scope, GuardrailAlarms)}
    if len(owners) == 1:
        return owners.pop().observation_window_s
    return c.OBSERVATION_WINDOW_MIN_S


def state_key(name: str) -> str:
    """A fault name as a JSONPath-safe key of the state's data (``kill-gateway`` → ``kill_gateway``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


@dataclass(frozen=True)
class ExperimentSpec:
    """One ``stop_task`` fault as deployed: ``key`` is its JSONPath-safe name, ``service`` the ECS service."""

    fault: Fault
    key: str
    service: str
    percent: int
    template: fis.CfnExperimentTemplate
    rendered: dict[str, Any]

    @property
    def name(self) -> str:
        return self.fault.name

    @property
    def at_s(self) -> float:
        return self.fault.at_s

    @property
    def template_arn(self) -> str:
        """``arn:…:fis:<region>:<account>:experiment-template/<id>`` of the experiment's template."""
        return Stack.of(self.template).format_arn(
            service="fis", resource="experiment-template", resource_name=self.template.ref
        )


def _cfn_props(d: Mapping[str, Any]) -> dict[str, Any]:
    """The rendered API-shaped template as ``CfnExperimentTemplate`` keyword arguments."""
    props: dict[str, Any] = {
        "description": d["description"],
        "role_arn": d["roleArn"],
        "targets": {
            name: fis.CfnExperimentTemplate.ExperimentTemplateTargetProperty(
                resource_type=t["resourceType"],
                selection_mode=t["selectionMode"],
                resource_tags=t.get("resourceTags"),
                resource_arns=t.get("resourceArns"),
                parameters=t.get("parameters"),
                filters=[
                    fis.CfnExperimentTemplate.ExperimentTemplateTargetFilterProperty(
                        path=f["path"], values=f["values"]
                    )
                    for f in t.get("filters", [])
                ]
                or None,
            )
            for name, t in d["targets"].items()
        },
        "actions": {
            name: fis.CfnExperimentTemplate.ExperimentTemplateActionProperty(
                action_id=a["actionId"],
                description=a.get("description"),
                parameters=a.get("parameters") or None,
                targets=a.get("targets"),
                start_after=a.get("startAfter"),
            )
            for name, a in d["actions"].items()
        },
        "stop_conditions": [
            fis.CfnExperimentTemplate.ExperimentTemplateStopConditionProperty(
                source=s["source"], value=s.get("value")
            )
            for s in d["stopConditions"]
        ],
        "tags": d.get("tags") or {},
    }
    report = d.get("experimentReportConfiguration")
    if report:
        tpl = fis.CfnExperimentTemplate
        s3_out = report["outputs"]["s3Configuration"]
        dashboards = report.get("dataSources", {}).get("cloudWatchDashboards", [])
        props["experiment_report_configuration"] = (
            tpl.ExperimentTemplateExperimentReportConfigurationProperty(
                outputs=tpl.OutputsProperty(
                    experiment_report_s3_configuration=tpl.ExperimentReportS3ConfigurationProperty(
                        bucket_name=s3_out["bucketName"], prefix=s3_out.get("prefix")
                    )
                ),
                data_sources=tpl.DataSourcesProperty(
                    cloud_watch_dashboards=[
                        tpl.CloudWatchDashboardProperty(dashboard_identifier=x["dashboardIdentifier"])
                        for x in dashboards
                    ]
                )
                if dashboards
                else None,
                pre_experiment_duration=report.get("preExperimentDuration"),
                post_experiment_duration=report.get("postExperimentDuration"),
            )
        )
    opts = d.get("experimentOptions")
    if opts:
        props["experiment_options"] = fis.CfnExperimentTemplate.ExperimentTemplateExperimentOptionsProperty(
            account_targeting=opts.get("accountTargeting"),
            empty_target_resolution_mode=opts.get("emptyTargetResolutionMode"),
        )
    return props


class FaultExperiments(Construct):
    """The FIS role and one experiment template per ``stop_task`` fault, in ``at_s`` order.

    Attributes: ``role`` (assumed by FIS, granted what the actions need), ``report_bucket`` and
    ``report_prefix`` (where FIS writes the experiment reports), ``experiments``
    (list of :class:`ExperimentSpec`), ``templates`` ({fault name: CfnExperimentTemplate}), ``skipped``
    (faults with no AWS implementation), ``target_cluster``, ``observation_window_s`` (the ``aws:fis:wait``
    after each fault; default: :attr:`GuardrailAlarms.observation_window_s` of the stop conditions).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gate: str,
        template_dir: Path,
        faults: Sequence[Fault],
        target_cluster: str,
        ecs_services: Mapping[str, str],
        target_tags: Mapping[str, str],
        stop_condition_alarms: Sequence[cw.IAlarm],
        report_bucket: s3.IBucket,
        report_dashboard_arn: str,
        observation_window_s: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.observation_window_s = _observation_window(observation_window_s, stop_condition_alarms)
        self.target_cluster = target_cluster
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "fis.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description=f"ResilienceGate {gate}: FIS experiments against cluster {target_cluster}",
        )
        cluster = policies.cluster_arn(self, target_cluster)
        policies.add_statements(
            self.role,
            policies.cluster_task_statements(
                self, cluster_name=target_cluster, cluster=cluster, task_actions=["ecs:DescribeTasks"]
            ),
        )
        # FIS stops the tasks it selected by these tags; the role may stop no other task of the cluster.
        self.role.add_to_policy(
            policies.tagged_tasks_statement(
                self, cluster_name=target_cluster, cluster=cluster, tags=target_tags, actions=["ecs:StopTask"]
            )
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=["tag:GetResources"], resources=["*"]))
        # The experiment reports: written under the gate's report prefix only, with the dashboard's graphs.
        self.report_prefix = f"{c.FIS_REPORTS_PREFIX}/gate={gate}"
        self.report_bucket = report_bucket
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[report_bucket.arn_for_objects(f"{self.report_prefix}/*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetDashboard"], resources=[report_dashboard_arn])
        )
        # GetMetricWidgetImage renders a graph from its definition: it has no resource-level permission.
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricWidgetImage"], resources=["*"])
        )
        path = template_dir / c.FIS_STOP_TASK_TEMPLATE
        try:
            template = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read the FIS template: {e}", where=str(path)) from e
        stop_conditions = [
            {"source": "aws:cloudwatch:alarm", "value": a.alarm_arn} for a in stop_condition_alarms
        ]
        self.experiments: list[ExperimentSpec] = []
        self.templates: dict[str, fis.CfnExperimentTemplate] = {}
        self.skipped: list[Fault] = []
        keys: set[str] = set()
        for fault in sorted(faults, key=lambda f: f.at_s):
            if fault.kind != "stop_task":
                self.skipped.append(fault)
                Annotations.of(self).add_warning_v2(
                    f"resgate:fault-skipped:{fault.name}",
                    f"fault {fault.name} ({fault.kind}) has no AWS implementation yet: it runs locally only",
                )
                continue
            service = ecs_services.get(fault.target or "", fault.target or "")
            if not service:
                raise ConfigError("a stop_task fault needs a target service", where=f"faults.{fault.name}")
            percent = round(float(fault.params.get("percent", 50)))
            if not 1 <= percent <= 100:
                raise ConfigError(
                    f"FIS selects PERCENT(1..100) of the tasks, got {fault.params.get('percent')!r}",
                    where=f"faults.{fault.name}.percent",
                )
            key = state_key(fault.name)
            if key in keys:
                raise ConfigError(f"two faults map to the same key {key!r}", where=f"faults.{fault.name}")
            keys.add(key)
            rendered = render_template(
                template,
                {
                    "DESCRIPTION": f"ResilienceGate {gate}: {fault.name} stops {percent}% of {service} tasks",
                    "ROLE_ARN": self.role.role_arn,
                    "RESOURCE_TAGS": {
                        **dict(target_tags),
                        c.ECS_TAG_CLUSTER: target_cluster,
                        c.ECS_TAG_SERVICE: service,
                    },
                    "PERCENT": percent,
                    "STOP_CONDITIONS": stop_conditions,
                    "OBSERVATION_WINDOW": iso_duration(self.observation_window_s),
                    "TAGS": {"Name": f"resgate-{gate}-{fault.name}", c.TAG_GATE: gate},
                    "REPORT_BUCKET": report_bucket.bucket_name,
                    "REPORT_PREFIX": self.report_prefix,
                    "REPORT_DASHBOARD": report_dashboard_arn,
                },
                source=str(path),
            )
            cfn = fis.CfnExperimentTemplate(self, f"Template-{key}", **_cfn_props(rendered))
            self.templates[fault.name] = cfn
            self.experiments.append(
                ExperimentSpec(
                    fault=fault, key=key, service=service, percent=percent, template=cfn, rendered=rendered
                )
            )

    def template_arns(self) -> list[str]:
        """The template ARNs of every experiment, in ``at_s`` order."""
        return [s.template_arn for s in self.experiments]
