"""Run the locustfile headless as a subprocess, and stop it without leaving a process behind.

:func:`run_locust` starts ``python -m locust -f loadgen/resgate_ledger_hook.py,<locustfile> --headless
--host H -u U -r R -t Ts --stop-timeout S --json --exit-code-on-error 0 --only-summary`` (the hook loads
:mod:`loadgen.ledger_plugin`, so any locustfile gets a client ledger) in its own session (process group)
with ``RESGATE_LEDGER_DIR`` set, stdout (the final ``--json`` stats) captured to
``<ledger_dir>/locust-stats.json`` and stderr (Locust's log) to ``<ledger_dir>/locust.log``. The returned
:class:`LocustRun` is used by the gate runner and the benchmarks: :meth:`LocustRun.wait` for the natural
end, :meth:`LocustRun.stop` to end it early (SIGTERM to Locust, so it stops its users, prints its stats
and flushes the ledgers; SIGKILL to the whole process group after a grace period). Both return a
:class:`LocustResult` with the parsed stats, the exit code and the merged ledger.

``python -m loadgen.run`` is the container entrypoint: the same run configured from the environment,
publishing the guardrail metrics while it runs when ``RESGATE_METRICS_NAMESPACE`` is set
(:mod:`loadgen.live_metrics`), followed by an upload to S3 when ``RESGATE_EVIDENCE_S3_URI`` is set.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadgen import leader_watch, live_metrics
from loadgen.ledger import (
    DONE_PREFIX,
    LEDGER_PREFIX,
    SEEN_FILE,
    count_records,
    merge_ledgers,
    part_files,
    read_seen,
)
from loadgen.stats import load_locust_json, summarize
from resgate.contract import env as env_names
from resgate.contract.errors import ConfigError, GateError
from resgate.contract.shape import ABORT_FILE, SHAPE_FILE, SHAPE_PREFIX
from resgate.contract.stream import STREAM_PREFIX

DEFAULT_LOCUSTFILE = Path(__file__).with_name("locustfile.py")
LEDGER_HOOK = Path(__file__).with_name("resgate_ledger_hook.py")
"""Passed to Locust before every locustfile: installs :mod:`loadgen.ledger_plugin` (the client ledger)."""
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
STATS_NAME = "locust-stats.json"
WATCH_AFTER_LOAD_S = 30.0
"""The longest the task waits after the load for a leader loss's sampling still in its observe window."""
DEFAULT_MASTER_PORT = 5557
"""Locust's master port; the load security group admits it from the load tasks only."""
ROLES = ("master", "worker")
LOG_NAME = "locust.log"


@dataclass(frozen=True)
class LocustResult:
    """The outcome of a finished Locust run.

    ``stats`` is the parsed ``--json`` list (empty when Locust printed none, e.g. after SIGKILL; then
    ``stats_error`` says why), ``exit_code`` Locust's (negative: killed by that signal), ``ledger_path``
    the merged ledger and ``ledger_records`` its line count, ``stopped`` whether :meth:`LocustRun.stop`
    ended it, ``killed`` whether SIGKILL was needed.
    """

    exit_code: int
    stats: list[dict[str, Any]]
    stats_path: Path
    log_path: Path
    ledger_path: Path
    ledger_records: int
    started_at: float
    ended_at: float
    stopped: bool = False
    killed: bool = False
    stats_error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    nodes: tuple[dict[str, Any], ...] = ()
    """One row per Locust worker (:func:`node_rows`; empty for a single-process run)."""
    pid: int = 0
    """The Locust process's id (a worker task's ledger part and completion marker carry it)."""

    @property
    def incomplete_nodes(self) -> list[str]:
        """The workers whose ledger or stream part is missing or incomplete (see :func:`node_rows`)."""
        return [str(n["node"]) for n in self.nodes if not (n.get("complete") and n.get("stream_complete"))]

    @property
    def total_requests(self) -> int:
        """Requests Locust counted (every attempt), summed over endpoints."""
        return sum(int(e["num_requests"]) for e in self.stats)

    @property
    def total_failures(self) -> int:
        """Failed requests Locust counted, summed over endpoints."""
        return sum(int(e["num_failures"]) for e in self.stats)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a foreign group reusing the id; not ours to signal
        return False
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class WorkerSpec:
    """One Locust worker process to start beside the master: its node name, command and environment."""

    node: str
    cmd: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class RemoteRole:
    """This process's part in a load distributed over several machines (Fargate tasks):
    ``role`` ``"master"`` (listens on ``host``:``port`` and waits at most ``wait_s`` for ``workers``
    workers) or ``"worker"`` (connects to the master at ``host``:``port``)."""

    role: str
    host: str
    port: int = DEFAULT_MASTER_PORT
    workers: int = 0
    wait_s: float = 300.0


