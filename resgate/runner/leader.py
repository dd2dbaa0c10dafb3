"""The local ``leader_loss`` fault's eyes: who leads a service, and how its leader figures move over a fault.

A service with a leader (paperbroker's matcher) shows on each replica's ``/health`` JSON a ``leader``
figure (1 or 0), the ``fencing_token`` it acts under, ``ready`` and ``heartbeat_age_s`` (seconds since the
replica last heard from its lease store). :func:`find_leader` asks every running replica and returns the
one that leads; :class:`LeaderSampler` probes every replica of the service a few times a second from just
before the injection until a while after the lift and keeps each replica's state as a step function: a
sample ``{ts, replica, answered, leader, token, ready}`` only when that state changes, plus the highest
``heartbeat_age_s`` each replica showed while it led. Measuring only: the recovery check judges the
samples (:mod:`resgate.checks.recovery.leader`).

A service with several lease groups (paperbroker's matcher with ``PB_SYMBOL_GROUPS`` > 1: one leader per
symbol group) also shows ``groups``: ``{group: {leader, fencing_token, heartbeat_age_s, ready}}``, and at
the top the figures of one group the replica leads. Its replicas may lead different groups at once, so
the sampler follows one group, the one the deposed leader led under its token when the fault struck
(:attr:`LeaderSampler.group`), and reads every replica's figures of that group: the judgment is that
group's handover, tokens compared within the group. With one group (or no ``groups`` map) the top-level
figures are read, as they always were.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from resgate.contract.errors import ConfigError, GateError

PROBE_TIMEOUT_S = 0.3
"""A replica that does not answer /health within this is sampled as not answering (a stopped process)."""
SAMPLE_INTERVAL_S = 0.2
MAX_SAMPLES = 2000
"""State changes kept per fault; a flapping replica beyond this truncates the record (``truncated``)."""


LOCAL_HOST = "127.0.0.1"
Replica = tuple[str, str, int | None, int]
"""``(replica_id, host, port or None when not running, restarts)``: one replica to probe."""
ReplicaSource = Callable[[], list[Replica]]
"""The replicas of the sampled service now (the local supervisor's, or ECS's tasks of a service on AWS)."""


def probe(
    port: int, timeout_s: float = PROBE_TIMEOUT_S, *, host: str = LOCAL_HOST, path: str = "/health"
) -> dict[str, Any] | None:
    """The JSON body of ``GET http://<host>:<port><path>``, or None when the replica does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout_s) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            return None
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _replicas(sup: Any, service: str) -> list[tuple[str, int | None, int]]:
    """``[(replica_id, port or None, restarts)]`` of ``service``."""
    return [(r.replica_id, r.port if r.pid is not None else None, r.restarts) for r in sup.replicas(service)]


def local_replicas(sup: Any, service: str) -> ReplicaSource:
    """The local supervisor's replicas of ``service``, each on this machine's loopback."""
    return lambda: [(rid, LOCAL_HOST, port, n) for rid, port, n in _replicas(sup, service)]


def current_leader(source: ReplicaSource, path: str = "/health") -> tuple[int, tuple[str, int | None] | None]:
    """``(replicas showing a leader figure, (replica_id, fencing token) of the one whose health says
    ``leader: 1`` or None)``: the one scan both the local fault and the AWS load task's watch make."""
    figures = 0
    for rid, host, port, _ in source():
        body = probe(port, host=host, path=path) if port is not None else None
        if body is None or "leader" not in body:
            continue
        figures += 1
        if body.get("leader") == 1:
            token = body.get("fencing_token")
            return figures, (rid, token if isinstance(token, int) and not isinstance(token, bool) else None)
    return figures, None


def find_leader(sup: Any, service: str) -> tuple[str, int | None]:
    """``(replica_id, fencing token)`` of the replica of ``service`` whose /health says ``leader: 1``.

    Raises GateError when no replica shows a ``leader`` figure at all (the service has no leader to lose)
    or when none leads now.
    """
    figures, leader = current_leader(local_replicas(sup, service))
    if leader is not None:
        return leader
    if not figures:
        raise GateError(f"no replica of {service!r} shows a 'leader' figure on its /health endpoint")
    raise GateError(f"no replica of {service!r} leads now (every /health says leader 0)")


def preflight_leaders(faults: list[Any], sup: Any, timeout_s: float = 30.0) -> None:
    """Before the load: each ``leader_loss`` fault's target must show a ``leader`` figure on its /health
    (replicas that answer without one: a ConfigError naming ``faults.<name>.target``) and have a leader
    within ``timeout_s`` (else a GateError): a fault that finds no leader to lose would prove nothing."""
    for f in faults:
        if f.kind != "leader_loss":
            continue
        deadline = time.monotonic() + timeout_s
        while True:
            bodies = [probe(port) for _, port, _ in _replicas(sup, f.target) if port is not None]
            answered = [b for b in bodies if b is not None]
            if answered and not any("leader" in b for b in answered):
                raise ConfigError(
                    f"a leader_loss needs a service whose /health shows a 'leader' figure; {f.target!r}"
                    " shows none",
                    where=f"faults.{f.name}.target",
                )
            if any(b.get("leader") == 1 for b in answered):
                break
            if time.monotonic() >= deadline:
                raise GateError(f"fault {f.name}: no replica of {f.target!r} led within {timeout_s:g} s")
            time.sleep(0.2)


