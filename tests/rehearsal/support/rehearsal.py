"""One rehearsal: the synthesized state machine of a gate config, executed by moto's ASL interpreter on
this machine with every integration bound to a local twin, and its verdict read from the S3 twin.

The twins (see their modules): S3 and Secrets Manager are moto's server on 127.0.0.1, shared by the
interpreter, the Lambda subprocesses and the load task (whose own calls to them are first judged against
their roles: :mod:`.sdk_guard`); ``lambda:invoke`` runs the handler from its
bundled asset (:mod:`.lambda_twin`); ECS runs the load image's entrypoint and reports the local
replicas as the target's tasks (:mod:`.ecs_twin`); FIS injects through ``FaultRunner`` with stop
conditions from alarm twins (:mod:`.fis_twin`); SNS records what it is sent. The target is the gate's own
``LocalTarget`` for the same config. *Deployment values* are what a deploy would have given for the
placeholders (the target URL, the database secret, the brokers): the local target's.

Every process and server is stopped on every exit path; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import psycopg
from botocore.exceptions import ClientError
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from infra import constants as c
from resgate import aws_cli
from resgate.checks.replay.config import ReplayConfig
from resgate.config.schema import load_config
from resgate.runner import local_target
from resgate.runner.local_target import LocalTarget
from tests.rehearsal.support import fis_twin, sdk_guard
from tests.rehearsal.support.assembly import synthesize
from tests.rehearsal.support.ecs_twin import ACCOUNT, REGION, EcsTwin, UserTaskDefinition
from tests.rehearsal.support.fis_twin import FisTwin
from tests.rehearsal.support.interpreter import SsmTwin, TwinEndpoint, twins_bound
from tests.rehearsal.support.lambda_twin import LambdaTwin
from tests.rehearsal.support.permissions import Guarded, Permissions

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# Step Functions' quota of events in one execution's history (Step Functions developer guide, "Step
# Functions service quotas": 25,000 events; an execution that would exceed it fails).
HISTORY_LIMIT = 25_000
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
    load_env: dict[str, str] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)
    check_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    cli_output: str = ""
    cli_exit: int | None = None
    second: Rehearsal | None = None
    cleanup: dict[str, Any] | None = None
    ops_items: list[dict[str, Any]] = field(default_factory=list)
    denials: list[str] = field(default_factory=list)
    sdk_calls: dict[str, int] = field(default_factory=dict)
    """The Lambdas' and tasks' own S3/Secrets Manager/DynamoDB calls their roles allowed
    (``{"<role id> <service>:<operation>": count}``, :attr:`.permissions.Permissions.judged`)."""
    endpoint_calls: dict[str, int] = field(default_factory=dict)
    """Their calls to the ECS/FIS/SSM twins' endpoint their roles allowed, counted the same way (the load
    task's leader watch's ``ecs:list_tasks`` and ``ecs:describe_tasks``, for one)."""
    history_events: int = 0
    history: dict[str, int] = field(default_factory=dict)
    load_tasks: list[dict[str, Any]] = field(default_factory=list)
    fault_timeline: list[dict[str, Any]] = field(default_factory=list)
    """The rows of the run's ``faults.jsonl`` (the timeline Lambda's), in the S3 twin."""
    health_timeline: list[dict[str, Any]] = field(default_factory=list)
    """The rows of the run's ``health.jsonl`` (the timeline Lambda's), in the S3 twin."""
    load_parts: dict[str, Any] = field(default_factory=dict)
    """A distributed load's evidence: ``{"nodes": load_nodes.jsonl's rows, "parts": {node: records in
    its uploaded part}, "live_requests", "live_pids"}`` (:func:`_load_parts`; empty for one load task)."""

    def fault_offsets(self) -> dict[str, float]:
        """``{fault: seconds from the load task's start to its fault action}`` (the twins' records)."""
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
        for name, rec in self.check_records.items():
            if outcome(rec) != "pass":
                counts = {k: v for k, v in (rec.get("counts") or {}).items() if v}
                kinds = sorted({str(e.get("kind")) for e in rec.get("examples") or [] if isinstance(e, dict)})
                lines.append(f"  {name}: {rec.get('error') or ''} {counts} {kinds}".rstrip())
        if self.load:
            lines.append("  load run: " + ", ".join(f"{k}={v:g}" for k, v in self.load.items()))
        lines.append(
            "  lambdas: " + ", ".join(f"{n} {t:.1f}s{' ' + e if e else ''}" for n, t, e in self.lambdas)
        )
        for e in self.experiments:
            fired = "-" if e["fired_s"] is None else f"{e['fired_s']:.1f} s"
            held = "" if e.get("held_s") is None else f", held {e['held_s']:.1f} s"
            lines.append(
                f"  fault {e['fault']}: fired at {fired} of the load{held}, {e['status']}: {e['reason']}"
            )
        if self.cli_output:
            lines.append(f"  resgate aws start (exit {self.cli_exit}):")
            lines += [f"    {line}" for line in self.cli_output.splitlines()]
        if self.cleanup is not None:
            lines.append(f"  cleanup Lambda (EventBridge): {json.dumps(self.cleanup, default=str)[:600]}")
        if self.ops_items:
            lines.append(f"  OpsItems: {[i.get('Title') for i in self.ops_items]}")
        if self.throttled:
            lines.append(f"  throttled once: {len(self.throttled)} aws-sdk task states")
        if self.sdk_calls:
            by_role: dict[str, int] = {}
            for key, n in self.sdk_calls.items():
                by_role[key.split(" ", 1)[0]] = by_role.get(key.split(" ", 1)[0], 0) + n
            lines.append(
                f"  own SDK calls allowed by their roles: {sum(self.sdk_calls.values())} "
                f"({', '.join(f'{r} {n}' for r, n in sorted(by_role.items()))})"
            )
        for denial in self.denials:
            lines.append(f"  denied: {denial[:400]}")
        h = self.history
        lines.append(
            f"  history: {self.history_events} events; projected for a run as long as the state machine's "
            f"timeout at poll {h.get('poll_s')} s: {h.get('projected')} of {HISTORY_LIMIT} "
            f"(margin {h.get('margin')})"
        )
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


def target_tags(cfg: Any) -> dict[str, str]:
    """The target's tags as the stack selects by them (infra/settings.py): target.aws.target_tags, else
    target.tags; the rehearsal's deployment tags its tasks and its database with them."""
    return dict((cfg.target.aws.target_tags if cfg.target.aws else None) or cfg.target.tags)


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
    profile: str | None = None,
    infra: tuple[Any, Any] | None = None,
    cli: bool = False,
    second_input: Mapping[str, Any] | None = None,
    second_when: str = "Baseline",
    abort_when: str | None = None,
    on_enter: tuple[str, Callable[[EcsTwin], None]] | None = None,
    machine_timeout_s: int | None = None,
    context: Mapping[str, str] | None = None,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    targets_gone_before_action: bool = False,
    log: Callable[[str], None] = print,
) -> Rehearsal:
    """Rehearse the gate stack of ``config_path`` once (see the module); ``waits`` is the execution's
    ``waits`` input (e.g. ``{"poll_s": 1, "quiesce_s": 5}``). ``fis_wait_scale`` scales the experiments'
    ``aws:fis:wait`` actions (the observation window, at least a minute on AWS) to keep a rehearsal
    short; ``throttle_once`` fails the first call of every ``aws-sdk:`` task state with a
    ThrottlingException (:func:`.interpreter.twins_bound`); ``profile`` is the execution input's
    ``profile``; ``infra`` is ``(postgres server, kafka)`` already running (the test session's
    ``pg_server`` and ``kafka`` fixtures) for the target to use instead of starting its own.

    ``cli``: the execution is started and followed by ``resgate aws start --wait``
    (:func:`resgate.aws_cli.start`, its clients on the twins), whose output and exit code are kept.
    ``second_input``: once the first execution enters ``second_when``, a second execution of the same
    state machine starts with that input (the same way), and its outcome is ``second``. ``on_enter`` =
    ``(state, act)``: once the execution enters ``state``, ``act(the ECS twin)`` runs (a worker task dying
    mid-run, say). ``abort_when``: once the execution enters that state, it is stopped (``StopExecution``:
    ABORTED). ``machine_timeout_s`` replaces the state machine's ``TimeoutSeconds`` (TIMED_OUT). Every
    ending the stack's EventBridge rule matches is delivered to its target, the cleanup Lambda, as the
    rule's event (:func:`_deliver_status_change`); the first execution's result is ``cleanup``.
    ``context`` is synth context (``{"ops_items": "true"}``). ``mutate`` edits the synthesized template in
    place before anything reads it (a rehearsal mutant: one grant removed, say). Every call a twin answers
    is allowed or denied by the caller's role in the template (:mod:`.permissions`);
    ``targets_gone_before_action``: the FIS twin's stop-task targets end on their own before its action
    reaches them (:attr:`.fis_twin.FisTwin.targets_gone_before_action`). ``denials`` lists what was
    denied. Raises only when a twin cannot start."""
    cfg = load_config(config_path)
    assembly = synthesize(config_path, context=context, log=log)
    if mutate is not None:
        mutate(assembly.template)
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
            with _shared_infra(infra):
                target.start_infra()
            target.setup()
            target.start_services()
            # The evidence bucket, as the functions are told it.
            bucket = next(  # (the redeliver Lambda, a fault's, has no evidence bucket)
                f.environment[c.ENV_EVIDENCE_BUCKET]
                for f in assembly.functions.values()
                if c.ENV_EVIDENCE_BUCKET in f.environment
            )
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
                task_tags=target_tags(cfg),
                zones={s.name: list(s.zones) for s in cfg.target.services},
                container_ports=container_ports(cfg),
                log=log,
            )
            permissions = Permissions(
                assembly,
                experiment_tags=lambda i: fis.experiments[i].tags if fis and i in fis.experiments else {},
                object_exists=_object_exists(boto3.client("s3", **aws)),
                secret_arn=_secret_arn(boto3.client("secretsmanager", **aws)),
                # The deployed database carries the target tags the stack conditions its reboot on.
                database_tags=target_tags(cfg),
                log=log,
            )
            fis = FisTwin(
                assembly,
                target=lambda: target,
                live_dirs=ecs.live_dirs,
                tasks=ecs.target_tasks_described,
                wait_scale=fis_wait_scale,
                permissions=permissions,
                log=log,
            )
            fis.targets_gone_before_action = targets_gone_before_action
            sns = SnsTwin()
            ssm = SsmTwin()
            queue = _subscribe_topics(assembly, aws)

            endpoint_calls: dict[str, int] = {}

            def endpoint_guard(caller: str | None, service: str, op: str, params: dict[str, Any]) -> None:
                principal = permissions.caller(caller)
                permissions.check(principal, service, op, params)
                key = f"{principal.role_id} {service}:{op}"
                endpoint_calls[key] = endpoint_calls.get(key, 0) + 1

            with TwinEndpoint(
                ecs, fis, ssm, guard=endpoint_guard, authorize=permissions.authorize
            ) as endpoint:
                on_twins |= {
                    "AWS_ENDPOINT_URL_ECS": endpoint.url,
                    "AWS_ENDPOINT_URL_FIS": endpoint.url,
                    "AWS_ENDPOINT_URL_SSM": endpoint.url,
                    sdk_guard.ENV_URL: endpoint.url,
                }
                # The Lambdas' and the load task's own S3, Secrets Manager and DynamoDB calls, judged
                # against their roles before they reach moto's server (support/sdk_guard.py).
                guard = sdk_guard.guard_folder(workdir)
                ecs.extra_env[sdk_guard.ENV_URL] = endpoint.url
                # The load task's own ECS calls (its leader watch lists and describes the target's tasks)
                # reach the ECS twin through the endpoint, judged against its task role there.
                ecs.extra_env["AWS_ENDPOINT_URL_ECS"] = endpoint.url
                ecs.guard, ecs.access_key = guard, permissions.access_key
                lam = LambdaTwin(
                    assembly,
                    deploy=deploy,
                    endpoint_env=on_twins,
                    access_key=permissions.access_key,
                    guard=guard,
                    log=log,
                )
                lam.prepare()
                fis.lambdas = lam  # the automations' Lambda steps (the redeliver Lambda)
                twins = {
                    "lambda": lam,
                    "ecs": ecs,
                    "fis": fis,
                    "sns": sns,
                    "s3": boto3.client("s3", **aws),
                    "dynamodb": boto3.client("dynamodb", **aws),
                }
                run = _Run(
                    assembly=assembly,
                    aws=aws,
                    bucket=bucket,
                    gate=cfg.name,
                    lam=lam,
                    cli=cli,
                    log=log,
                    machine_timeout_s=machine_timeout_s,
                )
                machine = permissions.machine()

                def machine_guard(service: str, twin: Any) -> Any:
                    return Guarded(service, twin, machine, permissions)

                with twins_bound(twins, throttle_once=throttle_once, guard=machine_guard) as throttled:
                    execution_input: dict[str, Any] = {"waits": dict(waits)}
                    if profile is not None:
                        execution_input["profile"] = profile
                    result = run.execute(
                        run_id,
                        execution_input,
                        timeout_s,
                        second_input=second_input,
                        second_when=second_when,
                        abort_when=abort_when,
                        on_enter=(on_enter[0], lambda: on_enter[1](ecs)) if on_enter and ecs else None,
                    )
            lambda_notices = _received(queue, aws)
            result.lambdas, result.notifications = lam.invocations, sns.messages + lambda_notices
            result.ops_items = ssm.ops_items
            result.denials = list(permissions.denials)
            result.sdk_calls = dict(permissions.judged)
            result.endpoint_calls = dict(endpoint_calls)
            result.throttled = list(throttled)
            result.sdk_states = sdk_task_states(json.loads(assembly.definition))
            result.experiments = _experiments(assembly, ecs, fis)
            load = next((t for t in ecs.tasks.values() if t.container == "loadgen"), None)
            result.load_env = dict(load.env) if load is not None else {}
            result.load_tasks = [  # the load's tasks (the master and its workers), in start order
                {
                    "node": t.env.get("RESGATE_LOAD_NODE"),
                    "role": t.env.get("RESGATE_LOAD_ROLE"),
                    "exit_code": t.proc.returncode if t.proc is not None else None,
                    "stopped_reason": t.reason,
                }
                for t in ecs.tasks.values()
                if t.container == "loadgen"
            ]
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


