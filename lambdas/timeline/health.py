"""Health observations of the target's ECS tasks, in the local supervisor's timeline format.

Rows ``{ts, service, replica, event, detail, ecs_service, task_arn, stop_code?}``: ``service`` is the gate
config's name of the service (what fault targets name), ``replica`` the task id (the last segment of the
task ARN). Tasks are those of ``ecs:ListTasks`` (desired status RUNNING and STOPPED, each service, every
page) described with ``ecs:DescribeTasks`` (100 a call); only tasks that overlap the run window count, but
all their rows are written (the rows before a fault are the checker's picture of the service before it).

Per task:

- ``started`` at ``startedAt``;
- ``healthy``: ECS records no per-task "became healthy" time, so this is an approximation. A service with a
  health check (a load balancer or service registry, or tasks that report a container ``healthStatus``)
  is healthy at its first *"has reached a steady state"* service event (``ecs:DescribeServices``) at or
  after the task's ``startedAt``: ECS reports a steady state only once the running count equals the
  desired count and every task passes its health checks. That can lag the real moment by up to a
  minute, so time to healthy is over- rather than under-estimated (fail closed). A task that started
  before the oldest event ECS still returns (it keeps the last 100) is healthy at ``startedAt``. A
  service without any health check is healthy at ``startedAt``;
- ``stopped`` when the task left the service: the earliest of ``stoppingAt``, ``executionStoppedAt`` and
  ``stoppedAt`` (a load balancer target is drained from ``stoppingAt`` on, and the replacement may be
  healthy before the old task's ``stoppedAt``), with ``stoppedReason`` as detail (FIS says so there);
- ``retired`` when the task no longer counts for the service, because an ECS task never comes back: a
  new task takes its place. Replaying the rows in time order, a task that stops while healthy is retired
  when the next task becomes healthy (oldest stopped first), or at once if the service still has its
  desired count of healthy tasks (a scale-in or a deployment's surplus); a task that stops without ever
  having been healthy is retired at once (it never added capacity). So a fault's time to healthy ends
  when its replacement is healthy, and a replacement that never becomes healthy leaves the stopped task
  unretired: the checker sees "never recovered".

A fault that restarts no task (a network action, a database or broker outage, a redelivery) leaves the
rows above silent after its injection, and recovery would judge it unknown ("no health observation").
For each fault that has ended (:func:`fault_windows`), the service gets ``healthy`` rows when the fault
stopped acting (a held fault's lift, else when it was in effect) (:func:`through_fault`) for the tasks
that ran through the whole fault, from before its injection to the observation, with no task of the
service started or stopped in between, and that ECS reports ``HEALTHY`` when observed (or that have no
health check). A fault that stopped a task changed the service: it gets nothing here. ECS would have
replaced a task failing its health checks, so this says "the process lived through it", not "it
served": the recovery check's serving judgement (throughput and error ratio back, from the client
ledger) decides whether it served again. Any task change in the window adds nothing: the task rows
then tell.

Limits: the desired count is the one ECS reports now; tasks stopped more than about an hour ago are no
longer listed by ECS (the timeline runs right after the load, so the run's are).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lambdas.common.aws import call, chunks, epoch, pages
from resgate.contract.errors import GateError

STEADY_STATE_TEXT = "has reached a steady state"
LIST_STATUSES = ("RUNNING", "STOPPED")
DESCRIBE_TASKS_MAX = 100
DESCRIBE_SERVICES_MAX = 10
_REPORTED_HEALTH = frozenset({"HEALTHY", "UNHEALTHY"})
# Order of a task's own events that share a timestamp.
_ORDER = {"started": 0, "healthy": 1, "stopped": 2}


def task_id(arn: str) -> str:
    """The task id: the last segment of a task ARN (``arn:…:task/<cluster>/<id>``)."""
    return arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class TaskSpan:
    """One ECS task as the timeline sees it (times in epoch seconds; ``left``: when it left the service)."""

    arn: str
    created: float | None
    started: float | None
    left: float | None
    reason: str
    stop_code: str | None
    reports_health: bool
    health: str | None = None  # the task's healthStatus when described (HEALTHY, UNHEALTHY, UNKNOWN)

    @property
    def replica(self) -> str:
        return task_id(self.arn)

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> TaskSpan:
        """From a ``DescribeTasks`` task."""
        stops = [
            t
            for k in ("stoppingAt", "executionStoppedAt", "stoppedAt")
            if (t := epoch(task.get(k))) is not None
        ]
        statuses = {task.get("healthStatus")} | {c.get("healthStatus") for c in task.get("containers") or []}
        return cls(
            arn=str(task["taskArn"]),
            created=epoch(task.get("createdAt")),
            started=epoch(task.get("startedAt")),
            left=min(stops) if stops else None,
            reason=str(task.get("stoppedReason") or ""),
            stop_code=task.get("stopCode"),
            reports_health=bool(statuses & _REPORTED_HEALTH),
            health=task.get("healthStatus"),
        )

    def overlaps(self, start: float, end: float) -> bool:
        """True when the task existed at some moment of ``[start, end]``."""
        begin = self.started if self.started is not None else self.created
        if begin is None or begin > end:
            return False
        return self.left is None or self.left >= start


@dataclass(frozen=True)
class ServiceView:
    """What the timeline needs of a service: names, desired count, whether tasks are health checked, the
    times of its steady-state events (sorted) and of its oldest event still reported."""

    name: str
    ecs_name: str
    desired_count: int
    health_checked: bool
    steady_states: tuple[float, ...]
    history_from: float | None

    @classmethod
    def from_service(cls, name: str, service: Mapping[str, Any], tasks: Sequence[TaskSpan]) -> ServiceView:
        """From a ``DescribeServices`` service and its tasks."""
        events = service.get("events") or []
        times = [t for e in events if (t := epoch(e.get("createdAt"))) is not None]
        steady = sorted(
            t
            for e in events
            if STEADY_STATE_TEXT in str(e.get("message") or "")
            and (t := epoch(e.get("createdAt"))) is not None
        )
        checked = (
            bool(service.get("loadBalancers"))
            or bool(service.get("serviceRegistries"))
            or any(t.reports_health for t in tasks)
        )
        return cls(
            name=name,
            ecs_name=str(service.get("serviceName") or name),
            desired_count=int(service.get("desiredCount") or 0),
            health_checked=checked,
            steady_states=tuple(steady),
            history_from=min(times) if times else None,
        )

    def healthy_at(self, task: TaskSpan) -> tuple[float, str] | None:
        """``(ts, why)`` at which the task counts as healthy (module docstring), or ``None``."""
        if task.started is None:
            return None
        if not self.health_checked:
            return task.started, "no health check: healthy once started"
        steady = next((t for t in self.steady_states if t >= task.started), None)
        if steady is not None:
            return steady, f"service {self.ecs_name} reached a steady state"
        if self.history_from is None or task.started < self.history_from:
            return task.started, "started before the service's oldest reported event"
        return None


def _row(svc: ServiceView, task: TaskSpan, ts: float, event: str, detail: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ts": ts,
        "service": svc.name,
        "replica": task.replica,
        "event": event,
        "detail": detail,
        "ecs_service": svc.ecs_name,
        "task_arn": task.arn,
    }
    if event == "stopped" and task.stop_code:
        row["stop_code"] = task.stop_code
    return row


def health_rows(
    svc: ServiceView, tasks: Sequence[TaskSpan], *, start: float, end: float
) -> list[dict[str, Any]]:
    """The service's rows, in time order, for the tasks that overlap ``[start, end]``."""
    queue: list[tuple[float, int, int, str, str, TaskSpan]] = []
    for i, task in enumerate(t for t in tasks if t.overlaps(start, end)):
        if task.started is not None:
            queue.append((task.started, _ORDER["started"], i, "started", "task started", task))
        healthy = svc.healthy_at(task)
        if healthy is not None and (task.left is None or healthy[0] < task.left):
            queue.append((healthy[0], _ORDER["healthy"], i, "healthy", healthy[1], task))
        if task.left is not None:
            queue.append((task.left, _ORDER["stopped"], i, "stopped", task.reason or "task stopped", task))
    heapq.heapify(queue)
    out: list[dict[str, Any]] = []
    healthy_now: set[str] = set()
    waiting: deque[TaskSpan] = deque()  # stopped while healthy, not yet replaced
    while queue:
        ts, _, _, event, detail, task = heapq.heappop(queue)
        out.append(_row(svc, task, ts, event, detail))
        if event == "healthy":
            healthy_now.add(task.replica)
            if waiting:
                old = waiting.popleft()
                out.append(_row(svc, old, ts, "retired", f"replaced by task {task.replica}"))
        elif event == "stopped":
            was_healthy = task.replica in healthy_now
            healthy_now.discard(task.replica)
            if not was_healthy:
                out.append(_row(svc, task, ts, "retired", "stopped before it was healthy"))
            elif len(healthy_now) >= svc.desired_count:
                out.append(
                    _row(svc, task, ts, "retired", "the service kept its desired count of healthy tasks")
                )
            else:
                waiting.append(task)
    return out


