"""The load task's eyes on a leader loss on AWS: the target's replicas' leader figures around the fault.

On AWS a ``leader_loss`` is a FIS action on the lease store (a reboot of the database), run by the state
machine at the load task's start + ``at_s``. Nothing else inside the VPC is alive through it, so the load
task watches it: for each leader loss named in ``RESGATE_LEADER_WATCH`` (:func:`encode_watches`) a thread
waits until :data:`LEAD_S` before ``at_s``, finds the replica that leads then (the deposed one), and runs
the local runner's :class:`~resgate.runner.leader.LeaderSampler` over the target service's ECS tasks at
their private addresses (:class:`~resgate.runner.leader.EcsReplicas`) until ``duration_s + observe_s``
after ``at_s``. Each record becomes one ``leader_samples`` row ``{ts, fault_id, kind: "leader_loss",
target, event: "leader_samples", detail: <LeaderSampler.record()>}`` of ``leader_samples.jsonl`` in the
ledger folder, which :mod:`loadgen.upload` uploads beside ``load_shape.jsonl`` and the timeline Lambda adds
to ``faults.jsonl`` (:func:`lambdas.timeline.write.leader_rows`), as the local runner records them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resgate.contract.env import ENV_LEADER_WATCH
from resgate.contract.errors import ConfigError
from resgate.contract.fields import number_field
from resgate.runner.leader import EcsReplicas, LeaderSampler, ReplicaSource, current_leader

LEAD_S = 5.0
"""Sampling starts this long before the fault's time (the schedule fires it up to a second early)."""
WATCH_FILE = "leader_samples.jsonl"


@dataclass(frozen=True)
class LeaderWatch:
    """One leader loss to watch: its fault, the target's ECS service and health endpoint, and its times
    (seconds from the load task's start)."""

    fault_id: str
    target: str
    cluster: str
    service: str
    port: int
    path: str
    at_s: float
    duration_s: float
    observe_s: float

    @property
    def until_s(self) -> float:
        return self.at_s + self.duration_s + self.observe_s


def encode_watches(watches: Sequence[LeaderWatch]) -> str:
    """``RESGATE_LEADER_WATCH``'s value; ``""`` for none."""
    return json.dumps([asdict(w) for w in watches], separators=(",", ":")) if watches else ""


def decode_watches(raw: str | None, *, where: str = ENV_LEADER_WATCH) -> tuple[LeaderWatch, ...]:
    """The watches of ``RESGATE_LEADER_WATCH``; a ConfigError naming the entry's field when malformed."""
    if not raw or not raw.strip():
        return ()
    try:
        items = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"must be JSON: {e}", where=where) from None
    if not isinstance(items, list):
        raise ConfigError("must be a JSON list", where=where)
    out = []
    for i, d in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=at)
        for k in ("fault_id", "target", "cluster", "service", "path"):
            if not isinstance(d.get(k), str) or not d[k]:
                raise ConfigError("must be a non-empty string", where=f"{at}.{k}")
        port = d.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ConfigError("must be a port (1..65535)", where=f"{at}.port")
        times = {k: number_field(d, k, at, lo=0) for k in ("at_s", "duration_s", "observe_s")}
        if not d["path"].startswith("/"):
            raise ConfigError("must start with '/'", where=f"{at}.path")
        out.append(
            LeaderWatch(d["fault_id"], d["target"], d["cluster"], d["service"], port, d["path"], **times)
        )
    return tuple(out)


def leader_now(source: ReplicaSource, path: str) -> tuple[str | None, int | None]:
    """``(replica, fencing token)`` of the replica whose health says ``leader: 1`` now; ``(None, None)``
    when none does (the record then shows no deposed leader, and the recovery check judges that)."""
    return current_leader(source, path)[1] or (None, None)


class LeaderWatcher:
    """Runs every watch on its own thread from ``started`` (the load task's start, wall clock) and appends
    each record to ``out_dir/leader_samples.jsonl``; :meth:`finish` waits for them (bounded)."""

    def __init__(
        self,
        watches: Sequence[LeaderWatch],
        out_dir: Path,
        *,
        started: float,
        sources: Callable[[LeaderWatch], ReplicaSource],
        interval_s: float | None = None,
    ) -> None:
        self.watches, self.out_dir, self.started, self.sources = tuple(watches), out_dir, started, sources
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._samplers: dict[str, LeaderSampler] = {}
        self._threads = [
            threading.Thread(target=self._watch, args=(w,), name=f"leader-watch-{w.fault_id}", daemon=True)
            for w in self.watches
        ]

    def start(self) -> LeaderWatcher:
        for t in self._threads:
            t.start()
        return self

    def _watch(self, w: LeaderWatch) -> None:
        if self._stop.wait(max(0.0, self.started + w.at_s - LEAD_S - time.time())):
            return  # the load ended before the fault was due: nothing to watch
        began = time.time()
        try:
            detail = self._sample(w)
        except Exception as e:  # no listing of the replicas at all: a row that says why, never no row
            now = round(time.time(), 3)
            detail = {"service": w.target, "deposed": None, "started_ts": round(began, 3), "ended_ts": now,
                      "samples": [], "error": f"{type(e).__name__}: {e}"}  # fmt: skip
        row = {"ts": round(time.time(), 3), "fault_id": w.fault_id, "kind": "leader_loss", "target": w.target,
               "event": "leader_samples", "detail": detail}  # fmt: skip
        with self._lock:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / WATCH_FILE, "a", encoding="utf-8", newline="\n") as f:
                f.write(json.dumps(row, separators=(",", ":")) + "\n")

    def _sample(self, w: LeaderWatch) -> dict[str, Any]:
        source = self.sources(w)
        kw = {} if self.interval_s is None else {"interval_s": self.interval_s}
        sampler = LeaderSampler(None, w.target, replicas=source, path=w.path, **kw)
        sampler.deposed, sampler.deposed_token = leader_now(source, w.path)
        sampler.until_ts = self.started + w.until_s
        with self._lock:
            self._samplers[w.fault_id] = sampler
        sampler.start()
        while not sampler.wait(0.5):
            if self._stop.is_set():
                sampler.finish()
                break
        return sampler.record()

    def finish(self, timeout_s: float = 10.0) -> None:
        """Stop every watch now (a sampling under way records what it saw) and wait at most ``timeout_s``."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def remaining_s(self) -> float:
        """Seconds until the last watch's window ends (0 when every one has)."""
        return max(0.0, *(self.started + w.until_s - time.time() for w in self.watches))

    def wait(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the watches to end on their own (each at its ``until_s``)."""
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


def ecs_sources(ecs: Any) -> Callable[[LeaderWatch], ReplicaSource]:
    """Each watch's replicas: its service's ECS tasks at their private addresses on its port."""
    return lambda w: EcsReplicas(ecs, w.cluster, w.service, w.port)


def watcher_from_env(environ: Mapping[str, str], out_dir: Path, *, started: float) -> LeaderWatcher | None:
    """A watcher for ``RESGATE_LEADER_WATCH`` (None when it names none); boto3 is imported only then."""
    watches = decode_watches(environ.get(ENV_LEADER_WATCH))
    if not watches:
        return None
    import boto3

    return LeaderWatcher(watches, out_dir, started=started, sources=ecs_sources(boto3.client("ecs")))
