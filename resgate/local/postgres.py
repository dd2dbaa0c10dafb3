"""Embedded PostgreSQL: a throwaway cluster from the machine's server binaries, or an existing server.

``EmbeddedPostgres`` runs ``initdb`` + ``pg_ctl`` on a free 127.0.0.1 port in a temp dir and removes it all
on exit (also on Ctrl-C: the context manager's ``__exit__`` and an ``atexit`` hook both stop it). Postgres
refuses to run as root, so as root the server runs as the ``postgres`` system user in a directory that
user owns. When ``RESGATE_PG_DSN`` is set, :func:`postgres_from_env` returns that server and starts nothing.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from resgate.contract.env import ENV_PG_BIN, ENV_PG_DSN
from resgate.contract.errors import DependencyMissing, GateError
from resgate.local.ports import free_port

_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under "
    "/usr/lib/postgresql/*/bin. Install them (apt-get install postgresql) or point the gate at an existing "
    f"server with {ENV_PG_DSN}=postgresql://user@host:port/db"
)

_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # fsync off: only an OS crash could lose data, and none is simulated. synchronous_commit stays ON: a
    # db_blip stops the server like a crash (immediate mode), and with it off Postgres would forget
    # transactions it had already confirmed — the gate would then blame the target for the harness.
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "256MB",
    "unix_socket_permissions": "0777",
    "log_min_messages": "warning",
}


# Runs in a tiny child: when the gate process dies without cleaning up (SIGKILL), stdin reaches EOF and
# the watchdog stops the server and removes its directory, so no postgres is ever left behind.
_WATCHDOG = """
import os, shutil, subprocess, sys
cmd, data_dir, base_dir = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
sys.stdin.read()
if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
    subprocess.run(cmd, capture_output=True, timeout=30)
shutil.rmtree(base_dir, ignore_errors=True)
"""


def find_pg_bin() -> Path:
    """Return the directory holding ``pg_ctl``/``initdb``; raise DependencyMissing with an install hint."""
    override = os.environ.get(ENV_PG_BIN)
    candidates: list[str] = []
    if override:
        candidates.append(override)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        p = Path(c)
        if (p / "pg_ctl").exists() and (p / "initdb").exists() and (p / "postgres").exists():
            return p
    raise DependencyMissing(_INSTALL_HINT)


@dataclass
class ExternalPostgres:
    """An existing server named by a DSN; start/stop are not available (it is not ours to stop)."""

    dsn: str

    def __enter__(self) -> ExternalPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def controllable(self) -> bool:
        return False

    def stop(self) -> None:
        raise GateError(f"cannot stop an external Postgres server ({ENV_PG_DSN} is set)")

    def start(self) -> None:
        raise GateError(f"cannot start an external Postgres server ({ENV_PG_DSN} is set)")


class EmbeddedPostgres:
    """A throwaway Postgres cluster on 127.0.0.1.

    Attributes once started: ``port``, ``dsn`` (``postgresql://postgres@127.0.0.1:<port>/postgres``),
    ``data_dir``. ``stop()``/``start()`` stop and restart the same cluster (a database outage);
    ``close()`` stops it and removes the directory.
    """

    def __init__(self, *, port: int | None = None, start_timeout_s: float = 30.0) -> None:
        self.bin = find_pg_bin()
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.base_dir = Path(tempfile.mkdtemp(prefix="resgate-pg-"))
        self.data_dir = self.base_dir / "data"
        self.sock_dir = self.base_dir / "sock"
        self.log_file = self.base_dir / "server.log"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None
        self._initialised = False
        self._running = False
        self._closed = False
        self._watchdog: subprocess.Popen[bytes] | None = None

    @property
    def controllable(self) -> bool:
        return True

    def __enter__(self) -> EmbeddedPostgres:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cmd(self, *args: str) -> list[str]:
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise GateError(
                f"{Path(args[0]).name} failed with exit code {proc.returncode}: "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )

    def open(self) -> None:
        """Initialise the cluster (once) and start the server; wait until it accepts connections."""
        if not self._initialised:
            self.sock_dir.mkdir(parents=True)
            if self._run_as:
                pw = pwd.getpwnam(self._run_as)
                for p in (self.base_dir, self.sock_dir):
                    os.chown(p, pw.pw_uid, pw.pw_gid)
                os.chmod(self.base_dir, 0o755)
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                for k, v in _SERVER_SETTINGS.items():
                    conf.write(f"{k} = {v}\n")
                conf.write(f"port = {self.port}\nunix_socket_directories = '{self.sock_dir}'\n")
            self._initialised = True
            atexit.register(self.close)
            stop_cmd = self._cmd(
                str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"
            )
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, *stop_cmd, str(self.data_dir), str(self.base_dir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.start()

    def start(self) -> None:
        """Start the (already initialised) server and wait until it accepts connections."""
        if self._running:
            return
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(self.start_timeout_s)),
            "start",
        )
        self._running = True
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError as e:
                last = e
                time.sleep(0.1)
        raise GateError(f"embedded Postgres did not accept connections on port {self.port}: {last}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (keeps the data; ``start()`` brings it back). ``mode``: smart|fast|immediate."""
        if not self._running:
            return
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")
        self._running = False

    def close(self) -> None:
        """Stop the server and delete its directory. Safe to call more than once."""
        if self._closed:
            return
        try:
            if self._running:
                try:
                    self.stop("immediate")
                except Exception:
                    self._kill_by_pidfile()
        finally:
            self._closed = True
            shutil.rmtree(self.base_dir, ignore_errors=True)
            if self._watchdog is not None and self._watchdog.stdin is not None:
                self._watchdog.stdin.close()
                try:
                    self._watchdog.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._watchdog.kill()

    def _kill_by_pidfile(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 9)
        except (OSError, ValueError, IndexError):
            pass
        self._running = False


def postgres_from_env() -> EmbeddedPostgres | ExternalPostgres:
    """The server named by ``RESGATE_PG_DSN`` if set, else a new (not yet started) embedded cluster."""
    dsn = os.environ.get(ENV_PG_DSN)
    if dsn:
        return ExternalPostgres(dsn)
    return EmbeddedPostgres()


def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_dsn``; return the DSN of the new database."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_dbname(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` (terminating its sessions first)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_dbname(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)