def fault_windows(fault_rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[str, float, float]]]:
    """``{target service: [(fault_id, injection start, end), ...]}`` of the faults that ended (an ``ended``
    row, no ``aborted`` one), from their ``injecting`` (else ``injected``) row. The end is a held fault's
    lift (its ``injected`` detail has ``duration_s``: :mod:`lambdas.timeline.faults`), else the moment it
    was in effect (``injected``): an instantaneous fault's ``ended`` is its experiment's end, after the
    observation window, not when the service got over it."""
    by_fault: dict[str, dict[str, Any]] = {}
    for r in fault_rows:
        f = by_fault.setdefault(str(r["fault_id"]), {"target": r.get("target")})
        event = r.get("event")
        if event in ("injecting", "injected"):
            f.setdefault("start", r["ts"])
        if event == "injected":
            f["injected"] = r["ts"]
            f["held"] = isinstance(r.get("detail"), Mapping) and r["detail"].get("duration_s") is not None
        elif event == "ended":
            f["ended"] = r["ts"]
        elif event == "aborted":
            f["aborted"] = True
    out: dict[str, list[tuple[str, float, float]]] = {}
    for fault_id, f in by_fault.items():
        if f.get("aborted") or "ended" not in f or "injected" not in f or not f["target"]:
            continue
        end = f["ended"] if f["held"] else f["injected"]
        out.setdefault(str(f["target"]), []).append((fault_id, float(f["start"]), float(end)))
    return out


