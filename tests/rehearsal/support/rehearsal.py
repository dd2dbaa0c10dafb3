"""One rehearsal: the synthesized state machine of a gate config, executed by moto's ASL interpreter on
this machine with every integration bound to a local twin, and its verdict read from the S3 twin.

The twins (see their modules): S3 and Secrets Manager are moto's server on 127.0.0.1, shared by the
interpreter, the Lambda subprocesses and the load task; ``lambda:invoke`` runs the handler from its
bundled asset (:mod:`.lambda_twin`); ECS runs the load image's entrypoint and reports the local
replicas as the target's tasks (:mod:`.ecs_twin`); FIS injects through ``FaultRunner`` with stop
conditions from alarm twins (:mod:`.fis_twin`); SNS records what it is sent. The target is the gate's own
``LocalTarget`` for the same config. *Deployment values* are what a deploy would have given for the
placeholders (the target URL, the database secret, the brokers): the local target's.

Every process and server is stopped on every exit path; every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import psycopg
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from infra import constants as c
from resgate.checks.replay.config import ReplayConfig
from resgate.config.schema import load_config
from resgate.runner.local_target import LocalTarget
from tests.rehearsal.support.assembly import synthesize
from tests.rehearsal.support.ecs_twin import ACCOUNT, REGION, EcsTwin, UserTaskDefinition
from tests.rehearsal.support.fis_twin import FisTwin
from tests.rehearsal.support.interpreter import TwinEndpoint, twins_bound
from tests.rehearsal.support.lambda_twin import LambdaTwin

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# States whose entry marks a phase of the run (printed with their time since the start).
PHASES = (
    "Init",
    "Start load task",
    "Baseline",
    "Wait for load end",
    "Quiesce",
    "Write timeline",
    "Assertions",
    "Verdict",
    "Cleanup",
    "Gate passed",
    "Gate failed",
    "Gate run failed",
)


@dataclass
class Rehearsal:
    """What a rehearsal produced: the execution's status (and error/cause), ``verdict`` (verdict.json
    from the S3 twin, None when there is none), ``checks`` (``{name: "pass"|"fail"|"unknown"}`` from
    checks.jsonl), ``phases`` (``[(state, seconds since start)]`` of the states in :data:`PHASES` and
    every ``Start <fault>``), the Lambda invocations and SNS messages."""

    run_id: str
    status: str
    error: str | None
    cause: str | None
    verdict: dict[str, Any] | None
    checks: dict[str, str]
    phases: list[tuple[str, float]]
    duration_s: float
    lambdas: list[tuple[str, float, str | None]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    throttled: list[str] = field(default_factory=list)
    sdk_states: set[str] = field(default_factory=set)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)

    def fault_offsets(self) -> dict[str, float]:
        """``{fault: seconds from the load task's start to its stop-task action}`` (the twins' records)."""
        return {e["fault"]: e["fired_s"] for e in self.experiments if e["fired_s"] is not None}

    def summary(self) -> str:
        lines = [f"rehearsal {self.run_id}: execution {self.status} in {self.duration_s:.1f} s"]
        lines += [f"  {t:6.1f} s  {name}" for name, t in self.phases]
        if self.error:
            lines.append(f"  error: {self.error}: {(self.cause or '')[:500]}")
        if self.verdict:
            v = self.verdict
            lines.append(f"  verdict: {v.get('result')} {v.get('reason') or ''}".rstrip())
        lines.append("  checks: " + ", ".join(f"{k}={v}" for k, v in self.checks.items()))
        lines.append(
            "  lambdas: " + ", ".join(f"{n} {t:.1f}s{' ' + e if e else ''}" for n, t, e in self.lambdas)
        )
        for e in self.experiments:
            fired = "-" if e["fired_s"] is None else f"{e['fired_s']:.1f} s"
            lines.append(f"  fault {e['fault']}: fired at {fired} of the load, {e['status']}: {e['reason']}")
        if self.throttled:
            lines.append(f"  throttled once: {len(self.throttled)} aws-sdk task states")
        return "\n".join(lines)


class SnsTwin:
    """``sns:publish``: records the message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, **p: Any) -> dict[str, Any]:
        self.messages.append(p)
        return {"MessageId": uuid.uuid4().hex}


def outcome(check: dict[str, Any]) -> str:
    """``pass`` / ``fail`` / ``unknown`` of one checks.jsonl record."""
    v = check.get("valid")
    return "pass" if v is True else "fail" if v is False else "unknown"


def _secret(dsn: str) -> dict[str, Any]:
    """The RDS-style secret a deployment would hold for the local target's database."""
    d = psycopg.conninfo.conninfo_to_dict(dsn)
    return {
        "host": d.get("host") or "127.0.0.1",
        "port": int(d.get("port") or 5432),
        "username": d.get("user") or "postgres",
        "password": d.get("password") or "trust-auth-ignores-it",
        "dbname": d.get("dbname") or "postgres",
        "sslmode": "disable",
    }


