"""The whole paperbroker system described as plain data for a supervisor, and its one-time initialisation.

:func:`system_services` describes the services as the gate config's ``target.local.services`` entries
(plain dicts: defaults 2 gateway replicas, 1 matcher, 1 projector; each polled on ``/ready``); the gate
validates them and turns them into its supervisor's specs. Paperbroker is the system under test, so it
imports nothing of the gate but the leaf package ``resgate.contract``.
:func:`init_system` creates what the services expect to exist before they start: the gateway tables, the
matcher's and projectors' tables (when those modules provide ``ensure_schema(conn)``) and the two topics.
:class:`GatewayProcess` runs one gateway replica as a bare subprocess, for tests that SIGKILL it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from paperbroker import db
from paperbroker.bugs import ENV_BUGS, parse_bugs
from paperbroker.config import ENV_DSN, ENV_KAFKA, ENV_TOPIC_PREFIX, topic_names
from paperbroker.events import DEFAULT_PARTITIONS
from resgate.contract.errors import GateError

log = logging.getLogger("paperbroker.system")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HEALTH_PATH = "/ready"
SERVICES = ("gateway", "matcher", "projector")


def service_env(*, dsn: str, bootstrap: str, bugs: str = "", topic_prefix: str = "") -> dict[str, str]:
    """The environment every paperbroker service gets (``PB_DSN``, ``PB_KAFKA_BOOTSTRAP``, ...)."""
    parse_bugs(bugs)  # an unknown bug name is a ConfigError before anything starts
    env = {ENV_DSN: dsn, ENV_KAFKA: bootstrap, ENV_TOPIC_PREFIX: topic_prefix, ENV_BUGS: bugs}
    return env


def system_services(
    *,
    dsn: str,
    bootstrap: str,
    bugs: str = "",
    gateway_replicas: int = 2,
    topic_prefix: str = "",
    python: str = sys.executable,
    extra_env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Return ``[gateway, matcher, projector]`` as gate-config service entries (``gateway_replicas``
    gateways, 1 of each other; the gateway is the one exposed to the load).

    Each is ``{name, command, replicas, env, health_path, restart_delay_s, start_timeout_s, expose}``:
    every replica gets the shared settings in its environment (the supervisor adds ``PORT``) and is healthy
    when ``GET /ready`` answers 2xx. ``extra_env`` (e.g. ``PB_SLOW_START_S``) goes to all of them.
    """
    env = {
        **service_env(dsn=dsn, bootstrap=bootstrap, bugs=bugs, topic_prefix=topic_prefix),
        **(extra_env or {}),
    }
    replicas = {"gateway": gateway_replicas, "matcher": 1, "projector": 1}
    return [
        {
            "name": name,
            "command": [python, "-m", f"paperbroker.{name}"],
            "replicas": replicas[name],
            "env": dict(env),
            "health_path": HEALTH_PATH,
            "restart_delay_s": 1.0,
            "start_timeout_s": 60.0,
            "expose": name == "gateway",
        }
        for name in SERVICES
    ]


def _free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _optional_schema(module: str) -> Any:
    """``module.ensure_schema`` if that module exists and defines it, else None."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        log.info("%s not importable (%s): its schema is left to the service", module, e)
        return None
    return getattr(mod, "ensure_schema", None)


def create_topics(
    bootstrap: str, names: list[str], partitions: int = DEFAULT_PARTITIONS, kafka: Any = None
) -> None:
    """Create the topics (existing ones are left alone).

    Through ``kafka.create_topic`` when given (an ``EmbeddedKafka``/``ExternalKafka``: librdkafka's mock
    cluster names no controller, so the admin API cannot create topics on it), else through the Kafka
    admin API; a failure is a GateError.
    """
    if kafka is not None:
        for name in names:
            kafka.create_topic(name, partitions)
        return
    try:
        asyncio.run(asyncio.wait_for(_admin_create_topics(bootstrap, names, partitions), 30))
    except Exception as e:
        raise GateError(
            f"could not create topics {names} on {bootstrap} through the admin API ({type(e).__name__}: {e});"
            " for the embedded mock cluster pass kafka=<EmbeddedKafka>"
        ) from e


async def _admin_create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def init_system(
    dsn: str,
    bootstrap: str,
    topic_prefix: str = "",
    *,
    partitions: int = DEFAULT_PARTITIONS,
    kafka: Any = None,
) -> dict[str, Any]:
    """Create the gateway schema, the matcher/projector schemas (if provided) and the topics.

    Pass ``kafka`` (the EmbeddedKafka) for the embedded mock cluster; see :func:`create_topics`.

    Idempotent. Returns ``{"topics": [orders, executions], "schemas": [names of modules applied]}``.
    """
    applied = ["paperbroker.gateway"]
    with db.connect(dsn) as conn:
        db.ensure_gateway_schema(conn)
        # the matcher's tables, then the projectors' (``ensure_schema`` lives in projector or projections)
        for candidates in (("paperbroker.matcher",), ("paperbroker.projector", "paperbroker.projections")):
            for module in candidates:
                ensure = _optional_schema(module)
                if ensure is not None:
                    ensure(conn)
                    conn.commit()
                    applied.append(module)
                    break
    topics = list(topic_names(topic_prefix))
    create_topics(bootstrap, topics, partitions, kafka=kafka)
    return {"topics": topics, "schemas": applied}


class GatewayProcess:
    """One gateway replica as a plain subprocess (for tests and benchmarks that want to SIGKILL it).

    ``start()`` spawns ``python -m paperbroker.gateway`` on a free port and, with ``wait``, blocks until
    ``/ready`` (or ``/health`` with ``wait_for="health"``) answers 200. Use as a context manager.
    """

    def __init__(
        self,
        *,
        dsn: str,
        bootstrap: str,
        topic_prefix: str = "",
        bugs: str = "",
        extra_env: dict[str, str] | None = None,
        python: str = sys.executable,
        log_path: str | None = None,
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **service_env(dsn=dsn, bootstrap=bootstrap, bugs=bugs, topic_prefix=topic_prefix),
            "PORT": str(self.port),
            "PB_REPLICA": f"gw-{self.port}",
            **(extra_env or {}),
        }
        self.python = python
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    def start(self, *, wait: bool = True, timeout_s: float = 30.0, wait_for: str = "ready") -> GatewayProcess:
        """Spawn the process (and wait until it answers 200 on ``/<wait_for>``)."""
        self.spawned_at = time.monotonic()
        with contextlib.ExitStack() as stack:
            out: Any = stack.enter_context(open(self.log_path, "ab")) if self.log_path else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                [self.python, "-m", "paperbroker.gateway"],
                env=self.env,
                cwd=str(PROJECT_ROOT),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            try:
                self.wait_until(wait_for, timeout_s)
            except BaseException:
                self.kill()  # do not leave a half-started replica behind
                raise
        return self

    def status(self, path: str = "ready") -> tuple[int, dict[str, Any]]:
        """``(status, json)`` of ``GET /<path>``; ``(0, {})`` when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.url}/{path}", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def wait_until(self, path: str = "ready", timeout_s: float = 30.0) -> float:
        """Block until ``GET /<path>`` is 200; return seconds since spawn (TimeoutError, GateError)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise GateError(f"gateway on port {self.port} exited with {self.proc.returncode}")
            if self.status(path)[0] == 200:
                return time.monotonic() - self.spawned_at
            time.sleep(0.05)
        raise TimeoutError(f"gateway on port {self.port}: /{path} not 200 within {timeout_s}s")

    def kill(self) -> None:
        """SIGKILL the replica (the local ``stop-task``) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> GatewayProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
