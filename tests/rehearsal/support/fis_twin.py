"""The FIS twin: experiments from the template's experiment templates, acting on the local replicas through
the gate's fault runner, with FIS's statuses and stop conditions read from local alarm twins.

``StartExperiment`` reads the template (``Actions``: ``aws:ecs:stop-task`` and ``aws:fis:wait``;
``Targets``: resolved as FIS resolves an ``aws:ecs:task`` target, :func:`resolve_targets`: every
``ResourceTags`` tag on the task and every filter's PascalCase ``Path`` over the task's ``DescribeTasks``
output, then ``SelectionMode`` ALL / COUNT(n) / PERCENT(n), :func:`select`; an empty resolution fails the
experiment under ``EmptyTargetResolutionMode: fail``) and runs it in a thread (a repeated ``ClientToken``
returns the experiment it started): ``initiating``, then ``running`` while each action runs (a stop-task is
a :class:`resgate.runner.faults.FaultRunner` fault of kind ``stop_task`` per service, stopping as many of its
replicas as were selected, injected at once), ``completed``.
While it is ``initiating``/``running`` the stop conditions are evaluated every ``ALARM_TICK_S``: an alarm
twin in ALARM stops it (``stopped``, reason naming the alarm) and the fault runner reverts what it can;
``StopExperiment`` does the same on request. Each action first needs its permissions (the FIS actions
reference's list) on the template's role (``permissions``: :meth:`.permissions.Permissions.fis_denial`);
without them the experiment is ``failed`` with the AccessDenied naming the action's permission and role.
``aws:fis:wait`` holds for its duration times ``wait_scale`` (a short rehearsal scales it like the state
machine's waits). An action that fails makes it ``failed``.

The data-path faults (issue 21) act through the same fault runner as locally, or the function the stack
deploys: ``aws:ssm:start-automation-execution`` reads the gate's automation document from the template and
runs its steps: ``aws:invokeLambdaFunction`` invokes the function through the Lambda twin (``lambdas``, set
once the Lambda twin exists: the redeliver Lambda from its bundled asset, against the local Kafka), a
function error failing the action; ``aws:executeAwsApi`` ``kafka:RebootBroker`` is a ``kafka_broker_down``
of the broker for :data:`BROKER_REBOOT_S` (the waits that follow are satisfied once it is back).
``aws:rds:reboot-db-instances`` and ``aws:rds:failover-db-cluster`` are a ``db_blip`` of
:data:`DB_REBOOT_S`. Each is injected, and its effect observed, by :class:`FaultRunner`; an action whose
fault was not injected, or whose effect was not observed, fails.

The ECS network actions (``aws:ecs:task-network-blackhole-port``, ``-latency``, ``-packet-loss``) run on
the local target's fault proxies through the same :class:`FaultRunner` call as a local network fault
(``network_partition`` in mode hang, ``network_latency``, ``packet_loss``), one per local path the action's
traffic takes (:func:`network_paths`; a service whose replicas each have their own path to Postgres, a
``leader_loss`` partition's target, is blackholed on each chosen task's own path: its bytes held for the
duration and delivered after, as TCP retransmits across a dropped path that heals, the local leader
partition's model): a blackhole's ``trafficType: ingress`` is the service's clients path,
``egress`` the dependency listening on ``port`` (:data:`DEPENDENCIES`); latency and loss act on the paths
to every dependency whose address one of ``sources`` covers (``0.0.0.0/0``: all of them), each on the
task's egress (FIS changes the task's outgoing traffic). Latency and loss on the Kafka path are left out
(locally the brokers' round trip is every service's, not one task's). The fault fires when the action
starts, holds for the action's ``duration`` (real seconds: ``wait_scale`` scales only ``aws:fis:wait``),
and lifts on time; the action is ``running`` meanwhile and ``completed`` with its ``endTime`` once every
path is lifted (a stop condition lifts it early). Each chosen task's ECS fault-injection endpoint is
enforced as the ECS developer guide states it (:class:`FaultEndpoints`): one network fault on a task at a
time (a second is answered 409 and fails the action) and one ``/start`` per endpoint per 5 s (429).

An alarm twin evaluates a guardrail alarm of the template on the load's live files (what
``resgate/runner/guardrails.py`` watches locally): the last ``EvaluationPeriods`` periods of ``Period``
seconds, ALARM when ``DatapointsToAlarm`` of them breach; a period without requests does not breach.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen.stats import read_live
from resgate.config.schema import Fault
from resgate.local.process import signal_group
from resgate.local.spec import count_for
from resgate.runner.faults import FaultRunner
from resgate.runner.guardrails import Window
from resgate.runner.local_target import LocalTarget
from tests.rehearsal.support.assembly import Assembly

ALARM_TICK_S = 1.0
ACTION_TIMEOUT_S = 30.0
# How long the twins of an MSK broker reboot and an RDS reboot/failover hold the local broker or database
# down (on AWS: as long as the reboot takes).
BROKER_REBOOT_S = 3.0
DB_REBOOT_S = 2.0
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")
# The ECS network actions: the local fault kind each is, and the task's ECS fault-injection endpoint it calls.
NETWORK_ACTIONS = {
    "aws:ecs:task-network-blackhole-port": ("network_partition", "network-blackhole-port"),
    "aws:ecs:task-network-latency": ("network_latency", "network-latency"),
    "aws:ecs:task-network-packet-loss": ("packet_loss", "network-packet-loss"),
}
# Amazon ECS developer guide, "Amazon ECS fault injection endpoints": each endpoint takes 1 request per 5 s
# per container (429 beyond), and a request that conflicts with a running fault is answered 409.
ENDPOINT_INTERVAL_S = 5.0
# Where the rehearsal's dependencies are on AWS (a made-up VPC): the address an action's ``sources`` must
# cover, and the port a blackhole's egress drops (Postgres, MSK over TLS; the clients reach the service
# through the load balancer's subnet, on the service's own port).
DEPENDENCIES = {
    "clients": ("10.0.0.0/24", None),
    "postgres": ("10.0.1.10", 5432),
    "kafka": ("10.0.2.10", 9094),
}


class FisError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AlarmTwin:
    """One CloudWatch alarm of the template, evaluated on the live windows of the load."""

    name: str
    latency: bool  # p95 (else the error ratio)
    seconds: bool  # the latency metric is in seconds (ALB TargetResponseTime), else ms
    threshold: float
    period_s: float
    periods: int
    datapoints: int

    @classmethod
    def from_resource(cls, name: str, props: Mapping[str, Any]) -> AlarmTwin:
        text = str(props).lower()
        metric = str(props.get("MetricName", ""))
        stats = [m.get("MetricStat", {}) for m in props.get("Metrics", [])]
        period = props.get("Period") or next((s.get("Period") for s in stats if s.get("Period")), 60)
        return cls(
            name=name,
            latency="p95" in text or "responsetime" in text or "latency" in text,
            seconds=metric == "TargetResponseTime",
            threshold=float(props["Threshold"]),
            period_s=float(period),
            periods=int(props.get("EvaluationPeriods", 1)),
            datapoints=int(props.get("DatapointsToAlarm", props.get("EvaluationPeriods", 1))),
        )

    def value(self, w: Window) -> float | None:
        if not w.requests:
            return None
        if self.latency:
            return None if w.p95_ms is None else (w.p95_ms / 1000 if self.seconds else w.p95_ms)
        return w.error_ratio

    def in_alarm(self, live_dirs: list[Path], now: float) -> str | None:
        """Why the alarm is in ALARM now, or None (OK / INSUFFICIENT_DATA)."""
        points = [
            p for d in live_dirs for p in read_live(d, since_ts=int(now - self.period_s * self.periods))
        ]
        breaching = []
        for k in range(self.periods):
            end = now - k * self.period_s
            ps = [p for p in points if end - self.period_s <= p["ts"] < end]
            p95s = [p["p95_ms"] for p in ps if p["p95_ms"] is not None]
            w = Window(
                ts=end,
                requests=sum(p["requests"] for p in ps),
                failures=sum(p["failures"] for p in ps),
                p95_ms=max(p95s) if p95s else None,
            )
            v = self.value(w)
            if v is not None and v > self.threshold:
                breaching.append(v)
        if len(breaching) >= self.datapoints:
            return f"{self.name}: {len(breaching)} of {self.periods} periods above {self.threshold:g}"
        return None


@dataclass
class Experiment:
    id: str
    template_id: str
    tags: dict[str, str]
    status: str = "initiating"
    reason: str = "Experiment is initiating."
    started: float = field(default_factory=time.time)
    ended: float | None = None
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    runner: FaultRunner | None = None
    # GetExperiment's ``targets`` (name -> resourceType, selectionMode) and what each target resolved to
    # (ListExperimentResolvedTargets' ``targetInformation`` per resolved resource).
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    resolved: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "experimentTemplateId": self.template_id,
            "state": {"status": self.status, "reason": self.reason},
            "startTime": self.started,
            "targets": {k: dict(v) for k, v in self.targets.items()},
            "actions": {k: dict(v) for k, v in self.actions.items()},
            "tags": dict(self.tags),
        }
        if self.ended is not None:
            out["endTime"] = self.ended
        return out


class FaultEndpoints:
    """The ECS fault-injection endpoints of the target's tasks, as the Amazon ECS developer guide states
    them ("Amazon ECS fault injection endpoints",
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fault-injection-endpoints.html): each
    endpoint takes 1 request per 5 s per container (429, "Request was throttled", beyond), and a request
    that conflicts with another running fault is answered 409; the FIS user guide ("Use the AWS FIS
    aws:ecs:task actions") adds that the three network actions cannot run in parallel. A task's containers
    share its network namespace (``awsvpc``), so a task holds one network fault at a time, whichever
    endpoint started it. The rate limit is kept per ``/start`` path: the request that starts a fault."""

    def __init__(self, interval_s: float = ENDPOINT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, str]] = {}  # task -> (endpoint, who started it)
        self._last_start: dict[tuple[str, str], float] = {}  # (task, endpoint) -> last /start

    def start(self, tasks: list[str], endpoint: str, owner: str, now: float | None = None) -> None:
        """``POST {ECS_AGENT_URI}/fault/v1/<endpoint>/start`` on every task, all or none: raises
        :class:`FisError` with the agent's status (429, then 409) for the first task that refuses."""
        now = time.time() if now is None else now
        with self._lock:
            for task in tasks:
                last = self._last_start.get((task, endpoint))
                if last is not None and now - last < self.interval_s:
                    raise FisError(
                        "ThrottlingException",
                        f"the ECS fault injection endpoint {endpoint}/start of task {task} answered 429: "
                        f"request was throttled ({now - last:.1f} s after the previous one; 1 request per "
                        f"{self.interval_s:g} s per container)",
                    )
            for task in tasks:
                self._last_start[(task, endpoint)] = now
            for task in tasks:
                if task in self._running:
                    running, by = self._running[task]
                    raise FisError(
                        "ConflictException",
                        f"the ECS fault injection endpoint {endpoint}/start of task {task} answered 409: the "
                        f"fault injection request conflicts with another running fault ({running}, {by})",
                    )
            for task in tasks:
                self._running[task] = (endpoint, owner)

    def stop(self, tasks: list[str], owner: str) -> None:
        """``/stop``: the tasks' fault started by ``owner`` no longer runs."""
        with self._lock:
            for task in tasks:
                if self._running.get(task, ("", ""))[1] == owner:
                    del self._running[task]

    def running(self, task: str) -> str | None:
        """The endpoint of the network fault running on ``task`` (``/status``), or None."""
        with self._lock:
            held = self._running.get(task)
            return held[0] if held else None


def network_paths(action_id: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(dependency, direction)]``: the local paths an ECS network action's traffic takes, and the
    direction on each that is the task's egress (``upstream`` toward a dependency, ``downstream`` toward
    the clients) or, for a blackhole of ``ingress``, the clients' requests. Raises FisError for parameters
    FIS refuses (FIS user guide, "AWS FIS Actions reference", fis-actions-reference.html: a blackhole's
    ``port``, ``protocol`` tcp|udp and ``trafficType`` ingress|egress; latency's and loss's ``sources``, a
    comma-separated list of IPv4 addresses, CIDR blocks, domain names, ``DYNAMODB`` or ``S3``)."""
    if action_id == "aws:ecs:task-network-blackhole-port":
        if str(params.get("protocol")) not in ("tcp", "udp"):
            raise FisError(
                "ValidationException", f"protocol must be tcp or udp, got {params.get('protocol')!r}"
            )
        port = str(params.get("port", ""))
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise FisError("ValidationException", f"port must be 1-65535, got {params.get('port')!r}")
        traffic = params.get("trafficType", "ingress")
        if traffic == "ingress":
            return [("clients", "upstream")]
        if traffic != "egress":
            raise FisError("ValidationException", f"trafficType must be ingress or egress, got {traffic!r}")
        dep = next((d for d, (_, p) in DEPENDENCIES.items() if p == int(port)), None)
        if dep is None:
            raise FisError("ValidationException", f"no dependency of the rehearsal listens on port {port}")
        return [(dep, "upstream")]
    sources = [s.strip() for s in str(params.get("sources", "0.0.0.0/0")).split(",") if s.strip()]
    nets = []
    for source in sources:
        try:
            nets.append(ipaddress.ip_network(source, strict=False))
        except ValueError:  # a domain name, DYNAMODB, S3: none of the local paths
            continue
    out = []
    for dep, (address, _) in DEPENDENCIES.items():
        if dep == "kafka":  # locally the brokers' round trip is every service's, not one task's
            continue
        where = ipaddress.ip_network(address, strict=False)
        if any(where.subnet_of(n) for n in nets if n.version == where.version):
            out.append((dep, "downstream" if dep == "clients" else "upstream"))
    return out


class FisTwin:
    """FIS for the template's experiment templates (see the module docstring). ``services`` maps an ECS
    service name to the local service; ``live_dirs`` gives the running load's ledger folders."""

    def __init__(
        self,
        assembly: Assembly,
        *,
        target: Callable[[], LocalTarget | None],
        live_dirs: Callable[[], list[Path]],
        services: Mapping[str, str] | None = None,
        tasks: Callable[[], list[dict[str, Any]]] | None = None,
        wait_scale: float = 1.0,
        permissions: Any = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.assembly = assembly
        # The target cluster's RUNNING tasks as DescribeTasks (with tags) returns them: what targets resolve
        # over (:func:`resolve_targets`); None: the target tasks are not resolved here.
        self.tasks = tasks
        self._tokens: dict[str, str] = {}
        # The experiment role's permissions (:class:`.permissions.Permissions`), checked per action.
        self.permissions = permissions
        self.wait_scale = wait_scale  # an aws:fis:wait of d seconds holds d * wait_scale here
        self.target = target
        self.live_dirs = live_dirs
        self.services = dict(services or {})
        self.log = log
        self.experiments: dict[str, Experiment] = {}
        self.lambdas: Any = None  # the Lambda twin (``invoke``), for the automations' Lambda steps
        self.endpoints = FaultEndpoints()  # the target tasks' ECS fault-injection endpoints
        self._threads: list[threading.Thread] = []
        self.alarms = {
            lid: AlarmTwin.from_resource(lid, r["Properties"])
            for lid, r in assembly.of_type("AWS::CloudWatch::Alarm").items()
        }

    def start_experiment(self, **p: Any) -> dict[str, Any]:
        tid = p["experimentTemplateId"]
        res = self.assembly.resources.get(tid)
        if res is None or res["Type"] != "AWS::FIS::ExperimentTemplate":
            raise FisError("ResourceNotFoundException", f"Experiment template not found: {tid}")
        token = p.get("clientToken")
        if token and token in self._tokens:  # idempotent: the same request starts one experiment
            return {"experiment": self.experiments[self._tokens[token]].describe()}
        exp = Experiment(
            id=f"EXP{uuid.uuid4().hex[:14].upper()}", template_id=tid, tags=dict(p.get("tags") or {})
        )
        if token:
            self._tokens[token] = exp.id
        self.experiments[exp.id] = exp
        t = threading.Thread(
            target=self._run, args=(exp, res["Properties"]), name=f"fis-{exp.id}", daemon=True
        )
        self._threads.append(t)
        t.start()
        return {"experiment": exp.describe()}

    def get_experiment(self, **p: Any) -> dict[str, Any]:
        exp = self.experiments.get(p["id"])
        if exp is None:
            raise FisError("ResourceNotFoundException", f"Experiment not found: {p['id']}")
        return {"experiment": exp.describe()}

    def list_experiment_resolved_targets(self, **p: Any) -> dict[str, Any]:
        """What the experiment's targets resolved to (the tasks its stop-task acted on), one page."""
        exp = self.experiments.get(p["experimentId"])
        if exp is None:
            raise FisError("ResourceNotFoundException", f"Experiment not found: {p['experimentId']}")
        names = [p["targetName"]] if p.get("targetName") else list(exp.resolved)
        return {
            "resolvedTargets": [
                {
                    "resourceType": exp.targets.get(n, {}).get("resourceType", "aws:ecs:task"),
                    "targetName": n,
                    "targetInformation": dict(info),
                }
                for n in names
                for info in exp.resolved.get(n, [])
            ]
        }

    def stop_experiment(self, **p: Any) -> dict[str, Any]:
        exp = self.experiments.get(p["id"])
        if exp is None:
            raise FisError("ResourceNotFoundException", f"Experiment not found: {p['id']}")
        if exp.status in ("initiating", "running"):
            exp.status, exp.reason = "stopping", "Experiment is stopping."
            exp.stop.set()
        return {"experiment": exp.describe()}

    def close(self) -> None:
        """Stop every experiment that still runs and wait for their threads (bounded)."""
        for exp in self.experiments.values():
            exp.stop.set()
        for t in self._threads:
            t.join(ACTION_TIMEOUT_S)

    # ---------------------------------------------------------------- one experiment
    def _stop_condition(self, props: Mapping[str, Any]) -> str | None:
        for sc in props.get("StopConditions", []):
            if sc.get("Source") != "aws:cloudwatch:alarm":
                continue
            alarm = self.alarms.get(str(self.assembly.render(sc["Value"])).rsplit(":", 1)[-1])
            why = alarm.in_alarm(self.live_dirs(), time.time()) if alarm else None
            if why:
                return why
        return None

    def _hold(self, exp: Experiment, props: Mapping[str, Any], seconds: float) -> str | None:
        """Watch the stop conditions for ``seconds``; the reason to stop, or None."""
        deadline = time.time() + seconds
        while True:
            why = self._stop_condition(props)
            if why:
                return f"Experiment stopped by stop condition ({why})."
            if exp.stop.is_set():
                return "Experiment stopped by user."
            left = deadline - time.time()
            if left <= 0:
                return None
            exp.stop.wait(min(ALARM_TICK_S, left))

    def _end(self, exp: Experiment, status: str, reason: str) -> None:
        if exp.runner is not None:
            exp.runner.abort(reason)
            exp.runner.join(5)
        for a in exp.actions.values():
            if a["state"]["status"] in ("pending", "running"):
                a["state"] = {"status": "cancelled" if status != "failed" else "failed", "reason": reason}
                a.setdefault("endTime", time.time())
        exp.status, exp.reason, exp.ended = status, reason, time.time()
        self.log(f"fis: {exp.id} ({exp.template_id}) {status}: {reason}")

    def _run(self, exp: Experiment, props: Mapping[str, Any]) -> None:
        actions = props.get("Actions", {})
        for name, a in actions.items():
            exp.actions[name] = {
                "actionId": a["ActionId"],
                "parameters": dict(self.assembly.render(dict(a.get("Parameters") or {}))),
                "state": {"status": "pending", "reason": ""},
            }
            if a.get("Targets"):
                exp.actions[name]["targets"] = dict(a["Targets"])
        exp.targets = {
            n: {"resourceType": t.get("ResourceType"), "selectionMode": t.get("SelectionMode", "ALL")}
            for n, t in (props.get("Targets") or {}).items()
        }
        why = self._hold(exp, props, 0.5)  # FIS checks the stop conditions before it starts
        if why:
            return self._end(exp, "stopped", why)
        exp.status, exp.reason = "running", "Experiment is running."
        for name, a in actions.items():
            rec = exp.actions[name]
            rec.update(state={"status": "running", "reason": ""}, startTime=time.time())
            self._record_resolution(exp, a, props)
            denied = self.permissions.fis_denial(exp.template_id, a["ActionId"]) if self.permissions else None
            if denied:
                return self._end(exp, "failed", f"Action {name} failed: {denied}")
            try:
                if a["ActionId"] == "aws:ecs:stop-task":
                    target_name = a["Targets"]["Tasks"]
                    self._stop_tasks(exp, name, target_name, props)
                elif a["ActionId"] in NETWORK_ACTIONS:
                    why = self._network(exp, name, a, props)
                    if why:
                        return self._end(exp, "stopped", why)
                elif a["ActionId"] == "aws:ssm:start-automation-execution":
                    self._automation(exp, a.get("Parameters", {}))
                elif a["ActionId"] in ("aws:rds:reboot-db-instances", "aws:rds:failover-db-cluster"):
                    self._local_fault(exp, "db_blip", {"duration_s": DB_REBOOT_S})
                elif a["ActionId"] == "aws:fis:wait":
                    why = self._hold(
                        exp,
                        props,
                        seconds(a.get("Parameters", {}).get("duration", "PT0S")) * self.wait_scale,
                    )
                    if why:
                        return self._end(exp, "stopped", why)
                else:
                    raise FisError("ValidationException", f"action {a['ActionId']} has no twin")
            except Exception as e:
                return self._end(exp, "failed", f"Action {name} failed: {e}")
            rec.update(state={"status": "completed", "reason": ""}, endTime=time.time())
            why = self._hold(exp, props, 0)
            if why:
                return self._end(exp, "stopped", why)
        exp.status, exp.reason, exp.ended = "completed", "Experiment completed.", time.time()
        self.log(f"fis: {exp.id} ({exp.template_id}) completed")

    def _stop_tasks(self, exp: Experiment, action: str, target_name: str, props: Mapping[str, Any]) -> None:
        """``aws:ecs:stop-task`` on the target's tasks: resolved as FIS resolves them (:func:`resolve_targets`
        over the ECS twin's tasks, then :func:`select`), stopped by the fault runner (SIGKILL, as a stopped
        task; the supervisor replaces it). An empty resolution with ``EmptyTargetResolutionMode: fail`` (the
        stack's) raises, which fails the experiment; with ``skip`` the action does nothing."""
        target = props["Targets"][target_name]
        local = self.target()
        if local is None or local.supervisor is None:
            raise FisError("ResourceNotFoundException", "no target tasks")
        chosen = self._chosen(target_name, props)
        if not chosen:
            return
        if self.tasks is not None and self.targets_gone_before_action:
            return self._targets_gone(exp, target_name, chosen)
        faults = []
        by_service: dict[str, int] = {}
        for t in chosen:
            by_service[t["_service"]] = by_service.get(t["_service"], 0) + 1
        for ecs_service, k in sorted(by_service.items()):
            service = self.services.get(ecs_service, ecs_service)
            if self.tasks is not None:
                # k of the service's replicas: ceil(percent% of n) = k (resgate.local.spec.count_for).
                percent = 100.0 * k / max(1, len(local.supervisor.replicas(service)))
            else:
                m = re.fullmatch(r"PERCENT\((\d+)\)", target.get("SelectionMode", "ALL"))
                percent = float(m.group(1)) if m else 100.0
            faults.append(
                Fault(
                    name=f"{exp.id}-{service}",
                    kind="stop_task",
                    at_s=0,
                    target=service,
                    params={"percent": min(100.0, percent)},
                )
            )
        # The tasks the runner's kills stop are the ones FIS resolved and acted on
        # (ListExperimentResolvedTargets).
        task_of = {t["_replica"]: t["taskArn"] for t in (self.tasks() if self.tasks is not None else [])}
        exp.runner = FaultRunner(local, faults)
        exp.runner.start(time.time())
        exp.runner.join(ACTION_TIMEOUT_S)
        stopped: list[dict[str, str]] = []
        for fault in faults:
            events = [e for e in exp.runner.timeline() if e["fault_id"] == fault.name]
            done = next((e for e in events if e["event"] in ("injected", "error", "skipped")), None)
            if done is None or done["event"] != "injected":
                raise FisError("InvalidTargets", str(done["detail"]) if done else "no result")
            if not done["detail"].get("replicas"):
                raise FisError("InvalidTargets", f"Target resolution returned empty set for {fault.target}")
            killed = [task_of[r] for r in done["detail"]["replicas"] if r in task_of]
            stopped.extend({"arn": a} for a in killed)
        exp.resolved[target_name] = stopped

    def _record_resolution(
        self, exp: Experiment, action: Mapping[str, Any], props: Mapping[str, Any]
    ) -> None:
        """What the action's targets resolve to (ListExperimentResolvedTargets), as FIS resolves them before
        the action runs: a target's ``ResourceArns`` as given, an ``aws:ecs:task`` target over the ECS
        twin's tasks (:func:`resolve_targets`, then :func:`select`). An action that acts on a subset of
        its own choosing (the stop-task) records what it acted on instead."""
        for name in (action.get("Targets") or {}).values():
            target = (props.get("Targets") or {}).get(name) or {}
            if target.get("ResourceArns"):
                arns = [str(self.assembly.render(a)) for a in target["ResourceArns"]]
            elif target.get("ResourceType") == "aws:ecs:task" and self.tasks is not None:
                chosen = select(target.get("SelectionMode", "ALL"), resolve_targets(target, self.tasks()))
                arns = [t["taskArn"] for t in chosen]
            else:
                continue
            exp.resolved[name] = [{"arn": a} for a in arns]

    # A rehearsal mutant (issue 22): FIS resolves its targets at the experiment's start, its stop-task runs
    # later; a task replaced in between (a deployment, a crash) is gone when StopTask reaches it, and ECS
    # answers a StopTask on a stopped task without error, so the action completes having stopped nothing.
    targets_gone_before_action = False

    def _targets_gone(self, exp: Experiment, target_name: str, chosen: list[dict[str, Any]]) -> None:
        """The chosen tasks end on their own (their process exits: the supervisor records ``exited``, the
        ECS twin ``EssentialContainerExited``) and the action stops nothing; they stay its resolved
        targets."""
        local = self.target()
        sup = local.supervisor if local is not None else None
        if sup is None:
            raise FisError("ResourceNotFoundException", "no target tasks")
        exp.resolved[target_name] = [{"arn": t["taskArn"]} for t in chosen]
        pids = {r.replica_id: r.pid for r in sup.replicas() if r.pid}
        ids = {t["_replica"] for t in chosen}
        for rid in ids:
            if rid in pids:
                signal_group(pids[rid], signal.SIGKILL)
        deadline = time.time() + ACTION_TIMEOUT_S  # until the supervisor has seen each one exit
        while time.time() < deadline:
            exited = {
                e["replica"] for e in sup.timeline() if e["event"] == "exited" and e["ts"] >= exp.started
            }
            if ids <= exited:
                return
            time.sleep(0.05)
        raise FisError("InternalError", f"the twin's replicas {sorted(ids - exited)} did not exit")

    def _chosen(self, target_name: str, props: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The tasks an action's target resolves to and its selection mode picks (:func:`resolve_targets`
        over the ECS twin's tasks, then :func:`select`); without a task view, the service its tags name
        (``_replica`` None). An empty resolution raises under ``EmptyTargetResolutionMode: fail`` (the
        stack's), and is ``[]`` (the action does nothing) under ``skip``."""
        target = props["Targets"][target_name]
        if self.tasks is None:  # no task view: the service named by the tags
            return [{"_service": target["ResourceTags"]["aws:ecs:serviceName"], "_replica": None}]
        resolved = resolve_targets(target, self.tasks())
        if not resolved:
            mode = (props.get("ExperimentOptions") or {}).get("EmptyTargetResolutionMode", "fail")
            if mode == "skip":
                return []
            raise FisError("InvalidTargets", f"Target resolution returned empty set for target {target_name}")
        return select(target.get("SelectionMode", "ALL"), resolved)

    def _network(
        self, exp: Experiment, action: str, a: Mapping[str, Any], props: Mapping[str, Any]
    ) -> str | None:
        """An ECS network action (module docstring): the chosen tasks' fault endpoints started (409 / 429
        raise), one local network fault per path of :func:`network_paths` fired through the fault runner,
        held for ``duration`` while the stop conditions are watched, lifted, the endpoints stopped. Returns
        why the experiment stops (a stop condition, a user), else None once every path is lifted."""
        kind, endpoint = NETWORK_ACTIONS[a["ActionId"]]
        params = exp.actions[action]["parameters"]
        duration = seconds(str(params.get("duration", "")))
        paths = network_paths(a["ActionId"], params)
        local = self.target()
        if local is None:
            raise FisError("ResourceNotFoundException", "no local target")
        chosen = self._chosen(a["Targets"]["Tasks"], props)
        if not chosen:
            return None
        services = sorted({t["_service"] for t in chosen})
        if self.tasks is not None:
            # A local path carries every replica of its service: the action must have chosen them all.
            running = {s: sum(t["_service"] == s for t in self.tasks()) for s in services}
            partial = [s for s in services if sum(t["_service"] == s for t in chosen) < running[s]]
            if partial:
                raise FisError(
                    "ValidationException",
                    f"the twin acts on whole services' paths; {partial} selected in part "
                    f"({props['Targets'][a['Targets']['Tasks']].get('SelectionMode')})",
                )
        faults = []
        held: list[tuple[Any, str]] = []  # (a replica's own proxy, direction): a blackhole held per task
        for ecs_service in services:
            service = self.services.get(ecs_service, ecs_service)
            for dependency, direction in paths:
                if dependency != "kafka" and local.path(service, dependency) is None:
                    # A service whose replicas each reach the lease store through a proxy of their own (a
                    # leader_loss partition's target): the blackhole acts on every chosen task's own path.
                    own = (
                        [
                            local.replica_path(str(t["_replica"]), dependency)
                            for t in chosen
                            if t["_service"] == ecs_service and t["_replica"] is not None
                        ]
                        if kind == "network_partition"
                        else []
                    )
                    if own and all(own):
                        held += [(proxy, direction) for proxy in own]
                    continue  # the local target does not carry this traffic through a proxy
                fp: dict[str, Any] = {
                    "service": service,
                    "dependency": dependency,
                    "direction": direction,
                    "duration_s": duration,
                }
                if kind == "network_partition":
                    fp["mode"] = "hang"
                elif kind == "network_latency":
                    fp.update(
                        delay_ms=float(params["delayMilliseconds"]),
                        jitter_ms=float(params.get("jitterMilliseconds", 0)),
                    )
                else:
                    fp["percent"] = float(params["lossPercent"])
                faults.append(
                    Fault(
                        name=f"{exp.id}-{service}-{dependency}", kind=kind, at_s=0, target=service, params=fp
                    )
                )
        if not faults and not held:
            raise FisError(
                "InvalidTargets",
                f"{a['ActionId']} on {services}: no path of {[d for d, _ in paths]} is proxied locally",
            )
        tasks = [str(t.get("taskArn") or f"{t['_service']}/{t['_replica']}") for t in chosen]
        self.endpoints.start(tasks, endpoint, owner=f"{exp.id}/{action}")
        if held:
            try:
                return self._hold_replica_paths(exp, props, held, duration, services)
            finally:
                self.endpoints.stop(tasks, owner=f"{exp.id}/{action}")
        try:
            started = time.time()
            exp.runner = FaultRunner(local, faults)
            exp.runner.start(started)
            exp.runner.join(ACTION_TIMEOUT_S)
            names = {f.name for f in faults}
            events = [e for e in exp.runner.timeline() if e["fault_id"] in names]
            bad = [e for e in events if e["event"] in ("error", "skipped")]
            if bad or sum(e["event"] == "injected" for e in events) < len(faults):
                raise FisError(
                    "ActionFailed", f"{kind} was not injected: {bad[0]['detail'] if bad else events}"
                )
            why = self._hold(exp, props, max(0.0, started + duration - time.time()))
            if why:
                exp.runner.abort(why)
                return why
            # The fault runner lifts each path at its own injection + duration: wait (bounded) for the lifts.
            deadline = time.time() + ACTION_TIMEOUT_S
            while time.time() < deadline:
                lifted = {e["fault_id"] for e in exp.runner.timeline() if e["event"] in ("ended", "aborted")}
                if names <= lifted:
                    break
                time.sleep(0.05)
            else:
                raise FisError("ActionFailed", f"{kind} was not lifted within {ACTION_TIMEOUT_S:g} s")
            effects = [
                e["detail"]
                for e in exp.runner.timeline()
                if e["fault_id"] in names and e["event"] == "effect"
            ]
            self.log(
                f"fis: {exp.id} {a['ActionId']} on {services} lifted after "
                f"{time.time() - started:.1f} s: {effects}"
            )
            return None
        finally:
            self.endpoints.stop(tasks, owner=f"{exp.id}/{action}")

    def _hold_replica_paths(
        self,
        exp: Experiment,
        props: Mapping[str, Any],
        held: list[tuple[Any, str]],
        duration: float,
        services: list[str],
    ) -> str | None:
        """A blackhole on each chosen task's own path (module docstring): every byte the task sends on
        the port is held, its connections kept open, for ``duration`` while the stop conditions are
        watched, then delivered (TCP retransmits what a dropped path lost once it heals), as the local
        leader partition holds its leader's path. Returns why the experiment stops, else None once every
        path is lifted."""
        name = f"fis-{exp.id}"
        before = [proxy.toxics.affected_bytes for proxy, _ in held]
        started = time.time()
        for proxy, direction in held:
            proxy.toxics.add(name, direction, hold=True)
        try:
            why = self._hold(exp, props, max(0.0, started + duration - time.time()))
        finally:
            for proxy, _ in held:
                proxy.toxics.remove(name)
        affected = sum(p.toxics.affected_bytes for p, _ in held) - sum(before)
        self.log(
            f"fis: {exp.id} blackhole on {services}' {len(held)} task paths lifted after "
            f"{time.time() - started:.1f} s: {affected} bytes held"
        )
        return why or None

    def _automation(self, exp: Experiment, parameters: Mapping[str, Any]) -> None:
        """Run the automation document's steps (module docstring)."""
        params = self.assembly.render(dict(parameters))
        doc_id = str(params["documentArn"]).rsplit("/", 1)[-1]
        doc = self.assembly.resources.get(doc_id)
        if doc is None or doc["Type"] != "AWS::SSM::Document":
            raise FisError("InvalidDocument", f"no automation document {doc_id} in the template")
        content = self.assembly.render(doc["Properties"]["Content"])
        values = json.loads(params.get("documentParameters") or "{}")

        def fill(text: Any) -> Any:
            if isinstance(text, str):
                return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values[m.group(1)]), text)
            if isinstance(text, list):
                return [fill(v) for v in text]
            return text

        for step in content["mainSteps"]:
            inputs = {k: fill(v) for k, v in step.get("inputs", {}).items()}
            if step["action"] == "aws:invokeLambdaFunction":
                if self.lambdas is None:
                    raise FisError("AutomationFailed", "no Lambda twin to invoke")
                out = self.lambdas.invoke(FunctionName=inputs["FunctionName"], Payload=inputs["Payload"])
                if out.get("FunctionError"):
                    payload = json.loads(out["Payload"].read() or b"{}")
                    raise FisError(
                        "AutomationFailed",
                        f"step {step['name']}: {payload.get('errorType')}: {payload.get('errorMessage')}",
                    )
            elif step["action"] == "aws:executeAwsApi" and inputs.get("Api") == "RebootBroker":
                (broker,) = inputs["BrokerIds"]
                self._local_fault(
                    exp, "kafka_broker_down", {"broker": int(broker), "duration_s": BROKER_REBOOT_S}
                )
            elif step["action"] != "aws:waitForAwsResourceProperty":
                raise FisError("AutomationFailed", f"step action {step['action']} has no twin")

    def _local_fault(self, exp: Experiment, kind: str, params: dict[str, Any]) -> None:
        """One fault of ``kind`` through the fault runner, held until it is lifted; raises when it was not
        injected or its effect was not observed."""
        local = self.target()
        if local is None:
            raise FisError("ResourceNotFoundException", "no local target")
        fault = Fault(name=exp.id, kind=kind, at_s=0, target=None, params=params)
        exp.runner = FaultRunner(local, [fault])
        exp.runner.start(time.time())
        exp.runner.join(ACTION_TIMEOUT_S)
        # As on AWS, the action ends once the broker or database is back: wait (bounded) for the lift.
        deadline = time.time() + ACTION_TIMEOUT_S + float(params.get("duration_s", 0))
        while not exp.stop.is_set() and time.time() < deadline:
            if any(e["event"] in ("ended", "aborted", "error", "skipped") for e in self._events_of(exp)):
                break
            exp.stop.wait(0.2)
        events = {e["event"]: e for e in self._events_of(exp)}
        if "injected" not in events:
            bad = [e["detail"] for e in events.values() if e["event"] in ("error", "skipped")]
            raise FisError("InvalidTargets", f"{kind} was not injected: {bad[0] if bad else 'no result'}")
        effect = events.get("effect")
        if effect is not None and not effect["detail"].get("observed"):
            raise FisError("ActionFailed", f"{kind} had no effect: {effect['detail'].get('evidence')}")

    @staticmethod
    def _events_of(exp: Experiment) -> list[dict[str, Any]]:
        return [e for e in exp.runner.timeline() if e["fault_id"] == exp.id] if exp.runner else []


def _tag_map(task: Mapping[str, Any]) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value")) for t in task.get("tags") or []}


def path_value(described: Any, path: str) -> Any:
    """The value at a FIS filter ``path`` in a resource's Describe output: each element is the output's
    member name in PascalCase (``AvailabilityZone`` for ``availabilityZone``), as FIS reads it (FIS user
    guide, "Targets for AWS FIS", resource filters). A camelCase element matches nothing (None)."""
    value = described
    for element in path.split("."):
        if not isinstance(value, Mapping) or not element[:1].isupper():
            return None
        key = next((k for k in value if k[:1].upper() + k[1:] == element), None)
        if key is None:
            return None
        value = value[key]
    return value


def resolve_targets(target: Mapping[str, Any], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks an ``aws:ecs:task`` target resolves to: every tag of ``ResourceTags`` on the task, and for
    every filter, the value at its ``Path`` (:func:`path_value`) one of its ``Values``."""
    tags = {str(k): str(v) for k, v in (target.get("ResourceTags") or {}).items()}
    out = [t for t in tasks if all(_tag_map(t).get(k) == v for k, v in tags.items())]
    for f in target.get("Filters") or []:
        wanted = {str(v) for v in f.get("Values") or []}
        out = [t for t in out if str(path_value(t, str(f["Path"]))) in wanted]
    return out


def select(
    mode: str, resolved: list[dict[str, Any]], rng: random.Random | None = None
) -> list[dict[str, Any]]:
    """FIS's ``selectionMode`` over the resolved targets: ``ALL``; ``COUNT(n)``: n of them at random (all
    when fewer); ``PERCENT(n)``: ceil(n% of them) at random (the local runner's rounding,
    :func:`resgate.local.spec.count_for`). Raises FisError for another mode."""
    pick = rng or random.Random()
    if mode == "ALL":
        return list(resolved)
    m = re.fullmatch(r"(COUNT|PERCENT)\((\d+)\)", mode)
    if not m:
        raise FisError("ValidationException", f"selection mode {mode!r} is not ALL, COUNT(n) or PERCENT(n)")
    n = int(m.group(2))
    k = min(n, len(resolved)) if m.group(1) == "COUNT" else count_for(float(n), len(resolved))
    return pick.sample(resolved, k)


def seconds(iso: str) -> float:
    """An FIS ``duration`` (ISO 8601: ``PT30S``, ``PT1M30S``, ``PT1H``) in seconds; FisError otherwise."""
    m = _DURATION.match(iso)
    if not m:
        raise FisError("ValidationException", f"duration {iso!r} is not PTnMnS")
    return int(m.group(1) or 0) * 3600 + int(m.group(2) or 0) * 60 + float(m.group(3) or 0)
