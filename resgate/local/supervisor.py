"""Local process supervisor: runs N replicas of each service like ECS runs tasks, and breaks them on purpose.

This is the local stand-in for an ECS service in the chaos gate. Each replica is a child process in its own
process group (session) on a free 127.0.0.1 port (env ``PORT``, ``REPLICA_ID``, ``REPLICA_INDEX``,
``SERVICE_NAME``), with stdout/stderr in a log file. A background thread polls each replica's health URL
(2xx = healthy) and a monitor thread restarts a replica ``restart_delay_s`` after it exits, as ECS starts a
replacement task. Faults are process faults: ``stop_replicas`` (SIGKILL to the group, the local
``aws:ecs:stop-task``) and ``hang`` (SIGSTOP, then SIGCONT after a duration). Every state change and fault
lands in a timeline of ``{ts, service, replica, event, detail}`` dicts, from which recovery times are
computed.

No orphans: children get ``PR_SET_PDEATHSIG=SIGKILL``; a tiny guardian process SIGKILLs every registered
process group when the supervisor process dies, however it dies (this also catches grandchildren, which
do not inherit the death signal); and ``shutdown()`` (context manager exit, atexit, SIGTERM in the CLI)
sends SIGCONT + SIGTERM to each group, SIGKILLs what is left after a grace period and reaps the children.

``python -m resgate.local.supervisor --name echo --replicas 2 -- <command...>`` runs one service in the
foreground and prints each timeline event as a JSON line until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import http.client
import json
import math
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from resgate.contract.errors import ConfigError, GateError

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
STOPPED = "stopped"
STATES = (STARTING, HEALTHY, UNHEALTHY, STOPPED)

EVENTS = ("started", "healthy", "unhealthy", "exited", "restarted", "killed", "hung", "resumed")
FAULTS = ("stop_task", "hang")
_FAULT_PARAMS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    # fault name -> (allowed parameters, required parameters)
    "stop_task": (frozenset({"service", "percent", "tags"}), ("percent",)),
    "hang": (frozenset({"service", "percent", "duration_s", "tags"}), ("percent", "duration_s")),
}

RESERVED_ENV = ("PORT", "REPLICA_ID", "REPLICA_INDEX", "SERVICE_NAME")
MAX_REPLICAS = 64

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_MONITOR_TICK_S = 0.05

# --------------------------------------------------------------------------------------------------------
# child-process plumbing


_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _make_preexec(parent_pid: int) -> Callable[[], None]:
    """Return the preexec_fn for a replica: die with SIGKILL when the spawning thread's process dies."""

    def _preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the supervisor died between fork and prctl
            os._exit(1)

    return _preexec


_GUARDIAN_CODE = r"""
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
groups = set()
stdin = sys.stdin.buffer
while True:
    line = stdin.readline()
    if not line:
        break
    line = line.strip()
    if line[:1] == b"+":
        groups.add(int(line[1:]))
    elif line[:1] == b"-":
        groups.discard(int(line[1:]))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
"""


