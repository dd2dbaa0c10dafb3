"""The CodePipeline integration: a stage whose one action runs the gate's state machine."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as cp_actions
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Match, Template

from infra.triggers import PipelineGateStage

pytestmark = pytest.mark.infra

GATE_ARN = "arn:aws:states:eu-west-1:111122223333:stateMachine:gate"


def test_the_gate_stage_invokes_the_state_machine_after_the_given_stage(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Pipeline", env=cdk.Environment(account="111122223333", region="eu-west-1"))
    source_output = codepipeline.Artifact()
    bucket = s3.Bucket(stack, "Source", versioned=True)
    pipeline = codepipeline.Pipeline(stack, "Pipeline", pipeline_type=codepipeline.PipelineType.V2)
    source = pipeline.add_stage(
        stage_name="Source",
        actions=[
            cp_actions.S3SourceAction(
                action_name="Source", bucket=bucket, bucket_key="src.zip", output=source_output
            )
        ],
    )
    machine = sfn.StateMachine.from_state_machine_arn(stack, "Gate", GATE_ARN)
    gate = PipelineGateStage(
        stack,
        "GateStage",
        pipeline=pipeline,
        state_machine=machine,
        placement=codepipeline.StagePlacement(just_after=source),
    )
    assert gate.stage.stage_name == "ResilienceGate"
    Template.from_stack(stack).has_resource_properties(
        "AWS::CodePipeline::Pipeline",
        {
            "Stages": Match.array_with(
                [
                    Match.object_like(
                        {
                            "Name": "ResilienceGate",
                            "Actions": [
                                Match.object_like(
                                    {
                                        "ActionTypeId": Match.object_like(
                                            {"Category": "Invoke", "Provider": "StepFunctions"}
                                        ),
                                        "Configuration": Match.object_like(
                                            {
                                                "StateMachineArn": GATE_ARN,
                                                "ExecutionNamePrefix": "pipeline",
                                            }
                                        ),
                                    }
                                )
                            ],
                        }
                    )
                ]
            )
        },
    )
