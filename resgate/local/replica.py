"""One replica of a supervised service: its states, the supervisor's record of it and the snapshot handed out.

A replica is ``starting`` (spawned, not yet healthy), ``healthy``, ``unhealthy`` (failing its health check,
or not healthy within ``start_timeout_s``) or ``stopped`` (no process: exited and waiting for its restart).
:class:`Replica` is mutable and only touched under the supervisor's lock; callers get :class:`ReplicaInfo`.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from resgate.local.spec import ServiceSpec

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
STOPPED = "stopped"
STATES = (STARTING, HEALTHY, UNHEALTHY, STOPPED)


@dataclass(frozen=True)
class ReplicaInfo:
    """A snapshot of one replica; ``since`` is the wall-clock time (time.time()) of the last state change."""

    service: str
    replica_id: str
    index: int
    pid: int | None
    port: int | None
    state: str
    since: float
    restarts: int
    hung: bool

    @property
    def endpoint(self) -> tuple[str, int] | None:
        """("127.0.0.1", port) while the replica has a process, else None."""
        return ("127.0.0.1", self.port) if self.pid is not None and self.port is not None else None


class Replica:
    """The supervisor's mutable record of one replica (guarded by the supervisor's lock)."""

    def __init__(self, spec: ServiceSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.id = f"{spec.name}-{index}"
        self.log_path = Path(os.devnull)  # set by Supervisor.start()
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.state = STOPPED
        self.since = time.time()
        self.restarts = 0
        self.generation = 0
        self.fails = 0
        self.started_mono = 0.0
        self.restart_at: float | None = None
        self.hung_pid: int | None = None
        self.probe_target: tuple[str, int, str] | None = None
        # start-up: a replica that never became healthy and keeps exiting (or answers its health check
        # with a 4xx) fails the start at once instead of being restarted until the start timeout
        self.ever_healthy = False
        self.early_exits = 0
        self.last_probe: str | None = None
        self.client_errors_since: float | None = None
        self.start_failure: str | None = None

    def info(self) -> ReplicaInfo:
        """A frozen snapshot of this replica."""
        return ReplicaInfo(
            service=self.spec.name,
            replica_id=self.id,
            index=self.index,
            pid=self.proc.pid if self.proc is not None else None,
            port=self.port if self.proc is not None else None,
            state=self.state,
            since=self.since,
            restarts=self.restarts,
            hung=self.hung_pid is not None,
        )