class _Worker:
    """A started worker (leader of its own process group), its log in ``<ledger_dir>/worker-<node>.log``."""

    def __init__(self, spec: WorkerSpec, ledger_dir: Path) -> None:
        self.node = spec.node
        self.log_path = ledger_dir / f"worker-{spec.node}.log"
        with open(self.log_path, "wb") as log:
            try:
                self.proc = subprocess.Popen(
                    spec.cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=spec.env,
                    start_new_session=True,
                )
            except OSError as e:
                raise GateError(f"could not start Locust worker {spec.node} ({spec.cmd[0]}): {e}") from e
        self.pid = self.proc.pid


def _process_reason(exit_code: int | None, marker: dict[str, Any] | None) -> str | None:
    """Why none of a worker's parts can be whole, whatever they hold: it was still running, a signal ended
    it, or it left no completion marker (it did not shut down cleanly); None when it ended cleanly."""
    if exit_code is None:
        return "still running when the load was collected"
    if exit_code < 0:
        return f"killed by signal {-exit_code}"
    return "no completion marker: the process did not shut down cleanly" if marker is None else None


def node_rows(
    ledger_dir: Path,
    workers: Sequence[tuple[str, int, int | None]],
    seen: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """What each worker left behind, one row each: ``{node, pid, exit_code, records, marker_records,
    complete, reason, stream_records, stream_marker_records, stream_complete, stream_reason, last_seen}``.

    ``workers`` are ``(node, pid, exit_code)``. A worker's parts are its client ledger ``ledger-<pid>.jsonl``
    and, when it ran market-data subscribers, its stream ledger ``stream-<pid>.jsonl``; its completion
    marker ``done-<pid>.json`` (written by :mod:`loadgen.ledger_plugin` when the process shuts down cleanly)
    counts the lines it wrote to each (``records``, ``parts.stream``; a process that ran no subscriber
    wrote 0 stream lines and has no stream part). A part is whole (``complete`` for the client ledger,
    ``stream_complete`` for the stream ledger) only when the marker exists, the part holds exactly that
    many whole lines and no signal ended the process (an exit code > 0 with whole parts, e.g. a user's
    unhandled exception, is kept in ``exit_code`` but loses no record): a worker killed mid-run has no
    marker (its parts end at their last flush), so the checks that read them must say unknown, never pass.
    ``seen`` is the master's record of its workers (:func:`loadgen.ledger.read_seen`): ``last_seen``, the
    epoch second of the worker's last heartbeat, or None without one.
    """
    rows = []
    for node, pid, exit_code in workers:
        marker: dict[str, Any] | None = None
        try:
            loaded = json.loads((ledger_dir / f"{DONE_PREFIX}-{pid}.json").read_text())
            marker = {"records": int(loaded["records"]), "parts": dict(loaded.get("parts") or {})}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        process = _process_reason(exit_code, marker)
        row: dict[str, Any] = {"node": node, "pid": pid, "exit_code": exit_code}
        for prefix, pre in ((LEDGER_PREFIX, ""), (STREAM_PREFIX, "stream_")):
            part = ledger_dir / f"{prefix}-{pid}.jsonl"
            records = count_records(part) if part.is_file() else 0
            wrote: int | None = None
            if marker is not None:
                wrote = marker["records"] if prefix == LEDGER_PREFIX else int(marker["parts"].get(prefix, 0))
            reason = process
            if reason is None and wrote != records:
                what = "part" if prefix == LEDGER_PREFIX else f"{prefix} part"
                reason = f"its {what} holds {records} records, the process wrote {wrote}"
            row.update(
                {
                    f"{pre}records": records,
                    f"{pre}marker_records": wrote,
                    "complete" if not pre else "stream_complete": reason is None,
                    f"{pre}reason": reason,
                }
            )
        row["last_seen"] = (seen or {}).get(node, {}).get("last_seen")
        rows.append(row)
    return rows


class LocustRun:
    """A running headless Locust (process group leader ``pid`` == ``pgid``), with its worker processes when
    it is a master; see :func:`run_locust`."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        ledger_dir: Path,
        *,
        stop_grace_s: float,
        workers: Sequence[WorkerSpec] = (),
    ) -> None:
        self.cmd = cmd
        self.ledger_dir = ledger_dir
        self.stats_path = ledger_dir / STATS_NAME
        self.log_path = ledger_dir / LOG_NAME
        self.stop_grace_s = stop_grace_s
        self.started_at = time.time()
        self._result: LocustResult | None = None
        self._stopped = False
        self._killed = False
        with open(self.stats_path, "wb") as out, open(self.log_path, "wb") as err:
            try:
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
                )
            except OSError as e:
                raise GateError(f"could not start Locust ({cmd[0]}): {e}") from e
        self.pid = self.proc.pid
        self.pgid = self.proc.pid  # start_new_session: the child leads its own session and group
        self.workers: list[_Worker] = []
        try:
            for spec in workers:
                self.workers.append(_Worker(spec, ledger_dir))
        except GateError:
            self.stop(grace_s=0)
            raise

    @property
    def running(self) -> bool:
        """True while the Locust process has not exited."""
        return self.proc.poll() is None

    @property
    def result(self) -> LocustResult | None:
        """The result once the run has been waited for or stopped, else None."""
        return self._result

    def wait(self, timeout: float | None = None) -> LocustResult:
        """Wait for Locust to exit by itself; returns the :class:`LocustResult`.

        Raises :class:`GateError` when it is still running after ``timeout`` seconds (it is left running;
        call :meth:`stop`).
        """
        if self._result is not None:
            return self._result
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise GateError(f"Locust (pid {self.pid}) still running after {timeout:g} s") from e
        return self._finish()

    def stop(self, grace_s: float | None = None) -> LocustResult:
        """End the run now and return its result; never returns while a process of its group is left.

        SIGTERM goes to the Locust process (with ``--processes`` it is the master, which stops its workers
        and collects their final stats; a signal to every process at once would lose them). When it has
        not exited after ``grace_s`` (default: the run's stop grace), the whole group gets SIGKILL; after
        the leader has exited, anything left in the group gets SIGTERM, then SIGKILL. Locust prints its
        stats and flushes the ledgers on SIGTERM; after SIGKILL the stats are empty and the ledgers hold
        what was flushed (each process writes once a second).
        """
        if self._result is not None:
            return self._result
        grace = self.stop_grace_s if grace_s is None else grace_s
        if self.proc.poll() is None:
            self._stopped = True
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._killed = True
                _signal_group(self.pgid, signal.SIGKILL)
                self.proc.wait()
        return self._finish()

    def _reap_group(self, pgid: int) -> None:
        """Kill whatever is left in a group after its leader exited (e.g. ``--processes`` children)."""
        if not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGTERM)
        term_deadline = time.monotonic() + 2.0
        while _group_alive(pgid) and time.monotonic() < term_deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 5.0
        while _group_alive(pgid) and time.monotonic() < deadline:
            self._killed = True
            _signal_group(pgid, signal.SIGKILL)
            time.sleep(0.05)

    def _end_workers(self) -> None:
        """After the master has exited: SIGTERM to each worker still running, SIGKILL to its group after the
        stop grace. The master exits only once every worker reported its users stopped (and so had flushed
        its ledger part, at ``test_stop``); a worker handles the master's quit only after sleeping its stop
        timeout, so waiting for it would add that much to every run. On SIGTERM Locust shuts the worker down
        cleanly (``quitting``: the completion marker is written again, with the same count)."""
        for w in self.workers:
            if w.proc.poll() is None:
                _signal_group(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._killed = True
                _signal_group(w.pid, signal.SIGKILL)
                w.proc.wait()
            self._reap_group(w.pid)

    def _finish(self) -> LocustResult:
        self._reap_group(self.pgid)
        self._end_workers()
        ended = time.time()
        stats: list[dict[str, Any]] = []
        stats_error = None
        try:
            stats = load_locust_json(self.stats_path)
        except (ConfigError, OSError) as e:
            stats_error = str(e)
        ledger = merge_ledgers(self.ledger_dir)
        if part_files(self.ledger_dir, STREAM_PREFIX):  # market-data subscribers ran: their stream ledger
            merge_ledgers(self.ledger_dir, prefix=STREAM_PREFIX)
        if part_files(self.ledger_dir, SHAPE_PREFIX):  # an overload shape ran: its samples and fault rows
            merge_ledgers(self.ledger_dir, prefix=SHAPE_PREFIX, out=self.ledger_dir / SHAPE_FILE)
        self._result = LocustResult(
            exit_code=int(self.proc.returncode),
            stats=stats,
            stats_path=self.stats_path,
            log_path=self.log_path,
            ledger_path=ledger,
            ledger_records=count_records(ledger),
            started_at=self.started_at,
            ended_at=ended,
            stopped=self._stopped,
            killed=self._killed,
            stats_error=stats_error,
            summary=summarize(stats),
            nodes=tuple(
                node_rows(
                    self.ledger_dir,
                    [(w.node, w.pid, w.proc.returncode) for w in self.workers],
                    read_seen(self.ledger_dir),
                )
            ),
            pid=self.pid,
        )
        return self._result

    def __enter__(self) -> LocustRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_locust(
    host: str,
    *,
    users: int,
    spawn_rate: float,
    duration_s: float,
    ledger_dir: str | os.PathLike[str],
    locustfile: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    stop_timeout_s: int = 5,
    stop_grace_s: float | None = None,
    workers: int = 0,
    remote: RemoteRole | None = None,
) -> LocustRun:
    """Start a headless Locust run against ``host`` and return the running :class:`LocustRun`.

    ``duration_s`` is rounded up to whole seconds (Locust's ``-t``); ``stop_timeout_s`` is how long users
    may finish an in-flight request when the run ends (the locustfile starts no retry once stopping);
    ``stop_grace_s`` (default ``stop_timeout_s + 15``) is how long :meth:`LocustRun.stop` waits after
    SIGTERM before SIGKILL. ``env`` is added to this process's environment (and wins over it), with
    ``RESGATE_LEDGER_DIR`` set to ``ledger_dir``, which is created; per-process ledger and live files left
    there by an earlier run are removed first. Raises :class:`ConfigError` for bad arguments (nothing is
    started) and :class:`GateError` when the process cannot be started.

    ``workers`` >= 1 runs Locust distributed on this machine: the process above becomes the master
    (``--master`` bound to 127.0.0.1 on a free port, ``--expect-workers N``; it makes no request and prints
    the merged ``--json`` stats, and keeps its record of the workers' heartbeats, ``workers-seen.json``)
    and N worker processes (``--worker``, ``RESGATE_LOAD_NODE=w1..wN``) each write their own ledger part,
    stream part (with subscribers) and live file into ``ledger_dir``; the result's ``nodes`` say whether
    each part is complete and when the master last heard each worker (:func:`node_rows`).

    ``remote`` runs this process as one node of a load spread over machines (:class:`RemoteRole`): a
    master with no local workers (``--master-bind-host``, ``--expect-workers``), or a worker (``--worker
    --master-host``: no stats of its own; its ledger part is ``ledger_dir``'s).
    """
    if not isinstance(host, str) or not host.startswith(("http://", "https://")):
        raise ConfigError(f"must be an http(s) URL, got {host!r}", where="load.host")
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise ConfigError(f"must be an integer >= 1, got {users!r}", where="load.users")
    if not isinstance(spawn_rate, (int, float)) or isinstance(spawn_rate, bool) or not spawn_rate > 0:
        raise ConfigError(f"must be a number > 0, got {spawn_rate!r}", where="load.spawn_rate")
    if (
        not isinstance(duration_s, (int, float))
        or isinstance(duration_s, bool)
        or not 0 < duration_s < math.inf
    ):
        raise ConfigError(f"must be a number of seconds > 0, got {duration_s!r}", where="load.duration_s")
    if isinstance(stop_timeout_s, bool) or not isinstance(stop_timeout_s, int) or stop_timeout_s < 0:
        raise ConfigError(f"must be an integer >= 0, got {stop_timeout_s!r}", where="load.stop_timeout_s")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"must be an integer >= 0, got {workers!r}", where="load.workers")
    if workers > users:
        raise ConfigError(f"must be <= load.users ({users}), got {workers}", where="load.workers")
    if remote is not None and (workers or remote.role not in ROLES or not remote.host):
        raise ConfigError(
            f"a remote role is master or worker with a host and no local workers, got {remote!r}",
            where=env_names.ENV_LOAD_ROLE,
        )
    if remote is not None and remote.role == "master" and not 1 <= remote.workers <= users:
        raise ConfigError(f"must be 1..{users} (load.users), got {remote.workers}", where="load.workers")
    lf = Path(locustfile) if locustfile is not None else DEFAULT_LOCUSTFILE
    if not lf.is_file():
        raise ConfigError(f"locustfile not found: {lf}", where="load.locustfile")
    if "," in str(lf.resolve()) or lf.suffix != ".py":
        raise ConfigError(f"must be a .py file with no comma in its path, got {lf}", where="load.locustfile")
    ledger = Path(ledger_dir)
    ledger.mkdir(parents=True, exist_ok=True)
    for pattern in (
        "ledger-*.jsonl",
        "live-*.jsonl",
        f"{DONE_PREFIX}-*.json",
        "worker-*.log",
        f"{SHAPE_PREFIX}-*.jsonl",
        f"{STREAM_PREFIX}-*.jsonl",
        f"{STREAM_PREFIX}.jsonl",
        SEEN_FILE,
        ABORT_FILE,
        SHAPE_FILE,
    ):
        for old in ledger.glob(pattern):
            old.unlink()
    run_env = dict(os.environ)
    # The locustfile imports this package: put its root first on the path, whatever the cwd is.
    pythonpath = [str(PACKAGE_ROOT), *filter(None, run_env.get("PYTHONPATH", "").split(os.pathsep))]
    run_env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(pythonpath),
            env_names.ENV_LEDGER_DIR: str(ledger.resolve()),
        }
    )
    run_env.update(env or {})
    files = f"{LEDGER_HOOK},{lf.resolve()}"  # Locust takes several files; the ledger plugin comes first
    master_args: list[str] = []
    specs: list[WorkerSpec] = []
    if workers:
        port = _free_port()
        wait_s = max(30, 5 * workers)  # a loaded machine takes seconds to import Locust in each worker
        master_args = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        master_args += ["--expect-workers", str(workers), "--expect-workers-max-wait", str(wait_s)]
        for i in range(1, workers + 1):
            node = f"w{i}"
            worker_cmd = [sys.executable, "-m", "locust", "-f", files, "--worker"]
            worker_cmd += ["--master-host", "127.0.0.1", "--master-port", str(port)]
            # a worker that saw failed requests would exit 1 by default: its exit code must mean "crashed"
            worker_cmd += ["--stop-timeout", str(stop_timeout_s), "--exit-code-on-error", "0"]
            specs.append(WorkerSpec(node, worker_cmd, {**run_env, env_names.ENV_LOAD_NODE: node}))
    if remote is not None and remote.role == "master":
        master_args = ["--master", "--master-bind-host", remote.host, "--master-bind-port", str(remote.port)]
        master_args += [
            "--expect-workers",
            str(remote.workers),
            "--expect-workers-max-wait",
            f"{remote.wait_s:g}",
        ]
    grace = float(stop_timeout_s + 15) if stop_grace_s is None else float(stop_grace_s)
    if remote is not None and remote.role == "worker":
        worker_cmd = [sys.executable, "-m", "locust", "-f", files, "--worker", "--master-host", remote.host]
        worker_cmd += ["--master-port", str(remote.port), "--stop-timeout", str(stop_timeout_s)]
        worker_cmd += ["--exit-code-on-error", "0", *extra_args]
        return LocustRun(worker_cmd, run_env, ledger, stop_grace_s=grace)
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        files,
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        f"{spawn_rate:g}",
        "-t",
        f"{math.ceil(duration_s)}s",
        "--stop-timeout",
        str(stop_timeout_s),
        "--json",
        "--exit-code-on-error",
        "0",
        "--only-summary",
        *master_args,
        *extra_args,
    ]
    return LocustRun(cmd, run_env, ledger, stop_grace_s=grace, workers=specs)


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the master binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_number(name: str, default: float | None, cast: type = float) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError("is required", where=name)
        return cast(default)
    try:
        return cast(raw)
    except ValueError:
        raise ConfigError(f"must be a number, got {raw!r}", where=name) from None


def resolve_locustfile(value: str, workdir: Path, *, client: Any = None) -> Path | None:
    """The locustfile named by ``RESGATE_LOCUSTFILE``: None (the bundled one) when empty, an ``s3://`` URI
    downloaded into ``workdir`` (its file name kept), else a path in the image, which must exist. Raises
    ConfigError naming the variable, GateError when the download fails."""
    value = value.strip()
    if not value:
        return None
    if not value.startswith("s3://"):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"no such file in the image: {value}", where=env_names.ENV_LOCUSTFILE)
        return path
    from loadgen.upload import parse_s3_locustfile

    bucket, key = parse_s3_locustfile(value, where=env_names.ENV_LOCUSTFILE)
    name = key.rsplit("/", 1)[-1]
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    workdir.mkdir(parents=True, exist_ok=True)
    dest = workdir / name
    try:
        (client or boto3.client("s3")).download_file(bucket, key, str(dest))
    except (BotoCoreError, ClientError) as e:
        raise GateError(f"could not download the locustfile {value}: {e}") from e
    return dest


PART_WAIT_S = 90.0
"""How long a master waits, beyond the stop timeout, for its workers' parts in S3; a worker its heartbeats
found gone is waited for much less (:data:`loadgen.distributed.GONE_AFTER_S`)."""


def remote_role_from_env(users: int) -> RemoteRole | None:
    """The Fargate task's part from ``RESGATE_LOAD_ROLE`` (see :mod:`resgate.contract.env`): None for one
    process (unset, or a master whose profile asks for 0 workers); ConfigError naming the variable."""
    role = os.environ.get(env_names.ENV_LOAD_ROLE, "").strip()
    if not role:
        return None
    if role not in ROLES:
        raise ConfigError(f"must be one of {', '.join(ROLES)}, got {role!r}", where=env_names.ENV_LOAD_ROLE)
    port = _env_number(env_names.ENV_MASTER_PORT, DEFAULT_MASTER_PORT, int)
    if role == "worker":
        host = os.environ.get(env_names.ENV_MASTER_HOST, "").strip()
        if not host:
            raise ConfigError("is required for a worker", where=env_names.ENV_MASTER_HOST)
        return RemoteRole("worker", host, port)
    workers = _env_number(env_names.ENV_LOAD_WORKERS, 0, int)
    if workers == 0:
        return None
    if not 1 <= workers <= users:
        raise ConfigError(f"must be 0..{users} (the users), got {workers}", where=env_names.ENV_LOAD_WORKERS)
    bind = os.environ.get(env_names.ENV_MASTER_BIND_HOST, "").strip() or "0.0.0.0"  # the task ENI on Fargate
    return RemoteRole("master", bind, port, workers=workers)


def _exchange_parts(
    remote: RemoteRole, result: LocustResult, s3_uri: str, ledger_dir: Path, stop_timeout: int
) -> LocustResult:
    """A worker uploads its parts and row; a master collects every worker's (a worker its heartbeats say
    is gone is waited for only briefly: :func:`loadgen.distributed.collect_worker_parts`) and returns its
    result with the merged ledgers and the rows (:mod:`loadgen.distributed`). GateError when S3 fails."""
    import boto3

    from loadgen import distributed
    from loadgen.upload import node_name

    s3 = boto3.client("s3")
    if remote.role == "worker":
        (row,) = node_rows(ledger_dir, [(node_name(), result.pid, result.exit_code)])
        parts = distributed.worker_part_files(ledger_dir, result.pid)
        distributed.upload_worker_part(parts, row, s3_uri, s3_client=s3)
        print(
            f"loadgen: worker {row['node']}: {row['records']} records, {row['stream_records']} stream "
            f"records, whole: {row['complete'] and row['stream_complete']}",
            file=sys.stderr,
        )
        return result
    started = time.monotonic()
    rows = distributed.collect_worker_parts(
        s3_uri,
        distributed.worker_nodes(remote.workers),
        ledger_dir,
        timeout_s=stop_timeout + PART_WAIT_S,
        s3_client=s3,
        seen=read_seen(ledger_dir),  # final: the master's Locust has ended
    )
    print(f"loadgen: worker parts collected in {time.monotonic() - started:.1f} s", file=sys.stderr)
    for row in rows:
        for reason in dict.fromkeys(r for r in (row.get("reason"), row.get("stream_reason")) if r):
            print(f"loadgen: worker {row['node']}: {reason}", file=sys.stderr)
    merged = merge_ledgers(ledger_dir)
    if part_files(ledger_dir, STREAM_PREFIX):  # the workers' subscribers: the run's stream ledger
        merge_ledgers(ledger_dir, prefix=STREAM_PREFIX)
    return replace(result, ledger_path=merged, ledger_records=count_records(merged), nodes=tuple(rows))


def main(argv: Sequence[str] | None = None) -> int:
    """Container entrypoint: run Locust from the environment, then upload the results when asked.

    Reads ``RESGATE_TARGET_HOST`` (or ``LOCUST_HOST``), ``RESGATE_USERS`` (10), ``RESGATE_SPAWN_RATE``
    (users/s, default = users), ``RESGATE_DURATION_S`` (required), ``RESGATE_STOP_TIMEOUT_S`` (5),
    ``RESGATE_LEDGER_DIR`` (``/tmp/resgate-load``), ``RESGATE_LOCUSTFILE`` (:func:`resolve_locustfile`),
    ``RESGATE_EVIDENCE_S3_URI``, ``RESGATE_LEADER_WATCH`` (:mod:`loadgen.leader_watch`) and the
    ``RESGATE_METRICS_*`` of :mod:`loadgen.live_metrics`. SIGTERM (ECS stopping
    the task) stops the run cleanly and still uploads. Exit codes: 0 done, 2 could not run.
    """
    del argv
    started = time.time()  # the fault schedule counts a fault's at_s from the task's start
    try:
        host = (
            os.environ.get(env_names.ENV_TARGET_HOST, "").strip() or os.environ.get("LOCUST_HOST", "").strip()
        )
        users = _env_number(env_names.ENV_USERS, 10, int)
        spawn_rate = _env_number(env_names.ENV_SPAWN_RATE, float(users))
        duration = _env_number(env_names.ENV_DURATION_S, None)
        stop_timeout = _env_number(env_names.ENV_STOP_TIMEOUT_S, 5, int)
        ledger_dir = Path(os.environ.get(env_names.ENV_LEDGER_DIR, "").strip() or "/tmp/resgate-load")
        s3_uri = os.environ.get(env_names.ENV_EVIDENCE_S3_URI, "").strip()
        locustfile = resolve_locustfile(os.environ.get(env_names.ENV_LOCUSTFILE, ""), ledger_dir.parent)
        remote = remote_role_from_env(users)
        if remote is not None and remote.role == "master" and not s3_uri:
            raise ConfigError(
                "a master collects its workers' parts through S3", where=env_names.ENV_EVIDENCE_S3_URI
            )
        publisher = watcher = None
        if remote is None or remote.role == "master":  # the master's aggregate, never a worker's own
            publisher = live_metrics.publisher_from_env(ledger_dir)  # None unless RESGATE_METRICS_NAMESPACE
            watcher = leader_watch.watcher_from_env(os.environ, ledger_dir, started=started)
        run = run_locust(
            host,
            locustfile=locustfile,
            users=users,
            spawn_rate=spawn_rate,
            duration_s=duration,
            ledger_dir=ledger_dir,
            stop_timeout_s=stop_timeout,
            remote=remote,
        )
    except (ConfigError, GateError) as e:
        print(f"loadgen: {e}", file=sys.stderr)
        return 2

    def _on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    if publisher is not None:
        publisher.start()
    if watcher is not None:
        watcher.start()
    try:
        # A distributed run starts once every worker task has connected (at most the master's wait).
        waits_for_workers = remote.wait_s if remote is not None else 0.0
        result = run.wait(timeout=math.ceil(duration) + stop_timeout + 60 + waits_for_workers)
    except (KeyboardInterrupt, GateError):
        result = run.stop()
    finally:
        if publisher is not None:
            publisher.stop()
        if watcher is not None:  # a watch still observing after the load: its window, at most 30 s more
            watcher.wait(min(WATCH_AFTER_LOAD_S, watcher.remaining_s()))
            watcher.finish()
    if remote is not None and s3_uri:
        try:
            result = _exchange_parts(remote, result, s3_uri, ledger_dir, stop_timeout)
        except GateError as e:
            print(f"loadgen: {e}", file=sys.stderr)
            return 2
        if remote.role == "worker":
            return 0
    print(
        f"loadgen: {result.total_requests} requests, {result.total_failures} failures, "
        f"{result.ledger_records} ledger records, exit code {result.exit_code}",
        file=sys.stderr,
    )
    if s3_uri:
        from loadgen.upload import upload_results

        try:
            keys = upload_results(result, s3_uri)
        except GateError as e:
            print(f"loadgen: upload failed: {e}", file=sys.stderr)
            return 2
        print(f"loadgen: uploaded {len(keys)} objects to {s3_uri}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