def user_tasks(cfg: Any) -> dict[str, UserTaskDefinition]:
    """The target's own task definitions the config names (the replay rebuild's ``ecs_task``), by family:
    the stack does not define them, so the ECS twin answers for them (:mod:`.ecs_twin`)."""
    body = cfg.checks.get("replay")
    if not body or "replay" not in cfg.enabled_checks():
        return {}
    out = {}
    replay = ReplayConfig.from_dict({k: v for k, v in body.items() if k != "enabled"})
    for model in replay.read_models:
        task = model.rebuild.ecs_task
        if task is not None and task.command is not None:
            family = task.task_definition.rsplit("/", 1)[-1].split(":")[0]
            out[family] = UserTaskDefinition(container=task.container, command=task.command)
    return out


def rehearse(
    config_path: Path,
    *,
    waits: Mapping[str, int],
    timeout_s: float = 600,
    fis_wait_scale: float = 0.1,
    throttle_once: bool = False,
    log: Callable[[str], None] = print,
) -> Rehearsal:
    """Rehearse the gate stack of ``config_path`` once (see the module); ``waits`` is the execution's
    ``waits`` input (e.g. ``{"poll_s": 1, "quiesce_s": 5}``). ``fis_wait_scale`` scales the experiments'
    ``aws:fis:wait`` actions (the observation window, at least a minute on AWS) to keep a rehearsal
    short; ``throttle_once`` fails the first call of every ``aws-sdk:`` task state with a
    ThrottlingException (:func:`.interpreter.twins_bound`). Raises only when a twin cannot start."""
    cfg = load_config(config_path)
    assembly = synthesize(config_path, log=log)
    run_id = f"rehearsal-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="resgate-rehearsal-"))
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    target: LocalTarget | None = None
    ecs: EcsTwin | None = None
    fis: FisTwin | None = None
    t0 = time.time()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    with (
        mock.patch.dict(os.environ, FAKE_AWS),
        mock.patch.dict(default_user_config["stepfunctions"], {"execute_state_machine": True}),
    ):
        try:
            server.start()
            moto_url = "http://{}:{}".format(*server.get_host_and_port())
            aws = {"endpoint_url": moto_url, "region_name": REGION}
            # moto's backends are per process, not per server: start from empty ones (an earlier
            # rehearsal in this process left its bucket, secret, tables and state machine).
            urllib.request.urlopen(
                urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10
            )
            target = LocalTarget(cfg, run_id, say=lambda s: log(f"target: {s}"), log_dir=workdir / "logs")
            target.start_infra()
            target.setup()
            target.start_services()
            # The evidence bucket, as the functions are told it.
            bucket = next(iter(assembly.functions.values())).environment[c.ENV_EVIDENCE_BUCKET]
            boto3.client("s3", **aws).create_bucket(Bucket=bucket)
            _create_tables(assembly, boto3.client("dynamodb", **aws))
            secret_arn = boto3.client("secretsmanager", **aws).create_secret(
                Name=f"resgate/{cfg.name}/database", SecretString=json.dumps(_secret(target.dsn))
            )["ARN"]
            placeholder_secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:" + (
                c.PLACEHOLDER_SECRET_NAME.format(gate=cfg.name)
            )
            deploy = {
                c.PLACEHOLDER_TARGET_URL: target.host,
                c.PLACEHOLDER_KAFKA_BOOTSTRAP: target.bootstrap,
                placeholder_secret: secret_arn,
            }
            on_twins = {**FAKE_AWS, "AWS_ENDPOINT_URL": moto_url}
            ecs = EcsTwin(
                assembly,
                workdir=workdir,
                deploy=deploy,
                extra_env={**FAKE_AWS, "AWS_ENDPOINT_URL_S3": moto_url},
                supervisor=lambda: target.supervisor if target else None,
                target_cluster=cfg.name,
                health_checked={s.name: bool(s.health_path) for s in cfg.target.services},
                user_tasks=user_tasks(cfg),
                log=log,
            )
            fis = FisTwin(
                assembly, target=lambda: target, live_dirs=ecs.live_dirs, wait_scale=fis_wait_scale, log=log
            )
            sns = SnsTwin()
            with TwinEndpoint(ecs, fis) as endpoint:
                on_twins |= {"AWS_ENDPOINT_URL_ECS": endpoint.url, "AWS_ENDPOINT_URL_FIS": endpoint.url}
                lam = LambdaTwin(assembly, deploy=deploy, endpoint_env=on_twins, log=log)
                lam.prepare()
                twins = {
                    "lambda": lam,
                    "ecs": ecs,
                    "fis": fis,
                    "sns": sns,
                    "s3": boto3.client("s3", **aws),
                    "dynamodb": boto3.client("dynamodb", **aws),
                }
                with twins_bound(twins, throttle_once=throttle_once) as throttled:
                    result = _execute(assembly, run_id, waits, aws, timeout_s, log)
            result.lambdas, result.notifications = lam.invocations, sns.messages
            result.throttled = list(throttled)
            result.sdk_states = sdk_task_states(json.loads(assembly.definition))
            result.experiments = _experiments(assembly, ecs, fis)
            result.checks, result.verdict = _evidence(boto3.client("s3", **aws), bucket, run_id)
            result.duration_s = time.time() - t0
            return result
        finally:
            for step in (
                fis.close if fis else None,
                ecs.close if ecs else None,
                target.close if target else None,
                server.stop,
            ):
                try:
                    if step is not None:
                        step()
                except Exception as e:
                    log(f"cleanup step failed: {e}")
            shutil.rmtree(workdir, ignore_errors=True)