def container_ports(cfg: Any) -> dict[str, int]:
    """The port each target service's tasks listen on, as their task definitions would map it, where the
    gate probes them: a ``leader_loss``'s health ``port``, which the load task's leader watch probes at
    each task's address. The ECS twin maps it to each task's replica (:mod:`.ecs_twin`)."""
    return {
        f.target: int(f.params["port"])
        for f in cfg.faults
        if f.kind == "leader_loss" and f.target and f.params.get("port") is not None
    }


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
    """What the FIS twin did, per fault: status, reason and when its fault action (stop-task, the
    automation, the RDS reboot, a network action) started, in seconds after the load task's process
    started (the ECS twin's record); ``action`` its id, ``held_s`` its ``endTime - startTime`` (None while
    it runs) and ``duration_s`` its ``duration`` parameter (None without one)."""
    states = json.loads(assembly.definition)["States"]
    fault_of = {
        st["Parameters"]["ExperimentTemplateId"]: name.removeprefix("Start ")
        for name, st in states.items()
        if name.startswith("Start ") and "ExperimentTemplateId" in st.get("Parameters", {})
    }
    load = next((t for t in ecs.tasks.values() if t.container == "loadgen" and t.started), None)
    out = []
    for exp in fis.experiments.values():
        stop = next((a for a in exp.actions.values() if a["actionId"] != "aws:fis:wait"), {})
        fired, ended = stop.get("startTime"), stop.get("endTime")
        duration = (stop.get("parameters") or {}).get("duration")
        out.append(
            {
                "fault": fault_of.get(exp.template_id, exp.template_id),
                "status": exp.status,
                "reason": exp.reason,
                "fired_s": None if fired is None or load is None else fired - (load.started or 0),
                "action": stop.get("actionId"),
                "held_s": None if fired is None or ended is None else ended - fired,
                "duration_s": fis_twin.seconds(duration) if duration else None,
            }
        )
    return out


