"""The timeline Lambda turns FIS experiments and ECS tasks into the recovery check's evidence.

S3 is moto; FIS and ECS are boto3 clients stubbed with botocore's Stubber (moto has no realistic task
timestamps or service events), so every response has the real API shape. The written ``faults.jsonl`` and
``health.jsonl`` are then judged by the real recovery Lambda and checker.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import lambdas.timeline.handler as timeline
from lambdas.recovery.handler import handler as recovery_handler
from lambdas.timeline.faults import experiment_rows, iso_duration_s
from lambdas.timeline.health import ServiceView, TaskSpan, describe_tasks, health_rows
from lambdas.timeline.inputs import FaultRef
from resgate.checks import recovery
from resgate.contract.errors import ConfigError, GateError
from tests.functional.support import REGION, load_event

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC).timestamp()  # the event fixture's started_at
CLUSTER = "pb-cluster"
SERVICE = "pb-gateway"
EXPERIMENT = "EXP1a2b3c4d5e6f7"
FIS_REASON = f"Task stopped by FIS experiment {EXPERIMENT}"
NO_ERROR_RATIO = {"rto_s": 30, "error_ratio_tolerance": None, "min_throughput_ratio": None}


def at(s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + s, dt.UTC)


def task_arn(tid: str) -> str:
    return f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/{tid}"


def task(
    tid: str,
    started: float | None,
    *,
    stopping: float | None = None,
    stopped: float | None = None,
    reason: str | None = None,
    health: str = "HEALTHY",
) -> dict[str, Any]:
    """A DescribeTasks task; ``started``/``stopping``/``stopped`` are seconds after T0."""
    t: dict[str, Any] = {
        "taskArn": task_arn(tid),
        "clusterArn": f"arn:aws:ecs:{REGION}:123456789012:cluster/{CLUSTER}",
        "group": f"service:{SERVICE}",
        "createdAt": at((started if started is not None else 0) - 5),
        "lastStatus": "STOPPED" if stopped is not None else "RUNNING",
        "desiredStatus": "STOPPED" if stopping is not None else "RUNNING",
        "healthStatus": health,
        "containers": [{"name": "gateway", "healthStatus": health}],
    }
    if started is not None:
        t["startedAt"] = at(started)
    if stopping is not None:
        t["stoppingAt"] = at(stopping)
        t["stopCode"] = "UserInitiated"
        t["stoppedReason"] = reason or FIS_REASON
    if stopped is not None:
        t["stoppedAt"] = at(stopped)
    return t


def service(steady: Sequence[float], *, desired: int = 2) -> dict[str, Any]:
    """A DescribeServices service behind a load balancer, steady-state events at ``steady`` (s after T0)."""
    events = [{"id": "e0", "createdAt": at(-900), "message": f"(service {SERVICE}) has started 2 tasks."}]
    events += [
        {"id": f"s{i}", "createdAt": at(s), "message": f"(service {SERVICE}) has reached a steady state."}
        for i, s in enumerate(steady)
    ]
    return {
        "serviceName": SERVICE,
        "serviceArn": f"arn:aws:ecs:{REGION}:123456789012:service/{CLUSTER}/{SERVICE}",
        "desiredCount": desired,
        "runningCount": desired,
        "loadBalancers": [{"targetGroupArn": "arn:aws:elasticloadbalancing:tg", "containerName": "gateway"}],
        "events": sorted(events, key=lambda e: e["createdAt"], reverse=True),  # ECS: newest first
    }


def experiment(status: str = "completed", reason: str = "Experiment completed.") -> dict[str, Any]:
    return {
        "id": EXPERIMENT,
        "experimentTemplateId": "EXT1a2b3c4d5e6f7",
        "state": {"status": status, "reason": reason},
        "targets": {"Tasks": {"resourceType": "aws:ecs:task", "selectionMode": "ALL"}},
        "actions": {
            "StopTasks": {
                "actionId": "aws:ecs:stop-task",
                "targets": {"Tasks": "Tasks"},
                "state": {"status": "completed", "reason": "Action was completed."},
                "startTime": at(100),
                "endTime": at(101),
            }
        },
        "creationTime": at(98),
        "startTime": at(99),
        "endTime": at(102),
    }


@dataclass
class StubbedAws:
    ecs: Any
    fis: Any
    ecs_stub: Stubber
    fis_stub: Stubber

    def fleet(
        self,
        tasks: Sequence[dict[str, Any]],
        svc: dict[str, Any],
        *,
        experiments: Sequence[dict[str, Any]] = (),
        running_pages: int = 1,
        resolved: Sequence[str] = ("bbbb2222",),
    ) -> None:
        """Queue the responses of one handler call, in the order it makes its calls; each experiment's
        stop-task resolved the tasks ``resolved`` (ids of ``tasks``), described for its effect."""
        for e in experiments:
            self.fis_stub.add_response("get_experiment", {"experiment": e}, {"id": e["id"]})
            if e["actions"]["StopTasks"]["state"]["status"] != "completed":
                continue
            self.resolved(e["id"], [task_arn(t) for t in resolved])
            if resolved:
                self.ecs_stub.add_response(
                    "describe_tasks",
                    {
                        "tasks": [t for t in tasks if t["taskArn"].rsplit("/", 1)[-1] in resolved],
                        "failures": [],
                    },
                    {"cluster": CLUSTER, "tasks": [task_arn(t) for t in resolved]},
                )
        self.ecs_stub.add_response(
            "describe_services",
            {"services": [svc], "failures": []},
            {"cluster": CLUSTER, "services": [SERVICE]},
        )
        running = [t["taskArn"] for t in tasks if t["desiredStatus"] == "RUNNING"]
        stopped = [t["taskArn"] for t in tasks if t["desiredStatus"] == "STOPPED"]
        size = max(1, -(-len(running) // running_pages))
        for i in range(running_pages):
            params = {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"}
            if i:
                params["nextToken"] = f"page-{i}"
            page: dict[str, Any] = {"taskArns": running[i * size : (i + 1) * size]}
            if i + 1 < running_pages:
                page["nextToken"] = f"page-{i + 1}"
            self.ecs_stub.add_response("list_tasks", page, params)
        self.ecs_stub.add_response(
            "list_tasks",
            {"taskArns": stopped},
            {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "STOPPED"},
        )
        if running or stopped:
            self.ecs_stub.add_response(
                "describe_tasks",
                {"tasks": list(tasks), "failures": []},
                {"cluster": CLUSTER, "tasks": running + stopped},
            )

    def resolved(self, experiment_id: str, arns: Sequence[str], target: str = "Tasks") -> None:
        """Queue ListExperimentResolvedTargets of ``target``: one resolved task per ARN."""
        self.fis_stub.add_response(
            "list_experiment_resolved_targets",
            {
                "resolvedTargets": [
                    {"resourceType": "aws:ecs:task", "targetName": target, "targetInformation": {"arn": a}}
                    for a in arns
                ]
            },
            {"experimentId": experiment_id, "targetName": target},
        )


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubbedAws]:
    ecs = boto3.client("ecs", region_name=REGION)
    fis = boto3.client("fis", region_name=REGION)
    aws = StubbedAws(ecs=ecs, fis=fis, ecs_stub=Stubber(ecs), fis_stub=Stubber(fis))
    monkeypatch.setattr(timeline, "client", {"ecs": ecs, "fis": fis}.__getitem__)
    with aws.ecs_stub, aws.fis_stub:
        yield aws
        aws.ecs_stub.assert_no_pending_responses()
        aws.fis_stub.assert_no_pending_responses()


def jsonl(evidence: Any, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in evidence.get(name).splitlines() if line.strip()]


# Two healthy tasks a and b since before the run; FIS stops b at +101 (it drains until +131).
BEFORE = [task("aaaa1111", -300), task("bbbb2222", -300, stopping=101, stopped=131)]


def run_timeline_then_recovery(evidence, lambda_context, stubbed, tasks, steady, *, status="completed"):
    stubbed.fleet(tasks, service(steady), experiments=[experiment(status)])
    out = timeline.handler(load_event("timeline"), lambda_context)
    event = load_event("recovery", thresholds=NO_ERROR_RATIO, observed_until=out["observed_until"])
    return out, recovery_handler(event, lambda_context)


def test_a_replacement_healthy_20_s_after_the_fis_stop_meets_the_rto(evidence, lambda_context, stubbed):
    tasks = [*BEFORE, task("cccc3333", 110)]
    out, result = run_timeline_then_recovery(evidence, lambda_context, stubbed, tasks, steady=[-290, 120])

    assert out["fault_events"] == 4 and out["not_started"] == ["kill-matcher"] and out["active_faults"] == []
    assert result["valid"] is True, result
    (fault,) = result["details"]["faults"]
    assert fault["fault_id"] == "kill-gateway" and fault["service"] == "gateway"
    assert fault["time_to_detect_s"] == pytest.approx(1.0)  # b left the service at +101
    assert fault["time_to_healthy_s"] == pytest.approx(20.0)  # c healthy at the steady state of +120
    assert result["counts"]["rto_met"] == 1 and result["counts"]["max_time_to_healthy_s"] == pytest.approx(
        20.0
    )


def test_the_written_timelines_are_in_the_checkers_formats_and_stamped_with_the_run(
    evidence, lambda_context, stubbed
):
    tasks = [*BEFORE, task("cccc3333", 110)]
    run_timeline_then_recovery(evidence, lambda_context, stubbed, tasks, steady=[-290, 120])

    faults = jsonl(evidence, "faults.jsonl")
    # the experiment started at +99, its stop-task action at +100 (in effect), completed at +101 (its
    # effect: it stopped the task), the experiment ended at +102
    assert [(f["event"], f["ts"]) for f in faults] == [
        ("injecting", T0 + 99),
        ("injected", T0 + 100),
        ("effect", T0 + 101),
        ("ended", T0 + 102),
    ]
    assert faults[2]["detail"] == {
        "observed": True,
        "evidence": "FIS action aws:ecs:stop-task stopped 1 of its 1 resolved task(s) within its window: "
        f"bbbb2222 (UserInitiated: {FIS_REASON})",
    }
    for f in faults:
        assert f["run_id"] == "20260101T120000Z-a1b2c3" and f["gate"] == "paperbroker"
        assert (f["fault_id"], f["kind"], f["target"], f["experiment_id"]) == (
            "kill-gateway",
            "stop_task",
            "gateway",
            EXPERIMENT,
        )
        recovery.FaultEvent.from_dict(f)
    health = jsonl(evidence, "health.jsonl")
    for h in health:
        recovery.HealthObservation.from_dict(h)
    events = [(h["replica"], h["event"], h["ts"] - T0) for h in health]
    assert events == [
        ("aaaa1111", "started", -300),
        ("bbbb2222", "started", -300),
        ("aaaa1111", "healthy", -290),
        ("bbbb2222", "healthy", -290),
        ("bbbb2222", "stopped", 101),
        ("cccc3333", "started", 110),
        ("cccc3333", "healthy", 120),
        ("bbbb2222", "retired", 120),
    ]
    stopped = next(h for h in health if h["event"] == "stopped")
    assert stopped["detail"] == FIS_REASON and stopped["stop_code"] == "UserInitiated"
    assert stopped["task_arn"] == task_arn("bbbb2222") and stopped["ecs_service"] == SERVICE


def test_a_replacement_healthy_45_s_after_the_stop_misses_a_30_s_rto(evidence, lambda_context, stubbed):
    tasks = [*BEFORE, task("cccc3333", 110)]
    _, result = run_timeline_then_recovery(evidence, lambda_context, stubbed, tasks, steady=[-290, 145])

    assert result["valid"] is False
    assert result["counts"]["rto_missed"] == 1
    (fault,) = result["details"]["faults"]
    assert fault["time_to_healthy_s"] == pytest.approx(45.0)


def test_a_replacement_that_never_becomes_healthy_is_never_recovered(evidence, lambda_context, stubbed):
    tasks = [
        *BEFORE,
        # c keeps failing its health check; d failed the load balancer's check and was stopped by ECS.
        task("cccc3333", 110, health="UNHEALTHY"),
        task("dddd4444", 112, stopping=170, reason="Task failed ELB health checks", health="UNHEALTHY"),
    ]
    out, result = run_timeline_then_recovery(evidence, lambda_context, stubbed, tasks, steady=[-290])

    assert result["valid"] is False
    assert result["counts"]["never_recovered"] == 1 and result["counts"]["recovered"] == 0
    (example,) = [e for e in result["examples"] if e["kind"] == "never_recovered"]
    assert example["observed_until"] == out["observed_until"] == T0 + 600
    health = jsonl(evidence, "health.jsonl")
    retired = [h["replica"] for h in health if h["event"] == "retired"]
    assert retired == ["dddd4444"]  # stopped before it was ever healthy; b is still waiting for a replacement


def test_an_experiment_stopped_by_its_stop_condition_is_recorded_as_aborted_with_the_reason(
    evidence, lambda_context, stubbed
):
    tasks = [*BEFORE, task("cccc3333", 110)]
    reason = "Experiment stopped by stop condition arn:aws:cloudwatch:alarm:error-ratio"
    stubbed.fleet(tasks, service([-290, 120]), experiments=[experiment("stopped", reason)])

    timeline.handler(load_event("timeline"), lambda_context)

    faults = jsonl(evidence, "faults.jsonl")
    assert [f["event"] for f in faults] == ["injecting", "injected", "effect", "aborted"]
    assert faults[3]["detail"] == f"stopped: {reason}" and faults[1]["status"] == "stopped"
    result = recovery_handler(load_event("recovery", thresholds=NO_ERROR_RATIO), lambda_context)
    assert result["counts"]["aborted"] == 1 and result["counts"]["rto_met"] == 1


def test_only_tasks_that_overlap_the_run_are_written_and_every_page_is_read(
    evidence, lambda_context, stubbed
):
    old = task("0ld00000", -3000, stopping=-2000, stopped=-1990, reason="Scaling activity")
    tasks = [*BEFORE, task("cccc3333", 110), task("eeee5555", -300), old]
    stubbed.fleet(tasks, service([-290, 120], desired=3), experiments=[experiment()], running_pages=2)

    timeline.handler(load_event("timeline"), lambda_context)

    replicas = {h["replica"] for h in jsonl(evidence, "health.jsonl")}
    assert replicas == {"aaaa1111", "bbbb2222", "cccc3333", "eeee5555"}


def test_describe_tasks_asks_for_at_most_100_tasks_a_call(stubbed):
    arns = [task_arn(f"t{i:04d}") for i in range(150)]
    for part in (arns[:100], arns[100:]):
        stubbed.ecs_stub.add_response(
            "describe_tasks", {"tasks": [], "failures": []}, {"cluster": CLUSTER, "tasks": part}
        )

    tasks, failures = describe_tasks(stubbed.ecs, CLUSTER, arns)

    assert tasks == [] and failures == []


def test_a_service_without_a_health_check_is_healthy_once_started():
    svc = ServiceView(
        name="matcher",
        ecs_name="pb-matcher",
        desired_count=1,
        health_checked=False,
        steady_states=(),
        history_from=None,
    )
    old = TaskSpan.from_task(task("aaaa1111", -300, stopping=101, stopped=131, health="UNKNOWN"))
    new = TaskSpan.from_task(task("cccc3333", 104, health="UNKNOWN"))

    rows = health_rows(svc, [old, new], start=T0, end=T0 + 600)

    assert [(r["replica"], r["event"], r["ts"] - T0) for r in rows] == [
        ("aaaa1111", "started", -300),
        ("aaaa1111", "healthy", -300),
        ("aaaa1111", "stopped", 101),
        ("cccc3333", "started", 104),
        ("cccc3333", "healthy", 104),
        ("aaaa1111", "retired", 104),
    ]


def test_an_fis_error_is_a_gate_error_and_nothing_is_written(evidence, lambda_context, stubbed):
    stubbed.fis_stub.add_client_error("get_experiment", "AccessDeniedException", "not authorized")

    with pytest.raises(GateError, match="could not get FIS experiment"):
        timeline.handler(load_event("timeline"), lambda_context)
    assert evidence.files() == []


def test_a_service_ecs_does_not_know_is_a_gate_error(evidence, lambda_context, stubbed):
    stubbed.fis_stub.add_response("get_experiment", {"experiment": experiment()}, {"id": EXPERIMENT})
    stubbed.resolved(EXPERIMENT, [])  # nothing resolved: no task to describe
    stubbed.ecs_stub.add_response(
        "describe_services",
        {"services": [], "failures": [{"arn": SERVICE, "reason": "MISSING"}]},
        {"cluster": CLUSTER, "services": [SERVICE]},
    )

    with pytest.raises(GateError, match="does not know services"):
        timeline.handler(load_event("timeline"), lambda_context)


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"cluster": None}, "event.cluster"),
        ({"services": ["pb-gateway"]}, "event.services"),
        (
            {"faults": {"kill_gateway": {"name": "kill-gateway", "target": "matcher"}}},
            "event.faults.kill_gateway.target",
        ),
        ({"experiments": {"kill_other": {"id": "EXP1"}}}, "event.experiments.kill_other"),
        ({"experiments": {"kill_gateway": {"id": "not an id"}}}, "event.experiments.kill_gateway.id"),
        ({"ended_at": "2026-01-01T11:00:00Z"}, "event.ended_at"),
        ({"started_at": "yesterday"}, "event.started_at"),
        ({"dt": "2026-13-01"}, "event.dt"),
    ],
)
def test_an_invalid_event_is_a_config_error_naming_the_field_before_any_call(
    evidence, lambda_context, stubbed, overrides, where
):
    with pytest.raises(ConfigError) as err:
        timeline.handler(load_event("timeline", **overrides), lambda_context)
    assert err.value.where == where
    assert evidence.files() == []


def network_experiment(*, action_end: float | None, duration: str | None = None) -> dict[str, Any]:
    """A latency experiment: the network action from +100 (to ``action_end``), then the observation
    window's ``aws:fis:wait`` until +190."""
    latency: dict[str, Any] = {
        "actionId": "aws:ecs:task-network-latency",
        "state": {"status": "completed" if action_end else "running", "reason": ""},
        "startTime": at(100),
    }
    if duration is not None:
        latency["parameters"] = {"duration": duration}
    if action_end is not None:
        latency["endTime"] = at(action_end)
    e = experiment()
    e["actions"] = {
        "Latency": latency,
        "Observe": {
            "actionId": "aws:fis:wait",
            "state": {"status": "completed", "reason": ""},
            "startTime": at(action_end or 100),
            "endTime": at(190),
        },
    }
    e["endTime"] = at(190)
    return e


