"""Local process supervisor: runs N replicas of each service like ECS runs tasks, and breaks them on purpose.

This is the local stand-in for an ECS service in the chaos gate. Each replica is a child process in its own
process group (session) on a free 127.0.0.1 port (env ``PORT``, ``REPLICA_ID``, ``REPLICA_INDEX``,
``SERVICE_NAME``; ``${port}`` in its command and environment values is that port, the placeholders of the
spec's ``replica_values`` that replica's own values, ``$$`` a ``$``), with
stdout/stderr in a log file. A background thread polls each replica's health URL
(2xx = healthy) and a monitor thread restarts a replica ``restart_delay_s`` after it exits, as ECS starts a
replacement task. The primitive process faults the gate's fault runner (:mod:`resgate.runner.faults`)
schedules are ``stop_replicas`` (SIGKILL to the group, the local ``aws:ecs:stop-task``) and ``hang``
(SIGSTOP, then SIGCONT after a duration). Every state change and fault lands in a timeline of
``{ts, service, replica, event, detail}`` dicts, from which recovery times are computed.

No orphans (see :mod:`resgate.local.process`): children die with the supervisor, a guardian process kills
their groups however the supervisor dies, and ``shutdown()`` (context manager exit, atexit, SIGTERM in the
CLI) sends SIGCONT + SIGTERM to each group, SIGKILLs what is left after a grace period and reaps the
children. Its command line is :mod:`resgate.local.supervise_cli` (``python -m resgate.local.supervise_cli``).
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from resgate.config.placeholders import fill_port
from resgate.contract.errors import ConfigError, GateError
from resgate.local.ports import free_port, release_port
from resgate.local.process import (
    Guardian,
    exited,
    http_probe,
    reap_group,
    signal_group,
    spawn_group,
    terminate_groups,
)
from resgate.local.replica import HEALTHY, STARTING, STOPPED, UNHEALTHY, Replica, ReplicaInfo
from resgate.local.spec import (
    ServiceSpec,
    check_duration,
    check_percent,
    check_str_map,
    count_for,
    is_number,
)

EVENTS = (
    *("started", "healthy", "unhealthy", "exited", "restarted", "killed", "hung", "resumed"),
    "start_failed",
)

_MONITOR_TICK_S = 0.05
LOG_TAIL_LINES = 10
HEALTH_4XX_FAIL_S = 2.0  # a health check answering 4xx this long before the first healthy answer is wrong


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 16384) -> list[str]:
    """The last ``lines`` lines of a log file (at most ``max_bytes`` read from its end); [] if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [ln.rstrip() for ln in text.splitlines()[-lines:]]


# --------------------------------------------------------------------------------------------------------
# the supervisor