def _object_exists(s3: Any) -> Callable[[str, str], bool]:
    """Whether an object is in the S3 twin (asked with the rehearsal's own client, which no role limits)."""

    def exists(bucket: str, key: str) -> bool:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return False
            raise
        return True

    return exists


def _secret_arn(secretsmanager: Any) -> Callable[[str], str]:
    """A secret's ARN from its name (the twin's), or the name's ARN without a suffix when there is none."""

    def arn(name: str) -> str:
        try:
            return str(secretsmanager.describe_secret(SecretId=name)["ARN"])
        except ClientError:
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}"

    return arn


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


@contextlib.contextmanager
def _shared_infra(infra: tuple[Any, Any] | None) -> Iterator[None]:
    """Within the block, the local target attaches to ``infra`` (a running Postgres server and Kafka,
    which it neither starts nor stops) instead of starting its own; nothing changes without it."""
    if infra is None:
        yield
        return
    pg, kafka = infra
    with (
        mock.patch.object(local_target, "postgres_from_env", lambda: contextlib.nullcontext(pg)),
        mock.patch.object(local_target, "kafka_from_env", lambda **_: contextlib.nullcontext(kafka)),
    ):
        yield


@dataclass
class _Run:
    """Executions of the rehearsed state machine (see :func:`rehearse`): started directly or by
    ``resgate aws start``, followed to their end, their endings delivered to the EventBridge rule."""

    assembly: Any
    aws: dict[str, str]
    bucket: str
    gate: str
    lam: LambdaTwin
    cli: bool
    log: Any
    machine_timeout_s: int | None = None
    machine_arn: str = ""

    def create(self) -> str:
        """The state machine, named as the template's logical id so that its ARN is the one the
        definition, the rule's pattern and the functions' environment name (support/cfn.py)."""
        (lid,) = self.assembly.of_type("AWS::StepFunctions::StateMachine")
        definition = self.assembly.definition
        if self.machine_timeout_s is not None:
            d = json.loads(definition)
            d["TimeoutSeconds"] = self.machine_timeout_s
            definition = json.dumps(d)
        sfn = boto3.client("stepfunctions", **self.aws)
        self.machine_arn = sfn.create_state_machine(
            name=lid, definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/gate"
        )["stateMachineArn"]
        return self.machine_arn

    def start(self, run_id: str, execution_input: Mapping[str, Any]) -> tuple[str, _Cli | None]:
        """Start an execution named ``run_id``; returns its ARN and, with ``cli``, the CLI's thread."""
        sfn = boto3.client("stepfunctions", **self.aws)
        arn = self.machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
        if not self.cli:
            sfn.start_execution(
                stateMachineArn=self.machine_arn, name=run_id, input=json.dumps(execution_input)
            )
            return arn, None
        cli = _Cli(self, run_id, execution_input)
        cli.thread.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                sfn.describe_execution(executionArn=arn)
                return arn, cli
            except sfn.exceptions.ExecutionDoesNotExist:
                time.sleep(0.2)
        raise RuntimeError(f"resgate aws start did not start {run_id}: {cli.out.getvalue()}")

    def execute(
        self,
        run_id: str,
        execution_input: Mapping[str, Any],
        timeout_s: float,
        *,
        second_input: Mapping[str, Any] | None = None,
        second_when: str = "Baseline",
        abort_when: str | None = None,
        on_enter: tuple[str, Callable[[], None]] | None = None,
    ) -> Rehearsal:
        sfn = boto3.client("stepfunctions", **self.aws)
        self.create()
        started = time.time()
        arn, cli = self.start(run_id, execution_input)
        self.log(f"execution {run_id} started")
        second: tuple[str, str, _Cli | None] | None = None
        deadline = started + timeout_s
        seen, aborted = 0, False
        while True:
            d = sfn.describe_execution(executionArn=arn)
            events = _history(sfn, arn)
            entered = [
                e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
            ]
            for e in events[seen:]:
                if "stateEnteredEventDetails" in e:
                    self.log(f"  {time.time() - started:6.1f} s  {e['stateEnteredEventDetails']['name']}")
            seen = len(events)
            if second_input is not None and second is None and second_when in entered:
                second_id = f"{run_id}-2"
                second = (second_id, *self.start(second_id, second_input))
                self.log(f"second execution {second_id} started")
            if on_enter is not None and on_enter[0] in entered:
                self.log(f"on entering {on_enter[0]}: {on_enter[1]}")
                on_enter[1]()
                on_enter = None
            if abort_when is not None and not aborted and abort_when in entered and d["status"] == "RUNNING":
                sfn.stop_execution(
                    executionArn=arn, error="Rehearsal.Abort", cause="aborted by the rehearsal"
                )
                aborted = True
                self.log(f"execution {run_id} stopped (StopExecution)")
            if d["status"] != "RUNNING":
                break
            if time.time() > deadline:
                sfn.stop_execution(executionArn=arn, cause="rehearsal timeout")
                d = {**d, "status": "TIMED_OUT (rehearsal)"}
                break
            time.sleep(0.5)
        result = self.outcome(run_id, d, events, started, cli)
        if second is not None:
            second_id, second_arn, second_cli = second
            while sfn.describe_execution(executionArn=second_arn)["status"] == "RUNNING":
                if time.time() > deadline + 120:
                    sfn.stop_execution(executionArn=second_arn, cause="rehearsal timeout")
                time.sleep(0.5)
            d2 = sfn.describe_execution(executionArn=second_arn)
            result.second = self.outcome(second_id, d2, _history(sfn, second_arn), started, second_cli)
        return result

    def outcome(
        self,
        run_id: str,
        d: Mapping[str, Any],
        events: list[dict[str, Any]],
        started: float,
        cli: _Cli | None,
    ) -> Rehearsal:
        """The execution's :class:`Rehearsal`: status, phases, the rule's cleanup, its evidence."""
        phases = []
        for e in events:
            name = e.get("stateEnteredEventDetails", {}).get("name")
            if name and (name in PHASES or name.startswith("Start ")):
                phases.append((name, e["timestamp"].timestamp() - started))
        r = Rehearsal(
            entered=[
                e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
            ],
            run_id=run_id,
            history_events=len(events),
            history=history_projection(
                events,
                timeout_s=int(json.loads(self.assembly.definition).get("TimeoutSeconds", 0)),
                poll_s=c.DEFAULT_POLL_S,
            ),
            status=d["status"],
            error=d.get("error"),
            cause=d.get("cause"),
            verdict=None,
            checks={},
            phases=phases,
            duration_s=0.0,
        )
        if cli is not None:
            cli.thread.join(30)
            r.cli_output, r.cli_exit = cli.out.getvalue(), cli.exit_code
        if d["status"] in ("ABORTED", "TIMED_OUT", "FAILED"):
            r.cleanup = _deliver_status_change(self.assembly, self.lam, dict(d), self.log)
        r.check_records, r.verdict, r.load = _evidence(boto3.client("s3", **self.aws), self.bucket, run_id)
        r.checks = {name: outcome(rec) for name, rec in r.check_records.items()}
        r.load_parts = _load_parts(boto3.client("s3", **self.aws), self.bucket, run_id)
        s3 = boto3.client("s3", **self.aws)
        r.fault_timeline, r.health_timeline = (
            _rows(s3, self.bucket, run_id, n) for n in ("faults", "health")
        )
        return r


