"""The quiesce Lambda's probes and inputs (``lambdas.quiesce.settle``): health from ECS by the timeline's
rule, every field validated before anything is read. ECS is a boto3 client stubbed with botocore's
Stubber, so every request and response has the real API shape."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.common.event import RunEvent
from lambdas.quiesce.settle import QuiesceInputs, services_healthy
from resgate.contract.errors import ConfigError

CLUSTER, SERVICE = "pb-cluster", "pb-gateway"
T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
# Behind a load balancer: health checked, though its tasks report no container health (UNKNOWN).
LB = [{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/pb/1"}]
RUN = {"run_id": "r1", "gate": "paperbroker", "dt": "2026-01-01", "evidence_bucket": "bucket"}


def _ecs(*, desired: int, started_s: list[float], steady_s: list[float]) -> tuple[object, Stubber]:
    ecs = boto3.client("ecs", region_name="us-east-1")
    stub = Stubber(ecs)
    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/t{i}" for i in range(len(started_s))]
    events = [
        {
            "id": f"e{i}",
            "createdAt": T0 + dt.timedelta(seconds=s),
            "message": f"(service {SERVICE}) has reached a steady state.",
        }
        for i, s in enumerate(steady_s)
    ]
    stub.add_response(
        "describe_services",
        {
            "services": [
                {"serviceName": SERVICE, "desiredCount": desired, "events": events, "loadBalancers": LB}
            ]
        },
        {"cluster": CLUSTER, "services": [SERVICE]},
    )
    stub.add_response(
        "list_tasks",
        {"taskArns": arns},
        {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"},
    )
    tasks = [
        {
            "taskArn": a,
            "startedAt": T0 + dt.timedelta(seconds=s),
            "lastStatus": "RUNNING",
            "containers": [{"name": "gateway", "healthStatus": "UNKNOWN"}],
        }
        for a, s in zip(arns, started_s, strict=True)
    ]
    stub.add_response("describe_tasks", {"tasks": tasks, "failures": []}, {"cluster": CLUSTER, "tasks": arns})
    return ecs, stub


def test_a_service_is_healthy_once_a_steady_state_follows_its_newest_task():
    ecs, stub = _ecs(desired=2, started_s=[0, 10], steady_s=[1, 12])
    with stub:
        assert services_healthy(ecs, CLUSTER, {"gateway": SERVICE}) is True


def test_a_replacement_without_a_steady_state_since_it_started_is_not_healthy_yet():
    ecs, stub = _ecs(desired=2, started_s=[0, 10], steady_s=[1])
    with stub:
        assert services_healthy(ecs, CLUSTER, {"gateway": SERVICE}) is False


def test_a_service_short_of_its_desired_count_is_not_healthy():
    ecs, stub = _ecs(desired=2, started_s=[0], steady_s=[1])
    with stub:
        assert services_healthy(ecs, CLUSTER, {"gateway": SERVICE}) is False


def test_the_quiesce_event_is_validated_field_by_field():
    good = {
        **RUN,
        "cluster": CLUSTER,
        "services": {SERVICE: SERVICE},
        "consumer_groups": [{"group": "g", "topics": ["t"]}],
        "drained_queries": ["select 0"],
        "timeout_s": 30,
    }
    inputs = QuiesceInputs.from_event(RunEvent.from_event(good))
    assert inputs.groups[0].group == "g" and inputs.timeout_s == 30 and inputs.poll_s == 2.0
    for field, bad, where in [
        ("timeout_s", None, "event.timeout_s"),
        ("consumer_groups", [{"group": "g"}], "event.consumer_groups[0]"),
        ("drained_queries", [""], "event.drained_queries"),
        ("cluster", "", "event.cluster"),
    ]:
        with pytest.raises(ConfigError) as e:
            QuiesceInputs.from_event(RunEvent.from_event({**good, field: bad}))
        assert where in str(e.value), (field, str(e.value))
