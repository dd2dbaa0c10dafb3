"""The gate stack rehearsed: its synthesized state machine run against local twins reaches the same
verdicts, check by check, as ``resgate run`` on the same config (tests/rehearsal/support/configs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.rehearsal.support.assembly import cache_root
from tests.rehearsal.support.configs import (
    FAULT_AT_S,
    LOAD_S,
    NETWORK_FAULTS,
    NETWORK_LOAD_S,
    NIGHTLY_LOAD,
    SMOKE_FAULT_AT_S,
    SMOKE_LOAD,
    USERS,
    rehearsal_config,
)
from tests.rehearsal.support.rehearsal import Rehearsal, outcome, rehearse

# A rehearsal takes minutes on a busy machine (two in some scenarios); the short one keeps the suite's.
pytestmark = pytest.mark.timeout(1200)

# Short real waits: poll every second. Quiesce is the config's (at most quiesce.timeout_s, until the target
# is healthy and drained), as with ``resgate run``: both conductors call the same wait.
WAITS = {"poll_s": 1}


def local_run(
    config: Path, root: Path, env: dict[str, str] | None = None, *, profile: str | None = None
) -> dict[str, str]:
    """``resgate run`` of ``config`` (its CLI, a subprocess; ``--profile`` when given);
    ``{check: pass|fail|unknown}``."""
    cli = Path(sys.executable).with_name("resgate")
    proc = subprocess.run(
        [str(cli), "run", str(config), "--evidence-root", str(root), "--quiet"]
        + (["--profile", profile] if profile else []),
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


# A fresh clone synthesizes the assembly with bundling and bundles each function's asset inside this test:
# 141 s and 14-29 s per asset at a load average of 10 (2 cores), so 300 s was not enough on a busy machine.
@pytest.mark.timeout(600)
def test_a_short_rehearsal_of_the_good_build_passes(pg_server: Any, kafka: Any) -> None:
    # make test's rehearsal: the default rehearsal config's assembly (and host bundles) under its
    # ``smoke`` profile (a 14-s load, one fault at 7 s), the target on the session's Postgres and Kafka.
    t0 = time.monotonic()
    r = rehearse(
        rehearsal_config(),
        waits=WAITS,
        timeout_s=SMOKE_LOAD["duration_s"] + 150,
        fis_wait_scale=0.05,
        profile="smoke",
        infra=(pg_server, kafka),
    )
    print(r.summary(), f"\n  test took {time.monotonic() - t0:.1f} s")
    assert assert_verdict(r)["result"] == "PASS", r.summary()
    assert r.status == "SUCCEEDED"
    assert r.checks == dict.fromkeys(("slo", "recovery", "retryable", "integrity", "replay"), "pass")
    fired = r.fault_offsets()
    assert set(fired) == set(SMOKE_FAULT_AT_S), r.summary()
    assert abs(fired["kill-gateway"] - SMOKE_FAULT_AT_S["kill-gateway"]) <= 3, fired
    assert r.load_env["RESGATE_DURATION_S"] == str(SMOKE_LOAD["duration_s"]), r.load_env
    # Every call was allowed by its caller's role in the template (permissions enforced), the Lambdas' and
    # the load task's own S3, Secrets Manager and DynamoDB calls included (support/sdk_guard.py).
    assert r.denials == [], r.denials
    roles = {key.split(" ", 1)[0] for key in r.sdk_calls}
    assert any(role.startswith("LoadGeneratorTaskTaskRole") for role in roles), r.sdk_calls
    assert any(key.endswith("secretsmanager:get_secret_value") for key in r.sdk_calls), r.sdk_calls
    # The history quota: this execution's loops projected over the state machine's timeout at the
    # deployed poll interval stay under 25,000 events (the margin is in the summary).
    assert r.history["margin"] >= 0, r.history


def without_grant(role: str, action: str) -> Callable[[dict[str, Any]], None]:
    """A rehearsal mutant: ``action`` removed from every policy statement of the roles whose logical id
    starts with ``role`` (a statement left with no action is dropped)."""

    def mutate(template: dict[str, Any]) -> None:
        for r in template["Resources"].values():
            if r["Type"] != "AWS::IAM::Policy":
                continue
            if not any(str(x.get("Ref", "")).startswith(role) for x in r["Properties"]["Roles"]):
                continue
            kept = []
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                rest = [a for a in actions if a != action]
                if rest:
                    kept.append({**st, "Action": rest})
            r["Properties"]["PolicyDocument"]["Statement"] = kept

    return mutate


@pytest.mark.timeout(600)
def test_a_rehearsal_of_the_stack_without_the_state_machines_pass_role_fails_naming_action_and_role() -> None:
    # The rehearsal mutant of make test: the good build's short rehearsal passes (above); with the state
    # machine role's iam:PassRole removed, RunTask of the load task is AccessDenied, as on AWS, and the run
    # ends in the cleanup branch with an ERROR verdict. Its target has its own Postgres and Kafka (the
    # session's already hold the short rehearsal's topics).
    t0 = time.monotonic()
    r = rehearse(
        rehearsal_config(),
        waits=WAITS,
        timeout_s=SMOKE_LOAD["duration_s"] + 150,
        fis_wait_scale=0.05,
        profile="smoke",
        mutate=without_grant("GateStateMachineRole", "iam:PassRole"),
    )
    print(r.summary(), f"\n  test took {time.monotonic() - t0:.1f} s")
    assert r.status == "FAILED", r.summary()
    assert "Start load task" in r.entered and "Baseline" not in r.entered, r.entered
    (denial,) = r.denials
    assert denial.startswith("GateStateMachineRole"), denial
    assert "is not authorized to perform: iam:PassRole on resource: arn:aws:iam::" in denial, denial
    # ECS's modelled AccessDeniedException, as Step Functions names it: no Retry of the definition lists it.
    assert r.error == "GateRunFailed" and "Ecs.AccessDeniedException" in (r.cause or ""), (r.error, r.cause)
    assert assert_verdict(r)["result"] == "ERROR", r.verdict


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
def test_a_rehearsal_with_subscribers_runs_the_streaming_lambda_and_passes_the_good_build() -> None:
    # The load task (the image's entrypoint) runs three StreamUsers and uploads stream.jsonl; the
    # streaming Lambda (its own asset, in the state machine's assertions) reads it and the trades topic.
    r = rehearsed(variant="streaming")
    assert assert_verdict(r)["result"] == "PASS", r.summary()
    assert r.checks == dict.fromkeys(
        ("slo", "recovery", "retryable", "integrity", "replay", "streaming"), "pass"
    )
    assert r.load_env["RESGATE_STREAM_SUBSCRIBERS"] == "3", r.load_env
    assert r.denials == [], r.denials


@pytest.mark.rehearsal
def test_the_network_config_rehearsed_fires_holds_and_lifts_each_fis_network_action_on_time() -> None:
    """The network gate config (resgate/configs/network.yaml), one fault of each kind FIS runs as an ECS
    network action (FIS user guide, "AWS FIS Actions reference", fis-actions-reference.html:
    aws:ecs:task-network-blackhole-port, -latency, -packet-loss), each on the local fault proxies through
    the FIS twin: it fires within 3 s of the load's start + ``at_s``, holds for its ``duration`` and lifts
    on time (its action's ``endTime - startTime``: the duration, at most 1.5 s more on a loaded machine).
    The schedule keeps the stack's 10-s gap, so the tasks' fault endpoints never answer 409 or 429 (Amazon
    ECS developer guide, "Amazon ECS fault injection endpoints").

    What the rehearsal found (2026-12-07): the timeline Lambda's health rows were ECS task lifecycle
    events only, and a network fault restarts no task, so recovery had no health observation after any
    fault and the good build failed closed (unknown). The timeline now records the tasks that lived
    through a held fault as healthy at its lift (lambdas/timeline/health.py), so recovery judges every
    fault, and the client ledger judges whether the service served again from the lift on. That is
    stricter than the local gate, whose health probe sees the gateway healthy a little after the lift:
    after the 3 s Postgres blackhole the good build's gateways failed 7 of 576 requests (1.2 %) in the 10 s
    after the lift, over the 1 % tolerance (FAIL in 2 of 3 runs). The cause: each gateway refused requests
    on its health probe's stale "down" (a connection attempt begun inside the partition cannot finish after
    it). A gateway now probes a down database afresh every 100 ms and a request waits for a probe begun
    after it arrived, and that probe ends the calls and pool connection attempts sent into the outage
    (paperbroker.gateway, paperbroker.db.Heals, tests/integration/test_paperbroker_partition_heal.py): PASS
    in 5 of 5 runs, 0 of 407, 555, 548 and 571 failed after the lift where counted (2026-12-07). So the good
    build must PASS, recovery included."""
    r = rehearse(rehearsal_config("network"), waits=WAITS, timeout_s=NETWORK_LOAD_S + 240, fis_wait_scale=0.1)
    print(r.summary())
    assert r.denials == [], r.denials
    by_fault = {e["fault"]: e for e in r.experiments}
    actions = {
        "network_partition": "aws:ecs:task-network-blackhole-port",
        "network_latency": "aws:ecs:task-network-latency",
        "packet_loss": "aws:ecs:task-network-packet-loss",
    }
    assert set(by_fault) == {f["name"] for f in NETWORK_FAULTS}, r.summary()
    for f in NETWORK_FAULTS:
        e = by_fault[f["name"]]
        assert e["status"] == "completed" and e["action"] == actions[f["kind"]], e
        assert abs(e["fired_s"] - f["at_s"]) <= 3, e
        assert e["duration_s"] == f["duration_s"], e
        assert f["duration_s"] <= e["held_s"] <= f["duration_s"] + 1.5, e
    assert {k: r.checks.get(k) for k in ("slo", "retryable", "integrity", "replay")} == dict.fromkeys(
        ("slo", "retryable", "integrity", "replay"), "pass"
    ), r.summary()
    recovery = r.check_records["recovery"]
    by_id = {f["fault_id"]: f for f in recovery["details"]["faults"]}
    assert set(by_id) == {f["name"] for f in NETWORK_FAULTS}, recovery
    for f in by_id.values():  # judged, each from its lift: the tasks lived through it
        assert f["observed_after"] and f["effect_observed"], f
        assert f["recovered_ts"] == f["lifted_ts"] and f["time_to_healthy_s"] == 0.0, f
        print(
            f"{f['fault_id']}: {f['requests_after']} requests sent after the lift, error ratio "
            f"{f['error_ratio_after']} (baseline {recovery['details']['baseline_error_ratio']})"
        )
    failing = {(x["kind"], x.get("fault_id")) for x in recovery["examples"] if x["kind"] != "not_detected"}
    assert failing == set(), recovery["examples"]
    assert r.checks["recovery"] == "pass", r.summary()
    assert assert_verdict(r)["result"] == "PASS", r.summary()


@pytest.mark.rehearsal
@pytest.mark.parametrize(
    ("bug", "check"),
    [("no_idempotency", "integrity"), ("slow_start", "recovery"), ("projector_double_apply", "replay")],
)
def test_rehearsal_fails_a_seeded_bug_on_its_check_with_the_verdicts_of_resgate_run(
    bug: str, check: str, tmp_path: Path
) -> None:
    bugs = {"PAPERBROKER_BUGS": bug}
    r = rehearsed(bugs, context={"ops_items": "true"})
    assert assert_verdict(r)["result"] == "FAIL", r.summary()
    assert r.checks.get(check) == "fail", r.summary()
    assert r.checks == local_run(rehearsal_config(), tmp_path / "evidence", bugs)
    # A failed run opens an OpsItem (the SSM twin validates CreateOpsItem against botocore's model).
    (item,) = r.ops_items
    assert item["Title"] == f"ResilienceGate paperbroker: FAIL run {r.run_id}", item
    assert item["OperationalData"]["run_id"]["Value"] == r.run_id
    assert item["OperationalData"]["report"]["Value"].endswith(f"/run_id={r.run_id}/report.md")


@pytest.mark.rehearsal
@pytest.mark.parametrize(
    ("mutant", "reason"),
    [
        (without_grant("FaultsRole", "ecs:StopTask"), "not authorized to perform: ecs:StopTask"),
        (without_grant("FaultsRole", "tag:GetResources"), "not authorized to perform: tag:GetResources"),
    ],
    ids=["fis-role-without-ecs-stop-task", "fis-role-without-tag-get-resources"],
)
def test_a_rehearsal_mutant_without_an_fis_actions_permission_fails_naming_it_and_the_role(
    mutant: Callable[[dict[str, Any]], None], reason: str
) -> None:
    """AWS FIS user guide, "AWS FIS Actions reference" (fis-actions-reference.html): ``aws:ecs:stop-task``
    needs ``ecs:DescribeTasks``, ``ecs:ListTasks``, ``ecs:StopTask`` and ``tag:GetResources`` on the
    experiment role. Without one, the first experiment fails and the run fails (``FaultFailed``)."""
    r = rehearsed(mutate=mutant)
    assert r.status == "FAILED", r.summary()
    first = r.experiments[0]
    assert first["status"] == "failed", r.summary()
    assert reason in first["reason"] and "role/FaultsRole" in first["reason"], first
    assert r.verdict is None or r.verdict["result"] != "PASS", r.summary()


def with_filter(path: str) -> Callable[[dict[str, Any]], None]:
    """A rehearsal mutant: every experiment template's targets filtered on ``path`` = the first zone."""

    def mutate(template: dict[str, Any]) -> None:
        for r in template["Resources"].values():
            if r["Type"] == "AWS::FIS::ExperimentTemplate":
                for target in r["Properties"]["Targets"].values():
                    target["Filters"] = [{"Path": path, "Values": ["us-east-1a"]}]

    return mutate