class _Cli:
    """``resgate aws start --wait`` of one execution in a thread (its clients on the twins)."""

    def __init__(self, run: _Run, run_id: str, execution_input: Mapping[str, Any]) -> None:
        self.out = io.StringIO()
        self.exit_code: int | None = None
        body = dict(execution_input)
        profile = body.pop("profile", None)
        clients = aws_cli.Clients(
            stepfunctions=boto3.client("stepfunctions", **run.aws), s3=boto3.client("s3", **run.aws)
        )
        outputs = aws_cli.StackOutputs(
            state_machine_arn=run.machine_arn,
            bucket=run.bucket,
            database=f"resgate_{run.gate}_evidence",
            workgroup=f"resgate-{run.gate}",
            gate=run.gate,
        )

        def main() -> None:
            try:
                self.exit_code = aws_cli.start(
                    clients,
                    outputs,
                    out=self.out,
                    profile=profile,
                    wait=True,
                    extra_input=body,
                    run_id=run_id,
                    poll_s=0.5,
                )
            except Exception as e:  # the test asserts the exit code; keep why there is none
                print(f"resgate aws start raised {type(e).__name__}: {e}", file=self.out)

        self.thread = threading.Thread(target=main, name=f"cli-{run_id}", daemon=True)


def _matches(pattern: Any, value: Any) -> bool:
    """EventBridge's matching of an event (part) against a pattern of literal-value lists and objects."""
    if isinstance(pattern, Mapping):
        return isinstance(value, Mapping) and all(_matches(p, value.get(k)) for k, p in pattern.items())
    return value in pattern


