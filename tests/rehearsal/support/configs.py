"""The gate config a rehearsal and ``resgate run`` share: the default config (``resgate/configs/
paperbroker.yaml``), shortened, without what the AWS stack cannot do yet.

- the load runs :data:`LOAD_S` seconds (baseline 3 s) and the faults keep their order at times scaled to
  it, ``redeliver-events`` (``duplicate_delivery``) included: on AWS an FIS experiment whose SSM
  automation invokes the redeliver Lambda (the FIS twin runs it from its bundled asset against the local
  Kafka), locally the same redeliver function;
- the named ``profiles`` are the rehearsal's own (:data:`PROFILES`; the full config's name its faults at
  its times): ``pipeline`` is the config's own load and faults, ``nightly`` a heavier load
  (:data:`NIGHTLY_LOAD`), ``smoke`` the short good build ``make test`` runs (:data:`SMOKE_LOAD`, one
  fault); ``resgate run`` without ``--profile`` runs none of them;
- every check is enabled, ``replay`` included: locally its rebuild is the config's callable, in the
  rehearsal the replay Lambda runs the config's ``ecs_task`` (``paperbroker-projector``, the target's own
  task definition, which the ECS twin runs as ``python -m paperbroker.projections rebuild``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.rehearsal.support.assembly import ROOT, cache_root

LOAD_S = 20
USERS = 20  # the default config's users and spawn rate
# The rehearsal's profiles: the pipeline's is the config's own load; the nightly one heavier; the smoke
# one a very short load with one fault (make test).
NIGHTLY_LOAD = {"users": 40, "spawn_rate": 40, "duration_s": LOAD_S}
# As many users as the config's (its slo asks for 20 requests/s), for 14 s.
# On AWS the faults count from the load task's start, and Locust's own start took over 3 s on a loaded
# machine: a kill at 4 s then came before any request had completed (recovery unknown, "no baseline").
SMOKE_LOAD = {"users": USERS, "spawn_rate": USERS, "duration_s": 14}
SMOKE_FAULT_AT_S = {"kill-gateway": 7}
PROFILES = {
    "pipeline": {},
    "nightly": {"load": NIGHTLY_LOAD},
    "smoke": {
        "load": SMOKE_LOAD,
        "faults": [{"name": n, "at_s": at} for n, at in SMOKE_FAULT_AT_S.items()],
    },
}
FAULT_AT_S = {"kill-gateway": 5, "redeliver-events": 8, "kill-projector": 10, "kill-matcher": 13}
STREAMING_FAULTS = ("kill-gateway", "kill-projector")
# The guardrail scenario: every gateway replica stopped at 3 s and kept unready (``slow_start`` with
# ``PB_SLOW_START_S``), so the load's error ratio stays near 1; guardrails that trip on one 10-s period
# (the alarm twins' period, the load's publishing period); the next faults late enough that the trip
# comes first.
DISTRIBUTED_WORKERS = 2  # the ``distributed`` variant's load.workers (every profile inherits it)
GUARDRAIL_LOAD_S = 25
GUARDRAIL_FAULT_AT_S = {"kill-gateway": 3, "redeliver-events": 14, "kill-projector": 15, "kill-matcher": 18}


# The network scenario: the network gate config (``resgate/configs/network.yaml``) with one fault of each
# kind FIS runs as an ECS network action (blackhole-port, latency, packet-loss), shortened; each starts
# more than 10 s after the previous one ends, as the stack requires (infra.network_faults
# ``check_network_schedule``). Its partition in mode refuse, rate-limit spike and zone loss are left out:
# the first has no FIS action (the stack refuses it), the second none on AWS, the third is a stop-task.
NETWORK_LOAD_S = 50
NETWORK_FAULTS = [
    {"name": "partition-db-3s", "kind": "network_partition", "between": ["gateway", "postgres"],
     "mode": "hang", "duration_s": 3, "at_s": 8},
    {"name": "latency-clients-100ms", "kind": "network_latency", "between": ["gateway", "clients"],
     "delay_ms": 100, "jitter_ms": 20, "duration_s": 5, "at_s": 21},
    {"name": "loss-clients-5pct", "kind": "packet_loss", "between": ["gateway", "clients"], "percent": 5,
     "duration_s": 5, "at_s": 36},
]  # fmt: skip


# The leader-loss and overload scenarios (issue 25): one fault each under the smoke load, as the rehearsal's
# ``smoke`` profile. On AWS a leader loss is a reboot of the lease store, the target's database
# (``target.aws.database``: infra/data_faults.py), which the FIS twin runs as a ``db_blip``; locally it
# pauses the leader (mode pause). The matcher runs as a leader and a hot standby (its /health shows the
# leader figure; a standby's /ready is 503 by design).
# At 7 s, as the smoke kill: on a loaded machine an earlier fault came before any request had completed.
# ``port``: the matcher tasks' health port, which a leader loss needs on AWS (the load task samples each
# task's /health there); the ECS twin maps it, at each target task's own address, to that task's replica
LEADER_FAULT = {"name": "leader-loss", "kind": "leader_loss", "target": "matcher", "duration_s": 6,
                "observe_s": 4, "at_s": 7, "port": 8080}  # fmt: skip
LEADER_DATABASE = {"instance": "paperbroker-db"}
LEADER_LOAD_S = 18
# An overload by factor: the load's 10 users x 20 for 5 s (the load task's own shape on AWS), against
# gateways whose database takes 200 ms per order and that admit at most 8 requests at once
# (tests/e2e/gate_overload_factor.yaml under the smoke load's 14 s; with 100 traders the bug's accepted p95
# stayed under the 2-s bound there, with 200 it did not).
OVERLOAD_FAULT = {"name": "surge", "kind": "overload", "factor": 20, "duration_s": 5, "at_s": 5}
OVERLOAD_USERS = 10


def _smoke_of(data: dict, fault: dict) -> None:
    """``data``'s faults: ``fault`` alone; its profiles: ``smoke`` only (the smoke load, that fault)."""
    data["faults"] = [dict(fault)]
    data["profiles"] = {"smoke": {"load": dict(SMOKE_LOAD), "faults": [{"name": fault["name"]}]}}


