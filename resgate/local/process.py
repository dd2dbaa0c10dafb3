"""Child-process plumbing for the local supervisor: spawning in a process group, signals, reaping, probes.

Every child is the leader of its own session (process group), so a signal to the group reaches what the
child started too. No orphans: children get ``PR_SET_PDEATHSIG=SIGKILL``, and a tiny :class:`Guardian`
process SIGKILLs every registered group when the spawning process dies, however it dies (this also
catches grandchildren, which do not inherit the death signal). Child stdout and stderr go to a log file.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _make_preexec(parent_pid: int) -> Callable[[], None]:
    """Return the preexec_fn for a child: die with SIGKILL when the spawning thread's process dies."""

    def _preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
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


class Guardian:
    """A tiny process that SIGKILLs every registered process group when its stdin pipe closes.

    The pipe's write end lives only in this process, so the guardian sees EOF when this process exits for
    any reason (including SIGKILL), and then kills the registered groups, grandchildren included.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Spawn the guardian (OSError when it cannot be started)."""
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
        """Have the group ``pgid`` killed if this process dies."""
        self._send(f"+{pgid}\n")

    def unregister(self, pgid: int) -> None:
        """Forget the group ``pgid`` (it was reaped)."""
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """End the guardian (it kills the groups still registered). Idempotent."""
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


def spawn_group(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    log_path: Path,
    banner: str,
) -> subprocess.Popen[bytes]:
    """Start ``command`` as the leader of a new session with ``env`` on top of this process's environment.

    ``banner`` is written to the log file first; stdout and stderr are appended after it. The child dies
    with SIGKILL when the calling thread's process dies. Returns the Popen (its pid is the group id).
    """
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env.update(env)
    with open(log_path, "ab") as log:
        log.write(f"{banner}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(command),
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_make_preexec(os.getpid()),  # only prctl + getppid
        )


def exited(proc: subprocess.Popen[bytes]) -> bool:
    """True when the child has exited; it is left a zombie (not reaped) so its group id stays ours."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False when it no longer exists or is not ours."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def reap_group(proc: subprocess.Popen[bytes]) -> int | None:
    """Kill what is left of the child's group (resuming it first, in case it was stopped) and reap the child.

    Returns its return code (negative: the signal that ended it), None if it did not end within 5 s.
    """
    # The leader is a zombie (or alive): the group id is still ours, so clean up what is left of the task.
    signal_group(proc.pid, signal.SIGCONT)
    signal_group(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - uninterruptible sleep
        return None


def terminate_groups(procs: Sequence[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGCONT + SIGTERM every group, then wait up to ``grace_s`` for the leaders to exit (not reaped)."""
    for proc in procs:
        signal_group(proc.pid, signal.SIGCONT)
        signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    pending = list(procs)
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if not exited(p)]
        if pending:
            time.sleep(0.02)


def http_probe(host: str, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
    """One HTTP GET; returns (2xx?, short reason such as ``"HTTP 503"`` or ``"ConnectionRefusedError"``)."""
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
