"""Proof of effect in the rehearsal (issue 22): a fault that took no effect on AWS makes the verdict unknown,
as it does locally, and the good build's short rehearsal (tests/rehearsal/test_rehearsal.py, in ``make
test``) still passes with its stop-task's effect observed on the stopped tasks themselves.

The no-effect run is one a real AWS run can produce: FIS resolves a stop-task's targets when the experiment
starts and stops them when its action runs; a task that ended in between (replaced by a deployment, or its
container exited) is gone when StopTask reaches it, ECS answers a StopTask on a stopped task without error,
and the action completes having stopped nothing. The timeline Lambda reads what the experiment resolved
(``fis:ListExperimentResolvedTargets``) and describes those tasks (``ecs:DescribeTasks``): stopped on their
own (``EssentialContainerExited``), not by StopTask in the action's window, so the fault had no observed
effect and the recovery check, the same one a local run uses, is unknown; the gate does not pass.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.rehearsal.support.configs import SMOKE_LOAD, rehearsal_config
from tests.rehearsal.support.rehearsal import rehearse

WAITS = {"poll_s": 1}


def _recovery_error(r: Any) -> str:
    rec = r.check_records.get("recovery") or {}
    return str(rec.get("error") or "") + json.dumps(rec.get("examples") or [])


@pytest.mark.rehearsal
@pytest.mark.timeout(400)
def test_a_rehearsed_stop_task_whose_target_was_already_gone_ends_unknown_naming_no_observed_effect() -> None:
    t0 = time.monotonic()
    r = rehearse(
        rehearsal_config(),
        waits=WAITS,
        timeout_s=SMOKE_LOAD["duration_s"] + 150,
        fis_wait_scale=0.05,
        profile="smoke",
        targets_gone_before_action=True,
    )
    print(r.summary(), f"\n  test took {time.monotonic() - t0:.1f} s")
    # FIS itself saw nothing wrong: the experiment completed.
    (kill,) = r.experiments
    assert kill["fault"] == "kill-gateway" and kill["status"] == "completed", r.summary()
    assert r.verdict is not None, r.summary()
    assert (r.verdict["result"], r.verdict["reason"]) == ("FAIL", "unknown: recovery"), r.summary()
    assert r.status == "FAILED" and r.error == "GateFailed", r.summary()
    assert r.checks["recovery"] == "unknown", r.summary()
    why = _recovery_error(r)
    assert "fault kill-gateway had no observed effect" in why, why
    assert "stopped by EssentialContainerExited" in why and "not by StopTask" in why, why
    # The timeline's new calls were allowed by its role in the template (least privilege, enforced).
    assert r.denials == [], r.denials