def through_fault(
    svc: ServiceView,
    tasks: Sequence[TaskSpan],
    windows: Sequence[tuple[str, float, float]],
    *,
    observed_at: float,
) -> list[dict[str, Any]]:
    """``healthy`` rows at each fault's end for the tasks that lived through it (module docstring)."""
    out: list[dict[str, Any]] = []
    for fault_id, start, lifted in windows:
        changed = any(
            (t.started is not None and start <= t.started <= observed_at)
            or (t.left is not None and start <= t.left <= observed_at)
            for t in tasks
        )
        if changed:
            continue
        alive = [t for t in tasks if t.started is not None and t.started < start and t.left is None]
        if not alive or (svc.health_checked and any(t.health != "HEALTHY" for t in alive)):
            continue
        how = "ECS reports it HEALTHY" if svc.health_checked else "the service has no health check"
        detail = (
            f"ran through fault {fault_id} with no task of the service started or stopped until "
            f"observed, and {how}: alive, not proof of serving (the client ledger judges that)"
        )
        out += [_row(svc, t, lifted, "healthy", detail) for t in alive]
    return out


# ------------------------------------------------------------------------------------------ ECS calls


def describe_services(ecs: Any, cluster: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{name as given: service}``; a service ECS does not know raises :class:`GateError`."""
    out: dict[str, dict[str, Any]] = {}
    for part in chunks(list(dict.fromkeys(names)), DESCRIBE_SERVICES_MAX):
        resp = call(
            f"describe ECS services {list(part)} of {cluster}",
            ecs.describe_services,
            cluster=cluster,
            services=list(part),
        )
        if resp.get("failures"):
            raise GateError(f"ECS cluster {cluster} does not know services: {resp['failures']}")
        for svc in resp.get("services") or []:
            for given in part:
                if given in (svc.get("serviceName"), svc.get("serviceArn")):
                    out[given] = svc
    missing = [n for n in names if n not in out]
    if missing:
        raise GateError(f"ECS cluster {cluster} returned no description of services {missing}")
    return out


def list_task_arns(ecs: Any, cluster: str, service: str) -> list[str]:
    """The ARNs of the service's tasks, desired status RUNNING and STOPPED (every page)."""
    arns: list[str] = []
    for status in LIST_STATUSES:
        for page in pages(
            f"list the {status} tasks of ECS service {service} in {cluster}",
            ecs,
            "list_tasks",
            cluster=cluster,
            serviceName=service,
            desiredStatus=status,
        ):
            arns += page.get("taskArns") or []
    return list(dict.fromkeys(arns))


def describe_tasks(ecs: Any, cluster: str, arns: Sequence[str]) -> tuple[list[TaskSpan], list[Any]]:
    """``(tasks, failures)``: the described tasks and ECS's failures (tasks gone since they were listed)."""
    tasks: list[TaskSpan] = []
    failures: list[Any] = []
    for part in chunks(list(arns), DESCRIBE_TASKS_MAX):
        resp = call(
            f"describe {len(part)} ECS tasks of {cluster}",
            ecs.describe_tasks,
            cluster=cluster,
            tasks=list(part),
        )
        tasks += [TaskSpan.from_task(t) for t in resp.get("tasks") or []]
        failures += resp.get("failures") or []
    return tasks, failures


def service_health(
    ecs: Any,
    cluster: str,
    services: Mapping[str, str],
    *,
    start: float,
    end: float,
    held: Mapping[str, Sequence[tuple[str, float, float]]] | None = None,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """``(rows, failures)`` for every service (``{config name: ECS service}``), rows in time order;
    ``held`` (:func:`fault_windows`) adds the rows of the tasks that lived through a fault."""
    if not services:
        return [], []
    described = describe_services(ecs, cluster, list(services.values()))
    rows: list[dict[str, Any]] = []
    failures: list[Any] = []
    for name, ecs_name in services.items():
        tasks, failed = describe_tasks(ecs, cluster, list_task_arns(ecs, cluster, ecs_name))
        failures += failed
        view = ServiceView.from_service(name, described[ecs_name], tasks)
        rows += health_rows(view, tasks, start=start, end=end)
        rows += through_fault(view, tasks, (held or {}).get(name, ()), observed_at=end)
    rows.sort(key=lambda r: r["ts"])  # stable: each service keeps its replay order at equal times
    return rows, failures