@pytest.mark.rehearsal
def test_a_rehearsal_mutant_with_a_camel_case_filter_path_fails_on_an_empty_target_resolution() -> None:
    """AWS FIS user guide, "Targets for AWS FIS" (targets.html), resource filters: paths are PascalCase;
    ``availabilityZone`` matches no task, and with ``emptyTargetResolutionMode: fail`` the experiment
    fails (defect 1 of issue 20, as the rehearsal now sees it)."""
    r = rehearsed(mutate=with_filter("availabilityZone"))
    assert r.status == "FAILED", r.summary()
    first = r.experiments[0]
    assert first["status"] == "failed", r.summary()
    assert "Target resolution returned empty set for target Tasks" in first["reason"], first


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
    assert not {"Start redeliver-events", "Start kill-projector", "Start kill-matcher"} & set(r.entered)
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
def test_a_distributed_load_of_a_master_and_two_worker_tasks_passes_with_the_parts_merged() -> None:
    # Issue 27: the load as one master and two worker tasks (the ECS twin runs each as its own process,
    # the workers given the master's address from DescribeTasks); each worker uploads its ledger part,
    # the master merges them and writes load_nodes.jsonl, and the checks judge the merged ledger.
    r = rehearsed(variant="distributed", profile="smoke", fis_wait_scale=0.05)
    assert assert_verdict(r)["result"] == "PASS", r.summary()
    assert r.status == "SUCCEEDED"
    assert r.checks == dict.fromkeys(("slo", "recovery", "retryable", "integrity", "replay"), "pass")
    roles = [(t["role"], t["node"]) for t in r.load_tasks]
    assert roles == [("master", "master"), ("worker", "w1"), ("worker", "w2")], r.load_tasks
    assert all(t["exit_code"] == 0 for t in r.load_tasks), r.load_tasks
    nodes = {row["node"]: row for row in r.load_parts["nodes"]}
    assert set(nodes) == {"w1", "w2"} and all(row["complete"] for row in nodes.values()), nodes
    parts = r.load_parts["parts"]
    assert parts["w1"] > 0 and parts["w2"] > 0, parts
    # the merged ledger is exactly the parts: as many records as their sum, each part's as its row counts
    assert r.load["requests"] == parts["w1"] + parts["w2"], (r.load, parts)
    assert {n: row["records"] for n, row in nodes.items()} == parts
    assert r.load["clients"] == SMOKE_LOAD["users"], r.load  # the users were spread over both workers
    # the guardrail metrics are the master's aggregate: the workers' live lines reached its folder whole
    assert r.load_parts["live_pids"] == 2 and r.load_parts["live_requests"] == r.load["requests"], (
        r.load_parts
    )
    assert r.denials == [], r.denials


