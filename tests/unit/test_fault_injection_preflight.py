"""The fault-injection preflight (lambdas/preflight/fault_injection.py and its Lambda,
lambdas/preflight/handler.py) against botocore's Stubber: the ECS responses are checked against the service
model's shapes, so the task definitions below are ones ECS can really return. A service whose task
definition lacks part of FIS's ECS task setup is named with what to add."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.preflight import fault_injection as preflight
from lambdas.preflight import handler as preflight_lambda

CLUSTER = "pb-cluster"
ROLE_ARN = "arn:aws:iam::123456789012:role/pb-gateway-task"

READY_TD: dict[str, Any] = {
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/pb-gateway:7",
    "family": "pb-gateway",
    "revision": 7,
    "taskRoleArn": ROLE_ARN,
    "networkMode": "awsvpc",
    "pidMode": "task",
    "enableFaultInjection": True,
    "containerDefinitions": [
        {"name": "gateway", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/pb:1", "essential": True},
        {
            "name": "amazon-ssm-agent",
            "image": "public.ecr.aws/amazon-ssm-agent/amazon-ssm-agent:latest",
            "essential": False,
            "environment": [{"name": "MANAGED_INSTANCE_ROLE_NAME", "value": "SSMManagedInstanceRole"}],
        },
    ],
}


@pytest.fixture(scope="module")
def ecs_client():
    return boto3.client(
        "ecs", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture
def ecs(ecs_client):
    client = ecs_client
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def _service(name: str, td_arn: str, *, exec_on: bool = False) -> dict[str, Any]:
    return {
        "serviceName": name,
        "serviceArn": f"arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/{name}",
        "clusterArn": f"arn:aws:ecs:us-east-1:123456789012:cluster/{CLUSTER}",
        "taskDefinition": td_arn,
        "enableExecuteCommand": exec_on,
    }


def _expect(stub: Stubber, services: dict[str, dict[str, Any]], *, exec_on: bool = False) -> None:
    stub.add_response(
        "describe_services",
        {"services": [_service(n, td["taskDefinitionArn"], exec_on=exec_on) for n, td in services.items()]},
        {"cluster": CLUSTER, "services": list(services)},
    )
    for td in services.values():
        stub.add_response(
            "describe_task_definition",
            {"taskDefinition": td},
            {"taskDefinition": td["taskDefinitionArn"]},
        )


def test_the_lambda_checks_the_event_s_services_with_its_own_ecs_client(ecs, monkeypatch):
    client, stub = ecs
    _expect(stub, {"pb-gateway": READY_TD})
    monkeypatch.setattr(boto3, "client", lambda service: client if service == "ecs" else None)
    out = preflight_lambda.handler({"cluster": CLUSTER, "services": ["pb-gateway"]}, None)
    assert out == {"ready": True, "missing": {}, "message": "fault injection is set up on every service"}


def test_a_service_with_fis_task_setup_is_ready(ecs):
    client, stub = ecs
    _expect(stub, {"pb-gateway": READY_TD})
    out = preflight.check(client, CLUSTER, ["pb-gateway"])
    assert out["ready"] is True and out["missing"] == {}


def test_a_plain_task_definition_is_named_with_everything_it_needs(ecs):
    client, stub = ecs
    plain = {
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/pb-gateway:3",
        "family": "pb-gateway",
        "networkMode": "bridge",
        "containerDefinitions": [{"name": "gateway", "image": "pb:1"}],
    }
    _expect(stub, {"pb-gateway": plain})
    out = preflight.check(client, CLUSTER, ["pb-gateway"])
    assert out["ready"] is False
    msg = out["message"]
    for needed in (
        "enableFaultInjection: true",
        "pidMode: task",
        "networkMode: awsvpc",
        "amazon-ssm-agent sidecar",
        "MANAGED_INSTANCE_ROLE_NAME",
        "taskRoleArn",
    ):
        assert needed in msg, needed
    assert msg.startswith(
        f"the network faults need FIS's ECS task setup on cluster {CLUSTER}; pb-gateway: add"
    )
    assert "Network faults on AWS" in msg


def test_a_sidecar_without_its_managed_instance_role_is_named_alone(ecs):
    client, stub = ecs
    td = copy.deepcopy(READY_TD)
    td["containerDefinitions"][1]["environment"] = []
    _expect(stub, {"pb-gateway": td})
    assert preflight.check(client, CLUSTER, ["pb-gateway"])["missing"] == {
        "pb-gateway": [preflight.NEED_ROLE_ENV]
    }


def test_only_the_services_that_lack_something_are_named(ecs):
    client, stub = ecs
    no_pid = copy.deepcopy(READY_TD)
    no_pid["taskDefinitionArn"] = no_pid["taskDefinitionArn"].replace("pb-gateway:7", "pb-matcher:2")
    no_pid["family"] = "pb-matcher"
    del no_pid["pidMode"]
    no_pid["enableFaultInjection"] = False
    _expect(stub, {"pb-gateway": READY_TD, "pb-matcher": no_pid})
    out = preflight.check(client, CLUSTER, ["pb-gateway", "pb-matcher"])
    assert out["missing"] == {"pb-matcher": [preflight.NEED_FAULT_INJECTION, preflight.NEED_PID_MODE]}
    assert "pb-gateway" not in out["message"]


def test_ecs_exec_on_the_service_is_named(ecs):
    client, stub = ecs
    _expect(stub, {"pb-gateway": READY_TD}, exec_on=True)
    assert preflight.check(client, CLUSTER, ["pb-gateway"])["missing"] == {
        "pb-gateway": [preflight.NEED_EXEC_OFF]
    }


def test_fis_non_root_ssm_agent_image_counts_as_the_sidecar(ecs):
    client, stub = ecs
    td = copy.deepcopy(READY_TD)
    td["containerDefinitions"][1]["image"] = (
        "237024525506.dkr.ecr.us-east-1.amazonaws.com/aws-fis-ssm-agent-non-root:latest"
    )
    _expect(stub, {"pb-gateway": td})
    assert preflight.check(client, CLUSTER, ["pb-gateway"])["ready"] is True


def test_a_service_missing_from_the_cluster_is_named(ecs):
    client, stub = ecs
    stub.add_response(
        "describe_services",
        {"services": [], "failures": [{"arn": "pb-gateway", "reason": "MISSING"}]},
        {"cluster": CLUSTER, "services": ["pb-gateway"]},
    )
    out = preflight.check(client, CLUSTER, ["pb-gateway"])
    assert out["missing"] == {"pb-gateway": [f"the service itself: it is not in cluster {CLUSTER}"]}


def test_a_botocore_whose_ecs_model_lacks_enable_fault_injection_fails_loudly_naming_its_version(ecs_client):
    """botocore drops response fields its model does not know, so an ECS model older than
    ``enableFaultInjection`` (Amazon ECS API reference, ``TaskDefinition.enableFaultInjection``) would make
    every service look unready: the handler refuses to judge instead."""
    model = ecs_client.meta.service_model
    shape = model.shape_for("TaskDefinition")
    old = {k: v for k, v in shape.members.items() if k != "enableFaultInjection"}

    class _OldShape:
        members = old

    class _OldModel:
        def shape_for(self, name: str) -> Any:
            return _OldShape() if name == "TaskDefinition" else model.shape_for(name)

    class _OldMeta:
        service_model = _OldModel()

    class _OldClient:
        meta = _OldMeta()

    with pytest.raises(preflight.ModelTooOld, match=r"botocore \S+'s ECS model has no TaskDefinition"):
        preflight.require_model_field(_OldClient())
    preflight.require_model_field(ecs_client)  # the bundled (and this venv's) botocore knows it


def test_the_preflight_asset_bundles_a_botocore_that_knows_enable_fault_injection():
    """The asset's requirements pin boto3 and botocore (the Lambda runtime's own botocore can predate the
    field); the pinned version is the one this venv's model check passes with."""
    import botocore

    from infra import constants as c
    from infra.lambda_bundling import requirements_for

    reqs = requirements_for(c.PREFLIGHT_FUNCTION)
    assert f"botocore=={botocore.__version__}" in reqs
    assert f"boto3=={boto3.__version__}" in reqs
