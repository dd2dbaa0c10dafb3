"""The ECS twin's target tasks each have a private address of their own, on which the service's container
port reaches the one replica process the task stands for: what the load task's leader watch
(:class:`resgate.runner.leader.EcsReplicas`, product code, unchanged) needs to sample real replicas.

ECS API reference, "Task" and "NetworkInterface" data types: with ``awsvpc`` each task's container lists
its ENI's ``privateIpv4Address`` (``containers[].networkInterfaces[]``); ECS developer guide, "Amazon ECS
task networking options for Fargate": every Fargate task gets an elastic network interface of its own, so
all tasks of a service listen on the same container port at different addresses.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from resgate.local.ports import free_port, release_port
from resgate.runner.leader import EcsReplicas, current_leader, probe
from tests.rehearsal.support.ecs_twin import EcsTwin

CLUSTER = "paperbroker"


class Replica:
    """A replica's health endpoint on 127.0.0.1, on a port of its own, saying whether it leads."""

    def __init__(self, leader: int) -> None:
        body = json.dumps({"leader": leader, "fencing_token": 7 if leader else None, "ready": True}).encode()

        class Health(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Supervisor:
    """The supervisor's timeline the twin reads: each replica started on its own port."""

    services = ("matcher",)

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def event(self, replica: str, event: str, **detail: Any) -> None:
        self.events.append(
            {"ts": time.time(), "service": "matcher", "replica": replica, "event": event, "detail": detail}
        )

    def timeline(self) -> list[dict[str, Any]]:
        return list(self.events)


class Ecs:
    """The twin behind the two boto3 calls :class:`EcsReplicas` makes (its paginator included)."""

    def __init__(self, twin: EcsTwin) -> None:
        self.twin = twin

    def get_paginator(self, name: str) -> Any:
        assert name == "list_tasks"
        twin = self.twin

        class Pages:
            def paginate(self, **p: Any) -> Iterator[dict[str, Any]]:
                yield twin.list_tasks(**p)

        return Pages()

    def describe_tasks(self, **p: Any) -> dict[str, Any]:
        return self.twin.describe_tasks(**p)


@pytest.fixture
def matchers(tmp_path: Path) -> Iterator[tuple[EcsTwin, Supervisor, list[Replica], int]]:
    replicas = [Replica(leader=1), Replica(leader=0)]
    sup = Supervisor()
    for i, r in enumerate(replicas):
        sup.event(f"matcher-{i}", "started", pid=1000 + i, port=r.port)
    port = free_port()  # the container port: every task's, at its own address
    twin = EcsTwin(
        None,  # type: ignore[arg-type]  # no load task here: the template is not read
        workdir=tmp_path,
        deploy={},
        extra_env={},
        supervisor=lambda: sup,  # type: ignore[arg-type,return-value]
        target_cluster=CLUSTER,
        health_checked={"matcher": True},
        container_ports={"matcher": port},
        log=lambda s: None,
    )
    try:
        yield twin, sup, replicas, port
    finally:
        twin.close()
        for r in replicas:
            r.stop()
        release_port(port)


def test_each_target_task_answers_at_its_own_loopback_address_on_the_services_container_port(
    matchers: tuple[EcsTwin, Supervisor, list[Replica], int],
) -> None:
    twin, _, _, port = matchers
    source = EcsReplicas(Ecs(twin), CLUSTER, "matcher", port)
    found = source()
    assert [(rid.rsplit(".", 1)[0], p) for rid, _, p, _ in found] == [
        ("matcher-0", port),
        ("matcher-1", port),
    ], found
    hosts = [host for _, host, _, _ in found]
    assert len(set(hosts)) == 2 and "127.0.0.1" not in hosts, hosts
    assert all(ipaddress.ip_address(h) in ipaddress.ip_network("127.0.0.0/8") for h in hosts), hosts
    # Each address is its own replica: the leader's says leader 1, the standby's 0.
    assert [probe(port, host=h)["leader"] for h in hosts] == [1, 0]  # type: ignore[index]
    assert current_leader(source) == (1, (found[0][0], 7))
    (task,) = twin.describe_task_definition(taskDefinition=f"{CLUSTER}-matcher")["taskDefinition"][
        "containerDefinitions"
    ][:1]
    assert task["portMappings"] == [{"containerPort": port, "protocol": "tcp"}]


def test_a_stopped_task_answers_nothing_at_its_address_and_its_replacement_gets_a_new_one(
    matchers: tuple[EcsTwin, Supervisor, list[Replica], int],
) -> None:
    twin, sup, replicas, port = matchers
    source = EcsReplicas(Ecs(twin), CLUSTER, "matcher", port, refresh_s=0)
    (leader_task, old_host, _, _), _ = source()
    replicas[0].stop()
    sup.event("matcher-0", "killed")
    # The killed task is no longer listed as running (no port) and nothing answers at its address.
    assert (leader_task, old_host, None, 0) in source()
    assert probe(port, host=old_host) is None
    replacement = Replica(leader=1)
    try:
        sup.event("matcher-0", "restarted", pid=1002, port=replacement.port, restarts=1)
        running = {rid: host for rid, host, p, _ in source() if p is not None}
        assert leader_task not in running and len(running) == 2, running
        (new_host,) = {h for rid, h in running.items() if rid.startswith("matcher-0")}
        assert new_host != old_host
        assert probe(port, host=new_host) == {"leader": 1, "fencing_token": 7, "ready": True}
    finally:
        sup.event("matcher-0", "killed")
        twin.describe_tasks(cluster=CLUSTER, tasks=[])  # the replacement's ENI goes with its task
        replacement.stop()
