"""The SSM automations FIS runs for the faults it has no native action for: ``duplicate_delivery`` (the
redeliver Lambda) and ``kafka_broker_down`` (an MSK broker reboot). FIS starts them with
``aws:ssm:start-automation-execution`` at the fault's time, like every other fault's experiment
(:mod:`infra.fault_experiments`, ``fis_templates/ssm_automation.json``), so they share the schedule, the
guardrail stop conditions, the watch, the cleanup and the timeline.

- **Redeliver** (with a ``duplicate_delivery`` fault): a Lambda in the target's VPC
  (:mod:`lambdas.redeliver.handler`) that calls :func:`resgate.redelivery.redeliver`, the function the local
  fault runner calls, over the gate's Kafka settings (TLS, MSK IAM: the same environment as the checks').
  Its role may connect to the one MSK cluster and describe, read and write only the topics the faults name
  (``kafka-cluster:WriteDataIdempotently`` on the cluster for the idempotent producer). Its automation
  document has one ``aws:invokeLambdaFunction`` step, whose payload FIS passes (``Payload``): a function
  error fails the step, the automation and so the FIS action, which the timeline records as the fault's
  ``effect`` not observed.
- **Broker reboot** (with a ``kafka_broker_down`` fault, when ``kafka.cluster_arn`` names the MSK cluster):
  ``kafka:RebootBroker`` on the fault's broker (``aws:executeAwsApi``), then two waits on
  ``kafka:DescribeCluster``'s ``ClusterInfo.State``: first ``REBOOTING_BROKER`` (the observation that the
  fault took effect: an automation that never sees it fails), then ``ACTIVE`` (the broker is back). FIS has
  no MSK action; the shape follows the MSK reboot samples of aws-samples/fis-template-library.

One automation role for both documents, assumed by SSM only: ``lambda:InvokeFunction`` on the redeliver
function, ``kafka:RebootBroker``/``kafka:DescribeCluster`` on the one cluster. The FIS role may start only
these documents and pass only this role (:mod:`infra.fis_actions`).

Attributes: ``documents`` ({fault kind: :class:`Automation`}), ``role`` (the automation role; None without
such faults), ``redeliver_function`` and ``redeliver_role`` (None without ``duplicate_delivery``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.lambda_bundling import lambda_code
from infra.nag import acknowledge
from lambdas.common import settings as lambda_settings
from resgate.config.model import Fault
from resgate.contract.errors import ConfigError
from resgate.sections.kafka import KafkaSettings, cluster_parts

# The redeliver step's bound: aws:invokeLambdaFunction runs at most 300 s; redeliver's own loop 30 s.
REDELIVER_TIMEOUT_S = 120
# How long a broker may take to start rebooting, and to be back (MSK reboots one broker in minutes).
BROKER_REBOOT_START_S = 300
BROKER_REBOOT_END_S = 1800
AUTOMATION_KINDS = ("duplicate_delivery", "kafka_broker_down")


@dataclass(frozen=True)
class Automation:
    """One automation document: its ``arn`` (what FIS's ``documentArn`` takes) and the role it runs as."""

    arn: str
    role_arn: str
    max_duration_s: int

    def parameters(self, **values: str) -> str:
        """FIS's ``documentParameters``: a JSON object of strings, with the automation role."""
        return json.dumps({"AutomationAssumeRole": self.role_arn, **values}, separators=(",", ":"))


def redeliver_payload(fault: Fault) -> str:
    """The redeliver Lambda's payload of a ``duplicate_delivery`` fault (what the handler validates)."""
    p = fault.params
    return json.dumps(
        {
            "fault": fault.name,
            "topics": list(p["topics"]),
            "fraction": float(p["fraction"]),
            "max_events": int(p["max_events"]),
        },
        separators=(",", ":"),
    )


def redelivery_topics(faults: Sequence[Fault]) -> list[str]:
    """Every topic a ``duplicate_delivery`` fault names, once, sorted."""
    return sorted({t for f in faults if f.kind == "duplicate_delivery" for t in f.params["topics"]})


class FaultAutomation(Construct):
    """The automation documents, their role and the redeliver Lambda (module docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        root: Path,
        gate: str,
        faults: Sequence[Fault],
        vpc: ec2.IVpc,
        subnets: Sequence[ec2.ISubnet],
        kafka_bootstrap: str,
        kafka: KafkaSettings | None = None,
        skip_bundling: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        kafka = kafka or KafkaSettings()
        kinds = {f.kind for f in faults} & set(AUTOMATION_KINDS)
        self.documents: dict[str, Automation] = {}
        self.role: iam.Role | None = None
        self.redeliver_function: lambda_.Function | None = None
        self.redeliver_role: iam.Role | None = None
        if not kinds:
            return
        self.role = iam.Role(
            self,
            "AutomationRole",
            assumed_by=iam.ServicePrincipal(
                "ssm.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description=f"ResilienceGate {gate}: the SSM automations FIS runs for the gate's faults",
        )
        if "duplicate_delivery" in kinds:
            fn = self._redeliver_function(
                root=root,
                gate=gate,
                vpc=vpc,
                subnets=subnets,
                kafka_bootstrap=kafka_bootstrap,
                kafka=kafka,
                topics=redelivery_topics(faults),
                skip_bundling=skip_bundling,
            )
            self.role.add_to_policy(
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[fn.function_arn])
            )
            self.documents["duplicate_delivery"] = self._document(
                "RedeliverDocument",
                f"ResilienceGate {gate}: re-publish events of the fault's topics (duplicate_delivery)",
                {"Payload": {"type": "String", "description": "The redeliver Lambda's JSON payload"}},
                [
                    {
                        "name": "Redeliver",
                        "action": "aws:invokeLambdaFunction",
                        "timeoutSeconds": REDELIVER_TIMEOUT_S,
                        "onFailure": "Abort",
                        "inputs": {"FunctionName": fn.function_name, "Payload": "{{ Payload }}"},
                    }
                ],
                max_duration_s=REDELIVER_TIMEOUT_S + 60,
            )
        if "kafka_broker_down" in kinds:
            if not kafka.cluster_arn:  # infra.data_faults.check_data_faults refuses it at settings
                raise ConfigError("a kafka_broker_down fault needs it on AWS", where="kafka.cluster_arn")
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["kafka:RebootBroker", "kafka:DescribeCluster"], resources=[kafka.cluster_arn]
                )
            )
            describe = {"Service": "kafka", "Api": "DescribeCluster", "ClusterArn": "{{ ClusterArn }}"}
            self.documents["kafka_broker_down"] = self._document(
                "BrokerRebootDocument",
                f"ResilienceGate {gate}: reboot one MSK broker and wait until it is back (kafka_broker_down)",
                {
                    "ClusterArn": {"type": "String", "description": "The MSK cluster's ARN"},
                    "BrokerId": {"type": "String", "description": "The broker to reboot (1, 2, …)"},
                },
                [
                    {
                        "name": "RebootBroker",
                        "action": "aws:executeAwsApi",
                        "onFailure": "Abort",
                        "inputs": {
                            "Service": "kafka",
                            "Api": "RebootBroker",
                            "ClusterArn": "{{ ClusterArn }}",
                            "BrokerIds": ["{{ BrokerId }}"],
                        },
                    },
                    {
                        "name": "WaitForRebooting",
                        "action": "aws:waitForAwsResourceProperty",
                        "timeoutSeconds": BROKER_REBOOT_START_S,
                        "onFailure": "Abort",
                        "inputs": {
                            **describe,
                            "PropertySelector": "$.ClusterInfo.State",
                            "DesiredValues": ["REBOOTING_BROKER"],
                        },
                    },
                    {
                        "name": "WaitForActive",
                        "action": "aws:waitForAwsResourceProperty",
                        "timeoutSeconds": BROKER_REBOOT_END_S,
                        "onFailure": "Abort",
                        "inputs": {
                            **describe,
                            "PropertySelector": "$.ClusterInfo.State",
                            "DesiredValues": ["ACTIVE"],
                        },
                    },
                ],
                max_duration_s=BROKER_REBOOT_START_S + BROKER_REBOOT_END_S + 60,
            )

    # ------------------------------------------------------------------------------------------ parts
    def _document(
        self,
        construct_id: str,
        description: str,
        parameters: dict[str, Any],
        steps: list[dict[str, Any]],
        *,
        max_duration_s: int,
    ) -> Automation:
        assert self.role is not None
        doc = ssm.CfnDocument(
            self,
            construct_id,
            document_type="Automation",
            document_format="JSON",
            content={
                "schemaVersion": "0.3",
                "description": description,
                "assumeRole": "{{ AutomationAssumeRole }}",
                "parameters": {
                    "AutomationAssumeRole": {
                        "type": "String",
                        "description": "The role the automation runs as",
                    },
                    **parameters,
                },
                "mainSteps": steps,
            },
        )
        arn = Stack.of(self).format_arn(service="ssm", resource="document", resource_name=doc.ref)
        return Automation(arn=arn, role_arn=self.role.role_arn, max_duration_s=max_duration_s)

    def _redeliver_function(
        self,
        *,
        root: Path,
        gate: str,
        vpc: ec2.IVpc,
        subnets: Sequence[ec2.ISubnet],
        kafka_bootstrap: str,
        kafka: KafkaSettings,
        topics: Sequence[str],
        skip_bundling: bool,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            "RedeliverLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "RedeliverRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"ResilienceGate {gate}: the redeliver Lambda (duplicate_delivery)",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        role.add_to_policy(policies.lambda_vpc_statement())
        if kafka.iam:
            assert kafka.cluster_arn is not None  # infra.settings.check_kafka_on_aws
            region, account, name, uuid = cluster_parts(kafka.cluster_arn)
            partition = kafka.cluster_arn.split(":")[1]
            topic_arns = [f"arn:{partition}:kafka:{region}:{account}:topic/{name}/{uuid}/{t}" for t in topics]
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"],
                    resources=[kafka.cluster_arn],
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=[
                        "kafka-cluster:DescribeTopic",
                        "kafka-cluster:ReadData",
                        "kafka-cluster:WriteData",
                    ],
                    resources=topic_arns,
                )
            )
        self.security_group = ec2.SecurityGroup(
            self,
            "RedeliverClients",
            vpc=vpc,
            description=f"ResilienceGate {gate}: the redeliver Lambda (to MSK)",
            allow_all_outbound=True,
        )
        env = {
            c.ENV_POWERTOOLS_SERVICE_NAME: f"resgate-{c.REDELIVER_FUNCTION}",
            c.ENV_POWERTOOLS_METRICS_NAMESPACE: c.METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            c.ENV_KAFKA_BOOTSTRAP: kafka_bootstrap,
            **kafka.to_env(lambda_settings.KAFKA_ENV),
        }
        fn = lambda_.Function(
            self,
            "RedeliverFunction",
            description=f"ResilienceGate {gate}: re-publish events for a duplicate_delivery fault",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler=f"lambdas.{c.REDELIVER_FUNCTION}.handler.handler",
            code=lambda_code(root=root, name=c.REDELIVER_FUNCTION, skip_bundling=skip_bundling),
            memory_size=512,
            timeout=Duration.seconds(REDELIVER_TIMEOUT_S),
            tracing=lambda_.Tracing.ACTIVE,
            role=role,
            log_group=log_group,
            environment=env,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=list(subnets)),
            security_groups=[self.security_group],
        )
        acknowledge(fn, "AwsSolutions-L1", "The redeliver step is written and tested for Python 3.12.")
        self.redeliver_function = fn
        self.redeliver_role = role
        return fn