class Supervisor:
    """Runs and restarts replicas of services, polls their health and offers the primitive process faults.

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
        start_failures: int = 3,
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
            if not is_number(value) or value < 0 or (positive and value == 0):
                raise ConfigError(f"must be a number {'>' if positive else '>='} 0, got {value!r}", where=key)
        if (
            not isinstance(unhealthy_threshold, int)
            or isinstance(unhealthy_threshold, bool)
            or unhealthy_threshold < 1
        ):
            raise ConfigError(
                f"must be an integer >= 1, got {unhealthy_threshold!r}", where="unhealthy_threshold"
            )

        if not isinstance(start_failures, int) or isinstance(start_failures, bool) or start_failures < 1:
            raise ConfigError(f"must be an integer >= 1, got {start_failures!r}", where="start_failures")
        self._start_failures = start_failures
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
        self._replicas = [Replica(spec, i) for spec in specs for i in range(spec.replicas)]
        self._timers: set[threading.Timer] = set()
        self._threads: list[threading.Thread] = []
        self._monitor: threading.Thread | None = None
        self._guardian = Guardian()

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
        terminate_groups([r.proc for r in live if r.proc is not None], self._stop_timeout)
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

    def running_endpoints(self, service: str) -> list[tuple[str, int]]:
        """[("127.0.0.1", port), ...] of the replicas of ``service`` that have a process, healthy or not (the
        targets an ALB still has registered; it routes to them when none is healthy)."""
        with self._lock:
            return [
                ("127.0.0.1", r.port)
                for r in self._match(service, None, require=False)
                if r.proc is not None and r.port is not None and not exited(r.proc)
            ]

    def wait_healthy(self, timeout_s: float, service: str | None = None) -> bool:
        """Block until every replica (of ``service``, or of all services) is healthy; False on timeout, and
        at once when a replica failed its start (see :meth:`failed_starts`)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            targets = self._match(service, None, require=False)
            while True:
                if self._started and not self._closing and all(r.state == HEALTHY for r in targets):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing or any(r.start_failure for r in targets):
                    return False
                self._cond.wait(min(remaining, 0.25))
                targets = self._match(service, None, require=False)

    def failed_starts(self) -> list[dict[str, Any]]:
        """Replicas that failed their start: ``[{service, replica, reason, last_probe, log, log_tail}]``.

        A replica fails its start when it exits ``start_failures`` times in a row before it was ever
        healthy (a crash at start, a port in use), or when its health check answers 4xx for
        ``HEALTH_4XX_FAIL_S`` (a wrong health path); it is then no longer restarted.
        """
        with self._lock:
            failed = [r for r in self._replicas if r.start_failure]
            return [
                {
                    "service": r.spec.name,
                    "replica": r.id,
                    "reason": r.start_failure,
                    "last_probe": r.last_probe,
                    "log": str(r.log_path),
                    "log_tail": log_tail(r.log_path),
                }
                for r in failed
            ]

    def status(self) -> list[dict[str, Any]]:
        """Each replica's state, restarts and its health check's last answer: ``[{replica, state, restarts,
        last_probe}]``."""
        with self._lock:
            return [
                {"replica": r.id, "state": r.state, "restarts": r.restarts, "last_probe": r.last_probe}
                for r in self._replicas
            ]

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

    # ---- primitive process faults (scheduled by resgate.runner.faults.FaultRunner)

    def stop_replicas(
        self, service: str | None, percent: float, *, tags: Mapping[str, str] | None = None
    ) -> list[str]:
        """SIGKILL the process groups of ceil(percent%) of the matching replicas (at least 1 if percent > 0).

        The local ``aws:ecs:stop-task``; the monitor restarts them after ``restart_delay_s``.
        Returns the ids of the replicas killed.
        """
        pct = check_percent(percent)
        with self._lock:
            targets = self._match(service, tags, require=True)
            self._require_running()
            victims = self._pick(targets, pct)
            for r in victims:
                assert r.proc is not None
                self._event(r, "killed", {"pid": r.proc.pid, "signal": "SIGKILL", "fault": "stop_task"})
                signal_group(r.proc.pid, signal.SIGKILL)
            return [r.id for r in victims]

    def stop_zone(self, zone: str, services: list[str] | None = None) -> list[str]:
        """SIGKILL every replica in ``zone`` (of ``services``, all when None): the local zone loss.

        Replicas carry their service's zone round-robin (``ServiceSpec.zones``); the monitor restarts
        them after ``restart_delay_s``, as after ``stop_replicas``. Returns the ids of the replicas killed.
        """
        with self._lock:
            self._require_running()
            victims = [
                r
                for r in self._replicas
                if (services is None or r.spec.name in services)
                and r.spec.zone_of(r.index) == zone
                and r.proc is not None
                and not exited(r.proc)
            ]
            for r in victims:
                assert r.proc is not None
                self._event(
                    r, "killed", {"pid": r.proc.pid, "signal": "SIGKILL", "fault": "zone_loss", "zone": zone}
                )
                signal_group(r.proc.pid, signal.SIGKILL)
            return [r.id for r in victims]

    def hang(
        self,
        service: str | None,
        percent: float,
        duration_s: float,
        *,
        tags: Mapping[str, str] | None = None,
        only: Sequence[str] | None = None,
    ) -> list[str]:
        """SIGSTOP the groups of ceil(percent%) of the matching replicas (of those named in ``only``, when
        given: the leader a ``leader_loss`` fault found), SIGCONT them after ``duration_s``.

        Replicas already hung are not chosen again. Returns the ids of the replicas hung.
        """
        pct = check_percent(percent)
        duration = check_duration(duration_s)
        with self._lock:
            targets = self._match(service, tags, require=True)
            if only is not None:
                targets = [r for r in targets if r.id in set(only)]
            self._require_running()
            victims = self._pick([r for r in targets if r.hung_pid is None], pct, n_total=len(targets))
            hung: list[tuple[Replica, int]] = []
            for r in victims:
                assert r.proc is not None
                pid = r.proc.pid
                self._event(r, "hung", {"pid": pid, "signal": "SIGSTOP", "duration_s": duration})
                signal_group(pid, signal.SIGSTOP)
                r.hung_pid = pid
                hung.append((r, pid))
            if hung:
                timer = threading.Timer(duration, self._resume, args=(hung,))
                timer.daemon = True
                self._timers.add(timer)
                timer.start()
            return [r.id for r in victims]

    def resume(self, replica_ids: Sequence[str]) -> list[str]:
        """SIGCONT now those of ``replica_ids`` that are still hung (a hang lifted early: an abort, a gate
        error); their timer then finds nothing to do. Returns the ids resumed."""
        wanted = set(replica_ids)
        with self._lock:
            return self._continue([(r, r.hung_pid) for r in self._replicas if r.id in wanted and r.hung_pid])

    # ---- internals (callers hold self._lock unless noted)

    def _match(self, service: str | None, tags: Mapping[str, str] | None, *, require: bool) -> list[Replica]:
        if service is not None and service not in self._specs:
            raise ConfigError(
                f"unknown service {service!r}; known: {', '.join(self._specs)}", where="service"
            )
        if tags is not None:
            check_str_map(tags, "tags")
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

    def _pick(self, targets: list[Replica], pct: float, n_total: int | None = None) -> list[Replica]:
        count = count_for(pct, len(targets) if n_total is None else n_total)
        alive = [r for r in targets if r.proc is not None and not exited(r.proc)]
        chosen = self._rng.sample(alive, min(count, len(alive)))
        return sorted(chosen, key=lambda r: (r.spec.name, r.index))

    def _event(self, r: Replica, event: str, detail: dict[str, Any]) -> None:
        e = {"ts": time.time(), "service": r.spec.name, "replica": r.id, "event": event, "detail": detail}
        self._timeline.append(e)
        if self._on_event is not None:
            try:
                self._on_event(dict(e, detail=dict(detail)))
            except Exception as exc:  # a broken callback must not break supervision
                print(f"supervisor: on_event callback failed: {exc!r}", file=sys.stderr)

    def _set_state(self, r: Replica, state: str) -> None:
        if r.state != state:
            r.state = state
            r.since = time.time()
            self._cond.notify_all()

    def _spawn(self, r: Replica, *, restarted: bool) -> None:
        spec = r.spec
        port = free_port()
        own = spec.replica_values[r.index] if spec.replica_values else None
        env = {
            **{k: fill_port(v, port, own) for k, v in spec.env.items()},
            "PORT": str(port),
            "REPLICA_ID": r.id,
            "REPLICA_INDEX": str(r.index),
            "SERVICE_NAME": spec.name,
        }
        banner = f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {r.id} port={port} ==="
        try:
            command = [fill_port(arg, port, own) for arg in spec.command]
            proc = spawn_group(command, env=env, cwd=spec.cwd, log_path=r.log_path, banner=banner)
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
        r.probe_target = spec.probe_target(port)
        if restarted:
            r.restarts += 1
            self._event(r, "restarted", {"pid": proc.pid, "port": port, "restarts": r.restarts})
        else:
            self._event(r, "started", {"pid": proc.pid, "port": port})
        r.state = STOPPED  # force a transition (and a fresh `since`) below
        self._set_state(r, STARTING if spec.health_url is not None else HEALTHY)
        if spec.health_url is None:
            self._event(r, "healthy", {"pid": proc.pid, "reason": "running (no health_url)"})

    def _fail_start(self, r: Replica, reason: str) -> None:
        """Give up on a replica's start: no more restarts, waiters wake up (caller holds the lock)."""
        r.start_failure = reason
        r.restart_at = None
        self._event(r, "start_failed", {"reason": reason, "last_probe": r.last_probe})
        self._cond.notify_all()

    def _reap(self, r: Replica, *, reason: str | None) -> int | None:
        proc = r.proc
        assert proc is not None
        pid = proc.pid
        rc = reap_group(proc)
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
        return rc

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
                            if exited(r.proc):
                                rc = self._reap(r, reason=None)
                                if not r.ever_healthy:
                                    r.early_exits += 1
                                    if r.early_exits >= self._start_failures:
                                        self._fail_start(
                                            r,
                                            f"exited {r.early_exits} times in a row before it was ever "
                                            f"healthy (last exit code {rc})",
                                        )
                                        continue
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

    def _health_loop(self, r: Replica) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if self._closing:
                    return
                if r.proc is None or r.probe_target is None:
                    continue
                gen = r.generation
                host, port, path = r.probe_target
            ok, why = http_probe(host, port, path, self._probe_timeout)
            with self._lock:
                if self._closing or r.generation != gen or r.proc is None:
                    continue
                r.last_probe = f"GET http://{host}:{port}{path} -> {why}"
                if ok:
                    r.fails = 0
                    r.ever_healthy = True
                    r.early_exits = 0
                    r.client_errors_since = None
                    if r.state != HEALTHY:
                        self._set_state(r, HEALTHY)
                        self._event(r, "healthy", {"pid": r.proc.pid, "reason": why})
                    continue
                r.fails += 1
                if not r.ever_healthy and _client_error(why):
                    now = time.monotonic()
                    if r.client_errors_since is None:
                        r.client_errors_since = now
                    elif now - r.client_errors_since >= HEALTH_4XX_FAIL_S and not r.start_failure:
                        self._fail_start(
                            r,
                            f"its health check answered {why} for {now - r.client_errors_since:.1f}s "
                            "(is health_path right?)",
                        )
                        continue
                else:
                    r.client_errors_since = None
                if r.state == HEALTHY and r.fails >= self._threshold:
                    self._set_state(r, UNHEALTHY)
                    self._event(r, "unhealthy", {"pid": r.proc.pid, "reason": why, "failures": r.fails})
                elif r.state == STARTING and time.monotonic() - r.started_mono > r.spec.start_timeout_s:
                    self._set_state(r, UNHEALTHY)
                    reason = f"not healthy within start_timeout_s={r.spec.start_timeout_s:g} ({why})"
                    self._event(r, "unhealthy", {"pid": r.proc.pid, "reason": reason, "failures": r.fails})

    def _resume(self, hung: list[tuple[Replica, int]]) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
            self._continue(hung)

    def _continue(self, hung: Iterable[tuple[Replica, int | None]]) -> list[str]:
        """SIGCONT each replica still hung by that very pid; the ids resumed."""
        if self._closing:
            return []  # shutdown sends SIGCONT itself
        resumed: list[str] = []
        for r, pid in hung:
            if pid is not None and r.proc is not None and r.proc.pid == pid and r.hung_pid == pid:
                signal_group(pid, signal.SIGCONT)
                r.hung_pid = None
                self._event(r, "resumed", {"pid": pid, "signal": "SIGCONT"})
                resumed.append(r.id)
        return resumed


def _client_error(why: str) -> bool:
    """True for a probe answer ``HTTP 4xx`` that says the path is wrong (not 408 or 429: try again)."""
    if not why.startswith("HTTP 4"):
        return False
    return why not in ("HTTP 408", "HTTP 425", "HTTP 429")