@pytest.mark.rehearsal
def test_a_worker_whose_locust_is_killed_mid_run_leaves_the_ledger_checks_unknown_naming_it() -> None:
    # A worker task's Locust process killed during the faults (the task's entrypoint lives on and uploads
    # what it has, with its row): the merged ledger is partial, so every check that reads it is unknown,
    # naming the worker, and the run does not pass.
    r = rehearsed(
        variant="distributed",
        profile="smoke",
        fis_wait_scale=0.05,
        on_enter=("Start kill-gateway", lambda ecs: ecs.kill_load_process("w2")),
    )
    assert assert_verdict(r)["result"] != "PASS", r.summary()
    nodes = {row["node"]: row for row in r.load_parts["nodes"]}
    assert nodes["w1"]["complete"] is True
    assert nodes["w2"]["complete"] is False and nodes["w2"]["reason"] == "killed by signal 9", nodes
    for name in ("slo", "recovery", "retryable", "integrity"):
        assert r.checks[name] == "unknown", r.summary()
        assert "load worker w2 (killed by signal 9)" in r.check_records[name]["error"], r.check_records[name]


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


def _cli_phases(output: str) -> list[str]:
    """The phases ``resgate aws start --wait`` printed, in order (``[  12s] load   Start load task``)."""
    rows = [line.split("]", 1)[1] for line in output.splitlines() if line.startswith("[")]
    return [row.split()[0] for row in rows if row[1:2].strip()]  # not a fault's line under its phase


