"""The load's own guardrail metrics on AWS: error ratio and p95 of every 10 s, as high-resolution metrics.

The FIS experiments' stop conditions are CloudWatch alarms, and an alarm can only act on what CloudWatch
has: the target's load balancer metrics come once a minute, too late for a fault that lasts seconds. So
the load task publishes what the local guardrail watcher judges (``resgate.runner.guardrails``): for each
period (10 s, aligned to the clock) the error ratio and the p95 of the requests that completed in it,
read from the Locust processes' live files (``loadgen.stats``: one line per process and second with its
latency histogram). The p95 comes from the *merged* histograms of every process and second of the period,
never from an average of per-second percentiles. A period in which no request completed, after one in
which some did, is a stall, not a quiet period: its ``LatencyP95`` is how long the requests in flight have
waited at least (since the end of the last period with a completed request), so the latency alarm sees a
stalled target as slow, as the local watcher does, instead of missing data. Each period is sent once it has
settled (every process
has written its lines), with ``PutMetricData`` and ``StorageResolution=1``, timestamped at its start, so a
period's datapoint is the alarm's period of the same name.

The names below are the one place the namespace, the metric names and the dimension are spelt; the CDK
app reads them from here (``infra.constants``) for the alarms and for the task role's
``cloudwatch:namespace`` condition. Publishing is enabled by ``RESGATE_METRICS_NAMESPACE`` (the Fargate
task definition sets it, with the gate's name in ``RESGATE_METRICS_GATE``); locally nothing is published.
A failed ``PutMetricData`` is reported on stderr and never stops the load.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from loadgen.stats import live_figures
from resgate.contract.env import ENV_METRICS_GATE, ENV_METRICS_NAMESPACE, ENV_METRICS_PERIOD_S
from resgate.contract.errors import ConfigError

NAMESPACE = "ResilienceGate/Load"
DIMENSION_GATE = "Gate"
METRIC_ERROR_RATIO = "ErrorRatio"
METRIC_P95 = "LatencyP95"
METRIC_REQUESTS = "Requests"
DEFAULT_PERIOD_S = 10
SETTLE_S = 1
"""Seconds a period is left to settle after its end: each process writes its live line once a second."""
VALID_PERIODS_S = (10, 20, 30)
"""Periods of a high-resolution alarm besides multiples of 60 (CloudWatch's ``PutMetricAlarm.Period``)."""

# Read by the container entrypoint only; they name the publisher's settings, kept with it because the
# load image carries nothing of the gate but ``resgate.contract``.


@dataclass(frozen=True)
class MetricsTarget:
    """Where the metrics go: ``namespace``, the ``gate`` dimension's value, and the ``period_s``."""

    namespace: str
    gate: str
    period_s: int = DEFAULT_PERIOD_S

    def __post_init__(self) -> None:
        if not self.namespace or self.namespace.startswith("AWS/"):
            raise ConfigError(
                f"must be a custom namespace, got {self.namespace!r}", where=ENV_METRICS_NAMESPACE
            )
        if not self.gate:
            raise ConfigError("is required when metrics are published", where=ENV_METRICS_GATE)
        p = self.period_s
        if (
            isinstance(p, bool)
            or not isinstance(p, int)
            or not (p in VALID_PERIODS_S or (p > 0 and p % 60 == 0))
        ):
            raise ConfigError(
                f"must be 10, 20, 30 or a multiple of 60, got {p!r}", where=ENV_METRICS_PERIOD_S
            )


def period_start(now: float, period_s: int) -> int:
    """The start (epoch s, a multiple of ``period_s``) of the period that contains ``now``."""
    return int(math.floor(now / period_s) * period_s)


def settled_at(start: int, period_s: int) -> int:
    """When the period starting at ``start`` has settled: its end plus :data:`SETTLE_S` (the window
    :func:`loadgen.stats.live_figures` reads at that moment is exactly the period)."""
    return start + period_s + SETTLE_S


def metric_data(
    directory: str | os.PathLike[str],
    *,
    start: int,
    target: MetricsTarget,
    stalled_since: float | None = None,
) -> list[dict[str, Any]]:
    """The ``MetricData`` of the period ``[start, start + period_s)`` from the live files in ``directory``.

    Returns ``Requests`` (count, always), ``ErrorRatio`` (failures / requests, only when there were
    requests) and ``LatencyP95`` (ms, nearest rank over the merged histograms when there were requests;
    with none, the stall ``start + period_s - stalled_since`` when ``stalled_since`` is given: the end of
    the last period in which a request completed), each with the ``Gate`` dimension, timestamped at
    ``start``, with ``StorageResolution`` 1.
    """
    f = live_figures(
        directory, window_s=target.period_s, now=settled_at(start, target.period_s), settle_s=SETTLE_S
    )
    assert f["ts_from"] == start, (f["ts_from"], start)  # live_figures' window is exactly this period
    common = {
        "Dimensions": [{"Name": DIMENSION_GATE, "Value": target.gate}],
        "Timestamp": datetime.datetime.fromtimestamp(start, datetime.UTC),
        "StorageResolution": 1,
    }
    data = [{"MetricName": METRIC_REQUESTS, "Value": float(f["requests"]), "Unit": "Count", **common}]
    if f["requests"]:
        data.append(
            {"MetricName": METRIC_ERROR_RATIO, "Value": float(f["error_ratio"]), "Unit": "None", **common}
        )
    p95 = f["p95_ms"]
    if not f["requests"] and stalled_since is not None:
        p95 = max(0.0, start + target.period_s - stalled_since) * 1000.0
    if p95 is not None:
        data.append({"MetricName": METRIC_P95, "Value": float(p95), "Unit": "Milliseconds", **common})
    return data


class MetricsPublisher:
    """Publishes every settled period of the live files in ``directory`` to ``target`` (a thread).

    :meth:`publish_due` does the work for a given time (tests call it directly); :meth:`start` runs it
    about twice a second in a daemon thread, :meth:`stop` ends the thread and publishes what has settled.
    The first period is the one that contains the moment the publisher was created.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        target: MetricsTarget,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        log: TextIO | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.target = target
        self.client = client
        self.clock = clock
        self.log = log if log is not None else sys.stderr
        self.next_start = period_start(clock(), target.period_s)
        self.published: list[int] = []
        self.failures = 0
        self.last_completed: float | None = None
        """End of the last period in which a request completed (None before the load's first one)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish_due(self, now: float) -> int:
        """Publish every period that has settled by ``now`` and not been published; returns how many."""
        n = 0
        while settled_at(self.next_start, self.target.period_s) <= now:
            start = self.next_start
            self.next_start += self.target.period_s
            self._put(start)
            n += 1
        return n

    def _put(self, start: int) -> None:
        if self.client is None:
            import boto3  # only in the load image on AWS; locally nothing is published

            self.client = boto3.client("cloudwatch")
        data = metric_data(self.directory, start=start, target=self.target, stalled_since=self.last_completed)
        if data[0]["Value"]:  # Requests
            self.last_completed = start + self.target.period_s
        try:
            self.client.put_metric_data(Namespace=self.target.namespace, MetricData=data)
        except Exception as e:  # boto's errors vary by cause; a lost datapoint must not stop the load
            self.failures += 1
            print(f"loadgen: PutMetricData of the period at {start} failed: {e}", file=self.log)
            return
        self.published.append(start)

    def start(self) -> None:
        """Run :meth:`publish_due` in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="live-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.publish_due(self.clock())

    def stop(self) -> None:
        """End the thread, then publish the periods that have settled (the run's last, partial one is not)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.publish_due(self.clock())


def publisher_from_env(directory: str | os.PathLike[str]) -> MetricsPublisher | None:
    """A publisher configured from ``RESGATE_METRICS_*``, or None when ``RESGATE_METRICS_NAMESPACE`` is
    unset (local runs). Raises :class:`ConfigError` for a bad gate or period."""
    namespace = os.environ.get(ENV_METRICS_NAMESPACE, "").strip()
    if not namespace:
        return None
    raw = os.environ.get(ENV_METRICS_PERIOD_S, "").strip() or str(DEFAULT_PERIOD_S)
    try:
        period = int(raw)
    except ValueError:
        raise ConfigError(
            f"must be a whole number of seconds, got {raw!r}", where=ENV_METRICS_PERIOD_S
        ) from None
    target = MetricsTarget(
        namespace=namespace, gate=os.environ.get(ENV_METRICS_GATE, "").strip(), period_s=period
    )
    return MetricsPublisher(directory, target)
