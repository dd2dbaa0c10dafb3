"""The synthesised gate stack of the default gate config: resources, their properties and IAM scoping."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra import constants as c
from infra.evidence_bucket import NAMED_QUERIES
from resgate.config.schema import load_config
from resgate.contract.layout import TABLES

pytestmark = pytest.mark.infra

CONFIG = load_config("resgate/configs/paperbroker.yaml")
STOP_TASK_FAULTS = [f for f in CONFIG.faults if f.kind == "stop_task"]


def _statements(synth) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in synth.template_json["Resources"].values():
        if res["Type"] == "AWS::IAM::Policy":
            out += res["Properties"]["PolicyDocument"]["Statement"]
        elif res["Type"] == "AWS::IAM::Role":
            for p in res["Properties"].get("Policies", []):
                out += p["PolicyDocument"]["Statement"]
    return out


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _grants(statements: list[dict[str, Any]], action_prefix: str) -> list[dict[str, Any]]:
    return [s for s in statements if any(str(a).startswith(action_prefix) for a in _as_list(s["Action"]))]


FUNCTIONS = (
    "slo",
    "recovery",
    "retryable",
    "integrity",
    "replay",
    "verdict",
    "timeline",
    "cleanup",
    "quiesce",
    c.REDELIVER_FUNCTION,  # the default config's duplicate delivery (infra.fault_automation)
)


def _role_statements(synth, function: str) -> list[dict[str, Any]]:
    """The statements of the IAM policies attached to the role of ``lambdas.<function>``."""
    (fn,) = [
        f
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == f"lambdas.{function}.handler.handler"
    ]
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    out: list[dict[str, Any]] = []
    for p in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in p["Properties"]["Roles"]:
            out += p["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_there_are_the_assertion_functions_the_timeline_and_the_cleanup_on_python_3_12(synth):
    synth.template.resource_count_is("AWS::Lambda::Function", len(FUNCTIONS))
    functions = synth.resources("AWS::Lambda::Function").values()
    assert {f["Properties"]["Runtime"] for f in functions} == {"python3.12"}
    assert sorted(f["Properties"]["Handler"] for f in functions) == sorted(
        f"lambdas.{n}.handler.handler" for n in FUNCTIONS
    )


def test_the_timeline_role_reads_fis_and_ecs_of_the_target_only_puts_evidence_and_reads_the_load_shape(synth):
    """Least privilege, proof of effect included (issue 22): what an experiment resolved
    (``fis:ListExperimentResolvedTargets``) only on this gate's tagged experiments, as ``fis:GetExperiment``;
    the stopped tasks (``ecs:DescribeTasks``) only in the target cluster (``ecs:cluster``), on its tasks.
    Service Authorization Reference, "Actions, resources, and condition keys for AWS Fault Injection
    Service": ``ListExperimentResolvedTargets`` requires the ``experiment`` resource type
    (``arn:${Partition}:fis:${Region}:${Account}:experiment/${Id}``), whose condition keys include
    ``aws:ResourceTag/${TagKey}``, as ``GetExperiment``: so one tag-scoped statement on ``experiment/*``.
    Of the evidence it reads the runs' ``load_shape.jsonl`` only, and lists the gate's prefix so that the
    file's absence is a 404 (Amazon S3 API reference, "HeadObject": without ``s3:ListBucket``, a 403)."""
    by_action = _by_action(_role_statements(synth, "timeline"))
    allowed = {
        "ecs:DescribeServices",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "fis:GetExperiment",
        "fis:ListExperimentResolvedTargets",
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
    }
    infra_only = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
    assert set(by_action) - infra_only == allowed
    for action in ("ecs:DescribeServices", "ecs:ListTasks", "ecs:DescribeTasks"):
        (st,) = by_action[action]
        assert "ecs:cluster" in st["Condition"]["ArnEquals"], st
        assert "*" not in _as_list(st["Resource"])
    (services,) = by_action["ecs:DescribeServices"]
    assert len(_as_list(services["Resource"])) == 3  # the three stop_task targets
    (fis,) = by_action["fis:GetExperiment"]
    assert fis["Condition"] == {"StringEquals": {"aws:ResourceTag/ResGateGate": "paperbroker"}}
    assert by_action["fis:ListExperimentResolvedTargets"] == [fis]  # the same tag-scoped statement
    assert "*" not in _as_list(fis["Resource"]) and ":experiment/*" in json.dumps(fis["Resource"])
    (tasks,) = by_action["ecs:DescribeTasks"]
    assert ":task/" in json.dumps(tasks["Resource"]) and list(tasks["Condition"]) == ["ArnEquals"]
    (put,) = by_action["s3:PutObject"]
    assert put["Action"] == "s3:PutObject"
    assert put["Resource"]["Fn::Join"][1][-1] == "/evidence/gate=paperbroker/*"
    (get,) = by_action["s3:GetObject"]
    assert get["Resource"]["Fn::Join"][1][-1] == "/evidence/gate=paperbroker/dt=*/run_id=*/load_shape.jsonl"
    (listing,) = by_action["s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["evidence/gate=paperbroker/*"]}}


def test_the_state_machine_may_invoke_the_timeline(synth):
    timeline = [
        k
        for k, f in synth.resources("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == "lambdas.timeline.handler.handler"
    ]
    invokes = [s for s in _statements(synth) if "lambda:InvokeFunction" in _as_list(s["Action"])]
    resources = json.dumps([s["Resource"] for s in invokes])
    assert timeline and timeline[0] in resources


def test_every_function_has_powertools_settings_tracing_and_the_evidence_bucket(synth):
    synth.template.all_resources_properties(
        "AWS::Lambda::Function",
        {
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "POWERTOOLS_SERVICE_NAME": Match.string_like_regexp("^resgate-"),
                        "POWERTOOLS_METRICS_NAMESPACE": "ResilienceGate",
                    }
                )
            },
        },
    )
    # Every function but the redeliver step (a fault: it reads and writes topics, never evidence).
    for f in synth.resources("AWS::Lambda::Function").values():
        env = f["Properties"]["Environment"]["Variables"]
        if f["Properties"]["Handler"] != f"lambdas.{c.REDELIVER_FUNCTION}.handler.handler":
            assert env["EVIDENCE_PREFIX"] == "evidence" and env["EVIDENCE_BUCKET"], f["Properties"]["Handler"]


def test_only_integrity_replay_and_quiesce_run_in_the_vpc_with_the_database_settings(synth):
    in_vpc = {
        f["Properties"]["Handler"]: f["Properties"]
        for f in synth.resources("AWS::Lambda::Function").values()
        if "VpcConfig" in f["Properties"]
    }
    assert sorted(in_vpc) == [
        "lambdas.integrity.handler.handler",
        "lambdas.quiesce.handler.handler",
        "lambdas.redeliver.handler.handler",  # to MSK only: no database secret
        "lambdas.replay.handler.handler",
    ]
    for handler, p in in_vpc.items():
        env = set(p["Environment"]["Variables"])
        assert "KAFKA_BOOTSTRAP" in env and ("redeliver" in handler) != ("DB_SECRET_ARN" in env), handler


def test_the_state_machine_is_a_logged_traced_standard_workflow(synth):
    synth.template.resource_count_is("AWS::StepFunctions::StateMachine", 1)
    synth.template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
        },
    )


def test_each_stop_task_fault_is_an_fis_template_on_tasks_selected_by_the_config_tags(synth):
    templates = [
        t
        for t in synth.resources("AWS::FIS::ExperimentTemplate").values()
        if "Tasks" in t["Properties"]["Targets"]
    ]
    assert len(templates) == len(STOP_TASK_FAULTS) == 3
    by_service = {
        t["Properties"]["Targets"]["Tasks"]["ResourceTags"]["aws:ecs:serviceName"]: t for t in templates
    }
    for fault in STOP_TASK_FAULTS:
        props = by_service[fault.target]["Properties"]
        target = props["Targets"]["Tasks"]
        assert target["ResourceType"] == "aws:ecs:task"
        # No target.aws section in the default config: the tags are target.tags.
        assert {"env": "dev", "app": "paperbroker"}.items() <= target["ResourceTags"].items()
        assert target["SelectionMode"] == f"PERCENT({round(fault.params['percent'])})"
        assert props["Actions"]["StopTasks"]["ActionId"] == "aws:ecs:stop-task"
        assert props["Actions"]["StopTasks"]["Targets"] == {"Tasks": "Tasks"}


def test_every_fis_template_is_stopped_by_both_guardrail_alarms(synth):
    alarms = set(synth.resources("AWS::CloudWatch::Alarm"))
    assert len(alarms) == 2
    for t in synth.resources("AWS::FIS::ExperimentTemplate").values():
        conditions = t["Properties"]["StopConditions"]
        assert {c["Source"] for c in conditions} == {"aws:cloudwatch:alarm"}
        assert {c["Value"]["Fn::GetAtt"][0] for c in conditions} == alarms


def test_guardrail_alarms_use_the_configured_bounds(synth):
    g = CONFIG.guardrails
    thresholds = sorted(
        a["Properties"]["Threshold"] for a in synth.resources("AWS::CloudWatch::Alarm").values()
    )
    assert thresholds == sorted([g.max_error_ratio, g.max_p95_ms])  # ratio, and p95 in ms as published
    # window 5 s x 3 windows = a 15-s breach: two 10-s periods, every one breaching
    synth.template.all_resources_properties(
        "AWS::CloudWatch::Alarm",
        {"EvaluationPeriods": 2, "DatapointsToAlarm": 2, "TreatMissingData": "notBreaching"},
    )


def test_no_ecs_or_s3_permission_is_granted_on_every_resource(synth):
    """The one exception: ``ecs:ListTasks``, which names a container instance (none on Fargate), on ``*``
    only under the ``ecs:cluster`` condition of one cluster (Service Authorization Reference, "Actions,
    resources, and condition keys for Amazon Elastic Container Service": ListTasks takes ``ecs:cluster``)."""
    for st in _grants(_statements(synth), "ecs:") + _grants(_statements(synth), "s3:"):
        if "*" in _as_list(st["Resource"]):
            assert _as_list(st["Action"]) == ["ecs:ListTasks"], st
            assert set(st["Condition"]) == {"ArnEquals"} and list(st["Condition"]["ArnEquals"]) == [
                "ecs:cluster"
            ]


def test_ecs_stop_task_is_conditioned_on_one_cluster(synth):
    stops = [s for s in _statements(synth) if "ecs:StopTask" in _as_list(s["Action"])]
    # FIS on the target cluster; the state machine's cleanup branch and the abort cleanup on the load cluster;
    # replay's rebuild task past its timeout (only tasks carrying the replay tag)
    assert len(stops) == 4
    for st in stops:
        assert "ecs:cluster" in st["Condition"]["ArnEquals"]


def test_fis_may_stop_only_the_target_cluster_tasks_that_carry_the_gate_target_tags(synth):
    target_tags = dict(CONFIG.target.tags)  # the default config has no target.aws.target_tags
    assert target_tags
    stops = [s for s in _statements(synth) if "ecs:StopTask" in _as_list(s["Action"])]
    on_target = [
        s
        for s in stops
        if ":cluster/paperbroker" in json.dumps(s["Condition"]["ArnEquals"])
        and "aws:ResourceTag/ResGateReplay" not in s["Condition"].get("StringEquals", {})  # replay's own task
    ]
    assert on_target, "no ecs:StopTask on the target cluster (the FIS role)"
    for st in on_target:
        assert "ecs:cluster" in st["Condition"]["ArnEquals"]
        assert st["Condition"].get("StringEquals") == {
            f"aws:ResourceTag/{k}": v for k, v in target_tags.items()
        }
    # ... and the experiment templates select tasks by the same tags.
    # (the duplicate delivery's template has no ECS target: its automation invokes the redeliver Lambda)
    for t in synth.resources("AWS::FIS::ExperimentTemplate").values():
        if t["Properties"]["Targets"]:
            assert target_tags.items() <= t["Properties"]["Targets"]["Tasks"]["ResourceTags"].items()


def test_s3_object_access_is_limited_to_the_gate_prefix(synth):
    for st in _grants(_statements(synth), "s3:"):
        if st["Action"] == "s3:ListBucket":
            assert st["Condition"]["StringLike"]["s3:prefix"] == ["evidence/gate=paperbroker/*"]
        else:
            for r in _as_list(st["Resource"]):
                # The FIS role writes the experiment reports under their own prefix (test_reports_on_aws).
                assert r["Fn::Join"][1][-1] in (
                    "/evidence/gate=paperbroker/*",
                    "/fis-reports/gate=paperbroker/*",
                    "/evidence/gate=paperbroker/dt=*/run_id=*/load_shape.jsonl",  # the timeline's one file
                ), st


