"""The gate stack rehearsed: its synthesized state machine run against local twins reaches the same
verdicts, check by check, as ``resgate run`` on the same config (tests/rehearsal/support/configs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rehearsal.support.assembly import cache_root
from tests.rehearsal.support.configs import FAULT_AT_S, LOAD_S, rehearsal_config
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


def rehearsed(
    env: dict[str, str] | None = None, *, variant: str = "default", fis_wait_scale: float = 0.1, **kw: object
) -> Rehearsal:
    """One rehearsal of the variant's config with ``env`` in the environment (the target's services
    inherit it, as with ``resgate run``). The experiments' observation window (``aws:fis:wait``, a minute)
    is scaled by ``fis_wait_scale``; the state machine's own waits are the execution's ``WAITS``."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        r = rehearse(
            rehearsal_config(variant),
            waits=WAITS,
            timeout_s=LOAD_S + 240,
            fis_wait_scale=fis_wait_scale,
            **kw,
        )
    print(r.summary())
    return r


def assert_verdict(r: Rehearsal) -> dict[str, object]:
    assert r.verdict is not None, f"no verdict.json in the S3 twin ({r.status}: {r.error} {r.cause})"
    return r.verdict


@pytest.mark.rehearsal
def test_rehearsal_of_the_good_build_passes_with_the_verdict_of_resgate_run(tmp_path: Path) -> None:
    r = rehearsed()
    assert assert_verdict(r)["result"] == "PASS", r.summary()
    assert r.status == "SUCCEEDED"
    assert r.checks == dict.fromkeys(("slo", "recovery", "retryable", "integrity", "replay"), "pass")
    # Each fault's stop-task action ran within 3 s of the load task's start + its at_s.
    fired = r.fault_offsets()
    assert set(fired) == set(FAULT_AT_S), r.summary()
    for fault, at_s in FAULT_AT_S.items():
        assert abs(fired[fault] - at_s) <= 3, (fault, fired[fault], at_s)
    assert r.checks == local_run(rehearsal_config(), tmp_path / "evidence")


@pytest.mark.rehearsal
@pytest.mark.parametrize(("bug", "check"), [("no_idempotency", "integrity"), ("slow_start", "recovery")])
def test_rehearsal_fails_a_seeded_bug_on_its_check_with_the_verdicts_of_resgate_run(
    bug: str, check: str, tmp_path: Path
) -> None:
    bugs = {"PAPERBROKER_BUGS": bug}
    r = rehearsed(bugs)
    assert assert_verdict(r)["result"] == "FAIL", r.summary()
    assert r.checks.get(check) == "fail", r.summary()
    assert r.checks == local_run(rehearsal_config(), tmp_path / "evidence", bugs)


@pytest.mark.rehearsal
def test_a_guardrail_breach_stops_the_running_experiment_and_the_remaining_faults_are_skipped() -> None:
    # Every gateway replica stopped at 3 s and unready for 15 s: the load's error ratio crosses the
    # alarm twin's threshold while the first experiment holds its stop conditions (its real one-minute
    # observation window: unscaled, so only the stop condition can end it early).
    env = {"PAPERBROKER_BUGS": "slow_start", "PB_SLOW_START_S": "15"}
    r = rehearsed(env, variant="guardrail", fis_wait_scale=1.0)
    assert_verdict(r)
    (gateway,) = [e for e in r.experiments if e["fault"] == "kill-gateway"]
    assert gateway["status"] == "stopped" and "stop condition" in gateway["reason"], r.summary()
    assert [e["fault"] for e in r.experiments] == ["kill-gateway"], r.summary()
    assert not {"Start kill-projector", "Start kill-matcher"} & set(r.entered)
    assert any(s.startswith("Guardrail tripped in kill-gateway") for s in r.entered), r.entered
    assert r.verdict["result"] != "PASS"


@pytest.mark.rehearsal
def test_a_throttling_exception_in_every_sdk_task_is_retried_and_the_run_reaches_its_verdict() -> None:
    r = rehearsed(throttle_once=True)
    assert assert_verdict(r)["result"] == "PASS", r.summary()
    assert r.status == "SUCCEEDED"
    entered_sdk = r.sdk_states & set(r.entered)
    assert len(entered_sdk) >= 10 and set(r.throttled) == entered_sdk, (sorted(entered_sdk), r.throttled)


@pytest.mark.rehearsal
def test_a_default_pipeline_run_passes_in_real_time_and_its_phases_are_timed() -> None:
    # The default config as deployed: its own waits (poll 15 s, quiesce 75 s), the 45-s load, the
    # faults at 10/25/30 s and the real one-minute observation windows. The phases' times go to the
    # README ("Rehearsal"); the summary is kept in the rehearsal cache.
    r = rehearse(rehearsal_config("pipeline"), waits={}, timeout_s=900, fis_wait_scale=1.0)
    (cache_root() / "pipeline-run.txt").write_text(r.summary() + "\n")
    print(r.summary())
    assert assert_verdict(r)["result"] == "PASS", r.summary()
    assert r.status == "SUCCEEDED"