def _leader(data: dict) -> None:
    matcher = next(s for s in data["target"]["local"]["services"] if s["name"] == "matcher")
    matcher.update(replicas=2, health_path="/health")
    data["target"]["aws"] = {"cluster": data["gate"]["name"], "database": dict(LEADER_DATABASE)}
    data["checks"]["recovery"]["max_heartbeat_age_s"] = 5
    # On AWS the lease store is every service's database: while it reboots the gateways shed orders (503 +
    # Retry-After; 12 % of the smoke load's requests with the twin's 2-s outage on a loaded machine), which
    # the local pause of the leader alone does not cause. The error budget is the run's.
    data["checks"]["slo"]["max_error_ratio"] = 0.3
    data["checks"]["replay"] = False  # a leader loss leaves the read models alone (as the e2e leader gate)
    _smoke_of(data, LEADER_FAULT)
    # The smoke load's 14 s left one second of load after the 6-s pause: the unfenced leader had nothing to
    # match beside its successor and the local gate passed the bug. 18 s leave five (the e2e leader gate's).
    data["profiles"]["smoke"]["load"]["duration_s"] = LEADER_LOAD_S


def _leader_partition(data: dict) -> None:
    """The leader loss as a partition (issue 25): on AWS the blackhole of the lease store's port on every
    matcher task (FIS cannot pick the leader), locally the leader's own path; no database to reboot."""
    _leader(data)
    data["target"]["aws"].pop("database")
    data["faults"][0]["mode"] = "partition"


def _overload(data: dict) -> None:
    data["target"]["local"]["setup"] = "paperbroker.slow_db:init_slow_system"
    gateway = next(s for s in data["target"]["local"]["services"] if s["name"] == "gateway")
    gateway["env"] = {**gateway["env"], "PB_MAX_IN_FLIGHT": "8"}
    data["guardrails"].update(max_error_ratio=1.0, max_p95_ms=60000, consecutive_windows=12)
    # A surge's sheds are failures by design, and the bug's queued orders wait seconds: their latency is
    # backpressure's to judge (the bug's p95 passed the rehearsal's 3-s bound on AWS and not locally).
    data["checks"]["slo"].update(max_error_ratio=0.8, min_throughput_rps=10, p95_ms=10000, p99_ms=15000)
    data["checks"]["recovery"]["error_ratio_tolerance"] = 0.1
    # 2026-12-07, load average 15-20, 200 traders for 5 s of a 14-s load: the good build's accepted p95
    # 0.49 s, the bug's 1.98 s (the e2e gate's 2-s bound, with its 24-s load, left the bug undecided here)
    data["checks"]["backpressure"] = {"recover_within_s": 5, "max_accepted_p95_ms": 1500}
    data["checks"]["replay"] = False
    _smoke_of(data, OVERLOAD_FAULT)
    data["profiles"]["smoke"]["load"].update(users=OVERLOAD_USERS, spawn_rate=OVERLOAD_USERS)