@pytest.mark.rehearsal
def test_the_nightly_profile_runs_a_heavier_load_than_the_pipeline_one_started_by_resgate_aws_start() -> None:
    # The verdicts themselves may be FAIL on a loaded machine (slo's p95): what is compared is the load,
    # and that `resgate aws start` prints the phases and exits with the verdict's code.
    runs = {p: rehearsed(cli=True, profile=p) for p in ("pipeline", "nightly")}
    for profile, r in runs.items():
        verdict = assert_verdict(r)
        assert verdict["result"] in ("PASS", "FAIL") and "Cleanup" not in r.entered, (profile, r.summary())
        assert r.cli_exit == verdict["exit_code"] == (0 if verdict["result"] == "PASS" else 1), r.cli_output
        assert f"(profile {profile})" in r.cli_output, r.cli_output
        assert f"VERDICT: {verdict['result']}" in r.cli_output, r.cli_output
        phases = _cli_phases(r.cli_output)
        assert phases == ["preflight", "load", "faults", "quiesce", "assertions", "verdict"], r.cli_output
    pipeline, nightly = runs["pipeline"], runs["nightly"]
    # What the ECS twin was asked to run (the container overrides) and what the load actually ran.
    assert pipeline.load_env["RESGATE_USERS"] == str(USERS)
    assert nightly.load_env["RESGATE_USERS"] == str(NIGHTLY_LOAD["users"])
    assert nightly.load_env["RESGATE_SPAWN_RATE"] == str(NIGHTLY_LOAD["spawn_rate"])
    assert nightly.load["clients"] > pipeline.load["clients"], (nightly.load, pipeline.load)
    assert nightly.load["requests"] > pipeline.load["requests"], (nightly.load, pipeline.load)


