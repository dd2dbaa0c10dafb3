"""One run per target at a time: the DynamoDB table that holds each target's lock, and who may touch it.

A gate run breaks its target on purpose; two runs on the same target at once (a nightly run and a
pipeline run) would each see the other's faults and neither verdict would mean anything. The state
machine's preflight takes the lock (:mod:`infra.state_machine.lock`) and every ending releases it: the
verdict phase, the cleanup branch and, for an aborted or timed-out execution, the cleanup Lambda.

The table holds at most one item per target, keyed by :data:`LOCK_KEY_ATTRIBUTE` = ``<target
cluster>/<gate>``, with the holder's run id, execution ARN and start time and the lease's end
(``expires_at``, epoch seconds). A lease ends after the state machine's timeout plus a margin, so a live
run can never lose its lock, and a lock whose release was lost (a cleanup Lambda that failed for an
hour) is taken over by the next run once the lease has ended; ``expires_at`` is also the table's TTL
attribute, so DynamoDB removes such an item by itself eventually (TTL deletion may lag by days, which is
why the acquisition checks the lease and does not wait for it).

The construct offers the statements its users grant themselves (as :class:`infra.evidence_bucket.
EvidenceStore` does): ``dynamodb:PutItem``/``GetItem``/``DeleteItem`` for the state machine, only
``DeleteItem`` for the cleanup Lambda, each on this table only and, through ``dynamodb:LeadingKeys``,
on this one target's item only.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.nag import acknowledge
from lambdas.common import settings as lambda_settings

LOCK_KEY_ATTRIBUTE = lambda_settings.LOCK_KEY_ATTRIBUTE
LOCK_HOLDER_ATTRIBUTE = lambda_settings.LOCK_HOLDER_ATTRIBUTE
LOCK_EXPIRES_ATTRIBUTE = lambda_settings.LOCK_EXPIRES_ATTRIBUTE
ACQUIRE_ACTIONS = ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem")
RELEASE_ACTIONS = ("dynamodb:DeleteItem",)


def lock_key(target_cluster: str, gate: str) -> str:
    """The item key of a target's lock: ``<target cluster>/<gate>``."""
    return f"{target_cluster}/{gate}"


class RunLock(Construct):
    """The lock table of one gate's target. Attributes: ``table``, ``key`` (the target's item key),
    ``lease_s`` (how long a lock holds without being released)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, gate: str, target_cluster: str, lease_s: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = lock_key(target_cluster, gate)
        self.lease_s = lease_s
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=LOCK_KEY_ATTRIBUTE, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=LOCK_EXPIRES_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.table,
            "AwsSolutions-DDB3",
            "The table holds only leases of runs in progress; a restored lease would block a target, "
            "so point-in-time recovery has nothing worth restoring.",
        )

    @property
    def table_name(self) -> str:
        return self.table.table_name

    def statement(self, actions: tuple[str, ...]) -> iam.PolicyStatement:
        """``actions`` on this table, on the target's item only (``dynamodb:LeadingKeys``)."""
        return iam.PolicyStatement(
            actions=list(actions),
            resources=[self.table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [self.key]}},
        )

    def acquire_statement(self) -> iam.PolicyStatement:
        """What the state machine needs: take the lock, read its holder, release it."""
        return self.statement(ACQUIRE_ACTIONS)

    def release_statement(self) -> iam.PolicyStatement:
        """What the cleanup Lambda needs: release the lock (a conditional delete)."""
        return self.statement(RELEASE_ACTIONS)
