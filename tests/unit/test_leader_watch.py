"""The load task's leader watch (``RESGATE_LEADER_WATCH``): on AWS it samples the target's replicas around
each leader loss with the local runner's sampler and writes one ``leader_samples`` row per fault, the row
the timeline Lambda attaches. The replicas here are real HTTP servers on 127.0.0.1 answering /health."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadgen.leader_watch import WATCH_FILE, LeaderWatch, LeaderWatcher, decode_watches, encode_watches
from resgate.contract.env import ENV_LEADER_WATCH
from resgate.contract.errors import ConfigError

WATCH = LeaderWatch("lose_lease", "matcher", "pb-cluster", "pb-matcher", 8080, "/health", 30.0, 10.0, 5.0)


def test_watches_round_trip_through_the_environment_and_none_is_empty() -> None:
    assert decode_watches(encode_watches([WATCH])) == (WATCH,)
    assert encode_watches([]) == "" and decode_watches("") == () and decode_watches(None) == ()
    assert WATCH.until_s == 45.0


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"port": 0}, "[0].port"),
        ({"port": 65536}, "[0].port"),
        ({"port": True}, "[0].port"),
        ({"at_s": -0.001}, "[0].at_s"),
        ({"at_s": float("nan")}, "[0].at_s"),  # json.dumps writes NaN, json.loads reads it back
        ({"duration_s": "3"}, "[0].duration_s"),
        ({"observe_s": float("inf")}, "[0].observe_s"),
        ({"service": ""}, "[0].service"),
        ({"path": "health"}, "[0].path"),
    ],
)
def test_a_malformed_watch_is_a_config_error_naming_its_field(change: dict[str, Any], where: str) -> None:
    item = {**json.loads(encode_watches([WATCH]))[0], **change}
    with pytest.raises(ConfigError) as e:
        decode_watches(json.dumps([item]))
    assert e.value.where == ENV_LEADER_WATCH + where


def test_the_edges_of_a_watch_are_accepted() -> None:
    item = {**json.loads(encode_watches([WATCH]))[0], "port": 65535, "at_s": 0, "observe_s": 0}
    assert decode_watches(json.dumps([item]))[0].port == 65535
    with pytest.raises(ConfigError, match="JSON"):
        decode_watches("[")


class _Health(BaseHTTPRequestHandler):
    bodies: dict[int, dict[str, Any]] = {}

    def do_GET(self) -> None:
        data = json.dumps(self.bodies[self.server.server_address[1]]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def replicas() -> Iterator[dict[str, int]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Health) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    ports = {"t1": servers[0].server_address[1], "t2": servers[1].server_address[1]}
    _Health.bodies = {
        ports["t1"]: {"leader": 1, "fencing_token": 3, "ready": True, "heartbeat_age_s": 0.2},
        ports["t2"]: {"leader": 0, "fencing_token": 3, "ready": False},
    }
    yield ports
    for s in servers:
        s.shutdown()
        s.server_close()


def _seen(watcher: LeaderWatcher, state: tuple[str, int, int], timeout_s: float = 10.0) -> bool:
    """Wait (bounded) until the watch's sampler has a sample ``(replica, leader, token)``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sampler = watcher._samplers.get("lose_lease")
        samples = sampler.record()["samples"] if sampler is not None else []
        if state in [(s["replica"], s["leader"], s["token"]) for s in samples]:
            return True
        time.sleep(0.02)
    return False


def test_the_watcher_samples_the_handover_from_the_deposed_leader_and_writes_its_row(
    tmp_path: Path, replicas
):
    watch = LeaderWatch("lose_lease", "matcher", "c", "s", 1, "/health", 0.0, 0.0, 60.0)
    watcher = LeaderWatcher(
        [watch],
        tmp_path,
        started=time.time(),
        sources=lambda w: lambda: [(t, "127.0.0.1", p, 0) for t, p in sorted(replicas.items())],
        interval_s=0.05,
    ).start()
    assert _seen(watcher, ("t1", 1, 3))
    # the lease store reboots: t2 takes over under a newer token
    _Health.bodies[replicas["t1"]] = {"leader": 0, "fencing_token": 3, "ready": False}
    _Health.bodies[replicas["t2"]] = {"leader": 1, "fencing_token": 4, "ready": True, "heartbeat_age_s": 0.1}
    assert _seen(watcher, ("t2", 1, 4))
    watcher.finish()  # the load ended inside the observe window: the watch records what it saw
    (row,) = [json.loads(line) for line in (tmp_path / WATCH_FILE).read_text().splitlines()]
    assert {k: row[k] for k in ("fault_id", "kind", "target", "event")} == {
        "fault_id": "lose_lease", "kind": "leader_loss", "target": "matcher", "event": "leader_samples"
    }  # fmt: skip
    d = row["detail"]
    assert (d["deposed"], d["deposed_token"], d["service"]) == ("t1", 3, "matcher")
    states = [(s["replica"], s["leader"], s["token"]) for s in d["samples"]]
    assert states[:2] == [("t1", 1, 3), ("t2", 0, 3)]  # before the fault, the deposed leader first
    assert sorted(states[2:]) == [("t1", 0, 3), ("t2", 1, 4)]  # the flip may fall between two probes
    assert d["max_leading_heartbeat_age_s"] == {"t1": 0.2, "t2": 0.1}


