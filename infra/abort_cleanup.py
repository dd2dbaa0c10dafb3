"""Cleanup when an execution ends without running its own cleanup branch (aborted, timed out).

A StopExecution or the state machine's timeout ends the execution at once: no Catch runs, so the state
machine's cleanup branch cannot stop the Locust task or the FIS experiments. Step Functions reports every
execution status change to EventBridge (``aws.states``, *Step Functions Execution Status Change*); this
rule sends those of the gate's state machine with status ABORTED, TIMED_OUT or FAILED to the cleanup Lambda
(:mod:`lambdas.cleanup`), which stops the run's load task and experiments, releases the run's lock on its
target and, for ABORTED and TIMED_OUT, writes the run's ERROR verdict and sends the failure notice (and
the OpsItem, when configured). A FAILED execution normally went through the cleanup branch or the verdict
(every stop ignores "already stopped", and the release is conditioned on the holder); one that left no
``verdict.json`` failed where no Catch applies (``States.DataLimitExceeded``, a failing Pass or Choice
state), and gets its ERROR verdict, notice and OpsItem here too, with the execution's error and cause.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants as c

EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"


class AbortCleanup(Construct):
    """Attributes: ``rule`` (the EventBridge rule whose target is ``function``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gate: str,
        state_machine: sfn.IStateMachine,
        function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description=f"ResilienceGate {gate}: stop load and faults of an aborted or timed-out run",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[EXECUTION_STATUS_CHANGE],
                detail={
                    "stateMachineArn": [state_machine.state_machine_arn],
                    "status": list(c.CLEANUP_ON_STATUSES),
                },
            ),
        )
        # An aborted run's load and faults should stop now; an hour-old event is no longer worth acting on.
        self.rule.add_target(
            targets.LambdaFunction(function, retry_attempts=2, max_event_age=Duration.hours(1))
        )
