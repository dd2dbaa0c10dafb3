"""The bundled traders, and a worker that dies: with ``RESGATE_TEST_KILL_NODE=w2`` the worker of that node
SIGKILLs itself ``RESGATE_TEST_KILL_AFTER_S`` seconds after its test starts (a worker task killed mid-run),
so its ledger part ends at its last flush and it leaves no completion marker."""

from __future__ import annotations

import os
import signal
from typing import Any

import gevent
from locust import events
from locust.runners import WorkerRunner

from loadgen.ledger_plugin import CONFIG
from loadgen.locustfile import TraderUser

__all__ = ["TraderUser"]


@events.test_start.add_listener
def _kill_later(environment: Any, **_kw: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) and CONFIG.node == os.environ.get(
        "RESGATE_TEST_KILL_NODE"
    ):
        after = float(os.environ.get("RESGATE_TEST_KILL_AFTER_S", "2"))
        gevent.spawn_later(after, os.kill, os.getpid(), signal.SIGKILL)