class EcsReplicas:
    """The ECS tasks of ``service`` in ``cluster`` as replicas (a :data:`ReplicaSource`): each running
    task at its ENI's private IPv4 address on ``port``. ECS never restarts a task (a replacement is a new
    task), so a task once seen that is no longer running stays in the list with no port (sampled as not
    answering) and restarts are 0. The listing (``ListTasks`` + ``DescribeTasks``) is refreshed at most
    every ``refresh_s``, well inside ECS's API rate limits at a sampler's pace; a refresh that fails after
    a good listing keeps that listing until the next refresh, and a first listing that fails raises."""

    def __init__(self, ecs: Any, cluster: str, service: str, port: int, *, refresh_s: float = 2.0) -> None:
        self.ecs, self.cluster, self.service, self.port, self.refresh_s = (
            ecs,
            cluster,
            service,
            port,
            refresh_s,
        )
        self._seen: dict[str, str] = {}  # task id -> its address
        self._running: set[str] = set()
        self._listed_at = -math.inf

    def __call__(self) -> list[Replica]:
        if time.monotonic() - self._listed_at >= self.refresh_s:
            try:
                self._list()
            except Exception:
                if self._listed_at == -math.inf:
                    raise  # never listed: nothing to probe, the sampler records why
                # a failed refresh (throttled, say) after a good one: probe the tasks of the last listing
                # and list again at the next refresh; a task started meanwhile is seen then
            self._listed_at = time.monotonic()
        return [
            (tid, ip, self.port if tid in self._running else None, 0)
            for tid, ip in sorted(self._seen.items())
        ]

    def _list(self) -> None:
        arns: list[str] = []
        for page in self.ecs.get_paginator("list_tasks").paginate(
            cluster=self.cluster, serviceName=self.service, desiredStatus="RUNNING"
        ):
            arns.extend(page.get("taskArns", []))
        running: set[str] = set()
        for i in range(0, len(arns), 100):  # DescribeTasks takes at most 100 tasks
            for task in self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[i : i + 100]).get(
                "tasks", []
            ):
                ip = task_address(task)
                if ip is None or task.get("lastStatus") != "RUNNING":
                    continue
                tid = str(task["taskArn"]).rsplit("/", 1)[-1]
                self._seen[tid] = ip
                running.add(tid)
        self._running = running


def task_address(task: dict[str, Any]) -> str | None:
    """An ECS task's private IPv4 address (awsvpc): its container's network interface, else its ENI
    attachment's ``privateIPv4Address`` detail; None before it has one."""
    for container in task.get("containers") or []:
        for eni in container.get("networkInterfaces") or []:
            if eni.get("privateIpv4Address"):
                return str(eni["privateIpv4Address"])
    for att in task.get("attachments") or []:
        for d in att.get("details") or []:
            if d.get("name") == "privateIPv4Address" and d.get("value"):
                return str(d["value"])
    return None