def test_a_network_action_is_held_from_its_start_to_its_end_and_recovery_counts_from_its_end():
    ref = FaultRef(
        key="latency", name="latency", kind="network_latency", target="gateway", experiment_id=EXPERIMENT
    )
    rows = experiment_rows(ref, network_experiment(action_end=130, duration="PT28S"), now=T0 + 300)
    assert [(r["event"], r["ts"]) for r in rows] == [
        ("injecting", pytest.approx(T0 + 99)),  # the experiment's start: what ends the previous fault
        ("injected", pytest.approx(T0 + 100)),  # the network action's start
        ("lifting", pytest.approx(T0 + 128)),  # its duration ran out: FIS starts lifting the fault
        ("effect", pytest.approx(T0 + 130)),  # the action completed
        ("ended", pytest.approx(T0 + 130)),  # the action ended: lifted (the experiment observes until +190)
    ]
    assert rows[1]["detail"] == {"experiment": EXPERIMENT, "duration_s": pytest.approx(30.0)}
    (timeline,) = recovery.fault_timelines(recovery.FaultEvent.from_dict(r) for r in rows)
    assert timeline.held_s == pytest.approx(30.0) and timeline.started_ts == pytest.approx(T0 + 99)
    assert timeline.lifted_ts == pytest.approx(T0 + 130)  # lifted at +130, not at the window's end (+190)


