"""The load task's guardrail metrics: what one period of live windows becomes as CloudWatch MetricData."""

from __future__ import annotations

import datetime
import io
from pathlib import Path
from typing import Any

import pytest

from loadgen import live_metrics as lm
from loadgen.ledger import LIVE_PREFIX, LedgerWriter
from loadgen.stats import LiveWindow
from resgate.contract import env as env_names
from resgate.contract.errors import ConfigError

T0 = 1767225600  # 2026-01-01T00:00:00Z, a multiple of 10
TARGET = lm.MetricsTarget(namespace=lm.NAMESPACE, gate="paperbroker", period_s=10)


def write_process(directory: Path, pid: int, requests: dict[int, list[tuple[float, bool]]]) -> None:
    """One Locust process's live lines, built as the plugin does: ``{second offset: [(ms, failed)]}``."""
    window = LiveWindow(pid=pid)
    window.start(T0 - 1)
    for offset, reqs in requests.items():
        for ms, failed in reqs:
            window.add(T0 + offset + 0.5, ms, failed)
    writer = LedgerWriter(directory, prefix=f"{LIVE_PREFIX}", flush_every=1_000_000)
    writer.write_many(window.drain(T0 + 12, final=True))
    writer.flush()


def test_a_period_becomes_its_error_ratio_and_the_p95_of_the_merged_histograms(tmp_path: Path):
    # Process 1: 10 requests a second at 10 ms for the whole period, 2 of them failing in second 5.
    write_process(tmp_path, 1, {s: [(10.0, s == 5 and i < 2) for i in range(10)] for s in range(10)})
    # Process 2: a slow burst, 5 requests at 500 ms in each of seconds 0 and 1; and one request just
    # outside the period on either side, which must not count.
    write_process(tmp_path, 2, {-1: [(900.0, True)], 0: [(500.0, False)] * 5, 1: [(500.0, False)] * 5})
    write_process(tmp_path, 3, {10: [(900.0, True)]})
    data = lm.metric_data(tmp_path, start=T0, target=TARGET)
    common = {
        "Dimensions": [{"Name": "Gate", "Value": "paperbroker"}],
        "Timestamp": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        "StorageResolution": 1,
    }
    # 110 requests, 2 failures; p95 = 105th of 110 samples (100 at 10 ms, 10 at 500 ms) = 500 ms. An
    # average of the per-second p95s would say (2 x 500 + 8 x 10) / 10 = 108 ms.
    assert data == [
        {"MetricName": "Requests", "Value": 110.0, "Unit": "Count", **common},
        {"MetricName": "ErrorRatio", "Value": 2 / 110, "Unit": "None", **common},
        {"MetricName": "LatencyP95", "Value": 500.0, "Unit": "Milliseconds", **common},
    ]


def test_a_period_without_requests_sends_only_the_request_count(tmp_path: Path):
    write_process(tmp_path, 1, {s: [] for s in range(10)})
    data = lm.metric_data(tmp_path, start=T0, target=TARGET)
    assert [(d["MetricName"], d["Value"]) for d in data] == [("Requests", 0.0)]


class FakeCloudWatch:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def put_metric_data(self, **kw: Any) -> None:
        if self.fail:
            raise RuntimeError("throttled")
        self.calls.append(kw)


def test_each_period_is_sent_once_after_it_settled(tmp_path: Path):
    write_process(tmp_path, 1, {s: [(10.0, False)] for s in range(30)})
    client = FakeCloudWatch()
    pub = lm.MetricsPublisher(tmp_path, TARGET, client=client, clock=lambda: T0 + 3.0)
    assert pub.publish_due(T0 + 10.9) == 0  # the period ended at T0+10 but has not settled
    assert pub.publish_due(T0 + 11.0) == 1
    assert pub.publish_due(T0 + 31.0) == 2 and pub.publish_due(T0 + 31.5) == 0
    assert pub.published == [T0, T0 + 10, T0 + 20]
    assert {c["Namespace"] for c in client.calls} == {"ResilienceGate/Load"}


def test_a_failed_put_is_reported_and_the_publisher_goes_on(tmp_path: Path):
    log = io.StringIO()
    pub = lm.MetricsPublisher(tmp_path, TARGET, client=FakeCloudWatch(fail=True), clock=lambda: T0, log=log)
    assert pub.publish_due(T0 + 22) == 2
    assert pub.failures == 2 and pub.published == [] and "throttled" in log.getvalue()


def test_nothing_is_published_unless_the_namespace_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(env_names.ENV_METRICS_NAMESPACE, raising=False)
    assert lm.publisher_from_env(tmp_path) is None
    monkeypatch.setenv(env_names.ENV_METRICS_NAMESPACE, lm.NAMESPACE)
    monkeypatch.setenv(env_names.ENV_METRICS_GATE, "paperbroker")
    monkeypatch.setenv(env_names.ENV_METRICS_PERIOD_S, "15")
    with pytest.raises(ConfigError, match="10, 20, 30"):
        lm.publisher_from_env(tmp_path)
    monkeypatch.setenv(env_names.ENV_METRICS_PERIOD_S, "10")
    pub = lm.publisher_from_env(tmp_path)
    assert pub is not None and pub.target == TARGET


def test_a_stalled_period_after_completed_requests_sends_how_long_the_requests_in_flight_have_waited(
    tmp_path: Path,
):
    """Issue 16: no completed request is not "no data" once the load has been served: the alarm on
    LatencyP95 must see a stall as slow. Before the first completed request nothing is sent (the load
    had not started)."""
    write_process(tmp_path, 1, {s: [(10.0, False)] * 5 for s in range(10)} | {s: [] for s in range(10, 32)})
    client = FakeCloudWatch()
    pub = lm.MetricsPublisher(tmp_path, TARGET, client=client, clock=lambda: T0 - 10.0)
    assert pub.publish_due(T0 + 31.0) == 4
    p95 = [
        next((d["Value"] for d in c["MetricData"] if d["MetricName"] == "LatencyP95"), None)
        for c in client.calls
    ]
    assert p95 == [None, 10.0, 10_000.0, 20_000.0]  # before the load; served; stalled 10 s; 20 s
