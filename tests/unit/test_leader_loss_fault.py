"""The ``leader_loss`` fault kind: its config, finding the leader from /health and the preflight of it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from resgate.config.schema import load_config_text
from resgate.contract.errors import ConfigError, ConfigErrors, GateError
from resgate.runner.leader import LeaderSampler, find_leader, preflight_leaders

_BASE = """
gate: {name: leader}
target:
  local:
    services:
      - {name: gateway, command: [python3], expose: true}
      - {name: matcher, command: [python3], replicas: 2}
load: {duration_s: 60, baseline_s: 5}
faults:
  - %s
"""


def _fault(body: str) -> Any:
    return load_config_text(_BASE % body, "gate.yaml").faults[0]


def _error(body: str) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_config_text(_BASE % body, "gate.yaml")
    return str(e.value)


def test_a_leader_loss_pauses_its_target_for_its_duration_and_watches_ten_seconds_after_by_default():
    f = _fault("{kind: leader_loss, target: matcher, duration_s: 5, at_s: 6}")
    assert (f.kind, f.target) == ("leader_loss", "matcher")
    assert f.params == {"mode": "pause", "duration_s": 5.0, "observe_s": 10.0}


def test_a_leader_loss_keeps_the_health_port_and_path_it_is_watched_on_aws_by():
    f = _fault("{kind: leader_loss, target: matcher, duration_s: 5, port: 8081, health_path: /hz, at_s: 6}")
    assert f.params == {
        "mode": "pause",
        "duration_s": 5.0,
        "observe_s": 10.0,
        "port": 8081,
        "health_path": "/hz",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{kind: leader_loss, target: matcher, duration_s: 5, port: 0, at_s: 6}", "faults[0].port"),
        ("{kind: leader_loss, target: matcher, duration_s: 5, port: 65536, at_s: 6}", "faults[0].port"),
        ("{kind: leader_loss, target: matcher, duration_s: 5, health_path: hz, at_s: 6}", "].health_path"),
        ("{kind: leader_loss, duration_s: 5, at_s: 6}", "faults[0].target"),
        ("{kind: leader_loss, target: nope, duration_s: 5, at_s: 6}", "faults[0].target"),
        ("{kind: leader_loss, target: matcher, at_s: 6}", "faults[0].duration_s"),
        ("{kind: leader_loss, target: matcher, duration_s: 0.49, at_s: 6}", "faults[0].duration_s"),
        ("{kind: leader_loss, target: matcher, duration_s: 5, observe_s: 0.9, at_s: 6}", "].observe_s"),
        ("{kind: leader_loss, target: matcher, duration_s: 5, mode: isolate, at_s: 6}", "faults[0].mode"),
        ("{kind: leader_loss, target: matcher, duration_s: 5, mode: partition, at_s: 6}", "faults[0].mode"),
    ],
)
def test_a_bad_leader_loss_is_a_config_error_naming_the_field(body: str, field: str) -> None:
    assert field in _error(body)


_PG_BASE = """
gate: {name: leader}
target:
  local:
    services:
      - {name: gateway, command: [python3], expose: true}
      - {name: matcher, command: [python3], replicas: 2, env: {PB_DSN: "${pg.dsn}"}}
      - {name: cron, command: [python3, "${pg.dsn}"]}
load: {duration_s: 60, baseline_s: 5}
faults:
  - %s
"""


def test_a_leader_loss_partition_is_accepted_on_a_service_that_reaches_postgres_through_the_dsn():
    for target in ("matcher", "cron"):  # ${pg.dsn} in its env or in its command
        body = f"{{kind: leader_loss, target: {target}, mode: partition, duration_s: 5, at_s: 6}}"
        f = load_config_text(_PG_BASE % body, "gate.yaml").faults[0]
        assert f.params == {"mode": "partition", "duration_s": 5.0, "observe_s": 10.0}


def test_a_leader_loss_partition_of_a_service_without_the_dsn_is_a_config_error_naming_the_mode():
    body = "{kind: leader_loss, target: gateway, mode: partition, duration_s: 5, at_s: 6}"
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_config_text(_PG_BASE % body, "gate.yaml")
    assert "faults[0].mode" in str(e.value) and "${pg.dsn}" in str(e.value)


@pytest.mark.parametrize(("lease_port", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_a_partitions_lease_port_is_a_tcp_port_at_its_exact_bounds(lease_port: int, ok: bool) -> None:
    body = (
        f"{{kind: leader_loss, target: matcher, mode: partition, lease_port: {lease_port}, duration_s: 5, "
        "at_s: 6}"
    )
    if ok:
        assert load_config_text(_PG_BASE % body, "gate.yaml").faults[0].params["lease_port"] == lease_port
        return
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_config_text(_PG_BASE % body, "gate.yaml")
    assert "faults[0].lease_port" in str(e.value)


def test_a_lease_port_on_a_pause_is_a_config_error_naming_it():
    body = "{kind: leader_loss, target: matcher, lease_port: 6432, duration_s: 5, at_s: 6}"
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_config_text(_PG_BASE % body, "gate.yaml")
    assert "faults[0].lease_port" in str(e.value) and "only mode: partition" in str(e.value)


def test_the_shortest_pause_and_observation_are_accepted_at_their_bounds():
    f = _fault("{kind: leader_loss, target: matcher, duration_s: 0.5, observe_s: 1, at_s: 6}")
    assert (f.params["duration_s"], f.params["observe_s"]) == (0.5, 1.0)


# ---- the leader from /health, against real HTTP servers on 127.0.0.1


class _Replica:
    """A replica's /health answering whatever ``body`` holds now."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                payload = json.dumps(replica.body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        # shutdown() waits for serve_forever's next poll (0.5 s by default): two replicas per test
        # made each teardown a second.
        poll = {"poll_interval": 0.05}
        threading.Thread(target=self.server.serve_forever, kwargs=poll, daemon=True).start()


