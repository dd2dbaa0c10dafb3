"""The redeliver Lambda of a ``duplicate_delivery`` fault on AWS (issue 21): the very function the local
fault runner calls (one function, two places), its payload validated before anything is read, its Kafka
settings from the checks' environment, and a redelivery that re-published nothing reported as a failure (the
SSM step, and the FIS action with it, fails: the timeline's effect is not observed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import resgate.redelivery
import resgate.runner.faults
from lambdas.common import settings
from lambdas.redeliver.handler import redeliver_event
from resgate.contract.errors import ConfigError, GateError

PAYLOAD = {"fault": "redeliver", "topics": ["pb.orders"], "fraction": 0.05, "max_events": 300}
ENV = {
    settings.ENV_KAFKA_BOOTSTRAP: "b-1.msk:9098",
    settings.ENV_KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
    settings.ENV_KAFKA_SASL_MECHANISM: "AWS_MSK_IAM",
    settings.ENV_AWS_REGION: "us-east-1",
}


class Recorder:
    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> dict[str, Any]:
        self.calls.append(args)
        return self.result


def test_the_local_fault_runner_and_the_lambda_call_the_one_redeliver_function():
    import lambdas.redeliver.handler as handler

    assert resgate.runner.faults.redeliver is resgate.redelivery.redeliver
    source = Path(handler.__file__).read_text(encoding="utf-8")
    assert "from resgate.redelivery import redeliver" in source


def test_the_lambda_redelivers_the_payloads_topics_over_the_checks_kafka_settings():
    r = Recorder({"republished": 15, "per_topic": {"pb.orders": 15}})
    out = redeliver_event(PAYLOAD, environ=ENV, redeliver=r)
    assert out == {"fault": "redeliver", "republished": 15, "per_topic": {"pb.orders": 15}}
    ((bootstrap, topics, fraction, max_events, kafka),) = r.calls
    assert (bootstrap, topics, fraction, max_events) == ("b-1.msk:9098", ["pb.orders"], 0.05, 300)
    assert kafka.security_protocol == "SASL_SSL" and kafka.iam and kafka.region == "us-east-1"


def test_a_redelivery_that_republished_nothing_fails_so_the_fault_is_not_taken_as_effective():
    with pytest.raises(GateError, match="did not take effect"):
        redeliver_event(PAYLOAD, environ=ENV, redeliver=Recorder({"republished": 0, "per_topic": {}}))


def test_one_republished_event_is_an_effective_redelivery():
    out = redeliver_event(PAYLOAD, environ=ENV, redeliver=Recorder({"republished": 1, "per_topic": {"t": 1}}))
    assert out["republished"] == 1


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"fault": ""}, "event.fault"),
        ({"topics": []}, "event.topics"),
        ({"topics": ["ok", ""]}, "event.topics"),
        ({"fraction": 0}, "event.fraction"),
        ({"fraction": 1.01}, "event.fraction"),
        ({"fraction": True}, "event.fraction"),
        ({"max_events": 0}, "event.max_events"),
        ({"max_events": 2.5}, "event.max_events"),
    ],
)
def test_a_bad_payload_is_refused_naming_the_field_before_kafka_is_touched(change, where):
    r = Recorder({"republished": 1})
    with pytest.raises(ConfigError) as e:
        redeliver_event({**PAYLOAD, **change}, environ=ENV, redeliver=r)
    assert e.value.where == where
    assert r.calls == []


def test_the_whole_topic_is_a_valid_fraction_and_one_event_a_valid_budget():
    r = Recorder({"republished": 1})
    redeliver_event({**PAYLOAD, "fraction": 1, "max_events": 1}, environ=ENV, redeliver=r)
    assert r.calls[0][2:4] == (1.0, 1)


def test_without_a_bootstrap_the_lambda_refuses_naming_the_variable():
    r = Recorder({"republished": 1})
    with pytest.raises(ConfigError) as e:
        redeliver_event(PAYLOAD, environ={}, redeliver=r)
    assert e.value.where == settings.ENV_KAFKA_BOOTSTRAP
    assert r.calls == []