@pytest.mark.rehearsal
def test_a_second_run_on_the_same_target_waits_then_fails_target_busy_naming_the_holder() -> None:
    # The second execution starts while the first holds the target's lock (its baseline); it waits
    # lock_wait_s, then ends in the cleanup branch: an ERROR verdict, the error notice and, with
    # ops_items, an OpsItem. The first run is not disturbed. Both are started by `resgate aws start`.
    busy = {"waits": {"poll_s": 1, "lock_wait_s": 3}}
    r = rehearsed(cli=True, second_input=busy, context={"ops_items": "true"})
    second = r.second
    assert second is not None
    print(second.summary())
    # The first run reaches its own verdict (FAIL only if the machine is too loaded for slo's p95).
    first = assert_verdict(r)
    assert first["result"] in ("PASS", "FAIL") and "Cleanup" not in r.entered, r.summary()
    assert r.cli_exit == first["exit_code"], r.cli_output
    assert second.status == "FAILED" and second.error == "GateRunFailed", (second.error, second.cause)
    assert "target busy" in (second.cause or "") and f"held by run {r.run_id}" in (second.cause or "")
    assert second.entered.count("Wait for lock") >= 2, second.entered
    assert second.verdict is not None and second.verdict["result"] == "ERROR", second.verdict
    assert "target busy" in second.verdict["reason"] and r.run_id in second.verdict["reason"]
    assert second.cli_exit == 2, second.cli_output
    assert "Start load task" not in second.entered
    notices = [n for n in r.notifications if second.run_id in json.dumps(n)]
    assert notices, r.notifications
    (item,) = [i for i in r.ops_items if i["OperationalData"]["run_id"]["Value"] == second.run_id]
    assert item["Title"] == f"ResilienceGate paperbroker: ERROR run {second.run_id}", item
    assert item["Tags"] == [{"Key": "ResGateGate", "Value": "paperbroker"}]
    assert item["OperationalData"]["report"]["Value"].endswith(f"/run_id={second.run_id}/report.md")
    # The first run's own OpsItem only if it failed.
    mine = [i for i in r.ops_items if i["OperationalData"]["run_id"]["Value"] == r.run_id]
    assert len(mine) == (first["result"] == "FAIL"), mine


