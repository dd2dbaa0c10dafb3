"""The gate stack: wires the constructs of :mod:`infra` for one gate config.

Each construct creates its own resources and grants its own principals what they need on the resources
it is given, so the stack only decides what goes where: the evidence store to the functions, the load
task and the state machine; the load cluster and the experiments to the cleanup Lambda and the state
machine; the target cluster and services to the timeline Lambda, FIS and the state machine; the run
lock and the notification topic to the state machine and the cleanup Lambda. IAM is least
privilege, and every wildcard is bounded by a prefix, a cluster or a tag (see each construct's module).

Once every grant is made, the stack acknowledges the IAM findings that a reviewed rule of
:data:`infra.nag.IAM_FINDING_RULES` covers; any other finding fails cdk-nag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Annotations, ArnFormat, CfnOutput, Environment, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra import constants as c
from infra.abort_cleanup import AbortCleanup
from infra.assertion_functions import AssertionFunctions
from infra.data_faults import FaultResources, database_arn
from infra.evidence_bucket import EvidenceStore
from infra.fault_automation import FaultAutomation
from infra.fault_experiments import FaultExperiments
from infra.gate_state_machine import GateStateMachine
from infra.guardrail_alarms import GuardrailAlarms
from infra.load_generator import LoadGenerator, max_load_workers
from infra.nag import IAM_FINDING_RULES, acknowledge_iam_findings
from infra.pipeline_action import PipelineGateProject
from infra.run_dashboard import RunDashboard, dashboard_arn
from infra.run_lock import RunLock
from infra.settings import DeploymentSettings
from infra.triggers import NightlyTrigger

__all__ = ["IAM_FINDING_RULES", "GateStack"]


class GateStack(Stack):
    """One gate on AWS. Attributes: the constructs (``evidence``, ``functions``, ``alarms``, ``faults``,
    ``load``, ``topic``, ``lock``, ``gate_machine``, ``dashboard``, ``nightly``, ``pipeline_project``,
    ``abort_cleanup``),
    ``state_machine`` and ``unreviewed_findings`` (IAM findings no acknowledgement rule covers: cdk-nag
    reports them)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: DeploymentSettings, root: Path
    ) -> None:
        env = (
            Environment(account=settings.account, region=settings.region)
            if settings.account or settings.region
            else None
        )
        super().__init__(
            scope,
            construct_id,
            stack_name=settings.stack_name,
            env=env,
            description=f"ResilienceGate {settings.gate}: load, faults and assertions as a promotion gate",
        )
        cfg = settings.config
        gate = cfg.name
        self.gate = gate
        Tags.of(self).add(c.TAG_GATE, gate)

        vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=settings.vpc_id,
            availability_zones=settings.availability_zones,
            private_subnet_ids=settings.subnet_ids,
        )
        subnets = list(vpc.private_subnets)
        secret_arn = settings.db_secret_arn or self.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=c.PLACEHOLDER_SECRET_NAME.format(gate=gate),
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

        self.evidence = EvidenceStore(self, "Evidence", gate=gate)
        self.alarms = GuardrailAlarms(
            self,
            "Guardrails",
            gate=gate,
            load_balancer=settings.target_load_balancer,
            guardrails=cfg.guardrails,
        )
        # The data-path faults' automations (redeliver Lambda, MSK broker reboot) and database (issue 21).
        self.fault_automation = FaultAutomation(
            self,
            "FaultAutomation",
            root=root,
            gate=gate,
            faults=cfg.faults,
            vpc=vpc,
            subnets=subnets,
            kafka_bootstrap=settings.kafka_bootstrap,
            kafka=settings.kafka,
            skip_bundling=settings.skip_bundling,
        )
        aws_db = cfg.target.aws.database if cfg.target.aws else None
        fault_resources = FaultResources(
            automations=self.fault_automation.documents,
            database=aws_db,
            database_arn=database_arn(
                aws_db,
                format_arn=lambda kind, name: self.format_arn(
                    service="rds", resource=kind, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
                ),
            ),
            kafka_cluster_arn=settings.kafka.cluster_arn if settings.kafka else None,
            kafka_bootstrap=settings.kafka_bootstrap,
        )
        self.faults = FaultExperiments(
            self,
            "Faults",
            gate=gate,
            template_dir=root / c.FIS_TEMPLATE_DIR,
            faults=cfg.faults,
            target_cluster=settings.target_cluster,
            ecs_services=settings.target_services,
            target_tags=settings.target_tags,
            stop_condition_alarms=self.alarms.alarms,
            report_bucket=self.evidence.bucket,
            report_dashboard_arn=dashboard_arn(self, gate),
            profile_faults={n: p.faults for n, p in cfg.profiles.items()},
            skip_bundling=settings.skip_bundling,
            resources=fault_resources,
        )
        # The services the preflight and the timeline look at: the faults' targets, else every service. An
        # overload by factor starts no experiment but is judged on its target's health like one: without
        # its service the timeline wrote no health row for it and recovery was unknown on every AWS run.
        shaped = {f.target: settings.ecs_service(f.target) for f in self.faults.load_steps if f.target}
        timeline_services = {s.fault.target: s.service for s in self.faults.experiments} | shaped
        target_services = sorted(
            {settings.ecs_service(s.service) for s in self.faults.experiments} | set(shaped.values())
            or set(settings.target_services.values())
        )
        # A leader loss is watched by the load task (loadgen.leader_watch): it reads the target cluster's
        # tasks, and the timeline reads the samples it uploads.
        leader_loss = any(f.kind == "leader_loss" for f in cfg.faults)
        self.leader_loss = leader_loss
        self.load = LoadGenerator(
            self,
            "LoadGenerator",
            root=root,
            gate=gate,
            vpc=vpc,
            subnets=subnets,
            load=cfg.load,
            target_url=settings.target_url,
            image_uri=settings.loadgen_image,
            evidence=self.evidence,
            workers=max_load_workers(cfg),
            leader_cluster=settings.target_cluster if leader_loss else None,
        )
        # Before the functions and the state machine: the cleanup notifies and releases the lock too.
        self.topic = sns.Topic(
            self,
            "Notifications",
            display_name=f"ResilienceGate {gate}",
            master_key=kms.Alias.from_alias_name(self, "SnsManagedKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
        if settings.notify_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.notify_email))
        self.lock = RunLock(
            self, "RunLock", gate=gate, target_cluster=settings.target_cluster, lease_s=c.LOCK_LEASE_S
        )
        self.functions = AssertionFunctions(
            self,
            "Assertions",
            root=root,
            gate=gate,
            evidence=self.evidence,
            vpc=vpc,
            subnets=subnets,
            db_secret_arn=secret_arn,
            kafka_bootstrap=settings.kafka_bootstrap,
            unknown_is_failure=cfg.unknown_is_failure,
            skip_bundling=settings.skip_bundling,
            target_cluster=settings.target_cluster,
            target_services=target_services,
            experiments=self.faults.experiments,
            ops_items=settings.ops_items,
            kafka=settings.kafka,
            kafka_topics=settings.kafka_topics,
            replay_tasks=settings.replay_tasks,
            quiesce_groups=[g.group for g in cfg.quiesce.consumer_groups],
            optional_checks=[n for n in c.OPTIONAL_CHECK_FUNCTIONS if n in cfg.enabled_checks()],
            streaming_topic=settings.streaming_topic,
            leader_samples=leader_loss,
        )
        self.gate_machine = GateStateMachine(
            self,
            "Gate",
            config=cfg,
            config_text=settings.config_text,
            evidence=self.evidence,
            check_functions=self.functions.check_functions,
            verdict_function=self.functions.verdict_function,
            timeline_function=self.functions.timeline_function,
            quiesce_function=self.functions.quiesce_function,
            load=self.load,
            target_cluster=settings.target_cluster,
            target_services=target_services,
            timeline_services=timeline_services,
            experiments=self.faults.experiments,
            topic=self.topic,
            lock=self.lock,
            preflight_function=self.faults.preflight_function,
            network_services=self.faults.network_services,
        )
        self.state_machine = self.gate_machine.state_machine
        self.dashboard = RunDashboard(
            self,
            "Dashboard",
            gate=gate,
            guardrails=cfg.guardrails,
            alarms=self.alarms,
            target_cluster=settings.target_cluster,
            target_services=target_services,
        )
        # The templates name the dashboard by its ARN (a literal, for the experiment reports): without this
        # dependency the first deploy could create a template before its dashboard exists.
        for template in self.faults.templates.values():
            template.node.add_dependency(self.dashboard)
        self.nightly = NightlyTrigger(
            self,
            "Nightly",
            gate=gate,
            state_machine=self.state_machine,
            schedule=settings.nightly_schedule,
            profile=c.NIGHTLY_PROFILE if c.NIGHTLY_PROFILE in cfg.profiles else None,
        )
        self.pipeline_project = PipelineGateProject(
            self,
            "Pipeline",
            gate=gate,
            state_machine=self.state_machine,
            evidence=self.evidence,
            profile=c.PIPELINE_PROFILE if c.PIPELINE_PROFILE in cfg.profiles else None,
        )
        self.abort_cleanup = AbortCleanup(
            self,
            "AbortCleanup",
            gate=gate,
            state_machine=self.state_machine,
            function=self.functions.cleanup_function,
            evidence=self.evidence,
            load_cluster=self.load.cluster,
            experiments=self.faults.experiments,
            lock=self.lock,
            topic=self.topic,
            ops_items=settings.ops_items,
        )

        self._outputs()
        self._warnings(settings)
        self.unreviewed_findings = acknowledge_iam_findings(self, IAM_FINDING_RULES)

    # ------------------------------------------------------------------------------------------ outputs
    def _outputs(self) -> None:
        values: dict[str, Any] = {
            "StateMachineArn": self.state_machine.state_machine_arn,
            "EvidenceBucket": self.evidence.bucket.bucket_name,
            "GlueDatabase": self.evidence.database_name,
            "AthenaWorkGroup": self.evidence.workgroup.name,
            "GateName": self.evidence.gate,
            "EvidencePrefix": c.EVIDENCE_PREFIX,
            "NotificationTopic": self.topic.topic_arn,
            "LoadCluster": self.load.cluster.cluster_name,
            "LockTable": self.lock.table_name,
            "DashboardName": self.dashboard.name,
            "PipelineProject": self.pipeline_project.project.project_name,
            "DatabaseClientsSecurityGroup": self.functions.database_security_group.security_group_id,
        }
        if self.fault_automation.redeliver_function is not None:
            # The redeliver Lambda reaches MSK from its own group: the brokers' group must let it in.
            values["RedeliverSecurityGroup"] = self.fault_automation.security_group.security_group_id
        if self.functions.stream_security_group is not None:
            # The streaming Lambda reads the trades topic from its own group: let it into the brokers only.
            values["StreamClientsSecurityGroup"] = self.functions.stream_security_group.security_group_id
        if self.leader_loss:
            # The leader watch reaches the target's tasks at their private addresses on each leader loss's
            # health port, from the load tasks' group: the target service's group must let it in there.
            values["LoadTasksSecurityGroup"] = self.load.security_group.security_group_id
        for key, value in values.items():
            CfnOutput(self, key, value=value)

    def _warnings(self, settings: DeploymentSettings) -> None:
        if settings.placeholders:
            Annotations.of(self).add_warning_v2(
                "resgate:placeholders",
                "placeholder values in use (synth only, do not deploy): "
                + ", ".join(f"-c {k}=..." for k in settings.placeholders),
            )