def test_fis_start_experiment_is_granted_on_the_templates_and_tagged_experiments_only(synth):
    starts = [s for s in _statements(synth) if "fis:StartExperiment" in _as_list(s["Action"])]
    on_templates = [s for s in starts if "Condition" not in s]
    assert (
        len(on_templates) == 1 and len(_as_list(on_templates[0]["Resource"])) == 4
    )  # 3 stop-task, 1 redeliver
    tagged = [s for s in starts if "Condition" in s]
    assert tagged and all(
        s["Condition"]["StringEquals"] == {"aws:RequestTag/ResGateGate": "paperbroker"} for s in tagged
    )


def test_secret_access_is_get_secret_value_on_the_database_secret_only(synth):
    grants = _grants(_statements(synth), "secretsmanager:")
    assert len(grants) == 3  # integrity, replay and the quiesce step (drained_queries)
    for st in grants:
        assert st["Action"] == "secretsmanager:GetSecretValue"
        assert st["Resource"]["Fn::Join"][1][-1].endswith(":secret:resgate/paperbroker/database-??????")


def test_each_glue_table_has_its_own_location_and_projects_gate_and_dt(synth):
    tables = synth.resources("AWS::Glue::Table")
    assert sorted(t["Properties"]["TableInput"]["Name"] for t in tables.values()) == sorted(TABLES)
    locations = set()
    for t in tables.values():
        ti = t["Properties"]["TableInput"]
        name, params = ti["Name"], ti["Parameters"]
        assert [k["Name"] for k in ti["PartitionKeys"]] == ["gate", "dt"]
        assert ti["StorageDescriptor"]["Columns"][0] == {"Name": "run_id", "Type": "string"}
        location = json.dumps(ti["StorageDescriptor"]["Location"])
        assert location.endswith(f'/evidence/gate=paperbroker/{name}/"]]}}')
        locations.add(location)
        assert params["projection.enabled"] == "true"
        assert (params["projection.gate.type"], params["projection.gate.values"]) == ("enum", "paperbroker")
        assert params["projection.dt.type"] == "date"
        assert params["projection.dt.format"] == "yyyy-MM-dd"
        assert params["projection.dt.range"].endswith(",NOW")
        template = json.dumps(params["storage.location.template"])
        assert template.endswith(f'/evidence/gate=${{gate}}/{name}/dt=${{dt}}/"]]}}')
    assert len(locations) == len(TABLES)