def test_a_watch_due_after_the_load_ended_records_nothing(tmp_path: Path) -> None:
    watch = LeaderWatch("late", "matcher", "c", "s", 1, "/health", 3600.0, 1.0, 1.0)
    watcher = LeaderWatcher([watch], tmp_path, started=time.time(), sources=lambda w: list).start()
    assert watcher.remaining_s() > 3600
    watcher.finish(2.0)
    assert not (tmp_path / WATCH_FILE).exists()


def test_the_load_task_uploads_the_leader_samples_to_the_runs_folder_where_the_timeline_reads_them(
    tmp_path: Path,
) -> None:
    """``leader_samples.jsonl`` goes to the run's folder, the key the timeline Lambda reads (``FILES``)."""
    from types import SimpleNamespace

    from loadgen.upload import upload_results
    from resgate.contract.layout import FILES

    (tmp_path / WATCH_FILE).write_text('{"event":"leader_samples"}\n')
    (tmp_path / "ledger.jsonl").write_text("")
    result = SimpleNamespace(
        ledger_path=str(tmp_path / "ledger.jsonl"),
        stats_path=str(tmp_path / "none.json"),
        log_path=str(tmp_path / "none.log"),
        nodes=(),
    )
    uploaded: dict[str, str] = {}

    class _S3:
        def upload_file(self, path: str, bucket: str, key: str, ExtraArgs: dict[str, str]) -> None:
            uploaded[key] = Path(path).name

    upload_results(result, "s3://evidence/root/gate=g/dt=2026-12-07/run_id=r1/", s3_client=_S3())
    assert uploaded[f"root/gate=g/dt=2026-12-07/run_id=r1/{FILES['leader_samples']}"] == WATCH_FILE


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / WATCH_FILE).read_text().splitlines()]


def test_a_watch_whose_replicas_cannot_be_listed_writes_a_row_that_says_why_and_recovery_is_unknown(
    tmp_path: Path,
) -> None:
    """No row at all would read as "no leader samples were recorded" with no cause (seen in the rehearsal
    when the load task's ECS calls went nowhere); the row names the error and recovery says it."""
    from resgate.checks.recovery.leader import LeaderObservation, leader_anomalies

    def denied() -> list[Any]:
        raise PermissionError("ecs:ListTasks denied")

    watch = LeaderWatch("lose_lease", "matcher", "c", "s", 1, "/health", 0.0, 0.0, 60.0)
    watcher = LeaderWatcher([watch], tmp_path, started=time.time(), sources=lambda w: denied).start()
    watcher.wait(10.0)
    (row,) = _rows(tmp_path)
    assert row["event"] == "leader_samples" and row["fault_id"] == "lose_lease"
    assert row["detail"]["error"] == "PermissionError: ecs:ListTasks denied"
    assert row["detail"]["samples"] == []
    obs = LeaderObservation.from_event(row)
    _, anomalies = leader_anomalies(obs, obs.started_ts + 0.001, rto_s=30, max_heartbeat_age_s=5)
    reasons = [a["reason"] for a in anomalies if a["kind"] == "no_data"]
    assert "the leader sampling failed: PermissionError: ecs:ListTasks denied" in reasons


def test_a_source_that_fails_mid_sampling_ends_the_sampling_with_its_error_in_the_row(
    tmp_path: Path, replicas
) -> None:
    broken = threading.Event()

    def flaky() -> list[Any]:
        if broken.is_set():
            raise ConnectionError("ECS endpoint unreachable")
        return [(t, "127.0.0.1", p, 0) for t, p in sorted(replicas.items())]

    watch = LeaderWatch("lose_lease", "matcher", "c", "s", 1, "/health", 0.0, 0.0, 60.0)
    watcher = LeaderWatcher(
        [watch], tmp_path, started=time.time(), sources=lambda w: flaky, interval_s=0.05
    ).start()
    assert _seen(watcher, ("t1", 1, 3))
    broken.set()
    watcher.wait(10.0)  # ends on its own at the error, long before its 60 s window
    (row,) = _rows(tmp_path)
    d = row["detail"]
    assert d["error"] == "ConnectionError: ECS endpoint unreachable"
    assert d["deposed"] == "t1" and d["samples"]  # what it saw before the error is kept
    assert d["ended_ts"] - d["started_ts"] < 10
