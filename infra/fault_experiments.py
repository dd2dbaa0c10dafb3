"""The gate's faults on AWS: one FIS experiment template per fault of the gate config that FIS can run.

How each kind maps to an FIS action, and which are skipped, is :mod:`infra.network_faults`. Each template
is a file of ``fis_templates/`` (``stop_task.json``, ``task_network_blackhole_port.json``,
``task_network_latency.json``, ``task_network_packet_loss.json``, ``zone_loss.json``; the FIS API's
``CreateExperimentTemplate`` shape, so each also works with ``aws fis create-experiment-template
--cli-input-json`` once filled in) with its ``{{PLACEHOLDERS}}`` filled by :func:`render_template`: the
fault's action on the tasks that carry the config's target tags *and* the ECS managed tags of the target
cluster and the fault's service (``aws:ecs:clusterName``, ``aws:ecs:serviceName``: the target services
need ``enableECSManagedTags`` and ``propagateTags``), then ``aws:fis:wait`` for the observation window
(``ObserveRecovery``, ``startAfter`` the fault): FIS watches an experiment's stop conditions, the guardrail
alarms, only while the experiment runs, and a stop-task action ends in seconds, so without the wait no
alarm could ever stop an experiment. A breach while the service recovers now stops the experiment (status
*stopped*), which the state machine reads as a tripped guardrail. Every template has those stop conditions.

A fault kind no FIS action can run is a ConfigError naming the field and why
(:func:`infra.network_faults.refusal`); only ``overload``, whose AWS form is built beside the Fargate load,
is listed in ``skipped`` (with ``skip_reasons``) and reported as a synth warning. A network fault FIS would
run differently than configured (``mode: refuse``) is a ConfigError, and so is a schedule in which two
network faults would hold at once (FIS runs the network actions, a ``hang``'s and a ``kafka_latency``'s
included, one at a time; the config's faults and every profile's are checked).

The FIS role gets, for each FIS action the templates use, the permissions the FIS actions reference lists
for it (:data:`infra.fis_actions.ACTION_PERMISSIONS`, the one table the static rule in ``tests/infra``
reads too), each as scoped as the action allows (:func:`infra.fis_actions.statements_for`): describe and
list tasks and container instances of the target cluster only (``ecs:cluster``), stop only those of its
tasks that carry the gate's target tags (``ecs:StopTask`` conditioned on ``ecs:cluster`` *and*
``aws:ResourceTag/<key>`` for every target tag: the same tags the templates select tasks by), send FIS's own
SSM documents (``AWSFIS-*``) only to the SSM managed instances whose ``ECS_TASK_ARN`` tag is a task of the
target cluster (the target's SSM agent sidecars register them so); ``tag:GetResources``,
``ec2:DescribeInstances``/``DescribeSubnets`` and ``ssm:ListCommands``/``CancelCommand`` have no
resource-level permission. With network faults the construct adds the preflight Lambda
(:mod:`lambdas.preflight.handler`) the state machine runs before such a run, which describes the network
faults' services and their task definitions and names what they lack.

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

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_fis as fis
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import constants as c
from infra import fis_actions, policies
from infra.data_faults import FaultResources
from infra.guardrail_alarms import GuardrailAlarms
from infra.lambda_bundling import lambda_code
from infra.nag import acknowledge
from infra.network_faults import (
    Skipped,
    check_network_schedule,
    plan_fault,
)
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


def _read_template(path: Path) -> Any:
    """A template file of ``fis_templates/``, parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read the FIS template: {e}", where=str(path)) from e


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
    """One fault as deployed: ``key`` is its JSONPath-safe name, ``service`` the ECS service."""

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
    """The FIS role and one experiment template per fault FIS can run, in ``at_s`` order.

    Attributes: ``role`` (assumed by FIS, granted what the actions need), ``report_bucket`` and
    ``report_prefix`` (where FIS writes the experiment reports), ``experiments``
    (list of :class:`ExperimentSpec`), ``templates`` ({fault name: CfnExperimentTemplate}), ``skipped``
    (faults with no AWS implementation) and ``skip_reasons`` ({fault name: why}), ``target_cluster``,
    ``observation_window_s`` (the ``aws:fis:wait`` after each fault; default:
    :attr:`GuardrailAlarms.observation_window_s` of the stop conditions), ``network_services`` (the ECS
    services of the network faults) and ``preflight_function`` (the Lambda that checks their task
    definitions; None without network faults). ``profile_faults`` ({profile: its faults}) are checked
    against FIS's one-network-action-at-a-time rule too. The preflight's asset is built from the repository
    next to ``template_dir`` with its own botocore (``skip_bundling``: the sources only, as for the other
    functions); ``action_ids`` are the FIS actions the templates use, each granted its documented
    permissions (:mod:`infra.fis_actions`).
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
        profile_faults: Mapping[str, Sequence[Fault]] | None = None,
        skip_bundling: bool = False,
        resources: FaultResources | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        resources = resources or FaultResources()
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
        stop_conditions = [
            {"source": "aws:cloudwatch:alarm", "value": a.alarm_arn} for a in stop_condition_alarms
        ]
        self.experiments: list[ExperimentSpec] = []
        self.templates: dict[str, fis.CfnExperimentTemplate] = {}
        self.skipped: list[Fault] = []
        self.skip_reasons: dict[str, str] = {}
        files: dict[str, Any] = {}
        keys: set[str] = set()
        network_services: set[str] = set()
        region = Stack.of(self).region
        for fault in sorted(faults, key=lambda f: f.at_s):
            plan = plan_fault(
                fault,
                ecs_services=ecs_services,
                region=region,
                service_tag=c.ECS_TAG_SERVICE,
                resources=resources,
            )
            if isinstance(plan, Skipped):
                self.skipped.append(fault)
                self.skip_reasons[fault.name] = plan.reason
                Annotations.of(self).add_warning_v2(
                    f"resgate:fault-skipped:{fault.name}",
                    f"fault {fault.name} ({fault.kind}) does not run on AWS: {plan.reason}",
                )
                continue
            for i, warning in enumerate(plan.warnings):
                Annotations.of(self).add_warning_v2(f"resgate:fault-scope:{fault.name}:{i}", warning)
            key = state_key(fault.name)
            if key in keys:
                raise ConfigError(f"two faults map to the same key {key!r}", where=f"faults.{fault.name}")
            keys.add(key)
            network_services.update(plan.task_services)
            path = template_dir / plan.template_file
            if path not in files:
                files[path] = _read_template(path)
            common = {
                "DESCRIPTION": f"ResilienceGate {gate}: {plan.description}",
                "ROLE_ARN": self.role.role_arn,
                "RESOURCE_TAGS": {
                    **dict(target_tags),
                    c.ECS_TAG_CLUSTER: target_cluster,
                    **plan.service_tags,
                },
                "SELECTION_MODE": plan.selection_mode,
                "STOP_CONDITIONS": stop_conditions,
                "OBSERVATION_WINDOW": iso_duration(self.observation_window_s),
                "TAGS": {"Name": f"resgate-{gate}-{fault.name}", c.TAG_GATE: gate},
                "REPORT_BUCKET": report_bucket.bucket_name,
                "REPORT_PREFIX": self.report_prefix,
                "REPORT_DASHBOARD": report_dashboard_arn,
            }
            # A template without ECS targets (the data-path faults') has no RESOURCE_TAGS placeholder.
            used = set(_PLACEHOLDER.findall(json.dumps(files[path])))
            rendered = render_template(
                files[path],
                {**{k: v for k, v in common.items() if k in used}, **plan.values},
                source=str(path),
            )
            cfn = fis.CfnExperimentTemplate(self, f"Template-{key}", **_cfn_props(rendered))
            self.templates[fault.name] = cfn
            self.experiments.append(
                ExperimentSpec(
                    fault=fault,
                    key=key,
                    service=plan.service,
                    percent=plan.percent,
                    template=cfn,
                    rendered=rendered,
                )
            )
        # FIS runs the network actions one at a time: every schedule the gate may run is checked.
        check_network_schedule([s.fault for s in self.experiments])
        for name, profile in (profile_faults or {}).items():
            names = {s.name for s in self.experiments}
            check_network_schedule([f for f in profile if f.name in names], where=f"profiles.{name}.faults")
        # Every service whose tasks a network action runs in (a kafka_latency's: every client service).
        self.network_services = sorted(network_services)
        # Each action's documented permissions (infra.fis_actions), scoped to the target cluster and tags.
        self.action_ids = sorted(
            {a["actionId"] for s in self.experiments for a in s.rendered["actions"].values()}
        )
        policies.add_statements(
            self.role,
            fis_actions.statements_for(
                self,
                fis_actions.permissions_for(self.action_ids),
                cluster_name=target_cluster,
                target_tags=target_tags,
                databases=[resources.database_arn] if resources.database_arn else [],
                automation_documents=sorted({d.arn for d in resources.automations.values()}),
                automation_roles=sorted({d.role_arn for d in resources.automations.values()}),
            ),
        )
        self.preflight_function: lambda_.Function | None = None
        if self.network_services:
            self.preflight_function = self._preflight_function(
                gate=gate,
                root=template_dir.parent,
                target_cluster=target_cluster,
                skip_bundling=skip_bundling,
            )

    def _preflight_function(
        self, *, gate: str, root: Path, target_cluster: str, skip_bundling: bool
    ) -> lambda_.Function:
        """The preflight Lambda (:mod:`lambdas.preflight.handler`): describes the network faults' services
        and their task definitions. Its asset bundles its own boto3/botocore (:mod:`infra.lambda_bundling`,
        ``LAMBDA_EXTRA_REQUIREMENTS["preflight"]``): the runtime's may not know ``enableFaultInjection``.
        Its own role: its log group, ``ecs:DescribeServices`` on those services (conditioned on the
        cluster), ``ecs:DescribeTaskDefinition`` (no resource-level permission)."""
        log_group = logs.LogGroup(
            self,
            "PreflightLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "PreflightRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"ResilienceGate {gate}: the fault-injection preflight Lambda",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        role.add_to_policy(
            policies.describe_services_statement(
                self, cluster_name=target_cluster, services=self.network_services
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["ecs:DescribeTaskDefinition"], resources=["*"]))
        fn = lambda_.Function(
            self,
            "PreflightFunction",
            description=f"ResilienceGate {gate}: are the target's tasks set up for FIS's network actions?",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler="lambdas.preflight.handler.handler",
            code=lambda_code(root=root, name=c.PREFLIGHT_FUNCTION, skip_bundling=skip_bundling),
            memory_size=256,
            timeout=Duration.seconds(60),
            tracing=lambda_.Tracing.ACTIVE,
            role=role,
            log_group=log_group,
        )
        acknowledge(fn, "AwsSolutions-L1", "The preflight's code is written and tested for Python 3.12.")
        self.preflight_role = role
        return fn

    def template_arns(self) -> list[str]:
        """The template ARNs of every experiment, in ``at_s`` order."""
        return [s.template_arn for s in self.experiments]