def test_a_network_action_still_running_is_held_for_its_duration_or_until_now_and_a_stop_task_is_not_held():
    """A partition still acting when the timeline is read must not be judged as an instantaneous fault from
    its start: it is held for its ``duration`` parameter, else at least until now."""
    ref = FaultRef(
        key="latency", name="latency", kind="network_latency", target="gateway", experiment_id=EXPERIMENT
    )
    running = experiment_rows(ref, network_experiment(action_end=None, duration="PT5M"), now=T0 + 300)
    assert [r["event"] for r in running] == ["injecting", "injected", "ended"]  # the fixture's experiment
    assert running[1]["detail"] == {"experiment": EXPERIMENT, "duration_s": 300.0}
    unknown = experiment_rows(ref, network_experiment(action_end=None), now=T0 + 250)
    assert unknown[1]["detail"] == {"experiment": EXPERIMENT, "duration_s": 150.0}
    kill = experiment_rows(ref, experiment(), now=T0 + 300)
    assert kill[1]["detail"] == f"FIS experiment {EXPERIMENT}"


def _data_path_experiment(action_id: str, *, action_end: float) -> dict[str, Any]:
    e = experiment()
    e["actions"] = {
        "Fault": {
            "actionId": action_id,
            "state": {"status": "completed", "reason": ""},
            "startTime": at(100),
            "endTime": at(action_end),
        },
        "Observe": {
            "actionId": "aws:fis:wait",
            "state": {"status": "completed", "reason": ""},
            "startTime": at(action_end),
            "endTime": at(190),
        },
    }
    e["endTime"] = at(190)
    return e