def _deliver_status_change(
    assembly: Any, lam: LambdaTwin, execution: dict[str, Any], log: Any
) -> dict[str, Any] | None:
    """EventBridge: the execution's *Step Functions Execution Status Change* event (its documented
    shape) to each rule of the template whose pattern matches it, invoking the rule's Lambda targets
    through the Lambda twin; returns the last target's answer (``{"payload", "error"}``), None when no
    rule matched."""
    ms = lambda t: int(t.timestamp() * 1000) if t is not None else None  # noqa: E731
    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": execution["status"],
        "startDate": ms(execution.get("startDate")),
        "stopDate": ms(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "error": execution.get("error"),
        "cause": execution.get("cause"),
    }
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [execution["executionArn"]],
        "detail": detail,
    }
    out = None
    for lid, rule in assembly.of_type("AWS::Events::Rule").items():
        props = assembly.render(rule["Properties"])
        pattern = props.get("EventPattern")
        if not pattern or not _matches(pattern, event):
            continue
        for target in props.get("Targets", []):
            function = str(target["Arn"]).rsplit(":", 1)[-1]
            if function not in assembly.functions:
                continue
            log(f"eventbridge: {lid} → {function} ({execution['status']} {execution['name']})")
            resp = lam.invoke(FunctionName=function, Payload=json.dumps(event))
            out = {"payload": json.loads(resp["Payload"].read()), "error": resp.get("FunctionError")}
    return out


