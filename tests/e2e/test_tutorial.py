"""The tutorial (docs/TUTORIAL.md) cannot rot: its commands run here, in order, on its own files, and each
must exit as the tutorial says (``# exits N`` on the command line). Its service is not paperbroker and its
locustfile is plain Locust, so this is also the acceptance test of gating "your own system": the good
service passes, and the one that answers a bare 500 while its database is down fails on retryable."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resgate.contract.layout import table_glob
from tests.e2e.conftest import processes_with_marker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "TUTORIAL.md"
FILES = ROOT / "docs" / "tutorial"
_COMMAND = re.compile(r"^\$ (?P<cmd>.+?)\s+# exits (?P<code>\d)\b")


def tutorial_commands() -> list[tuple[dict[str, str], list[str], int]]:
    """``(env, argv, expected exit code)`` of every ``$ … # exits N`` line of the tutorial, in order."""
    out = []
    for line in TUTORIAL.read_text().splitlines():
        m = _COMMAND.match(line)
        if not m:
            continue
        words = shlex.split(m["cmd"])
        env = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        out.append((env, words, int(m["code"])))
    return out


def test_the_tutorial_runs_as_written_from_init_to_pass_to_a_failure_on_retryable(tmp_path: Path) -> None:
    work = tmp_path / "myservice"
    shutil.copytree(FILES, work, ignore=shutil.ignore_patterns("__pycache__", "gate.yaml", "evidence"))
    commands = tutorial_commands()
    assert [argv[:2] for _, argv, _ in commands] == [
        ["resgate", "init"],
        ["resgate", "validate"],
        ["resgate", "run"],
        ["resgate", "run"],
    ], commands
    marker = f"tutorial-{os.getpid()}"
    for env, argv, expected in commands:
        assert argv[0] == "resgate"
        proc = subprocess.run(
            [sys.executable, "-m", "resgate.cli", *argv[1:]],
            cwd=work,
            env={**os.environ, **env, "RESGATE_TEST_MARKER": marker},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != expected:  # pytest.fail keeps the whole output (an assert's is cut short)
            pytest.fail(
                f"{argv} {env} exited {proc.returncode}, not {expected}:\n{proc.stdout}\n{proc.stderr}"
            )

    runs = sorted((work / "evidence").glob(table_glob("verdicts")), key=lambda p: p.parent.name)
    assert len(runs) == 2
    good, bad = (json.loads(p.read_text()) for p in runs)
    checks = {row["name"]: row for row in map(json.loads, _checks_of(runs[1]).read_text().splitlines())}
    assert good["result"] == "PASS"
    assert bad["result"] == "FAIL" and bad["failed_checks"] == ["retryable"], (bad, checks)
    assert checks["retryable"]["counts"]["server_error_5xx"] > 0
    assert not processes_with_marker(marker)


def _checks_of(verdict: Path) -> Path:
    """The checks.jsonl of the run whose verdict.json this is (the table folders differ only by name)."""
    return Path(str(verdict).replace("/verdicts/", "/checks/")).with_name("checks.jsonl")
