"""Issue 10, item 4: reports where people look. The gate's dashboard (load, guardrails, checks, fault
markers) linked on the run's window from the notification and the output; an FIS experiment report
configuration on every template, written under the gate's ``fis-reports/`` prefix with the dashboard as
its data source; and the CodeBuild pipeline project that runs the gate, puts ``junit.xml`` into a report
group and exits with the verdict (its script run here against a stub ``aws`` CLI)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from infra.pipeline_action import SCRIPT
from tests.infra import test_state_machine as sm

definition, zero_waits, run_gate = sm.definition, sm.zero_waits, sm.run_gate

pytestmark = pytest.mark.infra
GATE = "paperbroker"


def statements_of(synth, logical_prefix: str) -> list[dict[str, Any]]:
    out = []
    for lid, policy in synth.resources("AWS::IAM::Policy").items():
        if lid.startswith(logical_prefix):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_the_dashboard_shows_the_load_the_guardrails_the_checks_and_the_faults(synth):
    (dash,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    assert dash["Properties"]["DashboardName"] == f"ResilienceGate-{GATE}"
    body = json.dumps(dash["Properties"]["DashboardBody"])
    for metric in ("Requests", "ErrorRatio", "LatencyP95"):
        assert f'\\"{c.LOAD_METRICS_NAMESPACE}\\",\\"{metric}\\"' in body
    for metric in c.CHECK_METRICS:
        assert "SEARCH(" in body and metric in body
    assert "RunningTaskCount" in body and "alarm" in body


def test_the_notification_and_the_output_link_the_dashboard_on_the_runs_window(run_gate):
    passed = run_gate("dash-pass", sm.happy_path())
    url = passed.output["dashboard"]["url"]
    assert f"#dashboards/dashboard/ResilienceGate-{GATE}?start=" in url and "&end=" in url
    start = url.split("start=")[1].split("&")[0]
    assert start.endswith("Z") and start[:4].isdigit()
    # the verdict Lambda gets it too, for report.md: the window up to the verdict
    linked = passed.parameters("Verdict")["Payload"]["dashboard"]
    assert f"#dashboards/dashboard/ResilienceGate-{GATE}?start={start}&end=" in linked
    failed = run_gate("dash-fail", sm.happy_path(Verdict=[sm.verdict(False, "failed: integrity")]))
    notice = failed.parameters("Notify failed")["Message"]
    assert "#dashboards/dashboard/" in notice["verdict"]["dashboard"]["url"]
    errored = run_gate("dash-error", sm.happy_path(), execution_input={"profile": "weekly"})
    assert "#dashboards/dashboard/" in errored.parameters("Notify error")["Message"]["dashboard"]


def test_every_experiment_template_writes_its_report_under_the_gates_prefix_with_the_dashboard(synth):
    templates = synth.resources("AWS::FIS::ExperimentTemplate")
    assert templates
    for t in templates.values():
        report = t["Properties"]["ExperimentReportConfiguration"]
        s3 = report["Outputs"]["ExperimentReportS3Configuration"]
        assert s3["BucketName"] == {
            "Ref": next(
                k
                for k in synth.resources("AWS::S3::Bucket")
                if "Evidence" in k and "Logs" not in k and "Access" not in k
            )
        }
        assert s3["Prefix"] == f"{c.FIS_REPORTS_PREFIX}/gate={GATE}"
        (dash,) = report["DataSources"]["CloudWatchDashboards"]
        assert dash["DashboardIdentifier"]["Fn::Join"][1][-1] == f":dashboard/ResilienceGate-{GATE}"


def test_the_fis_role_may_write_reports_under_its_prefix_and_read_only_the_gates_dashboard(synth):
    sts = statements_of(synth, "FaultsRole")
    s3 = [s for s in sts if any(a.startswith("s3:") for a in json.dumps(s["Action"]).split('"'))]
    assert len(s3) == 1 and sorted(s3[0]["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert s3[0]["Resource"]["Fn::Join"][1][-1] == f"/{c.FIS_REPORTS_PREFIX}/gate={GATE}/*"
    (dash,) = [s for s in sts if s["Action"] == "cloudwatch:GetDashboard"]
    assert dash["Resource"]["Fn::Join"][1][-1] == f":dashboard/ResilienceGate-{GATE}"
    (image,) = [s for s in sts if s["Action"] == "cloudwatch:GetMetricWidgetImage"]
    assert image["Resource"] == "*"


def test_the_pipeline_project_reports_junit_xml_into_its_report_group(synth):
    (group_id,) = synth.resources("AWS::CodeBuild::ReportGroup")
    assert synth.resources("AWS::CodeBuild::ReportGroup")[group_id]["Properties"]["Type"] == "TEST"
    (project,) = synth.resources("AWS::CodeBuild::Project").values()
    spec = "".join(
        p if isinstance(p, str) else json.dumps(p)
        for p in project["Properties"]["Source"]["BuildSpec"]["Fn::Join"][1]
    )
    assert '"file-format": "JUNITXML"' in spec and '"base-directory": "reports"' in spec
    assert group_id in spec and '"junit.xml"' in spec
    env = {e["Name"]: e.get("Value") for e in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert env["GATE_PROFILE"] == "pipeline" and env["EVIDENCE_PREFIX"] == f"evidence/gate={GATE}/"


def test_the_pipeline_project_role_is_least_privilege(synth):
    sts = statements_of(synth, "PipelineProjectRole")
    by_action = {json.dumps(s["Action"]): s for s in sts}
    assert by_action['"states:StartExecution"']["Resource"] == {
        "Ref": synth.stack.get_logical_id(synth.stack.state_machine.node.default_child)
    }
    describe = by_action['"states:DescribeExecution"']["Resource"]["Fn::Join"][1]
    assert ":execution:" in describe and describe[-1] == ":*"
    assert by_action['"s3:GetObject"']["Resource"]["Fn::Join"][1][-1] == f"/evidence/gate={GATE}/*"
    report = by_action[
        json.dumps(["codebuild:CreateReport", "codebuild:UpdateReport", "codebuild:BatchPutTestCases"])
    ]
    assert report["Resource"]["Fn::GetAtt"][0].startswith("PipelineReports")
    actions = {a for s in sts for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert actions == {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "codebuild:CreateReport",
        "codebuild:UpdateReport",
        "codebuild:BatchPutTestCases",
        "states:StartExecution",
        "states:DescribeExecution",
        "s3:GetObject",
    }


STUB = r"""#!/bin/bash
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "stepfunctions start-execution") echo "arn:aws:states:us-east-1:1:execution:gate:run" ;;
  "stepfunctions describe-execution")
    if [[ "$*" == *"--query status"* ]]; then echo "$FAKE_STATUS"; else cat "$FAKE_EXECUTION"; fi ;;
  "s3 cp") src="${3#s3://}"; [ -f "$FAKE_S3/$src" ] && cp "$FAKE_S3/$src" "$4" ;;
  *) exit 9 ;;
