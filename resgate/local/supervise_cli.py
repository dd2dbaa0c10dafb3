"""Command line for the local supervisor: run one service's replicas in the foreground, events as JSON lines.

``python -m resgate.local.supervise_cli --name echo --replicas 2 -- <command...>`` starts the replicas with
health checks and restarts, prints each timeline event as one JSON line on stdout, and shuts everything down
on SIGTERM, SIGINT or SIGHUP. Exit code 0, or 2 for bad arguments or when the replicas cannot be started.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from resgate.contract.errors import ConfigError, GateError
from resgate.local.spec import ServiceSpec
from resgate.local.supervisor import Supervisor


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
        prog="python -m resgate.local.supervise_cli",
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
