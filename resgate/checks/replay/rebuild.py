"""Running one rebuild of read models into a shadow schema: in-process, as a command, or as an ECS task.

A rebuild is a :class:`RebuildJob` (the spec, the database, the shadow schema, the topics' end offsets and
how to reach the brokers). :func:`run_rebuild` picks how it runs: a callable in a worker thread, a command
as a subprocess, or — for a spec with an ``ecs_task`` — the injected :data:`RebuildRunner`. On AWS that
runner is the replay Lambda's ECS runner (``lambdas.replay.ecs_rebuild``), which starts the task
definition the config names in the target's own image and waits for it; locally
:func:`run_container_locally` runs the task's container command as a subprocess with the same
environment. Every failure or timeout raises :class:`GateError` with the reason (the checker's unknown).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import psycopg

from resgate.checks.identifiers import EndOffsets
from resgate.checks.replay.config import RebuildFn, RebuildSpec
from resgate.contract.env import (
    ENV_KAFKA_BOOTSTRAP,
    ENV_KAFKA_CA_FILE,
    ENV_KAFKA_REGION,
    ENV_KAFKA_SASL_MECHANISM,
    ENV_KAFKA_SECURITY_PROTOCOL,
    ENV_REPLAY_DSN,
    ENV_REPLAY_END_OFFSETS,
    ENV_REPLAY_SCHEMA,
)
from resgate.contract.errors import ConfigError, GateError
from resgate.sections.kafka import KafkaSettings

# How a rebuild command or task learns the brokers' security settings (resgate.sections.kafka fields).
KAFKA_ENV: Mapping[str, str] = {
    "security_protocol": ENV_KAFKA_SECURITY_PROTOCOL,
    "sasl_mechanism": ENV_KAFKA_SASL_MECHANISM,
    "region": ENV_KAFKA_REGION,
    "ca_file": ENV_KAFKA_CA_FILE,
}
# A failed command's error ends with this much of its stderr.
OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class RebuildJob:
    """One rebuild: ``spec`` run against ``dsn`` into ``schema``, each partition read up to
    ``end_offsets``, the brokers at ``bootstrap`` reached with ``kafka``."""

    spec: RebuildSpec
    dsn: str
    schema: str
    end_offsets: EndOffsets
    bootstrap: str
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    def env(self) -> dict[str, str]:
        """The replay environment of a command or task: ``RESGATE_REPLAY_DSN``, ``_SCHEMA``,
        ``_END_OFFSETS`` (JSON ``{topic: {"partition": end}}``), ``RESGATE_KAFKA_BOOTSTRAP``, the
        ``RESGATE_KAFKA_*`` settings that are set, then the spec's own ``env``."""
        out = {
            ENV_REPLAY_DSN: self.dsn,
            ENV_REPLAY_SCHEMA: self.schema,
            ENV_REPLAY_END_OFFSETS: json.dumps(
                {t: {str(p): o for p, o in ps.items()} for t, ps in self.end_offsets.items()}
            ),
            ENV_KAFKA_BOOTSTRAP: self.bootstrap,
            **self.kafka.to_env(KAFKA_ENV),
        }
        out.update(dict(self.spec.env))
        return out


RebuildRunner = Callable[[RebuildJob], None]
"""Runs a job's ``ecs_task``; returns when the rebuild is done, raises GateError when it failed."""


def run_rebuild(job: RebuildJob, fn: RebuildFn | None, runner: RebuildRunner | None) -> None:
    """Run ``job``: through ``runner`` when the spec has an ``ecs_task`` and a runner is given; else the
    imported callable ``fn``, else the spec's command, else the ECS task's command locally."""
    spec = job.spec
    if spec.ecs_task is not None and (runner is not None or not spec.local):
        (runner or run_container_locally)(job)
    elif fn is not None:
        run_callable(fn, job)
    elif spec.command is not None:
        run_command(spec.command, job.env(), spec.cwd, spec.timeout_s)
    else:
        raise ConfigError("the rebuild callable was not imported", where="replay.rebuild.callable")


def run_callable(fn: RebuildFn, job: RebuildJob) -> None:
    """Call ``fn`` in a worker thread with its own connection; GateError on failure or timeout."""
    timeout_s = job.spec.timeout_s
    conn = psycopg.connect(job.dsn)
    box: dict[str, BaseException] = {}

    def work() -> None:
        try:
            fn(conn, job.schema, job.end_offsets, bootstrap=job.bootstrap)
            if not conn.closed:
                conn.commit()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=work, name="resgate-replay-rebuild", daemon=True)
    t.start()
    t.join(timeout_s)
    try:
        if t.is_alive():
            conn.cancel()  # aborts its running statement; the thread ends at its next database call
            t.join(10)
            raise GateError(f"the rebuild did not finish within {timeout_s:.0f}s")
        if "error" in box:
            e = box["error"]
            raise GateError(f"the rebuild failed: {type(e).__name__}: {e}") from e
    finally:
        conn.close()


def run_container_locally(job: RebuildJob) -> None:
    """The local stand-in for an ECS task: its container ``command`` as a subprocess with the task's
    environment (the target's own code, as its image would run it)."""
    task = job.spec.ecs_task
    assert task is not None
    if task.command is None:
        raise ConfigError(
            "is needed to run the ECS task's rebuild locally (what the container runs)",
            where="replay.rebuild.ecs_task.command",
        )
    run_command(task.command, job.env(), job.spec.cwd, job.spec.timeout_s)


def run_command(
    command: Sequence[str], extra_env: Mapping[str, str], cwd: str | None, timeout_s: float
) -> None:
    """Run ``command`` with ``extra_env`` over this process's environment; GateError on a non-zero exit
    (with the tail of its stderr) or after ``timeout_s`` (the command and its children are killed)."""
    env = dict(os.environ)
    env.update(extra_env)
    argv = list(command)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        except OSError as e:
            raise GateError(f"the rebuild command {argv} could not start: {e}") from e
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # the command runs in its own session: stop it and anything it started
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
            raise GateError(f"the rebuild command {argv} did not finish within {timeout_s:.0f}s") from None
        if rc != 0:
            err.seek(0, os.SEEK_END)
            size = err.tell()
            err.seek(max(0, size - OUTPUT_TAIL))
            tail = err.read().decode("utf-8", errors="replace").strip()
            raise GateError(f"the rebuild command {argv} exited with {rc}: {tail or '(no output)'}")