class _Sup:
    def __init__(self, replicas: dict[str, _Replica]) -> None:
        self.reps = replicas
        self.restarts = dict.fromkeys(replicas, 0)

    def replicas(self, service: str) -> list[Any]:
        return [
            SimpleNamespace(replica_id=rid, port=r.port, pid=1, restarts=self.restarts[rid])
            for rid, r in self.reps.items()
        ]


@pytest.fixture
def two() -> Iterator[dict[str, _Replica]]:
    reps = {
        "m-0": _Replica({"ready": True, "leader": 1, "fencing_token": 7, "heartbeat_age_s": 0.4}),
        "m-1": _Replica({"ready": False, "leader": 0, "fencing_token": None, "heartbeat_age_s": 0.2}),
    }
    yield reps
    for r in reps.values():
        r.server.shutdown()


def test_the_leader_is_the_replica_whose_health_says_leader_one(two):
    assert find_leader(_Sup(two), "matcher") == ("m-0", 7)
    two["m-0"].body = {"leader": 0}
    with pytest.raises(GateError, match="leads now"):
        find_leader(_Sup(two), "matcher")


def test_preflight_refuses_a_target_without_a_leader_figure_naming_the_fault_field(two):
    f = _fault("{kind: leader_loss, target: matcher, duration_s: 5, at_s: 6}")
    for r in two.values():
        r.body = {"ready": True}
    with pytest.raises(ConfigError) as e:
        preflight_leaders([f], _Sup(two), timeout_s=0.5)
    assert e.value.where == f"faults.{f.name}.target"


def test_preflight_fails_when_no_replica_leads_in_time_and_passes_once_one_does(two):
    f = _fault("{kind: leader_loss, target: matcher, duration_s: 5, at_s: 6}")
    two["m-0"].body = {"leader": 0}
    with pytest.raises(GateError, match="no replica of 'matcher' led"):
        preflight_leaders([f], _Sup(two), timeout_s=0.3)
    two["m-1"].body = {"leader": 1, "fencing_token": 8}
    preflight_leaders([f], _Sup(two), timeout_s=0.3)


def _until(cond: Any, what: str, timeout_s: float = 15.0) -> None:
    """Wait (bounded) until ``cond()`` holds: the sampler's thread decides when it samples, not the test."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"not seen within {timeout_s} s: {what}"
        time.sleep(0.01)


def test_the_sampler_keeps_state_changes_the_highest_leading_heartbeat_and_restarts(two):
    sup = _Sup(two)
    sampler = LeaderSampler(sup, "matcher", interval_s=0.02).start()
    two["m-0"].body = {"ready": True, "leader": 1, "fencing_token": 7, "heartbeat_age_s": 2.5}
    _until(lambda: sampler.record()["max_leading_heartbeat_age_s"].get("m-0") == 2.5, "m-0 at 2.5 s")
    two["m-0"].body = {"ready": False, "leader": 0, "fencing_token": None, "heartbeat_age_s": 9.0}
    two["m-1"].body = {"ready": True, "leader": 1, "fencing_token": 8, "heartbeat_age_s": 0.3}
    sup.restarts["m-1"] = 1
    handed = {("m-0", 0), ("m-1", 1)}
    _until(lambda: {(s["replica"], s["leader"]) for s in sampler.record()["samples"]} >= handed, "handover")
    sampler.finish()
    rec = sampler.record()
    # per replica, the answered states in order (a probe that timed out on a loaded machine is a sample of
    # its own, answered False, between two equal answered states)
    seen: dict[str, list[tuple[Any, Any]]] = {}
    for s in rec["samples"]:
        if s["answered"] and seen.setdefault(s["replica"], [])[-1:] != [(s["leader"], s["token"])]:
            seen[s["replica"]].append((s["leader"], s["token"]))
    assert seen == {"m-0": [(1, 7), (0, None)], "m-1": [(0, None), (1, 8)]}
    leads = [(s["replica"], s["token"]) for s in rec["samples"] if s["answered"] and s["leader"] == 1]
    assert leads == [("m-0", 7), ("m-1", 8)]  # in that order
    assert rec["max_leading_heartbeat_age_s"] == {"m-0": 2.5, "m-1": 0.3}  # 9.0 was shown by no leader
    assert rec["restarts"] == {"m-0": 0, "m-1": 1}


def test_the_sampler_starts_only_once_the_deposed_leader_was_seen_leading_and_never_stamps_a_sample_late(two):
    """A probe that misses the leader (a busy machine) must not leave the run with no sample of it leading
    before the injection (CI stop 30: ``no replica was seen leading before the leader loss``); and a
    sample's time is cut to the millisecond, never rounded up past an injection that follows at once."""
    two["m-0"].body = {"ready": True, "leader": 0}  # not yet seen leading: start() keeps sampling
    sampler = LeaderSampler(_Sup(two), "matcher", interval_s=0.02)
    sampler.deposed = "m-0"
    threading.Timer(0.15, lambda: two["m-0"].body.update(leader=1, fencing_token=7)).start()
    sampler.start(settle_s=5.0)
    injected = time.time()
    sampler.finish()
    leading = [s for s in sampler.record()["samples"] if s["replica"] == "m-0" and s["leader"] == 1]
    assert leading and all(s["ts"] <= injected for s in leading)
    for _ in range(50):  # ts is floored: taken before ``injected`` means stamped at or before it
        sampler = LeaderSampler(_Sup(two), "matcher", interval_s=0.02)
        sampler.deposed = "m-1"  # never leads: start() gives up after settle_s
        sampler.start(settle_s=0.0)
        injected = time.time()
        sampler.finish()
        assert all(s["ts"] <= injected for s in sampler.record()["samples"])