@pytest.mark.parametrize(
    ("kind", "action_id"),
    [
        ("db_blip", "aws:rds:reboot-db-instances"),
        ("db_blip", "aws:rds:failover-db-cluster"),
        ("leader_loss", "aws:rds:reboot-db-instances"),
        ("leader_loss", "aws:rds:failover-db-cluster"),
        ("kafka_broker_down", "aws:ssm:start-automation-execution"),
    ],
)
def test_a_database_reboot_or_broker_reboot_is_held_until_its_action_ends_and_recovery_counts_from_then(
    kind, action_id
):
    """An RDS reboot or failover, or an MSK broker reboot through its automation, lasts as long as its FIS
    action (issue 21): the fault is lifted at the action's end (+140), not at the observation window's.
    A leader loss is the lease store's reboot or failover on AWS: the leader-loss rehearsal found it judged
    from its injection (no ``duration_s``), so recovery's after-window fell inside the outage."""
    ref = FaultRef(key="f", name="f", kind=kind, target="gateway", experiment_id=EXPERIMENT)
    rows = experiment_rows(ref, _data_path_experiment(action_id, action_end=140), now=T0 + 300)
    assert [(r["event"], r["ts"]) for r in rows] == [
        ("injecting", pytest.approx(T0 + 99)),
        ("injected", pytest.approx(T0 + 100)),
        ("effect", pytest.approx(T0 + 140)),
        ("ended", pytest.approx(T0 + 140)),
    ]
    assert rows[1]["detail"] == {"experiment": EXPERIMENT, "duration_s": pytest.approx(40.0)}
    assert rows[2]["detail"] == {"observed": True, "evidence": f"FIS action {action_id} completed"}