esac
"""


def run_script(
    tmp_path: Path, *, status: str, error: str | None, verdict: dict | None
) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(STUB)
    aws.chmod(aws.stat().st_mode | stat.S_IEXEC)
    execution = {
        "status": status,
        "startDate": "2026-01-01T23:30:00.123000-01:00",
        **({"error": error} if error else {}),
    }
    (tmp_path / "execution.in.json").write_text(json.dumps(execution))
    run = tmp_path / "s3" / "bucket" / "evidence" / "gate=pb" / "dt=2026-01-02" / "run_id=RUN"
    run.mkdir(parents=True)
    (run / "junit.xml").write_text("<testsuites/>")
    if verdict is not None:
        (run / "verdict.json").write_text(json.dumps(verdict))
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATUS": status,
        "FAKE_EXECUTION": str(tmp_path / "execution.in.json"),
        "FAKE_S3": str(tmp_path / "s3"),
        "CODEBUILD_BUILD_NUMBER": "7",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:1:stateMachine:gate",
        "EVIDENCE_BUCKET": "bucket",
        "EVIDENCE_PREFIX": "evidence/gate=pb/",
        "GATE_PROFILE": "pipeline",
        "POLL_S": "0",
        "MAX_WAIT_S": "30",
    }
    # The run id carries the build time; the stub's evidence is under run_id=RUN, so alias it.
    script = SCRIPT.replace(
        'RUN_ID="pipeline-$CODEBUILD_BUILD_NUMBER-$(date -u +%Y%m%dT%H%M%S)"', "RUN_ID=RUN"
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=60
    )
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert (work / "reports" / "junit.xml").read_text() == "<testsuites/>", done.stdout + done.stderr
    return done.returncode, done.stdout, calls


def test_the_pipeline_script_exits_with_the_verdicts_exit_code_after_fetching_junit_xml(tmp_path):
    code, out, calls = run_script(
        tmp_path,
        status="FAILED",
        error="GateFailed",
        verdict={"result": "FAIL", "exit_code": 1, "reason": "r"},
    )
    assert code == 1 and "VERDICT: FAIL" in out
    assert '--input {"profile": "pipeline"}' in calls[0]
    # dt is the UTC date of the execution's start (23:30 at -01:00 is the next day in UTC).
    assert any("dt=2026-01-02/run_id=RUN/junit.xml" in call for call in calls)


def test_the_pipeline_script_exits_2_when_the_gate_could_not_reach_a_verdict(tmp_path):
    code, out, _ = run_script(tmp_path, status="ABORTED", error=None, verdict=None)
    assert code == 2 and "execution ABORTED" in out
