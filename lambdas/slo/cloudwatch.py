"""SLO evidence from an Application Load Balancer's CloudWatch metrics instead of Locust's stats.

What is read (``AWS/ApplicationELB``, dimension ``LoadBalancer`` and, if given, ``TargetGroup``), with one
``get_metric_statistics`` period spanning the whole load window:

- ``TargetResponseTime`` with ``ExtendedStatistics`` ``p50, p95, p99, p100`` (seconds → ms);
- ``RequestCount`` (Sum): requests that reached a target, i.e. the timed requests;
- ``HTTPCode_Target_5XX_Count`` (Sum): failures returned by the targets;
- ``HTTPCode_ELB_5XX_Count`` (Sum, load balancer level): failures the load balancer produced itself (no
  healthy target, 502/503/504). They carry no target response time, so they count as requests without a
  time (Locust's ``num_none_requests``) and as failures. Some may already be in ``RequestCount``; counting
  them twice can only make the error ratio worse, never better.

**The percentiles are computed by CloudWatch, server-side, over every sample of the period: they are
already merged.** The checker reads percentiles from histograms, so each period becomes a small synthetic
histogram whose nearest-rank p50/p95/p99 are exactly CloudWatch's figures: with ``N`` timed requests it
holds ``ceil(0.50N)`` samples at p50, up to ``ceil(0.95N)`` at p95, up to ``ceil(0.99N)`` at p99 and the
rest at p100 (the maximum). With the single whole-window period the checker's overall percentiles are
CloudWatch's. Should CloudWatch split the window into several periods (alignment), their histograms are
merged — an approximation, logged, but never an average of percentiles.

Regression mode needs per-window samples: those are the p95 of each 60 s period (the finest ALB metrics),
so the Mann-Whitney windows are 60 s here instead of the ledger's ``window_s``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.common.aws import event_time
from resgate.checks.slo import SloEvidence
from resgate.contract.errors import ConfigError, EvidenceMissing, GateError

NAMESPACE = "AWS/ApplicationELB"
PERCENTILES = (("p50", 50), ("p95", 95), ("p99", 99), ("p100", 100))
SAMPLE_PERIOD_S = 60


def _time(v: Any, where: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(event_time(v, where), dt.UTC)


def _name(d: Mapping[str, Any], key: str, where: str, *, required: bool) -> str | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        raise ConfigError(f"must be a non-empty string, got {v!r}", where=f"{where}.{key}")
    return v


@dataclass(frozen=True)
class CloudWatchSource:
    """Which load balancer (and target group) to read, over which window, under which endpoint name."""

    load_balancer: str
    start: dt.datetime
    end: dt.datetime
    target_group: str | None = None
    endpoint: str = "alb"
    namespace: str = NAMESPACE

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "event.cloudwatch") -> CloudWatchSource:
        """Validate ``{load_balancer, start, end, target_group?, endpoint?, namespace?}``."""
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object (the source is cloudwatch)", where=where)
        unknown = set(d) - {"load_balancer", "start", "end", "target_group", "endpoint", "namespace"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        start, end = _time(d.get("start"), f"{where}.start"), _time(d.get("end"), f"{where}.end")
        if end <= start:
            raise ConfigError(f"must be after start ({start.isoformat()})", where=f"{where}.end")
        return cls(
            load_balancer=_name(d, "load_balancer", where, required=True),  # type: ignore[arg-type]
            start=start,
            end=end,
            target_group=_name(d, "target_group", where, required=False),
            endpoint=_name(d, "endpoint", where, required=False) or "alb",
            namespace=_name(d, "namespace", where, required=False) or NAMESPACE,
        )

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def dimensions(self, *, lb_only: bool = False) -> list[dict[str, str]]:
        dims = [{"Name": "LoadBalancer", "Value": self.load_balancer}]
        if self.target_group and not lb_only:
            dims.append({"Name": "TargetGroup", "Value": self.target_group})
        return dims

    def window(self) -> tuple[dt.datetime, dt.datetime, int]:
        """Start rounded down and end rounded up to the minute, and one period (a multiple of 60 s) that
        spans them."""
        start = self.start.replace(second=0, microsecond=0)
        end = self.end.replace(second=0, microsecond=0)
        if end < self.end:
            end += dt.timedelta(minutes=1)
        period = max(60, math.ceil((end - start).total_seconds() / 60) * 60)
        return start, end, period


def synthetic_histogram(n: int, percentiles_ms: Mapping[str, float]) -> dict[float, int]:
    """A ``{ms: count}`` histogram of ``n`` samples whose nearest-rank p50/p95/p99 are the given ones.

    ``percentiles_ms`` holds ``p50, p95, p99`` and optionally ``p100``; values are made non-decreasing.
    """
    if n <= 0:
        return {}
    hist: dict[float, int] = {}
    placed = 0
    floor = 0.0
    for key, p in PERCENTILES:
        value = percentiles_ms.get(key)
        if value is None:
            value = percentiles_ms["p99"] if key == "p100" else None
        if value is None:
            raise EvidenceMissing(f"CloudWatch returned no {key} of TargetResponseTime")
        floor = max(floor, float(value))
        rank = n if p == 100 else max(1, math.ceil(Fraction(p) * n / 100))
        if rank > placed:
            hist[floor] = hist.get(floor, 0) + rank - placed
            placed = rank
    return hist


class CloudWatchReader:
    """Fetches the ALB figures of a :class:`CloudWatchSource` and builds the SLO checker's evidence."""

    def __init__(self, client: Any, logger: Any = None) -> None:
        self.cw = client
        self.logger = logger

    def _get(
        self, src: CloudWatchSource, metric: str, period: int, *, lb_only: bool = False, **stats: Any
    ) -> list:
        start, end, _ = src.window()
        try:
            out = self.cw.get_metric_statistics(
                Namespace=src.namespace,
                MetricName=metric,
                Dimensions=src.dimensions(lb_only=lb_only),
                StartTime=start,
                EndTime=end,
                Period=period,
                **stats,
            )
        except (ClientError, BotoCoreError) as e:
            raise GateError(f"could not read CloudWatch metric {src.namespace}/{metric}: {e}") from e
        return sorted(out.get("Datapoints", []), key=lambda p: p["Timestamp"])

    def _sums(
        self, src: CloudWatchSource, metric: str, period: int, *, lb_only: bool = False
    ) -> dict[Any, float]:
        return {
            p["Timestamp"]: float(p.get("Sum") or 0.0)
            for p in self._get(src, metric, period, lb_only=lb_only, Statistics=["Sum"])
        }

    def _percentiles(self, src: CloudWatchSource, period: int) -> dict[Any, dict[str, float]]:
        points = self._get(src, "TargetResponseTime", period, ExtendedStatistics=[k for k, _ in PERCENTILES])
        out: dict[Any, dict[str, float]] = {}
        for p in points:
            ext = p.get("ExtendedStatistics") or {}
            # TargetResponseTime is in seconds; the checker works in milliseconds.
            out[p["Timestamp"]] = {k: round(float(v) * 1000.0, 3) for k, v in ext.items() if v is not None}
        return out

    def evidence(self, src: CloudWatchSource, *, with_samples: bool = False) -> SloEvidence:
        """The run's :class:`SloEvidence`: one endpoint (``src.endpoint``) built as the module docstring
        says, ``duration_s`` the window length, and ``samples`` (per-60 s p95) when ``with_samples``."""
        _, _, period = src.window()
        requests = self._sums(src, "RequestCount", period)
        target_5xx = sum(self._sums(src, "HTTPCode_Target_5XX_Count", period).values())
        elb_5xx = int(sum(self._sums(src, "HTTPCode_ELB_5XX_Count", period, lb_only=True).values()))
        timed = sum(int(n) for n in requests.values() if n > 0)
        hist: dict[float, int] = {}
        if timed:
            pct = self._percentiles(src, period)
            if len(pct) > 1 and self.logger is not None:
                self.logger.warning(
                    "CloudWatch split the window into several periods; merging their histograms",
                    extra={"periods": len(pct)},
                )
            for ts, n in requests.items():
                if n <= 0:
                    continue
                if ts not in pct:
                    raise EvidenceMissing(
                        f"CloudWatch has RequestCount but no TargetResponseTime percentiles at {ts}"
                    )
                for ms, c in synthetic_histogram(int(n), pct[ts]).items():
                    hist[ms] = hist.get(ms, 0) + c
        total = timed + elb_5xx
        failures = min(total, int(target_5xx) + elb_5xx)
        entry = {
            "name": src.endpoint,
            "method": "",
            "num_requests": total,
            "num_failures": failures,
            "num_none_requests": elb_5xx,
            "response_times": hist,
            "start_time": src.start.timestamp(),
            "last_request_timestamp": src.end.timestamp(),
        }
        samples = None
        if with_samples:
            by_minute = self._percentiles(src, SAMPLE_PERIOD_S)
            samples = [v["p95"] for _, v in sorted(by_minute.items()) if "p95" in v]
        # Through the checker's own parser, so CloudWatch figures meet the same rules as Locust's.
        return SloEvidence.from_dict(
            {"stats": [entry], "duration_s": src.duration_s, "samples": samples}, where="cloudwatch"
        )