def test_tasks_that_lived_through_a_redelivery_are_healthy_when_it_was_in_effect(
    evidence, lambda_context, stubbed
):
    """A duplicate delivery restarts no task either (the default config's redeliver-events: the rehearsal
    found recovery unknown for it); its rows are at the automation's start, not at the experiment's end
    after the observation window (+190), which would read as a 90 s recovery."""
    e = _data_path_experiment("aws:ssm:start-automation-execution", action_end=104)
    e["id"] = EXPERIMENT
    stubbed.fis_stub.add_response("get_experiment", {"experiment": e}, {"id": EXPERIMENT})
    stubbed.fleet(RUNNING, service((-290,)))
    event = load_event(
        "timeline",
        faults={"redeliver": {"name": "redeliver", "kind": "duplicate_delivery", "target": "gateway"}},
        experiments={"redeliver": {"id": EXPERIMENT}},
    )
    out = timeline.handler(event, lambda_context)
    result = recovery_handler(
        load_event("recovery", thresholds=NO_ERROR_RATIO, observed_until=out["observed_until"]),
        lambda_context,
    )

    rows = [r for r in jsonl(evidence, "health") if "ran through fault redeliver" in r["detail"]]
    assert sorted(r["replica"] for r in rows) == ["aaaa1111", "bbbb2222"]
    assert all(abs(r["ts"] - (T0 + 100)) < 1e-3 for r in rows)  # the automation's start
    assert result["valid"] is True, result
    (fault,) = result["details"]["faults"]
    assert fault["time_to_healthy_s"] == pytest.approx(0.0)