def sdk_task_states(definition: Mapping[str, Any]) -> set[str]:
    """The names of every ``aws-sdk:`` Task state of ``definition``, in Parallel branches too."""
    out = set()
    for name, st in definition.get("States", {}).items():
        if st.get("Type") == "Task" and ":states:::aws-sdk:" in str(st.get("Resource", "")):
            out.add(name)
        for branch in st.get("Branches", []):
            out |= sdk_task_states(branch)
    return out


def _experiments(assembly: Any, ecs: EcsTwin, fis: FisTwin) -> list[dict[str, Any]]:
    """What the FIS twin did, per fault: status, reason and when its stop-task action started, in seconds
    after the load task's process started (the ECS twin's record)."""
    states = json.loads(assembly.definition)["States"]
    fault_of = {
        st["Parameters"]["ExperimentTemplateId"]: name.removeprefix("Start ")
        for name, st in states.items()
        if name.startswith("Start ") and "ExperimentTemplateId" in st.get("Parameters", {})
    }
    load = next((t for t in ecs.tasks.values() if t.container == "loadgen" and t.started), None)
    out = []
    for exp in fis.experiments.values():
        stop = next((a for a in exp.actions.values() if a["actionId"] == "aws:ecs:stop-task"), {})
        fired = stop.get("startTime")
        out.append(
            {
                "fault": fault_of.get(exp.template_id, exp.template_id),
                "status": exp.status,
                "reason": exp.reason,
                "fired_s": None if fired is None or load is None else fired - (load.started or 0),
            }
        )
    return out


def _create_tables(assembly: Any, dynamodb: Any) -> None:
    """Every DynamoDB table of the template (e.g. the run lock) on moto's server, named as the definition
    and the functions are told it (the logical id)."""
    for lid, res in assembly.of_type("AWS::DynamoDB::Table").items():
        p = res["Properties"]
        dynamodb.create_table(
            TableName=lid,
            KeySchema=p["KeySchema"],
            AttributeDefinitions=p["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )


def _execute(
    assembly: Any, run_id: str, waits: Mapping[str, int], aws: dict[str, str], timeout_s: float, log: Any
) -> Rehearsal:
    sfn = boto3.client("stepfunctions", **aws)
    arn = sfn.create_state_machine(
        name="gate", definition=assembly.definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/gate"
    )["stateMachineArn"]
    started = time.time()
    ex = sfn.start_execution(stateMachineArn=arn, name=run_id, input=json.dumps({"waits": dict(waits)}))
    log(f"execution {run_id} started")
    deadline = started + timeout_s
    seen = 0
    while True:
        d = sfn.describe_execution(executionArn=ex["executionArn"])
        events = _history(sfn, ex["executionArn"])
        for e in events[seen:]:
            if "stateEnteredEventDetails" in e:
                log(f"  {time.time() - started:6.1f} s  {e['stateEnteredEventDetails']['name']}")
        seen = len(events)
        if d["status"] != "RUNNING":
            break
        if time.time() > deadline:
            sfn.stop_execution(executionArn=ex["executionArn"], cause="rehearsal timeout")
            d = {**d, "status": "TIMED_OUT (rehearsal)"}
            break
        time.sleep(0.5)
    phases = []
    for e in events:
        name = e.get("stateEnteredEventDetails", {}).get("name")
        if name and (name in PHASES or name.startswith("Start ")):
            phases.append((name, e["timestamp"].timestamp() - started))
    return Rehearsal(
        entered=[e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e],
        run_id=run_id,
        status=d["status"],
        error=d.get("error"),
        cause=d.get("cause"),
        verdict=None,
        checks={},
        phases=phases,
        duration_s=0.0,
    )


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    """Every event of the execution's history, in order."""
    events, token = [], None
    while True:
        page = sfn.get_execution_history(
            executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def _evidence(s3: Any, bucket: str, run_id: str) -> tuple[dict[str, str], dict[str, Any] | None]:
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
        if f"/run_id={run_id}/" in o["Key"]
    ]

    def read(name: str) -> str | None:
        key = next((k for k in keys if k.endswith("/" + name)), None)
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode() if key else None

    checks_text = read("checks.jsonl") or ""
    checks = {r["name"]: outcome(r) for r in map(json.loads, filter(None, checks_text.splitlines()))}
    verdict = read("verdict.json")
    return checks, json.loads(verdict) if verdict else None
