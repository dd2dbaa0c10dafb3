"""The abort cleanup stops the aborted run's load task and FIS experiments, and only those.

ECS and FIS are boto3 clients stubbed with botocore's Stubber (real request and response shapes); the
event is EventBridge's Step Functions execution status change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import lambdas.cleanup.handler as cleanup
from resgate.contract.errors import ConfigError, GateError
from tests.functional.support import REGION, load_event

RUN = "20260101T120000Z-a1b2c3"
CLUSTER = "resgate-paperbroker-load"
REASON = f"ResilienceGate: execution {RUN} ABORTED, cleaning up"
NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def task_arn(tid: str) -> str:
    return f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/{tid}"


def load_task(tid: str, run_id: str | None, *, evidence_uri: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"taskArn": task_arn(tid), "lastStatus": "RUNNING", "startedBy": "resgate"}
    if run_id is not None:
        t["tags"] = [{"key": "ResGateRunId", "value": run_id}]
    if evidence_uri is not None:
        env = [{"name": "RESGATE_EVIDENCE_S3_URI", "value": evidence_uri}]
        t["overrides"] = {"containerOverrides": [{"name": "loadgen", "environment": env}]}
    return t


def summary(eid: str, template: str, status: str, run_id: str | None) -> dict[str, Any]:
    e: dict[str, Any] = {
        "id": eid,
        "experimentTemplateId": template,
        "state": {"status": status, "reason": f"experiment {status}"},
        "creationTime": NOW,
    }
    if run_id is not None:
        e["tags"] = {"ResGateRunId": run_id, "ResGateGate": "paperbroker"}
    return e


@dataclass
class Stubbed:
    ecs: Stubber
    fis: Stubber

    def load(self, tasks: list[dict[str, Any]]) -> None:
        arns = [t["taskArn"] for t in tasks]
        self.ecs.add_response(
            "list_tasks",
            {"taskArns": arns},
            {"cluster": CLUSTER, "startedBy": "resgate", "desiredStatus": "RUNNING"},
        )
        if arns:
            self.ecs.add_response(
                "describe_tasks",
                {"tasks": tasks, "failures": []},
                {"cluster": CLUSTER, "tasks": arns, "include": ["TAGS"]},
            )

    def stop_task(self, tid: str) -> None:
        self.ecs.add_response(
            "stop_task",
            {"task": {"taskArn": task_arn(tid), "desiredStatus": "STOPPED"}},
            {"cluster": CLUSTER, "task": task_arn(tid), "reason": REASON},
        )

    def experiments(self, template: str, experiments: list[dict[str, Any]]) -> None:
        self.fis.add_response(
            "list_experiments", {"experiments": experiments}, {"experimentTemplateId": template}
        )

    def stop_experiment(self, eid: str, error: str | None = None) -> None:
        if error:
            self.fis.add_client_error("stop_experiment", error, "nope", expected_params={"id": eid})
        else:
            self.fis.add_response(
                "stop_experiment",
                {"experiment": {"id": eid, "state": {"status": "stopping"}}},
                {"id": eid},
            )


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubbed]:
    monkeypatch.setenv("LOAD_CLUSTER", CLUSTER)
    monkeypatch.setenv("EXPERIMENT_TEMPLATE_IDS", "EXTaaaa,EXTbbbb")
    ecs = boto3.client("ecs", region_name=REGION)
    fis = boto3.client("fis", region_name=REGION)
    s = Stubbed(ecs=Stubber(ecs), fis=Stubber(fis))
    monkeypatch.setattr(cleanup, "client", {"ecs": ecs, "fis": fis}.__getitem__)
    with s.ecs, s.fis:
        yield s
        s.ecs.assert_no_pending_responses()
        s.fis.assert_no_pending_responses()


def test_an_aborted_run_stops_its_own_load_task_and_active_experiments_only(stubbed, lambda_context):
    stubbed.load([load_task("mine0001", RUN), load_task("other001", "another-run")])
    stubbed.stop_task("mine0001")
    stubbed.experiments(
        "EXTaaaa",
        [
            summary("EXPrunning", "EXTaaaa", "running", RUN),
            summary("EXPdone", "EXTaaaa", "completed", RUN),
        ],
    )
    stubbed.stop_experiment("EXPrunning")
    stubbed.experiments(
        "EXTbbbb",
        [
            summary("EXPother", "EXTbbbb", "running", "another-run"),
            summary("EXPuntagged", "EXTbbbb", "initiating", None),
        ],
    )
    stubbed.stop_experiment("EXPuntagged", error="ValidationException")  # it ended meanwhile

    out = cleanup.handler(load_event("cleanup"), lambda_context)

    assert out == {
        "run_id": RUN,
        "status": "ABORTED",
        "stopped_tasks": [task_arn("mine0001")],
        "stopped_experiments": ["EXPrunning"],
        "already_stopped": ["EXPuntagged"],
        "other_runs": ["EXPother"],
        "failures": [],
    }


def test_a_load_task_without_tags_is_recognised_by_its_evidence_uri(stubbed, lambda_context):
    uri = f"s3://bucket/evidence/gate=paperbroker/dt=2026-01-01/run_id={RUN}/"
    stubbed.load([load_task("untagged", None, evidence_uri=uri), load_task("nothing", None)])
    stubbed.stop_task("untagged")
    stubbed.experiments("EXTaaaa", [])
    stubbed.experiments("EXTbbbb", [])

    out = cleanup.handler(load_event("cleanup"), lambda_context)

    assert out["stopped_tasks"] == [task_arn("untagged")]


def test_a_timed_out_run_is_cleaned_up_too(stubbed, lambda_context, monkeypatch):
    monkeypatch.setenv("EXPERIMENT_TEMPLATE_IDS", "")
    stubbed.load([])
    event = load_event("cleanup")
    event["detail"]["status"] = "TIMED_OUT"

    out = cleanup.handler(event, lambda_context)

    assert out["status"] == "TIMED_OUT" and out["stopped_tasks"] == [] and out["stopped_experiments"] == []


def test_a_refused_stop_is_a_gate_error_after_every_other_stop_was_tried(stubbed, lambda_context):
    stubbed.load([load_task("mine0001", RUN)])
    stubbed.stop_task("mine0001")
    stubbed.experiments("EXTaaaa", [summary("EXPdenied", "EXTaaaa", "running", RUN)])
    stubbed.stop_experiment("EXPdenied", error="AccessDeniedException")
    stubbed.experiments("EXTbbbb", [summary("EXPok", "EXTbbbb", "running", RUN)])
    stubbed.stop_experiment("EXPok")

    with pytest.raises(GateError, match="could not stop FIS experiment EXPdenied"):
        cleanup.handler(load_event("cleanup"), lambda_context)


def test_an_ecs_failure_does_not_keep_the_experiments_running(stubbed, lambda_context):
    stubbed.ecs.add_client_error("list_tasks", "ClientException", "cluster is being deleted")
    stubbed.experiments("EXTaaaa", [summary("EXPrunning", "EXTaaaa", "running", RUN)])
    stubbed.stop_experiment("EXPrunning")
    stubbed.experiments("EXTbbbb", [])

    with pytest.raises(GateError, match="could not list the load tasks"):
        cleanup.handler(load_event("cleanup"), lambda_context)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda e: e["detail"].update(status="SUCCEEDED"), "event.detail.status"),
        (lambda e: e["detail"].pop("name"), "event.detail.name"),
        (lambda e: e.pop("detail"), "event.detail"),
    ],
)
def test_an_invalid_event_is_a_config_error_naming_the_field(stubbed, lambda_context, change, where):
    event = load_event("cleanup")
    change(event)

    with pytest.raises(ConfigError) as err:
        cleanup.handler(event, lambda_context)
    assert err.value.where == where


@pytest.mark.parametrize(
    ("env", "value"), [("LOAD_CLUSTER", ""), ("EXPERIMENT_TEMPLATE_IDS", "EXTaaaa,not an id")]
)
def test_missing_or_invalid_settings_are_a_config_error_naming_the_variable(
    stubbed, lambda_context, monkeypatch, env, value
):
    monkeypatch.setenv(env, value)

    with pytest.raises(ConfigError) as err:
        cleanup.handler(load_event("cleanup"), lambda_context)
    assert err.value.where == env