def test_a_duplicate_delivery_is_not_held_its_automation_is_one_redelivery():
    ref = FaultRef(key="f", name="f", kind="duplicate_delivery", target="gateway", experiment_id=EXPERIMENT)
    rows = experiment_rows(
        ref, _data_path_experiment("aws:ssm:start-automation-execution", action_end=104), now=T0 + 300
    )
    assert [r["event"] for r in rows] == ["injecting", "injected", "effect", "ended"]
    assert rows[1]["detail"] == f"FIS experiment {EXPERIMENT}"
    assert rows[-1]["ts"] == pytest.approx(T0 + 190)  # the experiment's end, as for a stop-task


def test_an_fis_action_that_failed_records_no_effect_and_recovery_cannot_pass():
    """An action that resolved no target fails (``emptyTargetResolutionMode: fail``): the fault acted on
    nothing, so its recovery is not judged as a calm success (issue 22, proof of effect)."""
    ref = FaultRef(
        key="kill", name="kill-gateway", kind="stop_task", target="gateway", experiment_id=EXPERIMENT
    )
    e = experiment("failed", "Target resolution failed.")
    e["actions"]["StopTasks"]["state"] = {
        "status": "failed",
        "reason": "Target resolution returned empty set.",
    }
    rows = experiment_rows(ref, e, now=T0 + 300)
    (effect,) = [r for r in rows if r["event"] == "effect"]
    assert effect["detail"] == {
        "observed": False,
        "evidence": "FIS action aws:ecs:stop-task failed: Target resolution returned empty set.",
    }
    health = [{"ts": T0 + t, "service": "gateway", "healthy": True} for t in (90, 110)]
    r = recovery.check(
        recovery.evidence_from_run(rows, health),
        recovery.RecoveryThresholds(error_ratio_tolerance=None, min_throughput_ratio=None),
    )
    assert r.valid == "unknown" and "kill-gateway had no observed effect" in r.error


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT30S", 30.0), ("PT5M", 300.0), ("PT1H30M", 5400.0), ("PT0.5S", 0.5), ("PT0S", None), ("30s", None)],
)
def test_an_fis_duration_parameter_is_read_as_iso_8601(text, seconds):
    """FIS action durations are ISO 8601 (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html)."""
    assert iso_duration_s(text) == seconds


