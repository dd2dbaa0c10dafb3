"""The two failures issue 25 added, rehearsed on the AWS half: a ``leader_loss`` (on AWS the reboot of the
lease store, the target's database: ``aws:rds:reboot-db-instances``, infra/data_faults.py) and an
``overload`` by factor (a step of the Fargate load task's own shape: infra/network_faults.py), each alone
under the smoke load (tests/rehearsal/support/configs.py ``leader`` and ``overload``, profile ``smoke``).
The synthesized state machine runs them through the twins, every call allowed by its caller's role, and
its check Lambdas are compared with ``resgate run`` of the same config and profile.

What the AWS half cannot do yet is stated where it is asserted: it records no leader samples (FIS cannot
ask the tasks' ``/health``, and no step of the stack samples them), so a leader loss's recovery is unknown
on AWS, where the local gate judges the handover from its samples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from resgate.contract.env import ENV_LOAD_SHAPE
from tests.rehearsal.support.configs import (
    LEADER_FAULT,
    OVERLOAD_FAULT,
    OVERLOAD_USERS,
    SMOKE_LOAD,
    rehearsal_config,
)
from tests.rehearsal.support.rehearsal import Rehearsal, rehearse
from tests.rehearsal.test_rehearsal import WAITS, assert_verdict, local_run

pytestmark = [pytest.mark.rehearsal, pytest.mark.timeout(1200)]

NO_LEADER_SAMPLES = ("no leader samples were recorded for this leader loss",
                     "no replica was seen leading before the leader loss")  # fmt: skip
"""Why recovery is unknown here: the load task's leader watch runs, but the ECS twin's target tasks carry no
address of their own, so it sees no replica answer (or, without the watch, records nothing)."""


def smoke(variant: str, env: dict[str, str] | None = None) -> Rehearsal:
    """The variant's rehearsal under its ``smoke`` profile, ``env`` in the target's environment."""
    t0 = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        r = rehearse(
            rehearsal_config(variant),
            waits=WAITS,
            timeout_s=SMOKE_LOAD["duration_s"] + 240,
            fis_wait_scale=0.05,
            profile="smoke",
        )
    print(r.summary(), f"\n  test took {time.monotonic() - t0:.1f} s")
    return r


def events_of(r: Rehearsal, fault: str) -> dict[str, dict[str, Any]]:
    """``{event: row}`` of one fault's rows in the run's faults.jsonl (the timeline Lambda's)."""
    return {row["event"]: row for row in r.fault_timeline if row["fault_id"] == fault}


def recovery_row(r: Rehearsal, fault: str) -> dict[str, Any]:
    (row,) = [f for f in r.check_records["recovery"]["details"]["faults"] if f["fault_id"] == fault]
    return row


@pytest.mark.parametrize("bug", [None, "unfenced_leader"])
def test_a_leader_loss_rehearsed_reboots_the_lease_store_and_recovery_is_unknown_without_leader_samples(
    bug: str | None, tmp_path: Path
) -> None:
    """AWS FIS user guide, "AWS FIS Actions reference" (fis-actions-reference.html),
    ``aws:rds:reboot-db-instances``: target ``DBInstances`` (``aws:rds:db``), permissions
    ``rds:RebootDBInstance``, ``rds:DescribeDBInstances``, ``tag:GetResources``; the stack grants the reboot
    only on the database carrying the target tags. The FIS twin holds the local Postgres down
    (fis_twin.DB_REBOOT_S) through the gate's own db_blip, its effect observed."""
    env = {"PAPERBROKER_BUGS": bug} if bug else {}
    r = smoke("leader", env)
    name = LEADER_FAULT["name"]
    (exp,) = r.experiments
    assert exp["fault"] == name and exp["action"] == "aws:rds:reboot-db-instances", exp
    assert exp["status"] == "completed" and abs(exp["fired_s"] - LEADER_FAULT["at_s"]) <= 3, r.summary()
    assert r.denials == [], r.denials
    # The timeline: injected, held for the outage (the action's start to its end), its effect, its end.
    ev = events_of(r, name)
    assert {"injecting", "injected", "effect", "ended"} <= set(ev), r.fault_timeline
    assert ev["injected"]["detail"]["duration_s"] == pytest.approx(exp["held_s"], abs=0.5), ev
    assert ev["effect"]["detail"]["observed"] is True, ev["effect"]
    assert ev["ended"]["detail"] == "the outage ended", ev["ended"]
    # Both matchers lived through it (no task restarted): healthy at the lift.
    through = {
        h["replica"] for h in r.health_timeline if h["event"] == "healthy" and name in str(h["detail"])
    }
    assert len(through) == 2, r.health_timeline
    row = recovery_row(r, name)
    assert row["effect_observed"] and row["lifted_ts"] == ev["ended"]["ts"], row
    # What the AWS half lacks: no leader samples, so the handover is not judged (unknown, fail closed).
    rec = r.check_records["recovery"]
    assert any(why in (rec.get("error") or "") for why in NO_LEADER_SAMPLES), rec
    local = local_run(rehearsal_config("leader"), tmp_path / "evidence", env, profile="smoke")
    print("resgate run:", local)
    assert r.checks["recovery"] == "unknown", r.summary()
    assert assert_verdict(r)["result"] == "FAIL", r.summary()
    if bug is None:
        assert local == dict.fromkeys(("slo", "recovery", "retryable", "integrity"), "pass"), local
        assert {k: v for k, v in r.checks.items() if k != "recovery"} == {
            k: v for k, v in local.items() if k != "recovery"
        }, r.summary()
    else:
        # Locally the paused leader, resumed, matches beside its successor: split brain and duplicate
        # trades. On AWS every replica loses the store at once, and whether the deposed leader matches
        # again depends on who wins the lease after the outage (integrity judges it when it does).
        assert local["recovery"] == local["integrity"] == "fail", local


@pytest.mark.parametrize(("bug", "expected"), [(None, "PASS"), ("unbounded_queue", "FAIL")])
def test_an_overload_rehearsed_runs_the_load_tasks_shape_and_reaches_the_verdicts_of_resgate_run(
    bug: str | None, expected: str, tmp_path: Path
) -> None:
    # No FIS action: the state machine hands the profile's shape to the load task (RESGATE_LOAD_SHAPE), whose
    # Locust multiplies its users at at_s; the task uploads load_shape.jsonl and the timeline Lambda reads
    # its fault rows. The bug admits every order of the surge and fails backpressure on accepted latency.
    env = {"PAPERBROKER_BUGS": bug} if bug else {}
    r = smoke("overload", env)
    name = OVERLOAD_FAULT["name"]
    assert r.experiments == [], r.experiments
    assert r.denials == [], r.denials
    assert f'"name":"{name}"' in r.load_env[ENV_LOAD_SHAPE], r.load_env
    ev = events_of(r, name)
    assert {"injecting", "injected", "effect", "lifting", "ended"} <= set(ev), r.fault_timeline
    users = OVERLOAD_USERS * OVERLOAD_FAULT["factor"]
    assert ev["injected"]["detail"] == {"users": users, "duration_s": OVERLOAD_FAULT["duration_s"]}, ev
    assert ev["effect"]["detail"]["observed"] is True, ev["effect"]
    # The gateways lived through it: healthy at its end, so recovery judges it (it was unknown before).
    through = {
        h["replica"] for h in r.health_timeline if h["event"] == "healthy" and name in str(h["detail"])
    }
    assert len(through) == 2, r.health_timeline
    assert recovery_row(r, name)["observed_after"] is True, r.check_records["recovery"]
    assert assert_verdict(r)["result"] == expected, r.summary()
    if bug is not None:
        assert r.checks["backpressure"] == "fail", r.summary()
        bp = r.check_records["backpressure"]
        assert "accepted_latency_unbounded" in {e["kind"] for e in bp["examples"]}, bp
    assert r.checks == local_run(rehearsal_config("overload"), tmp_path / "evidence", env, profile="smoke")
