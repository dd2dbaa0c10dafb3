"""One gate Lambda in the shape every one of them shares: its own log group, its own role (allowed to
write only that group, plus the ENI actions when it runs in the VPC), the Powertools and evidence settings
in its environment, Python 3.12 on x86_64 with X-Ray, and its sizing (:data:`SIZING`).

What a function does beyond that (its extra environment, the grants on what it reads and writes) belongs
to the construct that gives it that job: :mod:`infra.assertion_functions` (the checks, the verdict, the
timeline and quiesce steps), :mod:`infra.replay_rebuilds` (replay's rebuild tasks) and
:mod:`infra.abort_cleanup` (the cleanup after an aborted run).

:class:`GateFunction` adds its three resources to the scope it is given, under the ids
``<Name>Logs``, ``<Name>Role`` and ``<Name>Function``, rather than under a node of its own: the construct
paths, and so the logical ids of every deployed Lambda, role and log group, stay those they always had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra import policies
from infra.evidence_bucket import EvidenceStore
from infra.lambda_bundling import lambda_code
from infra.nag import acknowledge

# Per function: (memory MB, timeout s, ephemeral storage MB). integrity/replay COPY the ledger into
# Postgres and rebuild read models from the topics; the others read small files.
SIZING: dict[str, tuple[int, int, int]] = {
    "slo": (1024, 300, 512),
    "recovery": (512, 300, 512),
    "retryable": (1024, 300, 512),
    "backpressure": (1024, 300, 512),
    "integrity": (2048, 900, 2048),
    "replay": (2048, 900, 2048),
    "verdict": (512, 120, 512),
    "timeline": (512, 120, 512),
    "cleanup": (256, 120, 512),
    "quiesce": (512, 900, 512),  # waits up to lambdas.quiesce.settle.MAX_WAIT_S
    # holds the stream ledger (one record per trade per subscriber) and the trades topic in memory
    "streaming": (2048, 900, 512),
}


def base_environment(name: str, evidence: EvidenceStore) -> dict[str, str]:
    """The environment every gate Lambda has: where the evidence is, and Powertools' service, namespace
    and log level."""
    return {
        c.ENV_EVIDENCE_BUCKET: evidence.bucket.bucket_name,
        c.ENV_EVIDENCE_PREFIX: c.EVIDENCE_PREFIX,
        c.ENV_POWERTOOLS_SERVICE_NAME: f"resgate-{name}",
        c.ENV_POWERTOOLS_METRICS_NAMESPACE: c.METRICS_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


class GateFunction:
    """The Lambda ``lambdas.<name>.handler.handler`` of gate ``gate``, built in ``scope`` (see the module):
    ``environment`` is added to :func:`base_environment`; with ``vpc``, it runs in ``subnets`` with
    ``security_groups``.

    Attributes: ``name``, ``function``, ``role``, ``log_group``.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        name: str,
        gate: str,
        root: Path,
        skip_bundling: bool,
        evidence: EvidenceStore,
        environment: Mapping[str, str] = {},
        vpc: ec2.IVpc | None = None,
        subnets: Sequence[ec2.ISubnet] = (),
        security_groups: Sequence[ec2.ISecurityGroup] = (),
    ) -> None:
        self.name = name
        memory, timeout, storage = SIZING[name]
        self.log_group = logs.LogGroup(
            scope,
            f"{name.title()}Logs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        what = "step" if name in c.INFRA_FUNCTIONS else "assertion"
        self.role = iam.Role(
            scope,
            f"{name.title()}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"ResilienceGate {gate}: the {name} {what} Lambda",
        )
        # Instead of AWSLambdaBasicExecutionRole (any log group): only this function's own group.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        if vpc is not None:
            # Before the function: CDK makes it depend on the role's policy, which CreateFunction checks.
            self.role.add_to_policy(policies.lambda_vpc_statement())
        self.function = lambda_.Function(
            scope,
            f"{name.title()}Function",
            description=f"ResilienceGate {gate}: {name} {what}",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler=f"lambdas.{name}.handler.handler",
            code=lambda_code(root=root, name=name, skip_bundling=skip_bundling),
            memory_size=memory,
            timeout=Duration.seconds(timeout),
            ephemeral_storage_size=Size.mebibytes(storage),
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
            log_group=self.log_group,
            environment={**base_environment(name, evidence), **environment},
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=list(subnets)) if vpc is not None else None,
            security_groups=list(security_groups) if vpc is not None else None,
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "The checkers and their wheels (manylinux2014, cp312) are built and tested for Python 3.12.",
        )
