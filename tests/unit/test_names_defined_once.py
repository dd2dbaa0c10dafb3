"""Names that cross the AWS boundary are spelled once: the Lambdas' environment variables in
resgate/contract/env.py, the check metrics' names in lambdas/common/settings.py."""

from __future__ import annotations

import ast
from pathlib import Path

from lambdas.common import settings
from resgate.contract import env

ROOT = Path(__file__).resolve().parents[2]


def test_every_lambda_environment_name_is_the_contracts():
    lambda_names = {k: v for k, v in vars(settings).items() if k.startswith("ENV_")}
    contract = {
        k.replace("ENV_LAMBDA_", "ENV_"): v for k, v in vars(env).items() if k.startswith("ENV_LAMBDA_")
    }
    assert lambda_names == contract and len(contract) == 24
    tree = ast.parse((ROOT / "lambdas" / "common" / "settings.py").read_text())
    literal = [
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for t in node.targets
        if isinstance(t, ast.Name) and t.id.startswith("ENV_")
    ]
    assert literal == []


def test_the_check_metric_names_are_spelled_only_in_the_lambdas_settings():
    spelled = sorted(
        str(p.relative_to(ROOT))
        for folder in ("lambdas", "infra")
        for p in (ROOT / folder).rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Constant) and node.value in ("CheckValid", "CheckFailed", "CheckUnknown")
    )
    assert spelled == ["lambdas/common/settings.py"] * 3
    assert settings.CHECK_METRICS == ("CheckValid", "CheckFailed", "CheckUnknown")
