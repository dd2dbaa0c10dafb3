"""The FIS twin runs the ECS network actions on the real local fault proxy: a latency action fires when it
starts, holds for its ``duration`` and lifts on time (measured by round trips through a
:class:`resgate.local.faultproxy.FaultProxy` in front of an echo server), and the tasks' ECS fault-injection
endpoints refuse a second overlapping network fault (409) and a ``/start`` sooner than 5 s after the last
(429), failing the FIS action as AWS would. Hand-made templates; no service process is started."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from resgate.local.faultproxy import FaultProxy
from tests.rehearsal.support.fis_twin import FaultEndpoints, FisError, FisTwin, network_paths

LATENCY = "aws:ecs:task-network-latency"
LOSS = "aws:ecs:task-network-packet-loss"
BLACKHOLE = "aws:ecs:task-network-blackhole-port"
DELAY_MS = 500
HOLD_S = 2


class Assembly:
    """The two methods of the rehearsal's assembly the FIS twin uses, over hand-made resources."""

    def __init__(self, resources: dict[str, Any]) -> None:
        self.resources = resources

    def of_type(self, rtype: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == rtype}

    def render(self, value: Any) -> Any:
        return value


class Target:
    """A local target whose only proxied path is ``gateway → postgres`` (the real fault proxy)."""

    supervisor = None
    pg = None
    kafka = None

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def path(self, service: str, dependency: str) -> Any:
        return self.proxy.toxics if (service, dependency) == ("gateway", "postgres") else None

    def path_stats(self, service: str, dependency: str) -> dict[str, int] | None:
        return self.proxy.stats() if (service, dependency) == ("gateway", "postgres") else None


def _template(action_id: str, **params: str) -> dict[str, Any]:
    return {
        "Type": "AWS::FIS::ExperimentTemplate",
        "Properties": {
            "Targets": {
                "Tasks": {
                    "ResourceType": "aws:ecs:task",
                    "ResourceTags": {"aws:ecs:serviceName": "gateway"},
                    "SelectionMode": "ALL",
                }
            },
            "Actions": {
                "Fault": {
                    "ActionId": action_id,
                    "Parameters": {
                        "duration": f"PT{HOLD_S}S",
                        "useEcsFaultInjectionEndpoints": "true",
                        **params,
                    },
                    "Targets": {"Tasks": "Tasks"},
                }
            },
            "StopConditions": [{"Source": "none"}],
            "ExperimentOptions": {"EmptyTargetResolutionMode": "fail"},
        },
    }


TASKS = [
    {
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/paperbroker/{i}",
        "tags": [{"key": "aws:ecs:serviceName", "value": "gateway"}],
        "_service": "gateway",
        "_replica": f"gateway-{i}",
    }
    for i in range(2)
]


