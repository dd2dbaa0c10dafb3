"""The building blocks every phase of the gate state machine uses: a state factory and a built phase.

:class:`Steps` creates states in one scope (the :class:`~infra.gate_state_machine.GateStateMachine`), so
that state names stay unique across phases; SDK calls are ``CustomState`` tasks, which carry no generated
IAM policy (the state machine construct grants what they need). Every task it creates (SDK, ECS, Lambda,
SNS) retries throttling and transient service errors with exponential backoff and full jitter
(:func:`transient_retry`): the poll loops call the same APIs dozens of times a run, and without a Retry one
``ThrottlingException`` would end the run in ERROR. :class:`Phase` is what a phase builder returns: the
state the previous phase continues to and the states that continue to the next phase.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

# Retry of throttling and transient errors: 1, 2, 4, 8, 16 s (at most 20 s), each drawn at random below
# that bound (full jitter), so parallel callers spread out; at most about 45 s before the run gives up.
RETRY_INTERVAL_S = 1
RETRY_MAX_ATTEMPTS = 5
RETRY_BACKOFF_RATE = 2.0
RETRY_MAX_DELAY_S = 20
# Error names per integration (Step Functions spells them ``<Service>.<Name>Exception``). aws-sdk tasks:
# the service's name in PascalCase; ``<Service>.<Service>Exception`` is an error the service's model does
# not name (ECS reports its throttling that way), ``SdkClientException`` a failed call (network, timeout).
_SDK_TRANSIENT = (
    "ThrottlingException",
    "TooManyRequestsException",
    "ServiceUnavailableException",
    "InternalServerException",
    "InternalServerErrorException",
    "SdkClientException",
)
# The optimized ecs:runTask integration says ``ECS.``; EC2 throttling while it resolves the subnets and
# security groups surfaces as ECS.InvalidParameterException ("Rate exceeded").
ECS_RUN_TASK_TRANSIENT = (
    "ECS.ThrottlingException",
    "ECS.AmazonECSException",
    "ECS.ServerException",
    "ECS.InvalidParameterException",
)
LAMBDA_TRANSIENT = (
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
)
# The optimized DynamoDB integration (the run lock) names errors ``DynamoDB.<error code>``.
DYNAMODB_TRANSIENT = (
    "DynamoDB.ThrottlingException",
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.InternalServerError",
)
# The optimized sns:publish integration; a notice is best effort (caught), so any task failure is retried.
SNS_TRANSIENT = ("States.TaskFailed",)


def sdk_resource(service: str, action: str) -> str:
    """The ``aws-sdk`` integration ARN of ``service:action``."""
    return f"arn:{Aws.PARTITION}:states:::aws-sdk:{service}:{action}"


def sdk_service_errors(service: str) -> list[str]:
    """The transient error names of an ``aws-sdk:<service>:…`` task (``Ecs.ThrottlingException``, …)."""
    prefix = service[:1].upper() + service[1:]
    return [f"{prefix}.{name}" for name in _SDK_TRANSIENT] + [f"{prefix}.{prefix}Exception"]


def transient_retry(errors: Sequence[str]) -> dict[str, Any]:
    """One ASL Retrier over ``errors``: exponential backoff, full jitter (see :data:`RETRY_INTERVAL_S`)."""
    return {
        "ErrorEquals": list(errors),
        "IntervalSeconds": RETRY_INTERVAL_S,
        "MaxAttempts": RETRY_MAX_ATTEMPTS,
        "BackoffRate": RETRY_BACKOFF_RATE,
        "MaxDelaySeconds": RETRY_MAX_DELAY_S,
        "JitterStrategy": "FULL",
    }


def transient_errors(resource: str) -> list[str]:
    """The transient errors of a task ``resource`` (an integration ARN, possibly with tokens)."""
    m = re.search(r":states:::aws-sdk:([a-z0-9]+):", resource)
    if m:
        return sdk_service_errors(m.group(1))
    if resource.endswith(":states:::ecs:runTask"):
        return list(ECS_RUN_TASK_TRANSIENT)
    if re.search(r":states:::dynamodb:[A-Za-z]+$", resource):
        return list(DYNAMODB_TRANSIENT)
    raise ValueError(f"no transient errors known for the task resource {resource!r}")


def add_transient_retry(state: sfn.TaskStateBase, errors: Sequence[str]) -> None:
    """Add :func:`transient_retry` over ``errors`` to a typed task."""
    r = transient_retry(errors)
    state.add_retry(
        errors=r["ErrorEquals"],
        interval=Duration.seconds(RETRY_INTERVAL_S),
        max_attempts=RETRY_MAX_ATTEMPTS,
        backoff_rate=RETRY_BACKOFF_RATE,
        max_delay=Duration.seconds(RETRY_MAX_DELAY_S),
        jitter_strategy=sfn.JitterType.FULL,
    )


def run_fields() -> dict[str, str]:
    """The run event's common fields (see :mod:`lambdas`); bucket and prefix come from the env."""
    return {"run_id.$": "$.run.run_id", "gate.$": "$.run.gate", "dt.$": "$.run.dt"}


