"""Synthesize the gate stack for a test: one App into ``outdir`` (bundling skipped), cdk-nag's verdict kept.

Import it after the infra conftest has set up the fake AWS environment (every test module is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk

import app as cdk_app
from infra import constants as c


def synthesize(outdir: Path, context: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{stack, template, report, error}`` of the stack synthesized with ``context`` (plus skipped
    bundling): ``template`` the template's JSON, ``report`` cdk-nag's validation report (``{}`` without
    one), ``error`` the synth's RuntimeError text when cdk-nag refused it, else None."""
    app = cdk.App(outdir=str(outdir), context={c.CTX_SKIP_BUNDLING: "true", **(context or {})})
    stack = cdk_app.build(app)
    error = None
    try:
        app.synth()
    except RuntimeError as e:  # cdk-nag violations fail the synth; the report says which
        error = str(e)
    template = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {"stack": stack, "template": template, "report": report, "error": error}