def held_fault_event(**overrides: Any) -> dict[str, Any]:
    """The timeline event with one started network fault on the gateway (a 28 s latency action)."""
    return load_event(
        "timeline",
        faults={"latency": {"name": "latency", "kind": "network_latency", "target": "gateway"}},
        experiments={"latency": {"id": EXPERIMENT}},
        **overrides,
    )


def run_held_fault(evidence, lambda_context, stubbed, tasks, *, steady=(-290,), exp=None):
    e = exp or network_experiment(action_end=130)
    stubbed.fis_stub.add_response("get_experiment", {"experiment": e}, {"id": e["id"]})
    stubbed.fleet(tasks, service(steady))
    out = timeline.handler(held_fault_event(), lambda_context)
    event = load_event("recovery", thresholds=NO_ERROR_RATIO, observed_until=out["observed_until"])
    return jsonl(evidence, "health"), recovery_handler(event, lambda_context)


RUNNING = [task("aaaa1111", -300), task("bbbb2222", -300)]


def test_tasks_that_lived_through_a_network_fault_are_healthy_at_its_lift_so_recovery_can_judge_it(
    evidence, lambda_context, stubbed
):
    """A network action restarts no task: without rows after its injection recovery said "no health
    observation" and every AWS run with a network fault was unknown (issue 20's network rehearsal)."""
    health, result = run_held_fault(evidence, lambda_context, stubbed, RUNNING)

    lift = [r for r in health if "ran through fault" in r["detail"]]
    assert sorted(r["replica"] for r in lift) == ["aaaa1111", "bbbb2222"]
    assert all(r["event"] == "healthy" and "ran through fault latency" in r["detail"] for r in lift)
    assert all(abs(r["ts"] - (T0 + 130)) < 1e-3 for r in lift)  # at the lift: the action's end
    assert result["valid"] is True, result
    (fault,) = result["details"]["faults"]
    assert fault["time_to_healthy_s"] == pytest.approx(0.0)  # healthy at the lift itself


