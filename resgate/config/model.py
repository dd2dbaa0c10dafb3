"""The gate config's typed model: the dataclasses :mod:`resgate.config.schema` builds from YAML, and the
names it accepts (fault kinds, check names). Data only; parsing and validation live in ``schema``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from resgate.checks.registry import CHECK_NAMES
from resgate.contract.errors import ConfigError
from resgate.sections.kafka import KafkaSettings
from resgate.sections.yamlpos import Located

# Network faults act on a path between a service and a dependency (or its clients); see resgate.local.toxics.
NETWORK_FAULT_KINDS = ("network_partition", "network_latency", "packet_loss", "bandwidth", "connection_reset")
NETWORK_DEPENDENCIES = ("postgres", "kafka", "clients")
MAX_LOAD_USERS = 10_000
"""The users budget of one load (``load.users``, and an ``overload``'s users × ``factor``): Locust users
on one machine or one load task, each a greenlet with its own connections."""
BALANCER_MODES = ("http", "tcp")
FAULT_KINDS = (
    *("stop_task", "hang", "db_blip", "kafka_broker_down", "kafka_latency", "duplicate_delivery"),
    *NETWORK_FAULT_KINDS,
    *("rate_limit_spike", "zone_loss"),
    "overload",
    "leader_loss",
)
PRODUCTION_TAG_VALUES = ("prod", "production", "live")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class LocalService:
    """One service the local supervisor runs (the local counterpart of an ECS service)."""

    name: str
    command: list[str]
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/ready"
    restart_delay_s: float = 1.0
    start_timeout_s: float = 90.0
    expose: bool = False
    zones: list[str] = field(default_factory=list)
    """Zone labels; replicas are spread over them round-robin (``zone_loss`` stops one zone)."""
    balancer: str = "http"
    """In front of the exposed service: ``http`` (an ALB: routes each request to a healthy replica) or
    ``tcp`` (an NLB or direct clients: each connection is piped to one replica)."""
    path: str = ""
    """Where the service is in the config (``target.local.services[0]``), for later error messages."""


@dataclass(frozen=True)
class AwsDatabase:
    """The target's database on AWS, for ``db_blip``: an RDS DB ``instance`` (FIS reboots it,
    ``aws:rds:reboot-db-instances``, through a Multi-AZ failover with ``force_failover``) or an Aurora
    ``cluster`` (FIS fails it over, ``aws:rds:failover-db-cluster``); exactly one of the two."""

    instance: str | None = None
    cluster: str | None = None
    force_failover: bool = False


@dataclass(frozen=True)
class AwsTarget:
    """The AWS counterpart: ECS cluster/service names, the tags FIS selects tasks by and the database."""

    cluster: str
    services: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    target_tags: dict[str, str] = field(default_factory=dict)
    database: AwsDatabase | None = None


@dataclass(frozen=True)
class Target:
    environment: str = "local"
    tags: dict[str, str] = field(default_factory=dict)
    services: list[LocalService] = field(default_factory=list)
    setup: str | None = None
    aws: AwsTarget | None = None

    def service(self, name: str) -> LocalService | None:
        return next((s for s in self.services if s.name == name), None)


@dataclass(frozen=True)
class Load:
    users: int = 20
    spawn_rate: float = 10.0
    duration_s: float = 60.0
    baseline_s: float = 5.0
    locustfile: str = "loadgen/locustfile.py"
    host: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 0
    """Locust worker processes under one master (0: one process, no master)."""
    arrival_rate: float | None = None
    """Open model: task iterations per second over all users (None: closed model, users' wait times)."""


@dataclass(frozen=True)
class Fault:
    """One scheduled fault; ``params`` hold the kind-specific, already validated parameters."""

    name: str
    kind: str
    at_s: float
    target: str | None
    params: dict[str, Any]


@dataclass(frozen=True)
class Guardrails:
    max_error_ratio: float = 0.5
    max_p95_ms: float = 5000.0
    window_s: float = 5.0
    consecutive_windows: int = 2


@dataclass(frozen=True)
class ConsumerGroup:
    group: str
    topics: list[str]


@dataclass(frozen=True)
class Quiesce:
    timeout_s: float = 60.0
    consumer_groups: list[ConsumerGroup] = field(default_factory=list)
    drained_queries: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Infra:
    """Sizing of the embedded Kafka (unused when RESGATE_KAFKA_BOOTSTRAP names a real broker)."""

    kafka_brokers: int = 3
    kafka_partitions: int = 6


@dataclass(frozen=True)
class Evidence:
    root: str = "evidence"


@dataclass(frozen=True)
class Profile:
    """A named load/fault profile (``profiles.<name>``, :mod:`resgate.config.profiles`): the config's load
    with its users, spawn rate and duration overridden, and the faults it runs (each validated)."""

    name: str
    load: Load
    faults: list[Fault]


@dataclass(frozen=True)
class GateConfig:
    name: str
    description: str
    allow_production: bool
    unknown_is_failure: bool
    target: Target
    load: Load
    faults: list[Fault]
    guardrails: Guardrails
    quiesce: Quiesce
    infra: Infra
    checks: dict[str, dict[str, Any]]
    evidence: Evidence
    source: str
    raw: dict[str, Any]
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    """How the gate's clients connect to the target's brokers (``kafka:``; default PLAINTEXT)."""
    profiles: dict[str, Profile] = field(default_factory=dict)
    """Named load/fault profiles (``profiles:``); none chosen means this config's own load and faults."""
    loc: Located | None = field(default=None, compare=False, repr=False)
    """The file lines of the config's keys (errors found after parsing name them too)."""

    def where(self, path: str) -> str:
        """``path (file:line)`` for a field of this config (the bare path when lines are unknown)."""
        return self.loc.where(path) if self.loc is not None else path

    thresholds: dict[str, Any] = field(default_factory=dict)
    """Each enabled check's typed thresholds (its checker's ``Thresholds``), parsed once when the config is
    loaded; the CLI, ``infra/settings.py`` and the runner read them here. ``checks`` keeps the raw sections
    (what the state machine hands the assertion Lambdas)."""

    def enabled_checks(self) -> list[str]:
        return [n for n in CHECK_NAMES if self.checks.get(n, {}).get("enabled", True)]

    def thresholds_of(self, name: str) -> Any | None:
        """The typed thresholds of check ``name``, or None when it is disabled. A check enabled without a
        section whose checker has no defaults (integrity, replay) raises its ConfigError here, when it is
        used, as it always did."""
        t = self.thresholds.get(name)
        if isinstance(t, ConfigError):
            raise ConfigError(str(t).removeprefix(f"{t.where}: ") if t.where else str(t), where=t.where)
        return t

    def with_profile(self, name: str | None) -> GateConfig:
        """This config with profile ``name``'s load and faults (itself for None); an unknown name is a
        ConfigError naming the known profiles."""
        if name is None:
            return self
        profile = self.profiles.get(name)
        if profile is None:
            raise ConfigError(f"unknown profile {name!r}; known: {sorted(self.profiles)}", where="profile")
        return replace(self, load=profile.load, faults=list(profile.faults))