def _subscribe_topics(assembly: Any, aws: dict[str, str]) -> str:
    """Every SNS topic of the template on moto's server (named as the functions are told it), each
    subscribed by one SQS queue, whose URL is returned: what the Lambdas publish lands there."""
    sns, sqs = boto3.client("sns", **aws), boto3.client("sqs", **aws)
    queue = sqs.create_queue(QueueName="rehearsal-notices")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for lid in assembly.of_type("AWS::SNS::Topic"):
        topic = sns.create_topic(Name=lid)["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return queue


def _received(queue: str, aws: dict[str, str]) -> list[dict[str, Any]]:
    """The messages the Lambdas published (``{TopicArn, Subject, Message}``), from the queue."""
    sqs = boto3.client("sqs", **aws)
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not msgs:
            return out
        for m in msgs:
            body = json.loads(m["Body"])
            out.append({k: body.get(k) for k in ("TopicArn", "Subject", "Message")} | {"via": "lambda"})
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])


def history_projection(events: list[dict[str, Any]], *, timeout_s: int, poll_s: int) -> dict[str, int]:
    """How many history events a deployed run could reach, against :data:`HISTORY_LIMIT`: the events of
    states entered once, plus, for the polling loops (states entered more than once; an iteration is one
    entry into a Wait state among them), the loop events per iteration times the iterations a run as long
    as the state machine's ``timeout_s`` makes at ``poll_s`` (each iteration lasts at least ``poll_s``).
    Each event counts for the state entered last. Returns ``{events, once, loop_events, polls, poll_s,
    projected, margin}``. Loops that poll at the same time (parallel branches) would each need counting:
    the gate's state machine polls one at a time."""
    entries: dict[str, int] = {}
    per_state: dict[str, int] = {}
    waits: set[str] = set()
    state = ""
    for e in events:
        name = e.get("stateEnteredEventDetails", {}).get("name")
        if name:
            state = name
            entries[name] = entries.get(name, 0) + 1
            if e.get("type") == "WaitStateEntered":
                waits.add(name)
        per_state[state] = per_state.get(state, 0) + 1
    repeated = {s for s, n in entries.items() if n > 1}
    loop_events = sum(per_state.get(s, 0) for s in repeated)
    polls = sum(entries[s] for s in repeated if s in waits)
    once = len(events) - loop_events
    iterations = -(-timeout_s // max(1, poll_s))
    projected = once + (loop_events * iterations + polls - 1) // polls if polls else len(events)
    return {
        "events": len(events),
        "once": once,
        "loop_events": loop_events,
        "polls": polls,
        "poll_s": poll_s,
        "projected": projected,
        "margin": HISTORY_LIMIT - projected,
    }


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


def _evidence(
    s3: Any, bucket: str, run_id: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, dict[str, float]]:
    """``({check: its checks.jsonl record}, verdict.json or None, the load actually run)``: the load from
    the run's ledger, as the load task uploaded it: ``{clients: distinct client ids (Locust users),
    requests, span_s}``."""
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
    checks = {r["name"]: r for r in map(json.loads, filter(None, checks_text.splitlines()))}
    verdict = read("verdict.json")
    records = [json.loads(line) for line in (read("ledger.jsonl") or "").splitlines() if line.strip()]
    ts = [float(r["ts"]) for r in records if isinstance(r.get("ts"), (int, float))]
    load = {
        "clients": len({r.get("client_id") for r in records}),
        "requests": len(records),
        "span_s": max(ts) - min(ts) if ts else 0.0,
    }
    return checks, json.loads(verdict) if verdict else None, load


def _rows(s3: Any, bucket: str, run_id: str, table: str) -> list[dict[str, Any]]:
    """The rows of the run's ``<table>.jsonl`` in the S3 twin (its table folder), ``[]`` without it."""
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
        if f"/{table}/" in o["Key"] and f"/run_id={run_id}/" in o["Key"] and o["Key"].endswith(".jsonl")
    ]
    return [
        json.loads(line)
        for key in keys
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        if line.strip()
    ]


