"""The ECS twin: the load cluster's task runs the load image's entrypoint locally; the target cluster's
services and tasks are the local supervisor's replicas.

*Load task* (``RunTask`` of the template's load task definition): the image is rebuilt as a folder from
``loadgen/Dockerfile`` (its ``COPY`` lines into ``/app``, its ``ENV`` lines, its ``ENTRYPOINT``) and run
as a subprocess in its own process group with the task definition's container environment, the run's
overrides, the deployment values substituted, and S3 on the twin. ``DescribeTasks`` reports
``PROVISIONING`` until the process is started, ``RUNNING`` while it lives, then ``STOPPED`` with the
container's exit code; ``StopTask`` sends SIGTERM (ECS's stop) and SIGKILL after the stop timeout.
The image's pip packages (locust, boto3) come from this environment. With ``guard`` set, the task signs
with an access key id naming its task definition and its own S3 calls are judged against its task role
(:mod:`.sdk_guard`). A distributed load runs the same
way, one process per task (the master, and each worker started with the master's address): every task's
elastic network interface is 127.0.0.1 here (``DescribeTasks``' ``containers[].networkInterfaces[]``),
so the master listens on 127.0.0.1 and on a port of this twin's own instead of Locust's 5557 (tasks
that share one address cannot share a port, and other rehearsals may run beside this one).

*The target's own task definitions* (``user_tasks``: family → :class:`UserTaskDefinition`), which the
stack does not define because they are the user's, e.g. the replay rebuild's ``paperbroker-projector``:
``RunTask`` of such a family runs the container's command (the override's, else the configured one) as
a subprocess of this checkout (the target's image is this repository's code), with this environment plus
the override's, in its own process group; ``DescribeTasks``/``StopTask`` answer for it as for the load
task.

*Target services* (``DescribeServices``, ``ListTasks``, ``DescribeTasks`` of the target cluster): each
incarnation of a supervised replica is an ECS task (ECS never restarts a task; a replacement is a new
one), started at its ``started``/``restarted`` event and stopped at its ``killed``/``exited`` event; a
service reports *"has reached a steady state"* whenever all its replicas are healthy again. Each target
task has a private address of its own (``containers[].networkInterfaces[].privateIpv4Address``, as
``awsvpc`` gives every Fargate task an ENI), one of this twin's in ``127.0.0.0/8`` (:data:`TASK_NET`,
random per twin so that rehearsals side by side never share one); on a service's container port
(``container_ports``, its task definition's ``portMappings``) that address reaches the one replica
process the task stands for, through the task's ENI twin (:class:`.task_eni.TaskEni`), up while the task
runs. So whoever samples the tasks at ``<address>:<port>``, as the load task's leader watch does, asks the
real replicas, each under its own task.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resgate.contract import env as env_names
from resgate.local.supervisor import Supervisor
from tests.rehearsal.support.assembly import ROOT, Assembly
from tests.rehearsal.support.task_eni import TaskEni

ACCOUNT, REGION = "123456789012", "us-east-1"
PROVISIONING_S = 1.0  # how long a Fargate task stays PROVISIONING here
MARKER_ENV = "RESGATE_REHEARSAL_TASK"  # in every process of a load task: found and killed at its end
TASK_IP = "127.0.0.1"  # the load cluster's tasks (the master and its workers share it)
TASK_NET = "127.{}.{}.0/24"
"""Where the target tasks' addresses are drawn: one /24 of the loopback, its two middle octets random per
twin (never 127.0.0.x, the supervisor's and the load's), its hosts given out in task order from .2."""


class EcsError(Exception):
    """An ECS API error (``ClientException``, ``InvalidParameterException``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def image_folder(dockerfile: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """Build the image's file system from ``dockerfile``'s ``COPY`` lines into ``out`` (as its root ``/``);
    return its ``(entrypoint, environment)``. Only what this Dockerfile uses is understood."""
    entrypoint: list[str] = []
    env: dict[str, str] = {}
    workdir = "/"
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        op, args = words[0].upper(), words[1:]
        if op == "WORKDIR":
            workdir = args[0]
        elif op == "COPY":
            *sources, dest = args
            target = out / dest.lstrip("/") if dest.startswith("/") else out / workdir.lstrip("/") / dest
            target.mkdir(parents=True, exist_ok=True)
            for pattern in sources:
                for src in sorted(ROOT.glob(pattern)):
                    shutil.copy2(src, target / src.name)
        elif op == "ENV":
            env.update(a.split("=", 1) for a in args if "=" in a)
        elif op == "ENTRYPOINT":
            import json

            entrypoint = json.loads(line.split(None, 1)[1])
    return entrypoint, env


@dataclass(frozen=True)
class UserTaskDefinition:
    """A task definition of the target's own (not in the template): its container and its command."""

    container: str
    command: tuple[str, ...]


@dataclass
class LoadTask:
    """A task this twin runs as a local process: the load task, or one of the target's own tasks."""

    arn: str
    cluster_arn: str
    env: dict[str, str]
    container: str = "loadgen"
    created: float = field(default_factory=time.time)
    proc: subprocess.Popen[bytes] | None = None
    started: float | None = None
    stopped: float | None = None
    stopping: float | None = None
    reason: str = ""
    log: Path | None = None
    started_by: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    task_definition: str = ""  # the template's logical id of its task definition (none for the target's)

    def status(self) -> str:
        if self.proc is None:
            return "STOPPED" if self.stopped else "PROVISIONING"
        if self.proc.poll() is None:
            return "RUNNING"
        if self.stopped is None:
            self.stopped = time.time()
        return "STOPPED"

    def describe(self) -> dict[str, Any]:
        status = self.status()
        container: dict[str, Any] = {"name": self.container, "lastStatus": status}
        task: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": self.cluster_arn,
            "lastStatus": status,
            "desiredStatus": "STOPPED" if self.stopping or status == "STOPPED" else "RUNNING",
            "launchType": "FARGATE",
            "createdAt": self.created,
            "containers": [container],
            "overrides": self.overrides,
        }
        if self.started_by:
            task["startedBy"] = self.started_by
        if self.started:
            task["startedAt"] = self.started
        if self.started:  # awsvpc: the task's ENI, here this machine's loopback
            container["networkInterfaces"] = [
                {"attachmentId": self.arn.rsplit("/", 1)[-1], "privateIpv4Address": TASK_IP}
            ]
        if status == "STOPPED":
            task["stoppedAt"] = self.stopped
            task["stoppedReason"] = self.reason or "Essential container in task exited"
            if self.proc is not None:
                container["exitCode"] = self.proc.returncode
        return task


class EcsTwin:
    """ECS for the load cluster (its task runs :func:`image_folder`'s entrypoint) and the target cluster
    (the supervisor's replicas). Methods take the ECS API's own member names (boto3's)."""

    def __init__(
        self,
        assembly: Assembly,
        *,
        workdir: Path,
        deploy: Mapping[str, str],
        extra_env: Mapping[str, str],
        supervisor: Callable[[], Supervisor | None],
        target_cluster: str,
        health_checked: Mapping[str, bool],
        user_tasks: Mapping[str, UserTaskDefinition] | None = None,
        task_tags: Mapping[str, str] | None = None,
        zones: Mapping[str, list[str]] | None = None,
        container_ports: Mapping[str, int] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.assembly = assembly
        # Each target service's container port (its task definition's portMappings): where its tasks'
        # addresses reach their replicas (module docstring).
        self.container_ports = dict(container_ports or {})
        rng = random.SystemRandom()
        self._net = TASK_NET.format(rng.randint(16, 254), rng.randint(0, 255)).removesuffix(".0/24")
        self._addresses: dict[str, str] = {}  # target task arn -> its private address
        self._enis: dict[str, TaskEni] = {}  # running target task arn -> its ENI twin
        self._eni_lock = threading.Lock()
        self._closed = False  # after close(), no ENI twin comes up again (a late describe from a thread)
        self.user_tasks = dict(user_tasks or {})
        # What a deployed target task carries: the service's propagated tags (the config's target tags)
        # and ECS's managed ``aws:ecs:*`` tags; its zone is its replica's (round-robin over ``zones``).
        self.task_tags = dict(task_tags or {})
        self.zones = {k: list(v) for k, v in (zones or {}).items()}
        self.workdir = workdir
        self.deploy = dict(deploy)
        self.extra_env = dict(extra_env)
        self.supervisor = supervisor
        self.target_cluster = target_cluster
        self.health_checked = dict(health_checked)
        self.log = log
        self.tasks: dict[str, LoadTask] = {}
        self._lock = threading.Lock()
        self.master_port = _free_port()
        # The rehearsal's IAM check of a load task's own AWS calls (:mod:`.sdk_guard`): the folder put on
        # its PYTHONPATH, and the access key id it signs with (naming its task definition, so its task role).
        self.guard: Path | None = None
        self.access_key: Callable[[str], str] | None = None
        self._target_tasks()  # the running tasks' ENIs come up with the twin, not on the first call

    # ---------------------------------------------------------------- the load cluster
    def _task_definition(self, arn: str) -> dict[str, Any]:
        lid = arn.rsplit("/", 1)[-1].split(":")[0]
        res = self.assembly.resources.get(lid)
        if res is None or res["Type"] != "AWS::ECS::TaskDefinition":
            raise EcsError("ClientException", f"TaskDefinition not found: {arn}")
        return res["Properties"]

    def run_task(self, **p: Any) -> dict[str, Any]:
        family = p["taskDefinition"].rsplit("/", 1)[-1].split(":")[0]
        if family in self.user_tasks:
            return self._run_user_task(self.user_tasks[family], p)
        td = self._task_definition(p["taskDefinition"])
        (container,) = td["ContainerDefinitions"]
        env = {e["Name"]: str(self.assembly.render(e["Value"])) for e in container.get("Environment", [])}
        for o in (p.get("overrides") or {}).get("containerOverrides", []):
            if o.get("name") == container["Name"]:
                env.update({e["name"]: e["value"] for e in o.get("environment", [])})
        env = {k: self.deploy.get(v, v) for k, v in env.items()}
        cluster = p["cluster"]
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster.rsplit('/', 1)[-1]}/{uuid.uuid4().hex}"
        task = LoadTask(
            arn=arn,
            cluster_arn=cluster,
            env=env,
            started_by=p.get("startedBy"),
            tags=list(p.get("tags") or []),
            overrides=dict(p.get("overrides") or {}),
            task_definition=p["taskDefinition"].rsplit("/", 1)[-1].split(":")[0],
        )
        with self._lock:
            self.tasks[arn] = task
        threading.Timer(
            PROVISIONING_S, self._start, args=(task, int(container.get("StopTimeout", 30)))
        ).start()
        return {"tasks": [task.describe()], "failures": []}

    def _start(self, task: LoadTask, stop_timeout: int) -> None:
        with self._lock:
            if task.stopping:
                task.stopped, task.reason = time.time(), "stopped before it started"
                return
            root = self.workdir / f"image-{task.arn.rsplit('/', 1)[-1]}"
            entrypoint, image_env = image_folder(ROOT / "loadgen" / "Dockerfile", root)
            app = root / "app"
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(root),
                **image_env,
                "PYTHONPATH": str(app),  # the image's /app
                "RESGATE_LEDGER_DIR": str(root / "tmp" / "resgate-load"),
                **self.extra_env,
                **task.env,
                MARKER_ENV: task.arn.rsplit("/", 1)[-1],
            }
            if self.guard is not None:  # its own S3 calls judged against its task role
                env["PYTHONPATH"] = f"{self.guard}{os.pathsep}{app}"
            if self.access_key is not None:
                env["AWS_ACCESS_KEY_ID"] = self.access_key(task.task_definition)
            if env_names.ENV_MASTER_PORT in env:  # a distributed load (module docstring)
                env[env_names.ENV_MASTER_PORT] = str(self.master_port)
                env[env_names.ENV_MASTER_BIND_HOST] = TASK_IP
            # The image's python is python:3.12-slim plus its pip packages; here, this environment's.
            cmd = [sys.executable if part == "python" else part for part in entrypoint]
            task.log = root / "task.log"
            with open(task.log, "wb") as out:
                task.proc = subprocess.Popen(
                    cmd, cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            task.started = time.time()
            task.env["RESGATE_LEDGER_DIR"] = env["RESGATE_LEDGER_DIR"]
            task.env["_STOP_TIMEOUT"] = str(stop_timeout)
        self.log(f"ecs: load task started: {' '.join(cmd[1:])} (pid {task.proc.pid})")

    def _run_user_task(self, td: UserTaskDefinition, p: Mapping[str, Any]) -> dict[str, Any]:
        """RunTask of one of the target's own task definitions (module docstring)."""
        env, command = {}, list(td.command)
        for o in (p.get("overrides") or {}).get("containerOverrides", []):
            if o.get("name") == td.container:
                env.update({e["name"]: e["value"] for e in o.get("environment", [])})
                command = list(o.get("command") or command)
        cluster = p["cluster"]
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster.rsplit('/', 1)[-1]}/{uuid.uuid4().hex}"
        task = LoadTask(arn=arn, cluster_arn=cluster, env=env, container=td.container)
        with self._lock:
            self.tasks[arn] = task
        root = self.workdir / f"task-{arn.rsplit('/', 1)[-1]}"
        root.mkdir(parents=True)
        task.log = root / "task.log"
        cmd = [sys.executable if part == "python" else part for part in command]
        with open(task.log, "wb") as out:
            task.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**os.environ, **env, MARKER_ENV: arn.rsplit("/", 1)[-1]},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        task.started = time.time()
        task.env["_STOP_TIMEOUT"] = "30"
        self.log(f"ecs: {td.container} task started: {' '.join(command)} (pid {task.proc.pid})")
        return {"tasks": [task.describe()], "failures": []}

    def live_dirs(self) -> list[Path]:
        """The ledger folders of the running load tasks (their live files feed the alarm twins); not a
        worker's, whose live windows its master also holds (the metrics are the master's aggregate)."""
        with self._lock:
            return [
                Path(t.env["RESGATE_LEDGER_DIR"])
                for t in self.tasks.values()
                if t.proc is not None
                and "RESGATE_LEDGER_DIR" in t.env
                and t.env.get(env_names.ENV_LOAD_ROLE) != "worker"
            ]

    def kill_load_process(self, node: str) -> list[int]:
        """SIGKILL the Locust processes of the load task of ``node`` (``RESGATE_LOAD_NODE``), not its
        entrypoint: what the kernel's OOM killer does to a task's largest process. Returns the pids."""
        with self._lock:
            task = next(t for t in self.tasks.values() if t.env.get(env_names.ENV_LOAD_NODE) == node)
        assert task.proc is not None, f"load task {node} has not started"
        pids = [pid for pid in _marked(task.arn.rsplit("/", 1)[-1]) if pid != task.proc.pid]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log(f"ecs: killed the Locust processes {pids} of load task {node}")
        return pids

    def stop_task(self, **p: Any) -> dict[str, Any]:
        task = self.tasks.get(p["task"])
        if task is None:
            raise EcsError("InvalidParameterException", f"The referenced task was not found: {p['task']}")
        task.stopping, task.reason = time.time(), p.get("reason") or "Task stopped by user"
        if task.proc is not None and task.proc.poll() is None:
            _stop_group(task.proc, int(task.env.get("_STOP_TIMEOUT", "30")), task.arn.rsplit("/", 1)[-1])
        return {"task": task.describe()}

    def close(self) -> None:
        """Stop every load task (SIGTERM, then SIGKILL after 5 s) and whatever its processes left."""
        for task in list(self.tasks.values()):
            task.stopping = task.stopping or time.time()
            if task.proc is not None:
                _stop_group(task.proc, 5, task.arn.rsplit("/", 1)[-1])
        with self._eni_lock:
            self._closed = True
            enis, self._enis = list(self._enis.values()), {}
        for eni in enis:
            eni.close()

    # ---------------------------------------------------------------- both clusters
    def _is_target(self, cluster: str) -> bool:
        return cluster.rsplit("/", 1)[-1] == self.target_cluster

    def describe_tasks(self, **p: Any) -> dict[str, Any]:
        # This twin's own tasks (the load, the target's own task definitions), then the target's replicas.
        with_tags = "TAGS" in (p.get("include") or [])
        known = {arn: t.describe() | ({"tags": t.tags} if with_tags else {}) for arn, t in self.tasks.items()}
        if self._is_target(p["cluster"]):
            known |= {t["taskArn"]: _public(t) for t in self._target_tasks()}
        arns = p.get("tasks") or []
        return {
            "tasks": [known[a] for a in arns if a in known],
            "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a not in known],
        }

    # ---------------------------------------------------------------- the target cluster
    def _cluster_arn(self) -> str:
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{self.target_cluster}"

    def _target_tasks(self) -> list[dict[str, Any]]:
        """Every incarnation of every replica as an ECS task (see the module docstring)."""
        sup = self.supervisor()
        if sup is None:
            return []
        tasks: dict[str, dict[str, Any]] = {}
        current: dict[str, str] = {}
        for e in sup.timeline():
            rid, ev, ts = e["replica"], e["event"], e["ts"]
            if ev in ("started", "restarted"):
                n = sum(1 for t in tasks.values() if t["_replica"] == rid) + 1
                arn = f"{self._cluster_arn().replace(':cluster/', ':task/')}/{rid}.{n}"
                current[rid] = arn
                tasks[arn] = {
                    "_replica": rid,
                    "_service": e["service"],
                    "taskArn": arn,
                    "clusterArn": self._cluster_arn(),
                    "group": f"service:{e['service']}",
                    "createdAt": ts,
                    "startedAt": ts,
                    "lastStatus": "RUNNING",
                    "desiredStatus": "RUNNING",
                    "containers": [{"name": e["service"], "lastStatus": "RUNNING"}],
                    "_port": (e.get("detail") or {}).get("port"),
                }
            elif ev in ("killed", "exited") and rid in current:
                t = tasks[current.pop(rid)]
                t.update(lastStatus="STOPPED", desiredStatus="STOPPED", stoppedAt=ts, stoppingAt=ts)
                t["stoppedReason"] = "Stopped by FIS" if ev == "killed" else "Essential container exited"
                t["stopCode"] = "UserInitiated" if ev == "killed" else "EssentialContainerExited"
            elif ev in ("healthy", "unhealthy") and rid in current:
                svc = e["service"]
                if self.health_checked.get(svc):
                    # ECS Task.healthStatus is the essential containers' health (one container here): API
                    # reference, "Task" data type, healthStatus.
                    tasks[current[rid]]["containers"][0]["healthStatus"] = ev.upper()
                    tasks[current[rid]]["healthStatus"] = ev.upper()
        self._attach_enis(tasks)
        return list(tasks.values())

    def _attach_enis(self, tasks: Mapping[str, dict[str, Any]]) -> None:
        """Give each task its address (kept for good), bring up the ENI twin of each running task of a
        service with a container port, and take down those of tasks that stopped."""
        with self._eni_lock:
            for arn, t in tasks.items():
                if arn not in self._addresses:
                    n = len(self._addresses) + 2
                    if n > 254:
                        raise EcsError("ClientException", f"no address left in {self._net}.0/24")
                    self._addresses[arn] = f"{self._net}.{n}"
                address = self._addresses[arn]
                t["containers"][0]["networkInterfaces"] = [
                    {"attachmentId": f"eni-{arn.rsplit('/', 1)[-1]}", "privateIpv4Address": address}
                ]
                port, upstream = self.container_ports.get(t["_service"]), t.get("_port")
                running = t["lastStatus"] == "RUNNING"
                wanted = running and port is not None and upstream is not None and not self._closed
                if wanted and arn not in self._enis:
                    log = self.workdir / "logs" / f"eni-{arn.rsplit('/', 1)[-1]}.log"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    self._enis[arn] = TaskEni(address, port, int(upstream), log=log)
                    tid = arn.rsplit("/", 1)[-1]
                    self.log(f"ecs: target task {tid} at {address}:{port} (its replica's port {upstream})")
                elif not running and arn in self._enis:
                    self._enis.pop(arn).close()

    def target_tasks_described(self) -> list[dict[str, Any]]:
        """The target cluster's RUNNING tasks as ``DescribeTasks`` with ``include=[TAGS]`` returns them:
        with ``tags`` (``[{key, value}]``: :attr:`task_tags`, ``aws:ecs:clusterName``,
        ``aws:ecs:serviceName``) and ``availabilityZone`` (the replica's zone, when its service has
        zones): what FIS resolves an ``aws:ecs:task`` target over."""
        out = []
        for t in self._target_tasks():
            if t["lastStatus"] != "RUNNING":
                continue
            service, index = t["_service"], int(str(t["_replica"]).rsplit("-", 1)[-1])
            tags = {
                **self.task_tags,
                "aws:ecs:clusterName": self.target_cluster,
                "aws:ecs:serviceName": service,
            }
            zones = self.zones.get(service) or []
            described = _public(t) | {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
            if zones:
                described["availabilityZone"] = zones[index % len(zones)]
            out.append(described | {"_replica": t["_replica"], "_service": service})
        return out

    def list_tasks(self, **p: Any) -> dict[str, Any]:
        service, status = p.get("serviceName"), p.get("desiredStatus", "RUNNING")
        if not self._is_target(p.get("cluster") or "default"):
            # This twin's own tasks (the load cluster's), by startedBy and desired status.
            arns = [
                arn
                for arn, t in self.tasks.items()
                if t.cluster_arn.rsplit("/", 1)[-1] == str(p.get("cluster")).rsplit("/", 1)[-1]
                and (p.get("startedBy") is None or t.started_by == p.get("startedBy"))
                and t.describe()["desiredStatus"] == status
            ]
            return {"taskArns": arns}
        arns = [
            t["taskArn"]
            for t in self._target_tasks()
            if t["_service"] == service and t["desiredStatus"] == status
        ]
        return {"taskArns": arns}

    def describe_services(self, **p: Any) -> dict[str, Any]:
        sup = self.supervisor()
        if not self._is_target(p["cluster"]) or sup is None:
            return {"services": [], "failures": [{"arn": s, "reason": "MISSING"} for s in p["services"]]}
        services, failures = [], []
        timeline = sup.timeline()
        for name in p["services"]:
            replicas = sup.replicas(name) if name in sup.services else []
            if not replicas:
                failures.append({"arn": name, "reason": "MISSING"})
                continue
            services.append(self._service(name, len(replicas), timeline))
        return {"services": services, "failures": failures}

    def _service(self, name: str, desired: int, timeline: list[dict[str, Any]]) -> dict[str, Any]:
        healthy: set[str] = set()
        steady, events = False, []
        for e in timeline:
            if e["service"] != name:
                continue
            if e["event"] == "healthy":
                healthy.add(e["replica"])
            elif e["event"] in ("killed", "exited", "unhealthy", "restarted"):
                healthy.discard(e["replica"])
            now_steady = len(healthy) >= desired
            if now_steady and not steady:
                events.append(
                    {
                        "id": uuid.uuid4().hex,
                        "createdAt": e["ts"],
                        "message": f"(service {name}) has reached a steady state.",
                    }
                )
            steady = now_steady
        running = sum(
            1 for t in self._target_tasks() if t["_service"] == name and t["lastStatus"] == "RUNNING"
        )
        svc: dict[str, Any] = {
            "serviceName": name,
            "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{self.target_cluster}/{name}",
            "clusterArn": self._cluster_arn(),
            "status": "ACTIVE",
            "desiredCount": desired,
            "runningCount": running,
            "taskDefinition": self._target_task_definition_arn(name),
            "enableExecuteCommand": False,
            "events": list(reversed(events)),  # ECS lists the newest first
        }
        return svc

    def _target_task_definition_arn(self, service: str) -> str:
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{self.target_cluster}-{service}:1"

    def describe_task_definition(self, **p: Any) -> dict[str, Any]:
        """A target service's task definition as the good build's target provides it: set up for FIS's ECS
        task network actions (FIS user guide, "Use the AWS FIS aws:ecs:task actions": fault injection on,
        ``pidMode: task``, ``awsvpc``, the SSM agent sidecar with ``MANAGED_INSTANCE_ROLE_NAME``, a task
        role). Another family is the load cluster's own (the template's) or unknown."""
        arn = str(p["taskDefinition"])
        family = arn.rsplit("/", 1)[-1].split(":")[0]
        sup = self.supervisor()
        service = family.removeprefix(f"{self.target_cluster}-")
        if sup is None or service == family or service not in sup.services:
            raise EcsError("ClientException", f"Unable to describe task definition {arn}.")
        role = f"arn:aws:iam::{ACCOUNT}:role/{self.target_cluster}-{service}-task"
        return {
            "taskDefinition": {
                "taskDefinitionArn": self._target_task_definition_arn(service),
                "family": family,
                "revision": 1,
                "networkMode": "awsvpc",
                "pidMode": "task",
                "enableFaultInjection": True,
                "taskRoleArn": role,
                "containerDefinitions": [
                    {
                        "name": service,
                        "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{service}:good",
                        **(
                            {"portMappings": [{"containerPort": port, "protocol": "tcp"}]}
                            if (port := self.container_ports.get(service)) is not None
                            else {}
                        ),
                    },
                    {
                        "name": "amazon-ssm-agent",
                        "image": "public.ecr.aws/amazon-ssm-agent/amazon-ssm-agent:latest",
                        "essential": False,
                        "environment": [
                            {"name": "MANAGED_INSTANCE_ROLE_NAME", "value": "SSMManagedInstanceRole"}
                        ],
                    },
                ],
            }
        }


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a master task binds it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((TASK_IP, 0))
        return int(sock.getsockname()[1])


def _public(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if not k.startswith("_")}


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: int, marker: str) -> None:
    """ECS's stop: SIGTERM to the container's entrypoint, SIGKILL after ``timeout_s``; then, as the end
    of a container would, SIGKILL to every process left that carries the task's ``marker`` in its
    environment (Locust runs in a session of its own)."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for pid in _marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _marked(marker: str) -> list[int]:
    """Ids of this user's processes whose environment holds ``REHEARSAL_TASK=<marker>``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "environ").read_bytes().split(b"\0"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out
