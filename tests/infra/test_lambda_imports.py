"""Each Lambda's handler imports with only what its bundle holds: the project's packages, the runtime's boto3
and the function's own requirements (``infra.lambda_bundling.requirements_for``). A module-level import of a
package another function needs (psycopg in a shared helper, say) would fail that function's cold start on
AWS while every in-process test passed; here each import runs in a fresh interpreter that refuses the
third-party packages the function's bundle does not have."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from infra import constants as c
from infra.lambda_bundling import requirements_for

# Importable top-level modules of the project's third-party dependencies that a bundle may lack.
THIRD_PARTY = {
    "psycopg": "psycopg",
    "psycopg_pool": "psycopg-pool",
    "aiokafka": "aiokafka",
    "orjson": "orjson",
    "msgspec": "msgspec",
    "scipy": "scipy",
    "numpy": "numpy",
    "duckdb": "duckdb",
    "matplotlib": "matplotlib",
    "locust": "locust",
    "gevent": "gevent",
    "confluent_kafka": "confluent-kafka",
    "aiohttp": "aiohttp",
    "aws_msk_iam_sasl_signer": "aws-msk-iam-sasl-signer-python",
}

_BLOCKER = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in this function's bundle)")
        return None
sys.meta_path.insert(0, Refuse())
import lambdas.{name}.handler as h
assert callable(h.handler)
"""


def _distribution(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ]", requirement, maxsplit=1)[0].lower()


@pytest.mark.parametrize("name", (*c.FUNCTION_NAMES, *c.OPTIONAL_CHECK_FUNCTIONS, *c.FAULT_FUNCTIONS))
def test_the_handler_imports_with_only_its_bundles_packages(name: str) -> None:
    bundled = {_distribution(r) for r in requirements_for(name)}
    blocked = sorted(mod for mod, dist in THIRD_PARTY.items() if dist not in bundled)
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKER.format(blocked=set(blocked), name=name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_blocker_really_refuses_a_package_a_bundle_lacks() -> None:
    code = _BLOCKER.format(blocked={"yaml"}, name="slo")  # PyYAML is needed by every handler
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "not in this function's bundle" in proc.stderr