class LeaderSampler:
    """Samples the leader figures of every replica of ``service`` on a thread until ``until_ts`` (wall
    clock) or :meth:`finish`; :meth:`record` is the fault event's detail.

    The replicas are the local supervisor's (``sup``) unless ``replicas`` gives another source (on AWS the
    ECS tasks of the service, :func:`resgate.runner.leader_ecs.ecs_replicas`); ``path`` is the health path."""

    def __init__(
        self,
        sup: Any,
        service: str,
        *,
        interval_s: float = SAMPLE_INTERVAL_S,
        replicas: ReplicaSource | None = None,
        path: str = "/health",
    ) -> None:
        self.sup = sup
        self.service = service
        self.interval_s = interval_s
        self.path = path
        self._source: ReplicaSource = replicas if replicas is not None else local_replicas(sup, service)
        self.until_ts = float("inf")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last: dict[str, tuple[Any, ...]] = {}
        self._samples: list[dict[str, Any]] = []
        self._max_hb: dict[str, float] = {}
        self._restarts0 = {rid: n for rid, _, _, n in self._source()}
        self._restarts: dict[str, int] = {}
        self.started_ts = time.time()
        self.ended_ts: float | None = None
        self.truncated = False
        self.error: str | None = None  # why sampling stopped early (the replica source failed), else None
        self.deposed: str | None = None  # the replica that led when the fault struck, and its token
        self.deposed_token: int | None = None
        self.group: str | None = None  # the lease group followed (a service with several), else None
        self._group_known = False  # the deposed replica answered once: which figures to read is decided
        self._thread = threading.Thread(target=self._run, name=f"leader-{service}", daemon=True)

    def start(self, settle_s: float = 3.0) -> LeaderSampler:
        """Sample the state before the injection synchronously, then go on on the thread. When
        :attr:`deposed` is set, rounds repeat (for at most ``settle_s``) until it is seen leading: a probe
        that timed out on a busy machine would otherwise leave no sample of the leader before the fault."""
        deadline = time.monotonic() + settle_s
        self._round()
        while self.deposed is not None and not self._seen_leading(self.deposed):
            if time.monotonic() >= deadline:
                break
            time.sleep(self.interval_s / 4)
            self._round()
        self._group_known = True  # a deposed replica that never answered: read the top-level figures
        self._thread.start()
        return self

    def _seen_leading(self, replica: str) -> bool:
        with self._lock:
            state = self._last.get(replica)
        return state is not None and state[0] and state[1] == 1

    def _pick_group(self, rid: str, body: dict[str, Any]) -> None:
        """Follow the group the deposed replica leads under its token (a service with several groups)."""
        if self._group_known or rid != self.deposed:
            return
        self._group_known = True
        groups = body.get("groups")
        if not isinstance(groups, dict) or len(groups) < 2:
            return
        led = [g for g, f in groups.items() if isinstance(f, dict) and f.get("leader") == 1]
        same = [g for g in led if groups[g].get("fencing_token") == self.deposed_token]
        top = body.get("lease_group")
        self.group = same[0] if same else top if top in led else led[0] if led else None

    def _figures(self, body: dict[str, Any] | None) -> dict[str, Any]:
        """The figures to read from ``body``: the followed group's, else the top level."""
        if body is None or self.group is None:
            return body or {}
        groups = body.get("groups")
        figures = groups.get(self.group) if isinstance(groups, dict) else None
        return figures if isinstance(figures, dict) else body

    def _round(self) -> None:
        # the deposed replica first: its answer decides which group's figures every replica's sample shows
        replicas = sorted(self._source(), key=lambda r: r[0] != self.deposed)
        for rid, host, port, restarts in replicas:
            body = probe(port, host=host, path=self.path) if port is not None else None
            if self.deposed is not None and not self._group_known and rid != self.deposed:
                continue  # no sample until the group to read is known (the next round, at most)
            now = time.time()
            ts = math.floor(now * 1000) / 1000  # never after the instant it was taken (no rounding up)
            answered = body is not None
            if body is not None:
                self._pick_group(rid, body)
            figures = self._figures(body)
            leader = figures.get("leader") if body else None
            token = figures.get("fencing_token") if body else None
            ready = figures.get("ready") if body else None
            state = (answered, leader, token, ready)
            hb = figures.get("heartbeat_age_s") if body else None
            with self._lock:
                self._restarts[rid] = restarts - self._restarts0.get(rid, 0)
                if leader == 1 and isinstance(hb, int | float) and not isinstance(hb, bool):
                    self._max_hb[rid] = max(self._max_hb.get(rid, 0.0), float(hb))
                if self._last.get(rid) == state:
                    continue
                self._last[rid] = state
                if len(self._samples) >= MAX_SAMPLES:
                    self.truncated = True
                    continue
                self._samples.append(
                    {"ts": ts, "replica": rid, "answered": answered, "leader": leader,
                     "token": token, "ready": ready}
                )  # fmt: skip

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and time.time() < self.until_ts:
                self._round()
                self._stop.wait(self.interval_s)
        except Exception as e:  # the source's listing failed: the record says so, never a silent end
            self.error = f"{type(e).__name__}: {e}"
        self.ended_ts = time.time()

    def finish(self, timeout_s: float = 5.0) -> None:
        """Stop sampling now (the thread ends after its current round)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self.ended_ts is None:
            self.ended_ts = time.time()

    def wait(self, timeout_s: float) -> bool:
        """Wait until the sampling ended on its own (``until_ts``); True when it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def record(self) -> dict[str, Any]:
        """``{service, group, deposed, deposed_token, started_ts, ended_ts, samples,
        max_leading_heartbeat_age_s: {replica: s}, restarts: {replica: n}, truncated, error}``: the raw
        observations (``group`` the lease group followed, None for a service with one; ``error`` why the
        sampling stopped early, None when it did not), judged by the recovery check."""
        with self._lock:
            return {
                "service": self.service,
                "group": self.group,
                "deposed": self.deposed,
                "deposed_token": self.deposed_token,
                "started_ts": round(self.started_ts, 3),
                "ended_ts": round(self.ended_ts or time.time(), 3),
                "samples": list(self._samples),
                "max_leading_heartbeat_age_s": dict(self._max_hb),
                "restarts": dict(self._restarts),
                "truncated": self.truncated,
                "error": self.error,
            }
