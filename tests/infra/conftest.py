"""Infra tests: the gate stack is synthesised once per session (with the cdk-nag checks), then inspected.

The synth uses ``-c resgate:skip_bundling=true`` (no pip install, no network) and the default gate config
with placeholders for every deployment value. AWS is never called: templates are read with
``aws_cdk.assertions`` and the state machine runs in moto (see ``support/sfn_mock.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before aws_cdk starts its node process: silence the end-of-life banner of node 20.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
os.environ.update(_FAKE_AWS)
os.environ.pop("AWS_PROFILE", None)

from aws_cdk.assertions import Template  # noqa: E402

from infra.gate_stack import GateStack  # noqa: E402
from tests.infra.support.synth import synthesize  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Synth:
    """The session's synthesised gate stack: the stack object, its template, the validation report."""

    stack: GateStack
    template: Template
    template_json: dict[str, Any]
    report: dict[str, Any]
    synth_error: str | None
    outdir: Path

    def resources(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template_json["Resources"].items() if v["Type"] == rtype}

    def violations(self, severity: str | None = None) -> list[dict[str, Any]]:
        out = []
        for plugin in self.report.get("pluginReports", []):
            for v in plugin.get("violations", []):
                if severity is None or v.get("severity") == severity:
                    out.append({"plugin": plugin.get("pluginName"), **v})
        return out


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out")
    out = synthesize(outdir)
    stack, template_json, report, error = out["stack"], out["template"], out["report"], out["error"]
    template = Template.from_json(template_json)
    return Synth(stack, template, template_json, report, error, outdir)


@pytest.fixture(autouse=True, scope="session")
def _quiet_moto() -> Iterator[None]:
    # moto's ASL interpreter logs every evaluation error with its whole parse tree.
    logger = logging.getLogger("moto")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)
