"""The one allocator of free 127.0.0.1 TCP ports for the local mode (replicas, embedded Postgres, tests).

A port handed out is reserved in this process until :func:`release_port`, so two local services never get
the same port even while one of them is between allocation and bind, or down for a fault (a Postgres blip
restarts the server on its old port). Ports are drawn below the kernel's ephemeral range when there is
room, so that the many outgoing connections of a load test cannot grab a service's port in that window.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

from resgate.contract.errors import GateError

_LOW_PORT = 20000
_LOCK = threading.Lock()
_RESERVED: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))  # no SO_REUSEADDR: a port in TIME_WAIT counts as taken
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port free on ``host`` right now, reserved in this process until :func:`release_port`.

    Raises GateError when no free port is found.
    """
    eph_lo, _ = _ephemeral_range()
    low, high = _LOW_PORT, eph_lo - 1
    with _LOCK:
        if high - low >= 1000:
            for _ in range(200):
                port = random.randint(low, high)
                if port not in _RESERVED and _bindable(host, port):
                    _RESERVED.add(port)
                    return port
        for _ in range(50):  # no room below the ephemeral range: let the kernel pick
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _RESERVED:
                _RESERVED.add(port)
                return port
    raise GateError(f"could not find a free port on {host}")


def release_port(port: int | None) -> None:
    """Forget a port reserved by :func:`free_port` (None is ignored)."""
    if port is not None:
        with _LOCK:
            _RESERVED.discard(port)
