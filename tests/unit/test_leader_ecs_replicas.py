"""The leader sampler's ECS replicas source: on AWS the load task samples the target service's tasks at
their ENIs' private addresses. ECS is botocore's Stubber (every response has the real API shape); the
sampled "replicas" are real HTTP servers on 127.0.0.1 answering /health as paperbroker's matcher does.

ListTasks' ``serviceName`` and ``desiredStatus`` filter the tasks of one service; DescribeTasks takes at
most 100 tasks and reports an awsvpc task's address in ``containers[].networkInterfaces[].privateIpv4Address``
and in its ENI attachment's ``privateIPv4Address`` detail (Amazon ECS API reference, "ListTasks",
"DescribeTasks", "Task networking for tasks on Fargate")."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from resgate.runner.leader import EcsReplicas, LeaderSampler, task_address

REGION = "us-east-1"
CLUSTER = "pb-cluster"
SERVICE = "pb-matcher"


def arn(tid: str) -> str:
    return f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/{tid}"


def running(tid: str, ip: str, *, via_attachment: bool = False, status: str = "RUNNING") -> dict[str, Any]:
    """A DescribeTasks task of the service, its address on its container's interface or its ENI."""
    t: dict[str, Any] = {"taskArn": arn(tid), "lastStatus": status, "containers": [{"name": "matcher"}]}
    if via_attachment:
        t["attachments"] = [
            {
                "type": "ElasticNetworkInterface",
                "details": [
                    {"name": "subnetId", "value": "subnet-1"},
                    {"name": "privateIPv4Address", "value": ip},
                ],
            }
        ]
    else:
        t["containers"][0]["networkInterfaces"] = [{"attachmentId": "a1", "privateIpv4Address": ip}]
    return t


@pytest.fixture
def ecs() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("ecs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def listing(stub: Stubber, tasks: list[dict[str, Any]]) -> None:
    """Queue one listing: ListTasks of the service, then DescribeTasks of what it listed."""
    arns = [t["taskArn"] for t in tasks]
    stub.add_response(
        "list_tasks",
        {"taskArns": arns},
        {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"},
    )
    if arns:
        stub.add_response("describe_tasks", {"tasks": tasks}, {"cluster": CLUSTER, "tasks": arns})


def test_a_task_without_an_address_yet_has_none_and_either_place_of_the_address_is_read() -> None:
    assert task_address({"taskArn": arn("t0"), "containers": [{"name": "matcher"}]}) is None
    assert task_address(running("t1", "10.0.1.7")) == "10.0.1.7"
    assert task_address(running("t2", "10.0.1.8", via_attachment=True)) == "10.0.1.8"


def test_the_ecs_source_lists_running_tasks_at_their_addresses_and_keeps_a_gone_task_as_not_running(ecs):
    client, stub = ecs
    listing(stub, [running("t1", "10.0.1.7"), running("t2", "10.0.1.8", via_attachment=True)])
    listing(stub, [running("t2", "10.0.1.8"), running("t3", "10.0.1.9", status="PENDING")])
    source = EcsReplicas(client, CLUSTER, SERVICE, 8080, refresh_s=0.0)
    assert source() == [("t1", "10.0.1.7", 8080, 0), ("t2", "10.0.1.8", 8080, 0)]
    # t1 was replaced: sampled as not answering; t3 has no port until it runs
    assert source() == [("t1", "10.0.1.7", None, 0), ("t2", "10.0.1.8", 8080, 0)]


def test_the_ecs_source_asks_ecs_again_only_after_its_refresh_interval(ecs):
    client, stub = ecs
    listing(stub, [running("t1", "10.0.1.7")])
    source = EcsReplicas(client, CLUSTER, SERVICE, 8080, refresh_s=3600.0)
    first = source()
    assert source() == first == [("t1", "10.0.1.7", 8080, 0)]  # the Stubber has no second listing queued


class _Replica(BaseHTTPRequestHandler):
    body: dict[str, Any] = {}

    def do_GET(self) -> None:
        data = json.dumps(self.body).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_sampler_records_the_leader_figures_of_ecs_tasks_at_their_addresses(ecs):
    client, stub = ecs
    leader = type("Leader", (_Replica,), {"body": {"leader": 1, "fencing_token": 7, "ready": True,
                                                   "heartbeat_age_s": 0.5}})  # fmt: skip
    standby = type("Standby", (_Replica,), {"body": {"leader": 0, "fencing_token": 7, "ready": False}})
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (leader, standby)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        ports = {s.server_address[1] for s in servers}
        assert len(ports) == 2
        # one port for the service on ECS; here each task is its own server, so the source's port is per task
        tasks = [running("t1", "127.0.0.1"), running("t2", "127.0.0.1")]
        listing(stub, tasks)
        base = EcsReplicas(client, CLUSTER, SERVICE, 0, refresh_s=3600.0)
        by_task = {"t1": servers[0].server_address[1], "t2": servers[1].server_address[1]}
        sampler = LeaderSampler(
            None, SERVICE, interval_s=0.05, replicas=lambda: [(t, h, by_task[t], n) for t, h, _, n in base()]
        )
        sampler.deposed, sampler.deposed_token = "t1", 7
        sampler.start()
        sampler.finish()
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    rec = sampler.record()
    first = {s["replica"]: (s["answered"], s["leader"], s["token"], s["ready"]) for s in rec["samples"]}
    assert first == {"t1": (True, 1, 7, True), "t2": (True, 0, 7, False)}
    assert rec["max_leading_heartbeat_age_s"] == {"t1": 0.5} and rec["restarts"] == {"t1": 0, "t2": 0}
    assert (rec["service"], rec["deposed"], rec["deposed_token"]) == (SERVICE, "t1", 7)


def test_a_failed_refresh_after_a_good_listing_keeps_that_listing_and_a_failed_first_listing_raises(ecs):
    client, stub = ecs
    listing(stub, [running("t1", "10.0.1.7")])
    stub.add_client_error("list_tasks", service_error_code="ThrottlingException", http_status_code=400)
    listing(stub, [running("t2", "10.0.1.8")])
    source = EcsReplicas(client, CLUSTER, SERVICE, 8080, refresh_s=0.0)
    assert source() == [("t1", "10.0.1.7", 8080, 0)]
    assert source() == [("t1", "10.0.1.7", 8080, 0)]  # throttled: the last listing is probed again
    assert source() == [("t1", "10.0.1.7", None, 0), ("t2", "10.0.1.8", 8080, 0)]

    never = EcsReplicas(client, CLUSTER, SERVICE, 8080, refresh_s=0.0)
    stub.add_client_error("list_tasks", service_error_code="AccessDeniedException", http_status_code=400)
    with pytest.raises(ClientError, match="AccessDeniedException"):
        never()