@pytest.mark.rehearsal
@pytest.mark.parametrize(
    ("ending", "kw"), [("ABORTED", {"abort_when": "Baseline"}), ("TIMED_OUT", {"machine_timeout_s": 12})]
)
def test_an_aborted_or_timed_out_run_leaves_an_error_verdict_a_notice_and_an_ops_item(
    ending: str, kw: dict[str, Any]
) -> None:
    # No Catch runs on these endings: the stack's EventBridge rule delivers the status change to the
    # cleanup Lambda, which stops the load, releases the lock and leaves the run's trace.
    r = rehearsed(context={"ops_items": "true"}, **kw)
    assert r.status == ending, r.summary()
    assert r.cleanup is not None and r.cleanup["error"] is None, r.cleanup
    out = r.cleanup["payload"]
    assert out["status"] == ending and out["run_id"] == r.run_id, out
    assert out["stopped_tasks"], out  # the load task was still running
    assert assert_verdict(r)["result"] == "ERROR"
    assert r.verdict["reason"] == f"execution {ending}", r.verdict
    assert r.verdict["exit_code"] == 2
    (notice,) = [n for n in r.notifications if n.get("via") == "lambda"]
    assert r.run_id in notice["Message"] and ending in notice["Message"], notice
    (item,) = r.ops_items
    assert item["OperationalData"]["run_id"]["Value"] == r.run_id
    assert item["Title"] == f"ResilienceGate paperbroker: ERROR run {r.run_id}", item