def test_athena_workgroup_keeps_encrypted_results_in_the_bucket_and_has_named_queries(synth):
    synth.template.has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "WorkGroupConfiguration": Match.object_like(
                {
                    "EnforceWorkGroupConfiguration": True,
                    "ResultConfiguration": {
                        "EncryptionConfiguration": {"EncryptionOption": "SSE_S3"},
                        "OutputLocation": Match.any_value(),
                    },
                }
            )
        },
    )
    queries = synth.resources("AWS::Athena::NamedQuery")
    assert len(queries) == len(NAMED_QUERIES)
    for q in queries.values():
        p = q["Properties"]
        assert p["Database"] == "resgate_paperbroker_evidence"
        assert "$path" not in p["QueryString"] and "MSCK" not in p["QueryString"]


def test_the_nightly_rule_starts_the_state_machine_on_a_cron_schedule(synth):
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": Match.string_like_regexp(r"^cron\("),
            "State": "ENABLED",
            "Targets": [Match.object_like({"Arn": {"Ref": Match.string_like_regexp("StateMachine")}})],
        },
    )


def test_the_evidence_bucket_is_encrypted_private_versioned_and_ssl_only(synth):
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 2  # evidence + its access logs
    for b in buckets.values():
        p = b["Properties"]
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
    evidence = [b for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(evidence) == 1 and evidence[0]["Properties"]["VersioningConfiguration"] == {
        "Status": "Enabled"
    }
    for policy in synth.resources("AWS::S3::BucketPolicy").values():
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


def test_the_load_task_runs_the_loadgen_image_with_the_config_load_settings(synth):
    (task,) = synth.resources("AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["RESGATE_USERS"] == str(CONFIG.load.users)
    assert env["RESGATE_DURATION_S"] == f"{CONFIG.load.duration_s:g}"
    assert task["Properties"]["RequiresCompatibilities"] == ["FARGATE"]
    assert synth.stack.load.image_from == "asset"
    assets = (synth.outdir / f"{synth.stack.artifact_id}.assets.json").read_text()
    assert "loadgen/Dockerfile" in assets


def test_the_notification_topic_is_encrypted_and_ssl_only(synth):
    synth.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    synth.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


def _by_action(statements: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for st in statements:
        for a in _as_list(st["Action"]):
            out.setdefault(a, []).append(st)
    return out


def test_an_aborted_timed_out_or_failed_execution_invokes_the_cleanup_lambda(synth):
    machine = next(iter(synth.resources("AWS::StepFunctions::StateMachine")))
    (cleanup,) = [
        k
        for k, f in synth.resources("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == "lambdas.cleanup.handler.handler"
    ]
    rules = [
        r["Properties"]
        for r in synth.resources("AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    (rule,) = rules
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"stateMachineArn": [{"Ref": machine}], "status": ["ABORTED", "TIMED_OUT", "FAILED"]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [cleanup, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    synth.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"FunctionName": {"Fn::GetAtt": [cleanup, "Arn"]}, "Principal": "events.amazonaws.com"},
    )
    env = synth.resources("AWS::Lambda::Function")[cleanup]["Properties"]["Environment"]["Variables"]
    assert "LoadGenerator" in env["LOAD_CLUSTER"]["Ref"]  # the load cluster's name
    template_ids = json.dumps(env["EXPERIMENT_TEMPLATE_IDS"])
    for template in synth.resources("AWS::FIS::ExperimentTemplate"):
        assert template in template_ids


def test_the_cleanup_role_stops_only_load_tasks_and_this_gates_experiments_and_leaves_a_trace(synth):
    by_action = _by_action(_role_statements(synth, "cleanup"))
    infra_only = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
    assert set(by_action) - infra_only == {
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "fis:ListExperiments",
        "fis:StopExperiment",
        # an aborted run's trace (see test_traces_on_aws.py, test_run_lock.py): its verdict files, its
        # notice, its lock
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "sns:Publish",
        "dynamodb:DeleteItem",
    }
    for action in ("ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask"):
        (st,) = by_action[action]
        assert st["Condition"]["ArnEquals"]["ecs:cluster"]["Fn::GetAtt"][1] == "Arn"
        assert "LoadGenerator" in st["Condition"]["ArnEquals"]["ecs:cluster"]["Fn::GetAtt"][0]
    (stop,) = by_action["fis:StopExperiment"]
    assert stop["Condition"] == {"StringEquals": {"aws:ResourceTag/ResGateGate": "paperbroker"}}
    for action in ("s3:GetObject", "s3:PutObject"):
        assert all("/evidence/gate=paperbroker/*" in json.dumps(st["Resource"]) for st in by_action[action])