@pytest.mark.parametrize(
    ("tasks", "why"),
    [
        # one task reports UNHEALTHY when observed: alive is not enough
        ([task("aaaa1111", -300), task("bbbb2222", -300, health="UNHEALTHY")], "unhealthy"),
        # a task started at the fault's start (+99, the injection): the service changed in the window
        ([*RUNNING, task("cccc3333", 99)], "started"),
        # a task left the service at the observation's last second: the task rows tell, nothing is added
        ([task("aaaa1111", -300), task("bbbb2222", -300, stopping=600, stopped=600)], "stopped"),
    ],
)
def test_no_row_is_added_when_a_task_changed_or_is_unhealthy_so_recovery_stays_unknown(
    evidence, lambda_context, stubbed, tasks, why
):
    health, result = run_held_fault(evidence, lambda_context, stubbed, tasks)

    assert not [r for r in health if "ran through fault" in r["detail"]], why
    assert result["valid"] is not True, result  # judged on the task rows alone, never passed on silence
    if why == "unhealthy":
        assert result["valid"] == "unknown"
        assert "no health observation of gateway after injection" in json.dumps(result)


def test_a_task_started_just_before_the_injection_lived_through_it(evidence, lambda_context, stubbed):
    """Boundary of "started in the window": +98.9 is before the injection's start at +99."""
    health, result = run_held_fault(evidence, lambda_context, stubbed, [*RUNNING, task("cccc3333", 98.9)])

    assert sorted(r["replica"] for r in health if "ran through fault" in r["detail"]) == [
        "aaaa1111",
        "bbbb2222",
        "cccc3333",
    ]
    assert result["valid"] is True, result


def test_an_aborted_or_unended_fault_has_no_window_an_ended_one_has():
    from lambdas.timeline.health import fault_windows

    ref = FaultRef(
        key="l", name="latency", kind="network_latency", target="gateway", experiment_id=EXPERIMENT
    )
    ended = experiment_rows(ref, network_experiment(action_end=130), now=T0 + 300)
    still_running = network_experiment(action_end=None, duration="PT28S")
    still_running["state"] = {"status": "running", "reason": ""}
    running = experiment_rows(ref, still_running, now=T0 + 110)
    aborted = [*ended, {**ended[-1], "event": "aborted", "detail": "stopped"}]
    kill = experiment_rows(
        FaultRef(key="k", name="kill", kind="stop_task", target="gateway", experiment_id=EXPERIMENT),
        experiment(),
        now=T0 + 300,
    )

    assert fault_windows(ended) == {"gateway": [("latency", pytest.approx(T0 + 99), pytest.approx(T0 + 130))]}
    assert fault_windows(running) == {} and fault_windows(aborted) == {}
    # an instantaneous fault that ended: to when it was in effect (+100), not its experiment's end (+102,
    # after the observation window); a kill's stopped task keeps it from any row (the task rows tell)
    (window,) = fault_windows(kill)["gateway"]
    assert window[0] == "kill" and abs(window[1] - (T0 + 99)) < 1e-3 and abs(window[2] - (T0 + 100)) < 1e-3