def verdict_fields() -> dict[str, str]:
    """:func:`run_fields` and the execution's ARN, which the verdict Lambda links from an OpsItem."""
    return {**run_fields(), "execution_arn.$": "$$.Execution.Id"}


def dashboard_link(url_format: str) -> str:
    """``States.Format`` of the dashboard's URL (:func:`infra.run_dashboard.run_url_format`) on the run's
    window: from the execution's start to the moment the state is entered."""
    return f"States.Format('{url_format}', $$.Execution.StartTime, $$.State.EnteredTime)"


def continue_to(state: sfn.INextable | sfn.Choice, target: sfn.IChainable) -> None:
    """Make ``target`` the next state of ``state`` (a Choice's default branch)."""
    if isinstance(state, sfn.Choice):
        state.otherwise(target)
    else:
        state.next(target)


@dataclass(frozen=True)
class Phase:
    """A built phase: ``entry`` is where the previous phase continues (None: the phase has no states,
    e.g. no faults), ``exits`` the states that continue to the next phase (none: it ends the run)."""

    entry: sfn.IChainable | None
    exits: Sequence[sfn.INextable | sfn.Choice] = ()


def chain(*phases: Phase) -> sfn.IChainable:
    """Connect ``phases`` in order (every exit of one to the entry of the next one that has states);
    returns the first phase's entry, the definition's start."""
    built = [(p.entry, p.exits) for p in phases if p.entry is not None]
    if not built:
        raise ValueError("a state machine needs at least one phase with states")
    for (_, exits), (entry, _) in pairwise(built):
        for state in exits:
            continue_to(state, entry)
    return built[0][0]


class Steps:
    """Creates the states of the gate state machine in ``scope`` (state names are construct ids)."""

    def __init__(self, scope: Construct) -> None:
        self.scope = scope

    def pass_(self, name: str, **kw: Any) -> sfn.Pass:
        return sfn.Pass(self.scope, name, **kw)

    def choice(self, name: str) -> sfn.Choice:
        return sfn.Choice(self.scope, name)

    def wait(self, name: str, seconds_path: str) -> sfn.Wait:
        """A Wait whose seconds come from the execution's data (tests pass 0)."""
        return sfn.Wait(self.scope, name, time=sfn.WaitTime.seconds_path(seconds_path))

    def wait_until(self, name: str, timestamp_path: str) -> sfn.Wait:
        """A Wait until the ISO-8601 timestamp at ``timestamp_path`` (a time already past does not wait)."""
        return sfn.Wait(self.scope, name, time=sfn.WaitTime.timestamp_path(timestamp_path))

    def fail(self, name: str, **kw: Any) -> sfn.Fail:
        return sfn.Fail(self.scope, name, **kw)

    def task(self, name: str, resource: str, parameters: dict[str, Any], **extra: Any) -> sfn.CustomState:
        """A Task state written as ASL (``extra`` are ASL fields: ``ResultPath``, ``ResultSelector``), with
        the transient-error Retry of its integration."""
        state = {
            "Type": "Task",
            "Resource": resource,
            "Parameters": parameters,
            "Retry": [transient_retry(transient_errors(resource))],
            **extra,
        }
        return sfn.CustomState(self.scope, name, state_json=state)

    def lambda_invoke(
        self, name: str, function: lambda_.IFunction, payload: dict[str, Any], **kw: Any
    ) -> tasks.LambdaInvoke:
        """A Lambda invoke (``kw``: LambdaInvoke's props) that retries Lambda's throttling and service
        errors (CDK's own service-exception Retry omits ``Lambda.TooManyRequestsException``)."""
        invoke = tasks.LambdaInvoke(
            self.scope,
            name,
            lambda_function=function,
            payload=sfn.TaskInput.from_object(payload),
            retry_on_service_exceptions=False,
            **kw,
        )
        add_transient_retry(invoke, LAMBDA_TRANSIENT)
        return invoke

    def sns_publish(
        self, name: str, topic: sns.ITopic, message: dict[str, Any], subject: str
    ) -> tasks.SnsPublish:
        """A best-effort SNS notice (result discarded) that retries a failed publish."""
        publish = tasks.SnsPublish(
            self.scope,
            name,
            topic=topic,
            subject=subject[:100],
            message=sfn.TaskInput.from_object(message),
            result_path=sfn.JsonPath.DISCARD,
        )
        add_transient_retry(publish, SNS_TRANSIENT)
        return publish

    def sdk(
        self, name: str, service: str, action: str, parameters: dict[str, Any], **extra: Any
    ) -> sfn.CustomState:
        """An ``aws-sdk:<service>:<action>`` task (parameters in the API's PascalCase)."""
        return self.task(name, sdk_resource(service, action), parameters, **extra)

    def reset_polls(self, name: str) -> sfn.Pass:
        """Sets the poll counter ``$.loop.n`` to 0 (before a polling loop)."""
        return self.pass_(name, result=sfn.Result.from_object({"n": 0}), result_path="$.loop")

    def count_polls(self, name: str) -> sfn.Pass:
        """Adds one to the poll counter ``$.loop.n``."""
        return self.pass_(name, parameters={"n.$": "States.MathAdd($.loop.n, 1)"}, result_path="$.loop")
