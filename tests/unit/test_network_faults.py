"""Network fault kinds in the gate config, the TCP loss model and the edge's 429 gate (pure, no sockets)."""

from __future__ import annotations

import math
import random
import time
from types import SimpleNamespace

import pytest

from resgate.config.schema import load_config_text
from resgate.contract.errors import ConfigError, ConfigErrors
from resgate.local.httpgate import HttpGate, RateLimit
from resgate.local.toxics import LossModel, Toxics
from resgate.runner.faults import FaultRunner

_BASE = """
gate: {name: net}
target:
  local:
    services:
      - {name: gateway, command: [python3], expose: true, replicas: 2, zones: [a, b]}
      - {name: matcher, command: [python3]}
load: {duration_s: 60, baseline_s: 5}
faults:
  - %s
"""


def _fault(body: str):
    return load_config_text(_BASE % body, "gate.yaml").faults[0]


def _error(body: str) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_config_text(_BASE % body, "gate.yaml")
    return str(e.value)


def test_a_partition_names_its_path_mode_and_duration() -> None:
    f = _fault(
        "{kind: network_partition, between: [matcher, postgres], mode: refuse, duration_s: 10, at_s: 6}"
    )
    assert f.target == "matcher"
    assert f.params == {
        "service": "matcher",
        "dependency": "postgres",
        "direction": "both",
        "duration_s": 10.0,
        "mode": "refuse",
    }


def test_network_faults_default_to_the_exposed_service_and_its_clients() -> None:
    f = _fault("{kind: packet_loss, percent: 20, duration_s: 5, at_s: 6}")
    assert (f.params["service"], f.params["dependency"], f.params["percent"]) == ("gateway", "clients", 20.0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{kind: network_latency, delay_ms: 50, duration_s: 5, at_s: 6}", "faults[0].delay_ms"),
        (
            "{kind: network_latency, delay_ms: 200, jitter_ms: 300, duration_s: 5, at_s: 6}",
            "faults[0].jitter_ms",
        ),
        ("{kind: packet_loss, percent: 60, duration_s: 5, at_s: 6}", "faults[0].percent"),
        ("{kind: network_partition, mode: drop, duration_s: 5, at_s: 6}", "faults[0].mode"),
        ("{kind: network_partition, between: [gateway, redis], duration_s: 5, at_s: 6}", "faults[0].between"),
        (
            "{kind: network_partition, between: [matcher, clients], duration_s: 5, at_s: 6}",
            "faults[0].between",
        ),
        ("{kind: bandwidth, duration_s: 5, at_s: 6}", "faults[0].kbps"),
        ("{kind: rate_limit_spike, percent: 0, duration_s: 5, at_s: 6}", "faults[0].percent"),
        ("{kind: zone_loss, zone: c, at_s: 6}", "faults[0].zone"),
    ],
)
def test_invalid_network_faults_name_the_field_and_line(body: str, field: str) -> None:
    msg = _error(body)
    assert field in msg and "gate.yaml:" in msg, msg


def test_zone_loss_and_rate_limit_spike_parse() -> None:
    z = _fault("{kind: zone_loss, zone: a, at_s: 6}")
    assert z.params == {"zone": "a", "services": ["gateway"]} and z.target == "gateway"
    r = _fault("{kind: rate_limit_spike, percent: 30, duration_s: 5, at_s: 6}")
    assert r.params == {"percent": 30.0, "duration_s": 5.0, "retry_after_s": 1} and r.target == "gateway"


def _throughput(p: float, rtt: float, rto: float, chunks: int = 1500) -> float:
    m = LossModel(random.Random(3))
    return chunks * 65536 / sum(m.cost_s(65536, p, rtt, rto) for _ in range(chunks))


def test_the_loss_model_follows_mathis_inverse_square_root_at_low_loss() -> None:
    xs = [math.log(p) for p in (0.005, 0.01, 0.02)]
    ys = [math.log(_throughput(p, 0.01, 0.2)) for p in (0.005, 0.01, 0.02)]
    slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
    assert -0.8 <= slope <= -0.35, slope


def test_the_loss_model_stalls_a_one_segment_request_for_at_least_one_rto() -> None:
    m = LossModel(random.Random(1))
    costs = [m.cost_s(200, 0.5, 0.01, 0.2) for _ in range(400)]
    stalled = [c for c in costs if c > 0.05]
    assert 0.35 <= len(stalled) / len(costs) <= 0.65
    assert min(stalled) >= 0.2


def test_toxics_combine_and_revert_by_name() -> None:
    t = Toxics()
    t.add("a", "downstream", latency_ms=100)
    t.add("b", "both", latency_ms=50, loss_percent=10)
    down = t.effective["downstream"]
    assert down is not None and down.latency_ms == 150 and down.loss_percent == 10
    t.remove("b")
    assert t.effective["upstream"] is None and t.effective["downstream"].latency_ms == 100  # type: ignore[union-attr]
    t.remove("a")
    assert t.effective == {"upstream": None, "downstream": None} and t.active() == []


def test_the_http_gate_answers_429_for_rejected_requests_and_forwards_the_rest_whole() -> None:
    req = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    gate = HttpGate()
    fwd, reply = gate.feed(req, RateLimit(100))
    assert fwd == b"" and reply.startswith(b"HTTP/1.1 429") and b"Retry-After: 1" in reply
    fwd, reply = gate.feed(req[:20], RateLimit(0))
    assert (fwd, reply) == (b"", b"")  # waits for the whole head before judging
    fwd, reply = gate.feed(req[20:], RateLimit(0))
    assert fwd == req and reply == b""
    assert gate.idle()
    assert HttpGate().feed(req, None) == (req, b"")


@pytest.mark.parametrize(
    ("direction", "per_direction"),
    [
        ("both", {"upstream": 75.0, "downstream": 75.0}),
        ("downstream", {"upstream": 0.0, "downstream": 150.0}),
    ],
)
def test_latency_adds_delay_ms_to_the_round_trip_whatever_its_direction(
    direction: str, per_direction: dict[str, float]
) -> None:
    """FIS delays a task's egress once; locally ``both`` splits ``delay_ms`` (and the jitter) evenly between
    the two directions, so a request and its answer are ``delay_ms`` later in all, not twice that."""
    fault = _fault(
        "{name: lat, kind: network_latency, between: [gateway, clients], direction: "
        + direction
        + ", delay_ms: 150, jitter_ms: 40, duration_s: 30, at_s: 5}"
    )
    tox = Toxics()
    target = SimpleNamespace(path=lambda service, dependency: tox, supervisor=None)
    runner = FaultRunner(target, [fault])  # type: ignore[arg-type]
    runner.start(time.time() - 5)  # the fault is due now
    try:
        deadline = time.monotonic() + 5
        while not tox.active() and time.monotonic() < deadline:
            time.sleep(0.01)
        got = {d: (t.latency_ms if t else 0.0) for d, t in tox.effective.items()}
        assert got == per_direction
        jitter = {d: (t.jitter_ms if t else 0.0) for d, t in tox.effective.items()}
        assert sum(jitter.values()) == 40
    finally:
        runner.abort("test over")
        runner.revert_all()
        runner.join(5)
    assert tox.active() == []