class _Guardian:
    """A tiny process that SIGKILLs every registered process group when its stdin pipe closes.

    The pipe's write end lives only in the supervisor process, so the guardian sees EOF when the supervisor
    exits for any reason (including SIGKILL), and then kills the replicas' groups, grandchildren included.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARDIAN_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _send(self, line: str) -> None:
        with self._lock:
            if self._proc is None or self._proc.stdin is None:
                return
            try:
                self._proc.stdin.write(line.encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):  # guardian gone; the death signal still covers children
                pass

    def register(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def unregister(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - the guardian only reads a pipe
            proc.kill()
            proc.wait()


_PORT_LOCK = threading.Lock()
_RESERVED_PORTS: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a port in TIME_WAIT counts as taken
        except OSError:
            return False
        return True


def allocate_port() -> int:
    """Return a free 127.0.0.1 TCP port for a replica, reserved in this process until released.

    Ports are drawn below the kernel's ephemeral range when there is room, so that the many outgoing
    connections of a load test cannot grab a replica's port between this check and the child's bind.
    """
    eph_lo, _ = _ephemeral_range()
    low, high = 20000, eph_lo - 1
    with _PORT_LOCK:
        if high - low >= 1000:
            for _ in range(200):
                port = random.randint(low, high)
                if port not in _RESERVED_PORTS and _bindable(port):
                    _RESERVED_PORTS.add(port)
                    return port
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _RESERVED_PORTS:
                _RESERVED_PORTS.add(port)
                return port
    raise GateError("could not find a free port on 127.0.0.1")


def release_port(port: int | None) -> None:
    """Forget a port reserved by :func:`allocate_port`."""
    if port is not None:
        with _PORT_LOCK:
            _RESERVED_PORTS.discard(port)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """True when the child has exited; it is left a zombie (not reaped) so its group id stays ours."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _probe(host: str, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
    """One HTTP GET; returns (2xx?, short reason)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read(65536)
        return 200 <= resp.status < 300, f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException) as e:
        return False, f"{type(e).__name__}: {e}".rstrip(": ")
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------------
# specs and validation


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_str_map(value: object, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"must be a mapping of strings to strings, got {type(value).__name__}", where=where)
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"keys must be non-empty strings, got {k!r}", where=where)
        if not isinstance(v, str):
            raise ConfigError(
                f"value of {k!r} must be a string, got {type(v).__name__}", where=f"{where}.{k}"
            )


def _resolve_executable(cmd0: str, env: Mapping[str, str], cwd: str | None) -> str | None:
    if "/" in cmd0:
        path = cmd0 if os.path.isabs(cmd0) else os.path.join(cwd or os.getcwd(), cmd0)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(cmd0, path=env.get("PATH", os.environ.get("PATH", os.defpath)))


@dataclass(kw_only=True)
class ServiceSpec:
    """One supervised service: ``replicas`` copies of ``command``, each on its own port.

    ``health_url`` is a template with ``{port}`` (e.g. ``http://127.0.0.1:{port}/ready``); without it a
    replica counts as healthy as soon as it runs. Invalid fields raise ConfigError naming the field.
    """

    name: str = ""
    command: list[str] = field(default_factory=list)
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    restart_delay_s: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    start_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "") -> None:
        """Raise ConfigError (``where`` = prefix + field name) for the first invalid field."""
        p = f"{where}." if where else ""
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"service name {self.name!r} must be 1-63 characters of letters, digits, '_', '-', '.'"
                " starting with a letter or digit",
                where=f"{p}name",
            )
        if isinstance(self.command, str):
            raise ConfigError("must be a list of arguments, not a shell string", where=f"{p}command")
        if not isinstance(self.command, list | tuple) or not self.command:
            raise ConfigError("missing: give the program and its arguments as a list", where=f"{p}command")
        for i, arg in enumerate(self.command):
            if not isinstance(arg, str) or (i == 0 and not arg):
                raise ConfigError(f"must be a non-empty string, got {arg!r}", where=f"{p}command[{i}]")
        _check_str_map(self.env, f"{p}env")
        for key in RESERVED_ENV:
            if key in self.env:
                raise ConfigError(f"{key} is set by the supervisor for each replica", where=f"{p}env.{key}")
        if self.cwd is not None and (not isinstance(self.cwd, str) or not os.path.isdir(self.cwd)):
            raise ConfigError(f"not an existing directory: {self.cwd!r}", where=f"{p}cwd")
        if _resolve_executable(self.command[0], self.env, self.cwd) is None:
            raise ConfigError(f"executable {self.command[0]!r} not found", where=f"{p}command[0]")
        if not isinstance(self.replicas, int) or isinstance(self.replicas, bool):
            raise ConfigError(f"must be an integer, got {self.replicas!r}", where=f"{p}replicas")
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ConfigError(
                f"must be between 1 and {MAX_REPLICAS}, got {self.replicas}", where=f"{p}replicas"
            )
        if self.health_url is not None:
            self._validate_health_url(f"{p}health_url")
        if not _is_number(self.restart_delay_s) or self.restart_delay_s < 0:
            raise ConfigError(
                f"must be a number >= 0, got {self.restart_delay_s!r}", where=f"{p}restart_delay_s"
            )
        if not _is_number(self.start_timeout_s) or self.start_timeout_s <= 0:
            raise ConfigError(
                f"must be a number > 0, got {self.start_timeout_s!r}", where=f"{p}start_timeout_s"
            )
        _check_str_map(self.tags, f"{p}tags")

    def _validate_health_url(self, where: str) -> None:
        url = self.health_url
        if not isinstance(url, str) or "{port}" not in url:
            raise ConfigError(f"must be a URL template containing {{port}}, got {url!r}", where=where)
        try:
            parts = urlsplit(url.format(port=1))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"bad URL template {url!r}: {e}", where=where) from e
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"must be an http://host:{{port}}/path URL, got {url!r}", where=where)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "service") -> ServiceSpec:
        """Build a spec from a config mapping; unknown keys and bad values raise ConfigError at ``where``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a mapping, got {type(data).__name__}", where=where)
        known = set(cls.__dataclass_fields__)
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown field; known: {', '.join(sorted(known))}", where=f"{where}.{key}")
        spec = cls.__new__(cls)  # fill the fields without __post_init__, then validate with the path prefix
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                value = f.default
            setattr(spec, f.name, value)
        spec.validate(where)
        return spec


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


class _Replica:
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

    def info(self) -> ReplicaInfo:
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


def _check_percent(percent: object) -> float:
    if not _is_number(percent) or not 0 <= percent <= 100:  # type: ignore[operator]
        raise ConfigError(f"must be a number from 0 to 100, got {percent!r}", where="percent")
    return float(percent)  # type: ignore[arg-type]


def _check_duration(duration_s: object) -> float:
    if not _is_number(duration_s) or duration_s < 0:  # type: ignore[operator]
        raise ConfigError(f"must be a number of seconds >= 0, got {duration_s!r}", where="duration_s")
    return float(duration_s)  # type: ignore[arg-type]


def _count_for(percent: float, n: int) -> int:
    """ceil(percent% of n), at least 1 when percent > 0."""
    if percent <= 0 or n <= 0:
        return 0
    return max(1, min(n, math.ceil(round(percent * n / 100.0, 9))))


# --------------------------------------------------------------------------------------------------------
# the supervisor


class Supervisor:
    """Runs and restarts replicas of services, polls their health and injects process faults.

    Use as a context manager (``with Supervisor([...]) as sup:``) or call ``start()`` / ``shutdown()``.
    """

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        *,
        log_dir: Path | str | None = None,
        health_interval_s: float = 0.25,
        health_timeout_s: float = 1.0,
        unhealthy_threshold: int = 2,
        stop_timeout_s: float = 3.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        seed: int | None = None,
    ) -> None:
        specs = list(specs)
        if not specs:
            raise ConfigError("at least one service is required", where="specs")
        names: set[str] = set()
        for i, spec in enumerate(specs):
            if not isinstance(spec, ServiceSpec):
                raise ConfigError(f"must be a ServiceSpec, got {type(spec).__name__}", where=f"specs[{i}]")
            spec.validate(f"specs[{i}]")
            if spec.name in names:
                raise ConfigError(f"duplicate service name {spec.name!r}", where=f"specs[{i}].name")
            names.add(spec.name)
        for key, value, positive in (
            ("health_interval_s", health_interval_s, True),
            ("health_timeout_s", health_timeout_s, True),
            ("stop_timeout_s", stop_timeout_s, False),
        ):
            if not _is_number(value) or value < 0 or (positive and value == 0):
                raise ConfigError(f"must be a number {'>' if positive else '>='} 0, got {value!r}", where=key)
        if (
            not isinstance(unhealthy_threshold, int)
            or isinstance(unhealthy_threshold, bool)
            or unhealthy_threshold < 1
        ):
            raise ConfigError(
                f"must be an integer >= 1, got {unhealthy_threshold!r}", where="unhealthy_threshold"
            )

        self._specs = {s.name: s for s in specs}
        self._own_log_dir = log_dir is None
        self._log_dir_arg = Path(log_dir) if log_dir is not None else None
        self.log_dir: Path | None = self._log_dir_arg
        self._interval = float(health_interval_s)
        self._probe_timeout = float(health_timeout_s)
        self._threshold = unhealthy_threshold
        self._stop_timeout = float(stop_timeout_s)
        self._on_event = on_event
        self._rng = random.Random(seed)

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._initial_done = threading.Event()
        self._initial_error: BaseException | None = None
        self._started = False
        self._closing = False
        self._timeline: list[dict[str, Any]] = []
        self._replicas = [_Replica(spec, i) for spec in specs for i in range(spec.replicas)]
        self._timers: set[threading.Timer] = set()
        self._threads: list[threading.Thread] = []
        self._monitor: threading.Thread | None = None
        self._guardian = _Guardian()

    # ---- lifecycle

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def start(self) -> Supervisor:
        """Start every replica (returns at once; use ``wait_healthy``). Raises GateError if a spawn fails."""
        with self._lock:
            if self._closing:
                raise GateError("supervisor was shut down; create a new one")
            if self._started:
                return self
            try:
                if self._log_dir_arg is None:
                    self.log_dir = Path(tempfile.mkdtemp(prefix="resgate-supervisor-"))
                else:
                    self._log_dir_arg.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise GateError(f"could not create the log directory: {e}") from e
            self._started = True
            assert self.log_dir is not None
            for r in self._replicas:
                r.log_path = self.log_dir / f"{r.id}.log"
        atexit.register(self.shutdown)
        try:
            self._guardian.start()
        except OSError as e:
            self.shutdown()
            raise GateError(f"could not start the supervisor's guardian process: {e}") from e
        # All spawns happen on this one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that
        # forked a child exits, so it must outlive the children.
        self._monitor = threading.Thread(target=self._run_monitor, name="supervisor-monitor", daemon=True)
        self._monitor.start()
        self._initial_done.wait()
        if self._initial_error is not None:
            err = self._initial_error
            self.shutdown()
            raise GateError(f"could not start replicas: {err}") from err
        for r in self._replicas:
            if r.spec.health_url is not None:
                t = threading.Thread(target=self._health_loop, args=(r,), name=f"health-{r.id}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def shutdown(self) -> None:
        """Stop all: cancel faults, SIGCONT+SIGTERM each group, SIGKILL stragglers, reap. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            timers, self._timers = list(self._timers), set()
            live = [r for r in self._replicas if r.proc is not None]
            self._cond.notify_all()
        for t in timers:
            t.cancel()
        for r in live:
            assert r.proc is not None
            _killpg(r.proc.pid, signal.SIGCONT)
            _killpg(r.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        pending = live
        while pending and time.monotonic() < deadline:
            pending = [r for r in pending if r.proc is not None and not _exited(r.proc)]
            if pending:
                time.sleep(0.02)
        with self._lock:
            for r in live:
                if r.proc is not None:
                    self._reap(r, reason="shutdown")
            self._cond.notify_all()
        self._stop.set()  # only now may the monitor thread (the children's "parent" thread) end
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=self._probe_timeout + 1)
        self._guardian.close()
        if self._own_log_dir and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        atexit.unregister(self.shutdown)

    # ---- queries

    def replicas(
        self, service: str | None = None, tags: Mapping[str, str] | None = None
    ) -> list[ReplicaInfo]:
        """Snapshots of the replicas of ``service`` (all when None) whose spec carries all ``tags``."""
        with self._lock:
            return [r.info() for r in self._match(service, tags, require=False)]

    def healthy_endpoints(self, service: str) -> list[tuple[str, int]]:
        """[("127.0.0.1", port), ...] of the replicas of ``service`` that are healthy right now."""
        with self._lock:
            return [
                ("127.0.0.1", r.port)
                for r in self._match(service, None, require=False)
                if r.state == HEALTHY and r.proc is not None and r.port is not None
            ]

    def wait_healthy(self, timeout_s: float, service: str | None = None) -> bool:
        """Block until every replica (of ``service``, or of all services) is healthy; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            targets = self._match(service, None, require=False)
            while True:
                if self._started and not self._closing and all(r.state == HEALTHY for r in targets):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    return False
                self._cond.wait(min(remaining, 0.25))
                targets = self._match(service, None, require=False)

    def timeline(self) -> list[dict[str, Any]]:
        """A copy of the events so far: [{ts, service, replica, event, detail}, ...] in order."""
        with self._lock:
            return [dict(e, detail=dict(e["detail"])) for e in self._timeline]

    def log_path(self, replica_id: str) -> Path:
        """The log file of a replica (stdout and stderr of all its incarnations)."""
        with self._lock:
            for r in self._replicas:
                if r.id == replica_id:
                    return r.log_path
        raise ConfigError(f"unknown replica {replica_id!r}", where="replica_id")

    @property
    def services(self) -> list[str]:
        """The service names, in the order given."""
        return list(self._specs)

    # ---- faults

    def inject(self, fault_name: str, **params: Any) -> list[str]:
        """Inject a fault by name ("stop_task" or "hang"); returns the affected replica ids.

        All parameters are validated (ConfigError naming the field) before anything is done.
        """
        if fault_name not in _FAULT_PARAMS:
            raise ConfigError(f"unknown fault {fault_name!r}; known: {', '.join(FAULTS)}", where="fault")
        allowed, required = _FAULT_PARAMS[fault_name]
        for key in params:
            if key not in allowed:
                raise ConfigError(
                    f"unknown parameter for {fault_name}; known: {', '.join(sorted(allowed))}", where=key
                )
        for key in required:
            if key not in params:
                raise ConfigError(f"missing (required by {fault_name})", where=key)
        if fault_name == "stop_task":
            return self.stop_replicas(params.get("service"), params["percent"], tags=params.get("tags"))
        return self.hang(
            params.get("service"), params["percent"], params["duration_s"], tags=params.get("tags")
        )

    def stop_replicas(
        self, service: str | None, percent: float, *, tags: Mapping[str, str] | None = None
    ) -> list[str]:
        """SIGKILL the process groups of ceil(percent%) of the matching replicas (at least 1 if percent > 0).

        The local ``aws:ecs:stop-task``; the monitor restarts them after ``restart_delay_s``.
        Returns the ids of the replicas killed.
        """
        pct = _check_percent(percent)
        with self._lock:
            targets = self._match(service, tags, require=True)
            self._require_running()
            victims = self._pick(targets, pct)
            for r in victims:
                assert r.proc is not None
                self._event(r, "killed", {"pid": r.proc.pid, "signal": "SIGKILL", "fault": "stop_task"})
                _killpg(r.proc.pid, signal.SIGKILL)
            return [r.id for r in victims]

    def hang(
        self,
        service: str | None,
        percent: float,
        duration_s: float,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> list[str]:
        """SIGSTOP the groups of ceil(percent%) of the matching replicas, SIGCONT them after ``duration_s``.

        Replicas already hung are not chosen again. Returns the ids of the replicas hung.
        """
        pct = _check_percent(percent)
        duration = _check_duration(duration_s)
        with self._lock:
            targets = self._match(service, tags, require=True)
            self._require_running()
            victims = self._pick([r for r in targets if r.hung_pid is None], pct, n_total=len(targets))
            hung: list[tuple[_Replica, int]] = []
            for r in victims:
                assert r.proc is not None
                pid = r.proc.pid
                self._event(r, "hung", {"pid": pid, "signal": "SIGSTOP", "duration_s": duration})
                _killpg(pid, signal.SIGSTOP)
                r.hung_pid = pid
                hung.append((r, pid))
            if hung:
                timer = threading.Timer(duration, self._resume, args=(hung,))
                timer.daemon = True
                self._timers.add(timer)
                timer.start()
            return [r.id for r in victims]

    # ---- internals (callers hold self._lock unless noted)

    def _match(self, service: str | None, tags: Mapping[str, str] | None, *, require: bool) -> list[_Replica]:
        if service is not None and service not in self._specs:
            raise ConfigError(
                f"unknown service {service!r}; known: {', '.join(self._specs)}", where="service"
            )
        if tags is not None:
            _check_str_map(tags, "tags")
        if require and service is None and not tags:
            raise ConfigError("name a service and/or tags to select the targets", where="service")
        specs = [
            s
            for s in self._specs.values()
            if (service is None or s.name == service)
            and all(s.tags.get(k) == v for k, v in (tags or {}).items())
        ]
        if require and not specs:
            raise ConfigError(f"no service matches tags {dict(tags or {})!r}", where="tags")
        names = {s.name for s in specs}
        return [r for r in self._replicas if r.spec.name in names]

    def _require_running(self) -> None:
        if not self._started:
            raise GateError("supervisor is not started")
        if self._closing:
            raise GateError("supervisor is shutting down")

    def _pick(self, targets: list[_Replica], pct: float, n_total: int | None = None) -> list[_Replica]:
        count = _count_for(pct, len(targets) if n_total is None else n_total)
        alive = [r for r in targets if r.proc is not None and not _exited(r.proc)]
        chosen = self._rng.sample(alive, min(count, len(alive)))
        return sorted(chosen, key=lambda r: (r.spec.name, r.index))

    def _event(self, r: _Replica, event: str, detail: dict[str, Any]) -> None:
        e = {"ts": time.time(), "service": r.spec.name, "replica": r.id, "event": event, "detail": detail}
        self._timeline.append(e)
        if self._on_event is not None:
            try:
                self._on_event(dict(e, detail=dict(detail)))
            except Exception as exc:  # a broken callback must not break supervision
                print(f"supervisor: on_event callback failed: {exc!r}", file=sys.stderr)

    def _set_state(self, r: _Replica, state: str) -> None:
        if r.state != state:
            r.state = state
            r.since = time.time()
            self._cond.notify_all()

    def _spawn(self, r: _Replica, *, restarted: bool) -> None:
        spec = r.spec
        port = allocate_port()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(spec.env)
        env.update(PORT=str(port), REPLICA_ID=r.id, REPLICA_INDEX=str(r.index), SERVICE_NAME=spec.name)
        try:
            with open(r.log_path, "ab") as log:
                log.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {r.id} port={port} ===\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    list(spec.command),
                    env=env,
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_make_preexec(os.getpid()),  # only prctl + getppid
                )
        except BaseException:
            release_port(port)
            raise
        self._guardian.register(proc.pid)
        r.proc = proc
        r.port = port
        r.generation += 1
        r.fails = 0
        r.started_mono = time.monotonic()
        r.restart_at = None
        r.hung_pid = None
        if spec.health_url is not None:
            parts = urlsplit(spec.health_url.format(port=port))
            path = parts.path or "/"
            r.probe_target = (
                parts.hostname or "127.0.0.1",
                parts.port or 80,
                f"{path}?{parts.query}" if parts.query else path,
            )
        if restarted:
            r.restarts += 1
            self._event(r, "restarted", {"pid": proc.pid, "port": port, "restarts": r.restarts})
        else:
            self._event(r, "started", {"pid": proc.pid, "port": port})
        r.state = STOPPED  # force a transition (and a fresh `since`) below
        self._set_state(r, STARTING if spec.health_url is not None else HEALTHY)
        if spec.health_url is None:
            self._event(r, "healthy", {"pid": proc.pid, "reason": "running (no health_url)"})

    def _reap(self, r: _Replica, *, reason: str | None) -> None:
        proc = r.proc
        assert proc is not None
        pid = proc.pid
        # The leader is a zombie (or alive): the group id is still ours, so clean up what is left of the task.
        _killpg(pid, signal.SIGCONT)
        _killpg(pid, signal.SIGKILL)
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - uninterruptible sleep
            rc = None
        self._guardian.unregister(pid)
        release_port(r.port)
        r.proc = None
        r.hung_pid = None
        detail: dict[str, Any] = {"pid": pid, "returncode": rc}
        if rc is not None and rc < 0:
            with contextlib.suppress(ValueError):
                detail["signal"] = signal.Signals(-rc).name
        if reason:
            detail["reason"] = reason
        self._set_state(r, STOPPED)
        self._event(r, "exited", detail)

    def _run_monitor(self) -> None:
        try:
            with self._lock:
                try:
                    for r in self._replicas:
                        if self._closing:
                            break
                        self._spawn(r, restarted=False)
                except Exception as e:
                    self._initial_error = e
            self._initial_done.set()
            while not self._stop.wait(_MONITOR_TICK_S):
                with self._lock:
                    if self._closing:
                        continue
                    now = time.monotonic()
                    for r in self._replicas:
                        if r.proc is not None:
                            if _exited(r.proc):
                                self._reap(r, reason=None)
                                r.restart_at = time.monotonic() + r.spec.restart_delay_s
                        elif r.restart_at is not None and now >= r.restart_at:
                            try:
                                self._spawn(r, restarted=True)
                            except Exception as e:  # e.g. the binary vanished: keep trying, slower
                                r.restart_at = now + max(1.0, r.spec.restart_delay_s)
                                print(f"supervisor: restarting {r.id} failed: {e!r}", file=sys.stderr)
        except BaseException as e:  # pragma: no cover - children die with this thread (PDEATHSIG)
            print(f"supervisor: monitor thread crashed: {e!r}", file=sys.stderr)
            self._initial_error = self._initial_error or e
            self._initial_done.set()
            raise

    def _health_loop(self, r: _Replica) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if self._closing:
                    return
                if r.proc is None or r.probe_target is None:
                    continue
                gen = r.generation
                host, port, path = r.probe_target
            ok, why = _probe(host, port, path, self._probe_timeout)
            with self._lock:
                if self._closing or r.generation != gen or r.proc is None:
                    continue
                if ok:
                    r.fails = 0
                    if r.state != HEALTHY:
                        self._set_state(r, HEALTHY)
                        self._event(r, "healthy", {"pid": r.proc.pid, "reason": why})
                    continue
                r.fails += 1
                if r.state == HEALTHY and r.fails >= self._threshold:
                    self._set_state(r, UNHEALTHY)
                    self._event(r, "unhealthy", {"pid": r.proc.pid, "reason": why, "failures": r.fails})
                elif r.state == STARTING and time.monotonic() - r.started_mono > r.spec.start_timeout_s:
                    self._set_state(r, UNHEALTHY)
                    reason = f"not healthy within start_timeout_s={r.spec.start_timeout_s:g} ({why})"
                    self._event(r, "unhealthy", {"pid": r.proc.pid, "reason": reason, "failures": r.fails})

    def _resume(self, hung: list[tuple[_Replica, int]]) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
            if self._closing:
                return  # shutdown sends SIGCONT itself
            for r, pid in hung:
                if r.proc is not None and r.proc.pid == pid and r.hung_pid == pid:
                    _killpg(pid, signal.SIGCONT)
                    r.hung_pid = None
                    self._event(r, "resumed", {"pid": pid, "signal": "SIGCONT"})


# --------------------------------------------------------------------------------------------------------
# CLI


def _kv_list(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", where=flag)
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one service under a supervisor until SIGTERM/SIGINT; prints events as JSON lines. Exit code 0/2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    else:
        command = []
    ap = argparse.ArgumentParser(
        prog="python -m resgate.local.supervisor",
        description="Run N replicas of a command with health checks and restarts until SIGTERM/SIGINT.",
        usage="%(prog)s --name NAME [options] -- COMMAND [ARGS...]",
    )
    ap.add_argument("--name", required=True)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument(
        "--health-url", default=None, help="template with {port}, e.g. http://127.0.0.1:{port}/ready"
    )
    ap.add_argument("--restart-delay", type=float, default=1.0)
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--health-interval", type=float, default=0.25)
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--cwd", default=None)
    ap.add_argument("--log-dir", default=None, help="default: a new temp dir, kept after exit")
    args = ap.parse_args(argv)

    events: queue.Queue[dict[str, Any]] = queue.Queue()
    try:
        spec = ServiceSpec(
            name=args.name,
            command=command,
            replicas=args.replicas,
            env=_kv_list(args.env, "--env"),
            health_url=args.health_url,
            restart_delay_s=args.restart_delay,
            tags=_kv_list(args.tag, "--tag"),
            cwd=args.cwd,
            start_timeout_s=args.start_timeout,
        )
        log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="resgate-supervisor-"))
        sup = Supervisor([spec], log_dir=log_dir, health_interval_s=args.health_interval, on_event=events.put)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    def _emit(e: dict[str, Any]) -> None:
        print(json.dumps(e, sort_keys=True), flush=True)

    _emit(
        {
            "ts": time.time(),
            "service": spec.name,
            "replica": None,
            "event": "supervisor",
            "detail": {"pid": os.getpid(), "log_dir": str(log_dir)},
        }
    )
    try:
        sup.start()
    except GateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        while not stop.is_set():
            try:
                _emit(events.get(timeout=0.2))
            except queue.Empty:
                pass
    finally:
        sup.shutdown()
        while not events.empty():
            _emit(events.get_nowait())
        _emit(
            {
                "ts": time.time(),
                "service": spec.name,
                "replica": None,
                "event": "supervisor_exit",
                "detail": {},
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
