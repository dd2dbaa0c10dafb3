"""The abort cleanup stops the aborted run's load task and FIS experiments, and only those; it releases the
run's lock on its target and leaves the run's trace (an ERROR verdict, the notice, the OpsItem).

ECS and FIS are boto3 clients stubbed with botocore's Stubber (real request and response shapes); S3, SNS
(read through a subscribed SQS queue) and DynamoDB (the lock table) are moto's; OpsCenter is a stubbed SSM
client (moto 5.2.5 has no CreateOpsItem). The event is EventBridge's Step Functions execution status
change.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import lambdas.cleanup.handler as cleanup
from resgate.contract.errors import ConfigError, GateError
from tests.functional.support import BUCKET, REGION, load_event

RUN = "20260101T120000Z-a1b2c3"
CLUSTER = "resgate-paperbroker-load"
REASON = f"ResilienceGate: execution {RUN} ABORTED, cleaning up"
NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
LOCK_TABLE = "resgate-lock"
LOCK_KEY = "paperbroker-cluster/paperbroker"
EXECUTION = f"arn:aws:states:us-east-1:123456789012:execution:Gate:{RUN}"


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
    dynamodb: Any
    sqs: Any
    queue_url: str
    s3: Any

    def hold_lock(self, run_id: str) -> None:
        self.dynamodb.put_item(
            TableName=LOCK_TABLE,
            Item={"target": {"S": LOCK_KEY}, "run_id": {"S": run_id}, "expires_at": {"N": "1767283200"}},
        )

    def lock_holder(self) -> str | None:
        item = self.dynamodb.get_item(TableName=LOCK_TABLE, Key={"target": {"S": LOCK_KEY}}).get("Item")
        return item["run_id"]["S"] if item else None

    def notices(self) -> list[dict[str, Any]]:
        msgs = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in msgs]

    def verdict(self, dt: str = "2026-01-01") -> dict[str, Any]:
        key = f"evidence/gate=paperbroker/verdicts/dt={dt}/run_id={RUN}/verdict.json"
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def run_files(self) -> list[str]:
        """The run's files, in its folder and in the tables' folders."""
        out = self.s3.list_objects_v2(Bucket=BUCKET, Prefix="evidence/gate=paperbroker/")
        mine = f"/dt=2026-01-01/run_id={RUN}/"
        return sorted(o["Key"].rsplit("/", 1)[1] for o in out.get("Contents", []) if mine in o["Key"])

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
def stubbed(monkeypatch: pytest.MonkeyPatch, evidence: Any) -> Iterator[Stubbed]:
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    topic = sns.create_topic(Name="notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="notices")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    dynamodb.create_table(
        TableName=LOCK_TABLE,
        KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for k, v in {
        "LOAD_CLUSTER": CLUSTER,
        "EXPERIMENT_TEMPLATE_IDS": "EXTaaaa,EXTbbbb",
        "GATE_NAME": "paperbroker",
        "NOTIFY_TOPIC_ARN": topic,
        "LOCK_TABLE": LOCK_TABLE,
        "LOCK_KEY": LOCK_KEY,
        "EVIDENCE_BUCKET": BUCKET,
    }.items():
        monkeypatch.setenv(k, v)
    ecs = boto3.client("ecs", region_name=REGION)
    fis = boto3.client("fis", region_name=REGION)
    s = Stubbed(
        ecs=Stubber(ecs), fis=Stubber(fis), dynamodb=dynamodb, sqs=sqs, queue_url=queue_url, s3=evidence.s3
    )
    clients = {"ecs": ecs, "fis": fis, "sns": sns, "dynamodb": dynamodb}
    monkeypatch.setattr(cleanup, "client", clients.__getitem__)
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
        "lock": "not held",
        "verdict": "ERROR",
        "notified": True,
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


def _nothing_running(stubbed: Stubbed) -> None:
    stubbed.load([])
    stubbed.experiments("EXTaaaa", [])
    stubbed.experiments("EXTbbbb", [])


def test_an_aborted_run_leaves_an_error_verdict_a_notice_and_an_ops_item_and_frees_its_target(
    stubbed, lambda_context, opscenter
):
    _nothing_running(stubbed)
    stubbed.hold_lock(RUN)
    opscenter.expect(1)

    out = cleanup.handler(load_event("cleanup"), lambda_context)

    assert (out["lock"], out["verdict"], out["notified"], out["failures"]) == ("released", "ERROR", True, [])
    assert stubbed.lock_holder() is None
    assert stubbed.run_files() == ["checks.jsonl", "junit.xml", "phases.jsonl", "report.md", "verdict.json"]
    record = stubbed.verdict()
    assert (record["result"], record["reason"], record["exit_code"]) == ("ERROR", "execution ABORTED", 2)
    assert (record["gate"], record["run_id"], record["dt"]) == ("paperbroker", RUN, "2026-01-01")
    assert record["started_at"] == 1767268800.0 and record["ended_at"] == 1767269100.0
    (notice,) = stubbed.notices()
    assert notice["result"] == "ERROR" and notice["run_id"] == RUN and notice["gate"] == "paperbroker"
    assert notice["error"] == {"Error": "ExecutionAborted", "Cause": "execution ABORTED"}
    assert notice["execution_arn"] == EXECUTION
    prefix = f"evidence/gate=paperbroker/dt=2026-01-01/run_id={RUN}"
    assert notice["evidence_uri"] == f"s3://{BUCKET}/{prefix}/"
    (item,) = opscenter.created
    data = {k: v["Value"] for k, v in item["OperationalData"].items()}
    assert data["report"] == f"s3://{BUCKET}/{prefix}/report.md"
    assert data["report_console_url"].startswith(
        f"https://us-east-1.console.aws.amazon.com/s3/object/{BUCKET}?"
    )
    assert f"prefix={prefix}/report.md" in data["report_console_url"]
    assert data["evidence_prefix"] == f"s3://{BUCKET}/{prefix}/"
    assert data["execution_arn"] == EXECUTION and data["execution_console_url"].endswith(EXECUTION)
    assert json.loads(data["/aws/dedup"]) == {"dedupString": f"resgate:paperbroker:{RUN}"}
    assert json.loads(data["/aws/resources"]) == [{"arn": EXECUTION}]
    assert item["Title"] == f"ResilienceGate paperbroker: ERROR run {RUN}"
    assert item["Tags"] == [{"Key": "ResGateGate", "Value": "paperbroker"}]
    assert "execution ABORTED" in item["Description"] and data["report"] in item["Description"]


def test_a_timed_out_run_leaves_its_trace_too_without_an_ops_item_unless_configured(stubbed, lambda_context):
    _nothing_running(stubbed)
    event = load_event("cleanup")
    event["detail"]["status"] = "TIMED_OUT"

    out = cleanup.handler(event, lambda_context)  # OPS_ITEMS is not set: no SSM call at all

    assert out["verdict"] == "ERROR" and stubbed.verdict()["reason"] == "execution TIMED_OUT"
    (notice,) = stubbed.notices()
    assert notice["error"]["Error"] == "ExecutionTimedOut"


def test_a_failed_execution_only_releases_its_own_lock_its_branch_left_the_trace(stubbed, lambda_context):
    _nothing_running(stubbed)
    stubbed.hold_lock("the-holder")  # this run gave up as "target busy": the lock is another run's
    key = f"evidence/gate=paperbroker/verdicts/dt=2026-01-01/run_id={RUN}/verdict.json"
    stubbed.s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"result": "ERROR", "reason": "TargetBusy"}\n')
    event = load_event("cleanup")
    event["detail"]["status"] = "FAILED"

    out = cleanup.handler(event, lambda_context)

    assert (out["lock"], out["verdict"], out["notified"]) == ("not held", None, False)
    assert stubbed.lock_holder() == "the-holder"
    assert stubbed.run_files() == ["verdict.json"] and stubbed.notices() == []
    assert stubbed.verdict()["reason"] == "TargetBusy"


def test_a_failed_execution_without_a_verdict_leaves_an_error_verdict_a_notice_and_an_ops_item(
    stubbed, lambda_context, opscenter
):
    """``States.DataLimitExceeded`` cannot be caught by ``States.ALL``, and Pass and Choice states cannot
    Catch at all (AWS Step Functions developer guide, "Error handling in Step Functions"): such an execution
    ends FAILED without its cleanup branch, so the EventBridge rule's cleanup leaves the run's trace."""
    _nothing_running(stubbed)
    stubbed.hold_lock(RUN)
    opscenter.expect(1)
    event = load_event("cleanup")
    event["detail"].update(
        status="FAILED",
        error="States.DataLimitExceeded",
        cause="The state/task 'Assertions' returned a result with a size exceeding the maximum bytes",
    )

    out = cleanup.handler(event, lambda_context)

    assert (out["lock"], out["verdict"], out["notified"], out["failures"]) == ("released", "ERROR", True, [])
    assert stubbed.lock_holder() is None
    assert stubbed.run_files() == ["checks.jsonl", "junit.xml", "phases.jsonl", "report.md", "verdict.json"]
    record = stubbed.verdict()
    assert record["result"] == "ERROR" and record["exit_code"] == 2
    assert record["reason"].startswith(
        "execution FAILED: States.DataLimitExceeded: The state/task 'Assertions'"
    )
    (notice,) = stubbed.notices()
    assert notice["error"]["Error"] == "States.DataLimitExceeded"
    assert (item := opscenter.created[0])["Title"] == f"ResilienceGate paperbroker: ERROR run {RUN}"
    assert "States.DataLimitExceeded" in item["Description"]


def test_an_event_without_its_start_date_still_stops_and_notifies_then_fails_loudly(stubbed, lambda_context):
    _nothing_running(stubbed)
    stubbed.hold_lock(RUN)
    event = load_event("cleanup")
    del event["detail"]["startDate"]

    with pytest.raises(GateError, match="no startDate: the run's evidence prefix is unknown"):
        cleanup.handler(event, lambda_context)
    assert stubbed.lock_holder() is None
    (notice,) = stubbed.notices()
    assert notice["evidence_uri"] is None
