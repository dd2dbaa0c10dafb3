"""The gate as a pipeline stage with test reports: a CodeBuild project that runs one gate execution.

CodePipeline's ``StepFunctionInvokeAction`` (:class:`infra.triggers.PipelineGateStage`) passes or fails
the stage but shows nothing of the run. This project does what a person would: start an execution, show
its progress, wait for it, fetch the run's ``junit.xml`` from the evidence prefix into a CodeBuild
**report group** (each check a test case, in the pipeline's *Reports* tab), and exit with the verdict's
exit code (0 pass, 1 fail, 2 the gate could not run). Its buildspec is a short shell script over the AWS
CLI of the CodeBuild image (no source, nothing installed), so the build role needs only
``states:StartExecution`` on the gate's state machine, ``states:DescribeExecution`` on its executions and
``s3:GetObject`` under the gate's evidence prefix (plus CodeBuild's own logs and the report group).
``resgate aws start --stack … --wait`` does the same from a checkout, but reads the stack's outputs
(``cloudformation:DescribeStacks``) and needs the package installed.

In the stack that owns the pipeline::

    codepipeline_actions.CodeBuildAction(action_name="RunGate", project=codebuild.Project.from_project_name(
        self, "Gate", "<PipelineProject output>"), input=source_output)

The run id is ``pipeline-<build number>-<UTC time>``; ``GATE_PROFILE`` (the project's default, or an
override of the action) names the profile, empty for the config's own load and faults.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants as c
from infra.evidence_bucket import EvidenceStore

REPORT_DIR = "reports"
POLL_S = 15
# Start, wait (bounded by the project's timeout and MAX_WAIT_S), fetch junit.xml, exit with the verdict.
# No ${...} in it: cfn-lint reads those in the template as misplaced Fn::Sub variables (E1029).
SCRIPT = r"""set -o pipefail
RUN_ID="pipeline-$CODEBUILD_BUILD_NUMBER-$(date -u +%Y%m%dT%H%M%S)"
INPUT='{}'
if [ -n "$GATE_PROFILE" ]; then INPUT="{\"profile\": \"$GATE_PROFILE\"}"; fi
ARN=$(aws stepfunctions start-execution --state-machine-arn "$STATE_MACHINE_ARN" --name "$RUN_ID" \
  --input "$INPUT" --query executionArn --output text) || exit 2
echo "run $RUN_ID started (input $INPUT): $ARN"
DEADLINE=$(( $(date +%s) + MAX_WAIT_S ))
STATUS=RUNNING
while [ "$STATUS" = RUNNING ] && [ "$(date +%s)" -lt "$DEADLINE" ]; do
  sleep "$POLL_S"
  STATUS=$(aws stepfunctions describe-execution --execution-arn "$ARN" --query status --output text) \
    || STATUS=RUNNING
  echo "$(date -u +%T) run $RUN_ID: $STATUS"
done
aws stepfunctions describe-execution --execution-arn "$ARN" --output json > execution.json || exit 2
DT=$(python3 -c 'import datetime, json; d = json.load(open("execution.json"));
print(datetime.datetime.fromisoformat(d["startDate"]).astimezone(datetime.timezone.utc).date())')
RUN="s3://$EVIDENCE_BUCKET/$EVIDENCE_PREFIX""dt=$DT/run_id=$RUN_ID"
mkdir -p reports
aws s3 cp "$RUN/junit.xml" reports/junit.xml || echo "no junit.xml in $RUN/"
aws s3 cp "$RUN/verdict.json" verdict.json || echo "no verdict.json in $RUN/"
echo "report: $RUN/report.md"
python3 - <<'EOF'
import json, os, sys
ex = json.load(open("execution.json"))
v = json.load(open("verdict.json")) if os.path.exists("verdict.json") else None
if v is not None and isinstance(v.get("exit_code"), int):
    print(f"VERDICT: {v.get('result')}" + (f" - {v['reason']}" if v.get("reason") else ""))
    sys.exit(v["exit_code"])
print(f"execution {ex['status']}: {ex.get('error', '')} {ex.get('cause', '')}")
sys.exit(0 if ex["status"] == "SUCCEEDED" else 1 if ex.get("error") == "GateFailed" else 2)
EOF
"""


def buildspec(report_group_arn: str) -> dict[str, Any]:
    """The buildspec: the script, and ``reports/junit.xml`` as JUnit XML into ``report_group_arn``."""
    return {
        "version": "0.2",
        "env": {"shell": "bash"},
        "phases": {"build": {"commands": [SCRIPT]}},
        "reports": {
            report_group_arn: {
                "files": ["junit.xml"],
                "base-directory": REPORT_DIR,
                "file-format": "JUNITXML",
            }
        },
    }


class PipelineGateProject(Construct):
    """The CodeBuild project and its report group. Attributes: ``project``, ``report_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gate: str,
        state_machine: sfn.StateMachine,
        evidence: EvidenceStore,
        profile: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.report_group = codebuild.ReportGroup(
            self,
            "Reports",
            type=codebuild.ReportGroupType.TEST,
            removal_policy=RemovalPolicy.DESTROY,
            delete_reports=True,
        )
        wait_s = c.STATE_MACHINE_TIMEOUT_S + 10 * 60
        self.project = codebuild.Project(
            self,
            "Project",
            description=f"ResilienceGate {gate}: run the gate, report junit.xml, exit with the verdict",
            build_spec=codebuild.BuildSpec.from_object(buildspec(self.report_group.report_group_arn)),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0, compute_type=codebuild.ComputeType.SMALL
            ),
            environment_variables={
                name: codebuild.BuildEnvironmentVariable(value=value)
                for name, value in {
                    "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                    "EVIDENCE_BUCKET": evidence.bucket.bucket_name,
                    "EVIDENCE_PREFIX": evidence.gate_prefix,
                    "GATE_PROFILE": profile or "",
                    "POLL_S": str(POLL_S),
                    "MAX_WAIT_S": str(wait_s),
                }.items()
            },
            timeout=Duration.seconds(wait_s + 10 * 60),
            # Only the report group below: not the default grant on every report group named after it.
            grant_report_group_permissions=False,
            # The AWS managed key of S3 (CodeBuild's default for its artifacts), named so it is explicit.
            encryption_key=kms.Alias.from_alias_name(self, "S3ManagedKey", "alias/aws/s3"),
        )
        self.report_group.grant_write(self.project)
        state_machine.grant_start_execution(self.project)
        state_machine.grant_execution(self.project, "states:DescribeExecution")
        self.project.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[evidence.bucket.arn_for_objects(f"{evidence.gate_prefix}*")],
            )
        )
