"""The load task's guardrail metrics really land in CloudWatch (moto): what the alarms would read."""

from __future__ import annotations

import datetime
from pathlib import Path

import boto3

from loadgen import live_metrics as lm
from loadgen.ledger import LIVE_PREFIX, LedgerWriter
from loadgen.stats import LiveWindow

T0 = 1767225600  # 2026-01-01T00:00:00Z


def test_put_metric_data_lands_the_error_ratio_and_p95_of_each_period(tmp_path: Path):
    window = LiveWindow(pid=7)
    for s in range(20):
        for i in range(10):  # second period: half the requests fail and are slow
            bad = s >= 10 and i < 5
            window.add(T0 + s + 0.5, 2000.0 if bad else 20.0, bad)
    writer = LedgerWriter(tmp_path, prefix=LIVE_PREFIX, flush_every=1_000_000)
    writer.write_many(window.drain(T0 + 22, final=True))
    writer.flush()
    client = boto3.client("cloudwatch", region_name="us-east-1")
    target = lm.MetricsTarget(namespace=lm.NAMESPACE, gate="paperbroker")
    pub = lm.MetricsPublisher(tmp_path, target, client=client, clock=lambda: T0)
    assert pub.publish_due(T0 + 22) == 2 and pub.failures == 0

    def query(name: str) -> dict[datetime.datetime, float]:
        out = client.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": lm.NAMESPACE,
                            "MetricName": name,
                            "Dimensions": [{"Name": lm.DIMENSION_GATE, "Value": "paperbroker"}],
                        },
                        "Period": 10,
                        "Stat": "Maximum",
                    },
                }
            ],
            StartTime=datetime.datetime.fromtimestamp(T0, datetime.UTC),
            EndTime=datetime.datetime.fromtimestamp(T0 + 20, datetime.UTC),
        )["MetricDataResults"][0]
        return {ts.timestamp(): v for ts, v in zip(out["Timestamps"], out["Values"], strict=True)}

    assert query(lm.METRIC_ERROR_RATIO) == {T0: 0.0, T0 + 10: 0.5}
    assert query(lm.METRIC_P95) == {T0: 20.0, T0 + 10: 2000.0}
    assert query(lm.METRIC_REQUESTS) == {T0: 100.0, T0 + 10: 100.0}
