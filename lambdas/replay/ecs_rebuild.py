"""The replay Lambda's rebuild runner: the target's own code rebuilds its read models in its own image.

A replay rebuild that names an ``ecs_task`` (:class:`resgate.checks.replay.EcsTaskSpec`) runs as one ECS
task of the task definition the config names: ``ecs:RunTask`` with the replay environment
(``RESGATE_REPLAY_DSN``/``_SCHEMA``/``_END_OFFSETS``, ``RESGATE_KAFKA_BOOTSTRAP`` and the
``RESGATE_KAFKA_*`` security settings) as the container's environment override, in the stack's subnets
and security group; then ``ecs:DescribeTasks`` until it has stopped, bounded by the rebuild's
``timeout_s`` (after which the task is stopped). The rebuild succeeded when the container exited with 0;
anything else raises GateError with the exit code and ECS's reasons, which the checker reports as
``unknown``. The DSN goes to the task without its password: the task definition supplies it (e.g.
``PGPASSWORD`` from the database secret), so no secret appears in RunTask's request or in DescribeTasks.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from lambdas.common import settings
from lambdas.common.aws import call
from resgate.checks.replay import RebuildJob
from resgate.contract.env import ENV_REPLAY_DSN
from resgate.contract.errors import ConfigError, GateError

STARTED_BY = "resgate-replay"
# RunTask refuses overrides above 8 KiB in total.
OVERRIDES_LIMIT_BYTES = 8192


def dsn_without_password(dsn: str) -> str:
    """``dsn`` with its password removed (libpq then reads ``PGPASSWORD`` or ``.pgpass``)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**info)


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in (env.get(name) or "").split(",") if p.strip())


@dataclass(frozen=True)
class EcsRebuildRunner:
    """Runs a :class:`RebuildJob`'s ECS task and waits for it (a ``resgate.checks.replay.RebuildRunner``).

    ``cluster`` is used when the spec names none; ``subnets``/``security_groups`` are the task's awsvpc
    network (the stack's, the ones allowed into the database and the brokers).
    """

    client: Any
    cluster: str | None
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    poll_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_env(cls, client: Any, env: Mapping[str, str] | None = None, **kwargs: Any) -> EcsRebuildRunner:
        """From ``REPLAY_CLUSTER``, ``REPLAY_SUBNETS`` and ``REPLAY_SECURITY_GROUPS`` (comma-separated),
        set by the stack; ConfigError naming the variable when the subnets are missing."""
        env = os.environ if env is None else env
        subnets = _csv(env, settings.ENV_REPLAY_SUBNETS)
        if not subnets:
            raise ConfigError("is required to run the rebuild's ECS task", where=settings.ENV_REPLAY_SUBNETS)
        return cls(
            client=client,
            cluster=env.get(settings.ENV_REPLAY_CLUSTER) or None,
            subnets=subnets,
            security_groups=_csv(env, settings.ENV_REPLAY_SECURITY_GROUPS),
            **kwargs,
        )

    def request(self, job: RebuildJob) -> dict[str, Any]:
        """The ``run_task`` arguments for ``job``: its task definition, the container's environment (and
        command) override, the awsvpc network. GateError when the overrides exceed RunTask's limit."""
        task = job.spec.ecs_task
        if task is None:
            raise ConfigError("names no ecs_task", where="replay.rebuild.ecs_task")
        cluster = task.cluster or self.cluster
        if not cluster:
            raise ConfigError(
                f"is required (or set {settings.ENV_REPLAY_CLUSTER})", where="replay.rebuild.ecs_task.cluster"
            )
        env = {**job.env(), ENV_REPLAY_DSN: dsn_without_password(job.dsn)}
        container: dict[str, Any] = {
            "name": task.container,
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        }
        if task.command is not None:
            container["command"] = list(task.command)
        overrides = {"containerOverrides": [container]}
        size = len(json.dumps(overrides))
        if size > OVERRIDES_LIMIT_BYTES:
            raise GateError(
                f"the rebuild task's environment is {size} bytes, above RunTask's {OVERRIDES_LIMIT_BYTES}: "
                "too many partitions' end offsets to pass"
            )
        network: dict[str, Any] = {"subnets": list(self.subnets), "assignPublicIp": "DISABLED"}
        if self.security_groups:
            network["securityGroups"] = list(self.security_groups)
        return {
            "cluster": cluster,
            "taskDefinition": task.task_definition,
            "launchType": task.launch_type,
            "count": 1,
            "startedBy": STARTED_BY,
            "tags": [{"key": settings.REPLAY_TASK_TAG[0], "value": settings.REPLAY_TASK_TAG[1]}],
            "networkConfiguration": {"awsvpcConfiguration": network},
            "overrides": overrides,
        }

    def __call__(self, job: RebuildJob) -> None:
        """Start the task, wait until it stopped (at most ``timeout_s``), and judge its exit."""
        req = self.request(job)
        what = f"the rebuild task of {req['taskDefinition']}"
        started = call(f"start {what}", self.client.run_task, **req)
        tasks = started.get("tasks") or []
        if not tasks:
            raise GateError(f"ECS did not start {what}: {started.get('failures') or 'no task and no reason'}")
        arn = tasks[0]["taskArn"]
        stopped = self._wait_stopped(req["cluster"], arn, job.spec.timeout_s, what)
        _judge(stopped, job.spec.ecs_task.container, what)  # type: ignore[union-attr]

    def _wait_stopped(self, cluster: str, arn: str, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = self.clock() + timeout_s
        polls = max(1, math.ceil(timeout_s / max(self.poll_s, 0.001))) + 1
        for _ in range(polls):
            found = call(f"describe {what}", self.client.describe_tasks, cluster=cluster, tasks=[arn])
            task = next(iter(found.get("tasks") or []), None)
            if task is None:
                raise GateError(f"{what} {arn} is gone: {found.get('failures')}")
            if task.get("lastStatus") == "STOPPED":
                return dict(task)
            if self.clock() >= deadline:
                break
            self.sleep(self.poll_s)
        call(
            f"stop {what}",
            self.client.stop_task,
            cluster=cluster,
            task=arn,
            reason=f"resgate: the rebuild did not finish within {timeout_s:.0f}s",
        )
        raise GateError(f"{what} {arn} did not finish within {timeout_s:.0f}s (stopped it)")


def _judge(task: Mapping[str, Any], container: str, what: str) -> None:
    """Return when ``container`` exited with 0; else GateError with its exit code and ECS's reasons."""
    c = next((c for c in task.get("containers") or [] if c.get("name") == container), None)
    code = c.get("exitCode") if c is not None else None
    if code == 0:
        return
    reasons = [
        f"{k}: {v}"
        for k, v in (
            ("stopCode", task.get("stopCode")),
            ("stoppedReason", task.get("stoppedReason")),
            ("container reason", (c or {}).get("reason")),
        )
        if v
    ]
    if c is None:
        outcome = f"has no container {container!r}"
    elif code is None:
        outcome = f"stopped before container {container!r} exited"
    else:
        outcome = f"stopped: container {container!r} exited with {code}"
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    raise GateError(f"{what} {task.get('taskArn')} {outcome}{detail}")
