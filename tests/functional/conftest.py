"""Functional tests of the assertion Lambdas: handlers called in-process, AWS services from moto.

No test may reach real AWS: fake credentials and a region are set before any client exists, the shared
config files are pointed at nothing, and every test runs inside ``mock_aws``. Tracing is disabled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "resgate-functional-test",
}
# Set at import, before the handler modules (and their Tracer) are imported by the test modules.
os.environ.update(_FAKE_ENV)
os.environ.pop("AWS_PROFILE", None)

from moto import mock_aws  # noqa: E402  (after the fake credentials, on purpose)

from resgate.contract.layout import RunKey  # noqa: E402
from tests.functional.support import (  # noqa: E402
    BUCKET,
    REGION,
    Evidence,
    FakeLambdaContext,
    OpsCenter,
    fresh_default_session,
    load_event,
    nearest_rank,
)


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials (again, per test, in case anything changed them) and moto for every AWS call."""
    for k, v in _FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    for k in (
        "AWS_PROFILE",
        "EVIDENCE_BUCKET",
        "EVIDENCE_PREFIX",
        "DB_SECRET_ARN",
        "KAFKA_BOOTSTRAP",
        "OPS_ITEMS",
    ):
        monkeypatch.delenv(k, raising=False)
    with mock_aws():
        fresh_default_session()
        yield


@pytest.fixture
def evidence() -> Evidence:
    """An empty evidence bucket in moto and the run prefix every event fixture points at."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    base = load_event("retryable")
    return Evidence(
        s3=s3, bucket=BUCKET, key=RunKey(gate=base["gate"], date=base["dt"], run_id=base["run_id"])
    )


@pytest.fixture
def cloudwatch_percentiles(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[float], float], float]:
    """Make moto answer ``ExtendedStatistics`` (moto 5.2.5 ignores them) with nearest-rank p50/p95/p99/p100
    of the raw values of each period. Returns the nearest-rank function, for expected figures."""
    from moto.cloudwatch import models

    def extended(self: Any) -> dict[str, float] | None:
        values = [float(v) for v in self.metric_single_values_list]
        if not values:
            return None
        return {f"p{p}": nearest_rank(values, p) for p in (50, 95, 99, 100)}

    monkeypatch.setattr(models.Statistics, "extended_statistics", property(extended), raising=False)
    return nearest_rank


@pytest.fixture
def opscenter(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpsCenter]:
    """OpsItems turned on (``OPS_ITEMS=true``) and answered by a stubbed SSM client (:class:`OpsCenter`);
    every expected ``create_ops_item`` must have been made."""
    from botocore.stub import Stubber

    import lambdas.common.opsitem as opsitem

    monkeypatch.setenv("OPS_ITEMS", "true")
    ssm = boto3.client("ssm", region_name=REGION)
    created: list[dict[str, Any]] = []
    ssm.meta.events.register(
        "provide-client-params.ssm.CreateOpsItem", lambda params, **_: created.append(dict(params))
    )
    stubber = Stubber(ssm)
    real = opsitem.client
    monkeypatch.setattr(opsitem, "client", lambda name: ssm if name == "ssm" else real(name))
    with stubber:
        yield OpsCenter(ssm=ssm, stubber=stubber, created=created)
        stubber.assert_no_pending_responses()