@pytest.fixture
def echo_proxy() -> Iterator[FaultProxy]:
    """An echo server on 127.0.0.1 behind the real fault proxy."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return
            threading.Thread(target=_echo, args=(conn, done), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    proxy = FaultProxy(("127.0.0.1", server.getsockname()[1]), name="gateway-postgres")
    proxy.start()
    try:
        yield proxy
    finally:
        done.set()
        proxy.stop()
        server.close()


def _echo(conn: socket.socket, done: threading.Event) -> None:
    conn.settimeout(0.2)
    with conn:
        while not done.is_set():
            try:
                data = conn.recv(64)
            except TimeoutError:
                continue
            if not data:
                return
            conn.sendall(data)


def _probe(proxy: FaultProxy, until: float) -> list[tuple[float, float]]:
    """``[(sent, round trip s)]`` of one-byte echoes through the proxy, one after another, until ``until``."""
    out = []
    with socket.create_connection(proxy.address, timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.time() < until:
            sent = time.time()
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            out.append((sent, time.time() - sent))
            time.sleep(0.05)
    return out


def _twin(proxy: FaultProxy, templates: dict[str, Any]) -> FisTwin:
    return FisTwin(
        Assembly(templates),  # type: ignore[arg-type]
        target=lambda: Target(proxy),  # type: ignore[arg-type,return-value]
        live_dirs=list,
        tasks=lambda: [dict(t) for t in TASKS],
        log=lambda s: None,
    )


def _wait(twin: FisTwin, exp_id: str, statuses: tuple[str, ...], timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        exp = twin.get_experiment(id=exp_id)["experiment"]
        if exp["state"]["status"] in statuses:
            return exp
        time.sleep(0.02)
    raise AssertionError(f"experiment {exp_id} did not reach {statuses}")


def test_a_latency_action_fires_at_its_start_holds_for_its_duration_and_lifts_on_time(echo_proxy):
    """FIS user guide, "AWS FIS Actions reference" (fis-actions-reference.html), aws:ecs:task-network-latency:
    ``duration``, ``delayMilliseconds``, ``jitterMilliseconds``, ``sources``. The twin delays the task's
    egress on the path to the dependency the sources cover by ``delayMilliseconds`` from the action's
    ``startTime`` for ``duration``; after ``endTime`` the path is fast again. Tolerances are for a loaded
    2-core machine."""
    twin = _twin(
        echo_proxy,
        {
            "Tpl": _template(
                LATENCY, delayMilliseconds=str(DELAY_MS), jitterMilliseconds="0", sources="10.0.1.0/24"
            )
        },
    )
    t0 = time.time()
    exp_id = twin.start_experiment(experimentTemplateId="Tpl")["experiment"]["id"]
    samples = _probe(echo_proxy, until=t0 + HOLD_S + 2.5)
    exp = _wait(twin, exp_id, ("completed", "failed", "stopped"))
    twin.close()
    assert exp["state"]["status"] == "completed", exp["state"]
    action = exp["actions"]["Fault"]
    assert action["state"]["status"] == "completed"
    assert action["parameters"]["delayMilliseconds"] == str(DELAY_MS)
    start, end = action["startTime"], action["endTime"]
    assert HOLD_S <= end - start <= HOLD_S + 1.0, end - start  # held for its duration, lifted on time
    assert start - t0 <= 1.5, start - t0  # FIS's 0.5-s stop-condition check, then the action
    # Fired: every echo sent while it held (after the first half second) paid the delay.
    held = [rtt for sent, rtt in samples if start + 0.5 <= sent <= end - DELAY_MS / 1000 - 0.2]
    assert held and min(held) >= 0.9 * DELAY_MS / 1000, held
    # Lifted: every echo sent half a second after the action's end is fast again.
    after = [rtt for sent, rtt in samples if sent >= end + 0.5]
    assert after and max(after) < DELAY_MS / 2000, after
    assert echo_proxy.toxics.active() == []


def test_an_overlapping_network_fault_fails_with_409_and_a_restart_within_5_s_with_429(
    echo_proxy,
):
    """Amazon ECS developer guide, "Amazon ECS fault injection endpoints"
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fault-injection-endpoints.html): a fault
    request that conflicts with another running fault is answered 409, and each endpoint takes 1 request
    per 5 s per container (429). The FIS user guide ("Use the AWS FIS aws:ecs:task actions") says the three
    network actions cannot run in parallel. The first experiment is not disturbed."""
    latency = _template(LATENCY, delayMilliseconds="100", jitterMilliseconds="0", sources="0.0.0.0/0")
    twin = _twin(
        echo_proxy, {"Latency": latency, "Loss": _template(LOSS, lossPercent="20", sources="0.0.0.0/0")}
    )
    first = twin.start_experiment(experimentTemplateId="Latency")["experiment"]["id"]
    deadline = time.time() + 10
    while twin.get_experiment(id=first)["experiment"]["actions"]["Fault"]["state"]["status"] != "running":
        assert time.time() < deadline, "the first action never ran"
        time.sleep(0.02)
    second = _wait(twin, twin.start_experiment(experimentTemplateId="Loss")["experiment"]["id"], ("failed",))
    assert "answered 409" in second["state"]["reason"], second["state"]
    assert "network-packet-loss/start" in second["state"]["reason"], second["state"]
    assert second["actions"]["Fault"]["state"]["status"] == "failed"
    done = _wait(twin, first, ("completed", "failed", "stopped"))
    assert done["state"]["status"] == "completed", done["state"]
    # The latency endpoint was started about 2 s ago on these tasks: a new start is throttled.
    third = _wait(
        twin, twin.start_experiment(experimentTemplateId="Latency")["experiment"]["id"], ("failed",)
    )
    assert "answered 429" in third["state"]["reason"], third["state"]
    twin.close()
    assert echo_proxy.toxics.active() == []


def test_stopping_the_experiment_while_a_blackhole_holds_lifts_it_at_once_and_frees_the_tasks(echo_proxy):
    """FIS user guide, "AWS FIS Actions reference": aws:ecs:task-network-blackhole-port (``port``,
    ``protocol``, ``trafficType``). A blackhole of egress port 5432 swallows the path to Postgres; a
    StopExperiment while it holds lifts it at once (``stopped``), and the tasks' fault endpoints hold no
    running fault afterwards (a later fault on them is not answered 409)."""
    twin = _twin(echo_proxy, {"Cut": _template(BLACKHOLE, port="5432", protocol="tcp", trafficType="egress")})
    exp_id = twin.start_experiment(experimentTemplateId="Cut")["experiment"]["id"]
    deadline = time.time() + 10
    while echo_proxy.toxics.active() == []:
        assert time.time() < deadline, "the blackhole never fired"
        time.sleep(0.02)
    assert all(twin.endpoints.running(t["taskArn"]) == "network-blackhole-port" for t in TASKS)
    twin.stop_experiment(id=exp_id)
    exp = _wait(twin, exp_id, ("stopped", "completed", "failed"))
    twin.close()
    assert exp["state"]["status"] == "stopped", exp["state"]
    assert exp["endTime"] - exp["actions"]["Fault"]["startTime"] < HOLD_S, exp
    assert echo_proxy.toxics.active() == []
    assert all(twin.endpoints.running(t["taskArn"]) is None for t in TASKS)


def test_the_fault_endpoints_throttle_a_start_until_exactly_five_seconds_after_the_last():
    """Amazon ECS developer guide, "Amazon ECS fault injection endpoints": 1 request per 5 s per container."""
    endpoints = FaultEndpoints()
    endpoints.start(["t1"], "network-latency", owner="a", now=100.0)
    endpoints.stop(["t1"], owner="a")
    with pytest.raises(FisError, match="answered 429"):
        endpoints.start(["t1"], "network-latency", owner="b", now=104.99)
    endpoints.start(["t2"], "network-latency", owner="b", now=104.99)  # another task: its own limit
    endpoints.start(["t1"], "network-latency", owner="c", now=105.0)
    assert endpoints.running("t1") == "network-latency"
    with pytest.raises(FisError, match="answered 409"):  # another endpoint, while latency runs on t1
        endpoints.start(["t1"], "network-blackhole-port", owner="d", now=106.0)
    endpoints.stop(["t1"], owner="c")
    assert endpoints.running("t1") is None
    with pytest.raises(FisError, match="answered 429"):  # the refused request counted against the limit
        endpoints.start(["t1"], "network-blackhole-port", owner="e", now=110.99)
    endpoints.start(["t1"], "network-blackhole-port", owner="e", now=111.0)
    assert endpoints.running("t1") == "network-blackhole-port"


def test_network_action_parameters_map_to_the_local_paths_their_traffic_takes():
    """FIS user guide, "AWS FIS Actions reference" (fis-actions-reference.html): the blackhole's ``port``,
    ``protocol`` (tcp | udp) and ``trafficType`` (ingress | egress); latency's and loss's ``sources``
    (IPv4 addresses or CIDR blocks, domain names, DYNAMODB, S3; 0.0.0.0/0 is all traffic)."""
    assert network_paths(BLACKHOLE, {"port": "8080", "protocol": "tcp", "trafficType": "ingress"}) == [
        ("clients", "upstream")
    ]
    assert network_paths(BLACKHOLE, {"port": "5432", "protocol": "tcp", "trafficType": "egress"}) == [
        ("postgres", "upstream")
    ]
    assert network_paths(BLACKHOLE, {"port": "9094", "protocol": "tcp", "trafficType": "egress"}) == [
        ("kafka", "upstream")
    ]
    with pytest.raises(FisError, match="protocol"):
        network_paths(BLACKHOLE, {"port": "5432", "protocol": "icmp", "trafficType": "egress"})
    with pytest.raises(FisError, match="trafficType"):
        network_paths(BLACKHOLE, {"port": "5432", "protocol": "tcp", "trafficType": "both"})
    assert network_paths(LATENCY, {"sources": "0.0.0.0/0"}) == [
        ("clients", "downstream"),
        ("postgres", "upstream"),
    ]
    assert network_paths(LOSS, {"sources": "10.0.1.10"}) == [("postgres", "upstream")]
    assert network_paths(LOSS, {"sources": "10.0.0.0/16,S3"}) == [
        ("clients", "downstream"),
        ("postgres", "upstream"),
    ]
    assert network_paths(LATENCY, {"sources": "DYNAMODB,example.com"}) == []