def test_the_report_lists_a_leader_loss_samples_as_a_count_not_the_raw_samples():
    from resgate.evidence.report import report_markdown

    samples = [{"ts": 1.0, "replica": "m-0", "answered": True, "leader": 1, "token": 7, "ready": True}] * 3
    text = report_markdown(
        gate="g",
        run_id="r",
        verdict={"result": "PASS"},
        results=[],
        figures={},
        faults=[
            {
                "fault_id": "ll",
                "kind": "leader_loss",
                "target": "matcher",
                "event": "leader_samples",
                "detail": {"samples": samples},
            }
        ],
        plot=None,
    )
    assert "3 leader figure changes sampled" in text and '"replica"' not in text


def _grouped(a: tuple[int, int | None], b: tuple[int, int | None]) -> dict[str, Any]:
    """A /health body with two lease groups: ``(leader, token)`` of ``g0`` and ``g1``."""
    groups = {
        name: {"leader": lead, "fencing_token": tok, "ready": lead == 1, "heartbeat_age_s": 0.1}
        for name, (lead, tok) in (("g0", a), ("g1", b))
    }
    first = next((g for g in ("g0", "g1") if groups[g]["leader"] == 1), "g0")
    top = {k: v for k, v in groups[first].items() if k != "ready"}
    return {"ready": any(f["ready"] for f in groups.values()), **top, "lease_group": first, "groups": groups}


def test_the_sampler_follows_the_lost_group_of_a_service_whose_replicas_lead_different_groups(two):
    """Each replica leads a group: the top-level figures would show two leaders at once (a false split
    brain); the sampler reads every replica's figures of the group the deposed leader led under its token."""
    two["m-0"].body = _grouped((0, None), (1, 3))  # m-0 leads g1 under token 3
    two["m-1"].body = _grouped((1, 5), (0, None))  # m-1 leads g0 under token 5
    sampler = LeaderSampler(_Sup(two), "matcher", interval_s=0.02)
    sampler.deposed, sampler.deposed_token = "m-0", 3
    sampler.start()
    assert sampler.group == "g1"
    two["m-0"].body = _grouped((0, None), (0, None))  # m-0 paused
    sampler.wait(0.2)
    two["m-1"].body = _grouped((1, 5), (1, 4))  # m-1 took g1 with g1's next token; its top shows g0's 5
    sampler.wait(0.2)
    sampler.finish()
    rec = sampler.record()
    assert rec["group"] == "g1"
    states = [(s["replica"], s["leader"], s["token"], s["ready"]) for s in rec["samples"]]
    assert states == [
        ("m-0", 1, 3, True),
        ("m-1", 0, None, False),  # g0's leader, a standby of g1
        ("m-0", 0, None, False),
        ("m-1", 1, 4, True),
    ]


def test_the_sampler_reads_the_top_level_figures_of_a_service_with_one_group(two):
    one = {"ready": True, "leader": 1, "fencing_token": 7, "lease_group": "all", "groups": {"all": {}}}
    two["m-0"].body = one
    sampler = LeaderSampler(_Sup(two), "matcher", interval_s=0.02)
    sampler.deposed, sampler.deposed_token = "m-0", 7
    sampler.start()
    sampler.finish()
    assert sampler.group is None
    assert ("m-0", 1, 7) in [(s["replica"], s["leader"], s["token"]) for s in sampler.record()["samples"]]
