"""The gate stack rehearsed: its synthesized state machine run against local twins reaches the same
verdicts, check by check, as ``resgate run`` on the same config (tests/rehearsal/support/configs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rehearsal.support.configs import LOAD_S, rehearsal_config
from tests.rehearsal.support.rehearsal import Rehearsal, outcome, rehearse

# Short real waits: poll every second, quiesce 5 s (the local runner waits until settled instead).
WAITS = {"poll_s": 1, "quiesce_s": 5}


def local_run(config: Path, root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``resgate run`` of ``config`` (its CLI, a subprocess); ``{check: pass|fail|unknown}``."""
    cli = Path(sys.executable).with_name("resgate")
    proc = subprocess.run(
        [str(cli), "run", str(config), "--evidence-root", str(root), "--quiet"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=LOAD_S + 240,
        check=False,
    )
    print(proc.stdout[-2000:], proc.stderr[-2000:])
    (checks,) = root.rglob("checks.jsonl")
    return {r["name"]: outcome(r) for r in map(json.loads, filter(None, checks.read_text().splitlines()))}


def rehearsed(env: dict[str, str] | None = None) -> Rehearsal:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (env or {}).items():
            mp.setenv(k, v)  # the target's services inherit it, as with `resgate run`
        r = rehearse(rehearsal_config(), waits=WAITS, timeout_s=LOAD_S + 240)
    print(r.summary())
    return r


@pytest.mark.rehearsal
def test_rehearsal_of_the_good_build_passes_with_the_verdict_of_resgate_run(tmp_path: Path) -> None:
    r = rehearsed()
    assert r.verdict is not None, f"no verdict.json in the S3 twin ({r.status}: {r.error} {r.cause})"
    assert r.verdict["result"] == "PASS", r.summary()
    assert r.status == "SUCCEEDED"
    assert r.checks == local_run(rehearsal_config(), tmp_path / "evidence")


@pytest.mark.rehearsal
def test_rehearsal_fails_integrity_when_the_gateway_has_no_idempotency(tmp_path: Path) -> None:
    bugs = {"PAPERBROKER_BUGS": "no_idempotency"}
    r = rehearsed(bugs)
    assert r.verdict is not None, f"no verdict.json in the S3 twin ({r.status}: {r.error} {r.cause})"
    assert r.checks.get("integrity") == "fail", r.summary()
    assert r.verdict["result"] == "FAIL"
    assert r.checks == local_run(rehearsal_config(), tmp_path / "evidence", bugs)