def _network(data: dict) -> None:
    data.clear()
    data.update(yaml.safe_load((ROOT / "resgate" / "configs" / "network.yaml").read_text()))
    data["load"].update(duration_s=NETWORK_LOAD_S, baseline_s=3)
    data["faults"] = [dict(f) for f in NETWORK_FAULTS]
    data["quiesce"]["timeout_s"] = 30
    data["evidence"]["root"] = str(cache_root() / "evidence")


def _variant(data: dict, variant: str) -> None:
    if variant == "default":
        return
    if variant == "network":
        _network(data)
        return
    if variant in ("leader", "leader_partition", "overload"):
        {"leader": _leader, "leader_partition": _leader_partition, "overload": _overload}[variant](data)
        return
    if variant == "pipeline":  # the default config as it is (its load, faults, quiesce)
        data.update(yaml.safe_load((ROOT / "resgate" / "configs" / "paperbroker.yaml").read_text()))
        data["evidence"]["root"] = str(cache_root() / "evidence")
        return
    if variant == "streaming":  # market-data subscribers and the streaming check through the kills of a
        # gateway (the feed's replica) and of the projector (the feed closes its subscribers to resume)
        data["load"]["env"] = {**(data["load"].get("env") or {}), "RESGATE_STREAM_SUBSCRIBERS": "3"}
        data["checks"]["streaming"] = {}
        data.pop("profiles")
        data["faults"] = [f for f in data["faults"] if f["name"] in STREAMING_FAULTS]
        return
    if variant == "distributed":  # the load as a master and two worker tasks (issue 27)
        data["load"]["workers"] = DISTRIBUTED_WORKERS
        return
    if variant != "guardrail":
        raise ValueError(f"no rehearsal config variant {variant!r}")
    data.pop("profiles")
    data["load"]["duration_s"] = GUARDRAIL_LOAD_S
    for f in data["faults"]:
        f["at_s"] = GUARDRAIL_FAULT_AT_S[f["name"]]
        if f["name"] == "kill-gateway":
            f["percent"] = 100
    data["guardrails"].update(window_s=2, consecutive_windows=2)


def rehearsal_config(variant: str = "default") -> Path:
    """Write the shared config (see the module; ``variant="guardrail"`` for the guardrail scenario,
    ``"distributed"`` for the load as a Locust master and two worker tasks,
    ``"pipeline"`` for the default config unchanged, to time a default run, ``"network"`` for the network
    scenario, :data:`NETWORK_FAULTS`, ``"streaming"`` for three market-data subscribers and the streaming
    check) into
    the rehearsal cache; return its path. The text is the same on every call, so the synthesized assembly
    is reused."""
    data = yaml.safe_load((ROOT / "resgate" / "configs" / "paperbroker.yaml").read_text())
    data["load"].update(duration_s=LOAD_S, baseline_s=3)
    data["faults"] = [dict(f, at_s=FAULT_AT_S[f["name"]]) for f in data["faults"] if f["name"] in FAULT_AT_S]
    data["quiesce"]["timeout_s"] = 30
    # The rehearsal proves the conductor, not paperbroker's latency: at a load average of 7 on 2 cores the
    # smoke run's p95 per endpoint passed 500 ms (p99 1.1 s) and failed slo. A latency bound a loaded
    # machine cannot break keeps the verdict about what the rehearsal checks.
    data["checks"]["slo"].update(p95_ms=3000, p99_ms=10000)
    data["profiles"] = PROFILES
    data["evidence"]["root"] = str(cache_root() / "evidence")
    _variant(data, variant)
    suffix = "" if variant == "default" else f"-{variant}"
    path = cache_root() / f"rehearsal-paperbroker{suffix}.yaml"
    text = "# The rehearsal's gate config: see tests/rehearsal/support/configs.py\n" + yaml.safe_dump(
        data, sort_keys=False
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