def _load_parts(s3: Any, bucket: str, run_id: str) -> dict[str, Any]:
    """A distributed load's evidence in the S3 twin: ``{"nodes": rows of load_nodes.jsonl, "parts": {node:
    whole lines of its uploaded part}, "live_requests": requests counted by the master's live lines,
    "live_pids": processes they came from}``; ``{}`` when the run has no ``load_nodes.jsonl``."""
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
        if f"/run_id={run_id}/" in o["Key"]
    ]

    def lines(key: str) -> list[str]:
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        return [line for line in text.splitlines() if line.strip()]

    nodes_key = next((k for k in keys if k.endswith("/load_nodes.jsonl")), None)
    if nodes_key is None:
        return {}
    parts = {
        k.rsplit("/ledger-", 1)[-1].removesuffix(".jsonl"): len(lines(k))
        for k in keys
        if "/load_parts/ledger-" in k
    }
    live_key = next((k for k in keys if k.endswith("/load_live.jsonl")), None)
    live = [json.loads(line) for line in lines(live_key)] if live_key else []
    return {
        "nodes": [json.loads(line) for line in lines(nodes_key)],
        "parts": parts,
        "live_requests": sum(int(p.get("requests") or 0) for p in live),
        "live_pids": len({p.get("pid") for p in live}),
    }
