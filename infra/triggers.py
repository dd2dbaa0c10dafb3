"""What starts a gate run on AWS: a nightly EventBridge rule, and a CodePipeline stage.

:class:`NightlyTrigger` starts the state machine on a schedule (``-c nightly_schedule=cron(...)``, default
03:00 UTC). Its input names the ``nightly`` profile when the gate config has one (``{"profile":
"nightly"}``: the profile's heavier load and its faults, :mod:`infra.state_machine.profiles`), else it is
empty: the config's own load and faults.

:class:`PipelineGateStage` is the promotion gate: it adds a stage to an existing pipeline with one
``StepFunctionInvokeAction``. CodePipeline waits for the execution; the state machine succeeds only when
the verdict passed, so a failed or errored gate fails the stage and the build is not promoted. Use it in
the stack that owns the pipeline::

    PipelineGateStage(self, "Gate", pipeline=pipeline, state_machine=gate_stack.state_machine,
                      placement=codepipeline.StagePlacement(just_after=deploy_stage))
"""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as cp_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


class NightlyTrigger(Construct):
    """Attributes: ``rule`` (the EventBridge rule whose target is the state machine), ``input`` (the
    execution input it passes: ``{"profile": profile}``, or ``{}`` without one)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gate: str,
        state_machine: sfn.IStateMachine,
        schedule: str,
        profile: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.input: dict[str, Any] = {"profile": profile} if profile else {}
        self.rule = events.Rule(
            self,
            "Rule",
            description=f"ResilienceGate {gate}: nightly gate run",
            schedule=events.Schedule.expression(schedule),
        )
        self.rule.add_target(
            targets.SfnStateMachine(
                state_machine, input=events.RuleTargetInput.from_object(self.input), retry_attempts=2
            )
        )


class PipelineGateStage(Construct):
    """Adds stage ``stage_name`` to ``pipeline`` that runs the gate. Attributes: ``stage``, ``action``.

    ``state_machine_input`` (default ``{}``) is the execution input, e.g. ``{"waits": {...}}``; the
    execution name (= the run id) is ``<prefix>-<pipeline execution id>``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline: codepipeline.IPipeline,
        state_machine: sfn.IStateMachine,
        stage_name: str = "ResilienceGate",
        execution_name_prefix: str = "pipeline",
        state_machine_input: dict[str, Any] | None = None,
        placement: codepipeline.StagePlacement | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.action = cp_actions.StepFunctionInvokeAction(
            action_name="RunGate",
            state_machine=state_machine,
            state_machine_input=cp_actions.StateMachineInput.literal(state_machine_input or {}),
            execution_name_prefix=execution_name_prefix,
        )
        if not isinstance(pipeline, codepipeline.Pipeline):
            raise TypeError("PipelineGateStage needs a codepipeline.Pipeline defined in this app")
        self.stage = pipeline.add_stage(stage_name=stage_name, actions=[self.action], placement=placement)
