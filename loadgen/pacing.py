"""The open model's schedule: each user starts its tasks at fixed intended times, and every request is
also timed from its intended start, so a stall cannot hide behind the requests it kept from being sent.

A closed-loop user waits for its answer before it sends again: while the service hangs for 5 s, each user
has one request outstanding and sends nothing else, so the stall is one slow sample per user among
thousands of fast ones (coordinated omission: the worst seconds are sampled least). With
``load.arrival_rate`` (``RESGATE_ARRIVAL_RATE`` requests per second shared by ``RESGATE_USERS`` users)
each user follows a constant-throughput schedule instead, as wrk2 does: its k-th task is *intended* to
start at ``origin + k * interval``; it waits for that moment when it is early and starts at once when it
is late. The ledger records both latencies of a task's first request: ``latency_ms`` from its actual send
(what Locust measures) and ``intended_latency_ms`` from its intended start (``intended_ts``), which
counts the time a stalled service kept the request from being sent, as HdrHistogram's corrected
recording does. Requests a task makes after its first (retries, reads) are sent as soon as the one before
returned, so for them the two are the same.

Standard library only; :class:`Pacer` takes the time as an argument, so the schedule is tested on a
hand-made timeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Pacer:
    """One user's constant-throughput schedule: tasks intended ``interval_s`` apart.

    :meth:`wait` is what Locust's ``wait_time`` returns after each task: the seconds until the next
    intended start (0 when it is already past). The first call fixes the schedule's origin at ``now``.
    :attr:`intended` is the intended start of the task about to run.
    """

    interval_s: float
    intended: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"interval_s must be a finite number > 0, got {self.interval_s!r}")

    def wait(self, now: float) -> float:
        """Advance to the next task's intended start; the seconds to sleep before it (>= 0)."""
        self.intended = (now if self.intended is None else self.intended) + self.interval_s
        return max(0.0, self.intended - now)


def interval_for(rate_per_s: float, users: int) -> float:
    """Seconds between one user's intended starts when ``users`` share ``rate_per_s`` task starts/s."""
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate must be a finite number > 0, got {rate_per_s!r}")
    if users < 1:
        raise ValueError(f"users must be >= 1, got {users!r}")
    return users / rate_per_s


def intended_latency_ms(latency_ms: float, sent_ts: float, intended_ts: float | None) -> float:
    """The latency from the intended start: the send-time latency plus how late the request was sent
    (never less than the send-time latency: a request sent early was not waiting)."""
    if intended_ts is None:
        return latency_ms
    return latency_ms + max(0.0, sent_ts - intended_ts) * 1000.0
