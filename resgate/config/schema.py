"""The gate config: one YAML file, validated up front; read by `resgate run` and by the CDK app.

Every error names the field and the file line (``faults[1].kind (gate.yaml:23): unknown fault kind``) and
is raised before anything is started or injected. Check thresholds are validated by the checkers' own
``from_dict`` so that the same rules hold in-process and in the assertion Lambdas.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from resgate.config.fields import Section
from resgate.config.kafka import KafkaSettings
from resgate.config.placeholders import check_placeholders
from resgate.config.yamlpos import Located, load_yaml_with_lines, read_yaml_file
from resgate.contract.errors import ConfigError, ConfigErrors

# Network faults act on a path between a service and a dependency (or its clients); see resgate.local.toxics.
NETWORK_FAULT_KINDS = ("network_partition", "network_latency", "packet_loss", "bandwidth", "connection_reset")
NETWORK_DEPENDENCIES = ("postgres", "kafka", "clients")
FAULT_KINDS = (
    *("stop_task", "hang", "db_blip", "kafka_broker_down", "kafka_latency", "duplicate_delivery"),
    *NETWORK_FAULT_KINDS,
    *("rate_limit_spike", "zone_loss"),
)
CHECK_NAMES = ("slo", "recovery", "retryable", "integrity", "replay")
PRODUCTION_TAG_VALUES = ("prod", "production", "live")
T = TypeVar("T")
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


@dataclass(frozen=True)
class AwsTarget:
    """The AWS counterpart: ECS cluster/service names and the tags FIS selects tasks by."""

    cluster: str
    services: dict[str, str]
    region: str | None = None
    target_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    environment: str
    tags: dict[str, str]
    services: list[LocalService]
    setup: str | None
    aws: AwsTarget | None

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

    def enabled_checks(self) -> list[str]:
        return [n for n in CHECK_NAMES if self.checks.get(n, {}).get("enabled", True)]


class _Errors:
    """Collects the ConfigErrors of independent parts of a config, so one pass reports all of them."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def attempt(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None after recording its ConfigError."""
        try:
            return fn(*args)
        except ConfigErrors as e:
            self.errors.extend(e.errors)
        except ConfigError as e:
            self.errors.append(e)
        return None

    def raise_any(self) -> None:
        """Raise the one error as it is, several as :class:`ConfigErrors`; nothing when there are none."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


def _name(sec: Section, key: str, default: Any = None) -> str:
    v = sec.str(key) if default is None else sec.str(key, default)
    if not _NAME_RE.match(v):
        raise sec.error(key, f"must match {_NAME_RE.pattern} (lowercase letters, digits, - and _), got {v!r}")
    return v


def _parse_service(sec: Section) -> LocalService:
    name = _name(sec, "name")
    command = sec.str_list("command")
    if not command:
        raise sec.error("command", "must not be empty")
    health_path = sec.str("health_path", "/ready")
    if not health_path.startswith("/"):
        raise sec.error("health_path", f"must start with '/', got {health_path!r}")
    for i, part in enumerate(command):
        check_placeholders(part, sec.loc.where(f"{sec.p('command')}[{i}]"))
    svc_env = sec.str_map("env", {})
    for k, v in svc_env.items():
        check_placeholders(v, sec.loc.where(f"{sec.p('env')}.{k}"))
    svc = LocalService(
        name=name,
        command=command,
        replicas=sec.num("replicas", 1, min=1, max=32, integer=True),
        env=svc_env,
        health_path=health_path,
        restart_delay_s=float(sec.num("restart_delay_s", 1.0, min=0)),
        start_timeout_s=float(sec.num("start_timeout_s", 90.0, min=1)),
        expose=sec.bool("expose", False),
        zones=_zones(sec),
    )
    sec.done()
    return svc


def _zones(sec: Section) -> list[str]:
    zones = sec.str_list("zones", [])
    if any(not _NAME_RE.match(z) for z in zones) or len(set(zones)) != len(zones):
        raise sec.error("zones", f"must be distinct names matching {_NAME_RE.pattern}, got {zones!r}")
    return zones


def _parse_target(sec: Section) -> Target:
    environment = sec.str("environment", "local")
    tags = sec.str_map("tags", {})
    local = sec.section("local")
    raw_services = local.list("services", [])
    errs = _Errors()
    parsed = [
        errs.attempt(lambda i=i, s=s: _parse_service(Section(s, f"{local.p('services')}[{i}]", sec.loc)))
        for i, s in enumerate(raw_services)
    ]
    errs.raise_any()
    services = [s for s in parsed if s is not None]
    names = [s.name for s in services]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise local.error("services", f"service names must be unique, repeated: {sorted(dup)}")
    exposed = [s.name for s in services if s.expose]
    if len(exposed) > 1:
        raise local.error("services", f"at most one service can be exposed to the load, got {exposed}")
    setup = local.str("setup", None)
    if setup is not None and ":" not in setup:
        raise local.error("setup", f"must be 'module:function', got {setup!r}")
    local.done()
    aws = None
    if sec.has("aws"):
        a = sec.section("aws")
        aws = AwsTarget(
            cluster=a.str("cluster"),
            services=a.str_map("services", {}),
            region=a.str("region", None),
            target_tags=a.str_map("target_tags", {}),
        )
        a.done()
    sec.done()
    return Target(environment=environment, tags=tags, services=services, setup=setup, aws=aws)


def _parse_load(sec: Section) -> Load:
    load = Load(
        users=sec.num("users", 20, min=1, max=10_000, integer=True),
        spawn_rate=float(sec.num("spawn_rate", 10.0, min=0.1)),
        duration_s=float(sec.num("duration_s", 60.0, min=1)),
        baseline_s=float(sec.num("baseline_s", 5.0, min=0)),
        locustfile=sec.str("locustfile", "loadgen/locustfile.py"),
        host=sec.str("host", None),
        env=sec.str_map("env", {}),
    )
    if load.baseline_s >= load.duration_s:
        raise sec.error("baseline_s", f"must be shorter than load.duration_s ({load.duration_s})")
    sec.done()
    return load


def _fault_target(sec: Section, target: Target, required: bool) -> str | None:
    """The service a fault acts on (process faults) or whose recovery it is judged by (the others,
    defaulting to the exposed service)."""
    if not required and not sec.has("target"):
        exposed = next((s.name for s in target.services if s.expose), None)
        return exposed or (target.services[0].name if target.services else None)
    name = sec.str("target")
    if target.services and target.service(name) is None:
        raise sec.error("target", f"no service named {name!r}; services: {[s.name for s in target.services]}")
    return name


def _parse_fault(sec: Section, index: int, target: Target, load: Load, infra: Infra) -> Fault:
    kind = sec.str("kind")
    if kind not in FAULT_KINDS:
        raise sec.error("kind", f"unknown fault kind {kind!r}; known: {list(FAULT_KINDS)}")
    name = sec.str("name", f"{kind}-{index + 1}")
    at_s = float(sec.num("at_s", min=0))
    if at_s < load.baseline_s:
        raise sec.error(
            "at_s", f"must be at or after the baseline window (load.baseline_s = {load.baseline_s})"
        )
    if at_s >= load.duration_s:
        raise sec.error("at_s", f"must be before the end of the load (load.duration_s = {load.duration_s})")
    params: dict[str, Any] = {}
    if kind in NETWORK_FAULT_KINDS or kind in ("rate_limit_spike", "zone_loss"):
        tgt = _parse_network_fault(sec, kind, target, params)
        sec.done()
        return Fault(name=name, kind=kind, at_s=at_s, target=tgt, params=params)
    tgt = _fault_target(sec, target, kind in ("stop_task", "hang"))
    if kind in ("stop_task", "hang"):
        params["percent"] = float(sec.num("percent", 50.0, min=0, max=100))
    if kind in ("hang", "db_blip", "kafka_broker_down", "kafka_latency"):
        params["duration_s"] = float(sec.num("duration_s", min=0))
    if kind in ("kafka_broker_down", "kafka_latency"):
        params["broker"] = sec.num("broker", 1, min=1, max=infra.kafka_brokers, integer=True)
    if kind == "kafka_latency":
        params["rtt_ms"] = sec.num("rtt_ms", min=0, max=60_000, integer=True)
    if kind == "duplicate_delivery":
        topics = sec.str_list("topics")
        if not topics:
            raise sec.error("topics", "must name at least one topic")
        params["topics"] = topics
        params["fraction"] = float(sec.num("fraction", 0.05, min=0, max=1))
        params["max_events"] = sec.num("max_events", 500, min=1, integer=True)
    sec.done()
    return Fault(name=name, kind=kind, at_s=at_s, target=tgt, params=params)


def _parse_network_fault(sec: Section, kind: str, target: Target, params: dict[str, Any]) -> str | None:
    """Fill ``params`` for a network, edge or zone fault; returns the service its recovery is judged by."""
    exposed = next((s.name for s in target.services if s.expose), None)
    if kind == "zone_loss":
        params["zone"] = sec.str("zone")
        tgt = _fault_target(sec, target, False) if sec.has("target") else None
        zoned = [s for s in target.services if params["zone"] in s.zones and (tgt is None or s.name == tgt)]
        if target.services and not zoned:
            raise sec.error("zone", f"no service has zone {params['zone']!r} (set zones: [...] on a service)")
        params["services"] = [s.name for s in zoned]
        return tgt or exposed or (zoned[0].name if zoned else None)
    if kind == "rate_limit_spike":
        if target.services and exposed is None:
            raise sec.error("kind", "a rate-limit spike needs an exposed service (the edge answers the 429s)")
        params["percent"] = float(sec.num("percent", 50.0, min=1, max=100))
        params["duration_s"] = float(sec.num("duration_s", min=0.1))
        params["retry_after_s"] = sec.num("retry_after_s", 1, min=1, max=60, integer=True)
        return exposed
    between = sec.str_list("between", [exposed or "", "clients"])
    if len(between) != 2 or between[1] not in NETWORK_DEPENDENCIES:
        raise sec.error("between", f"must be [service, one of {list(NETWORK_DEPENDENCIES)}], got {between!r}")
    service, dependency = between
    if target.services and target.service(service) is None:
        raise sec.error(
            "between", f"no service named {service!r}; services: {[s.name for s in target.services]}"
        )
    if dependency == "clients" and target.services and service != exposed:
        raise sec.error("between", f"only the exposed service ({exposed!r}) has clients on this machine")
    params["service"], params["dependency"] = service, dependency
    params["direction"] = sec.str("direction", "both", choices=("both", "upstream", "downstream"))
    if kind == "connection_reset":
        params["duration_s"] = float(sec.num("duration_s", 0.0, min=0))
        return service
    params["duration_s"] = float(sec.num("duration_s", min=0.1))
    if kind == "network_partition":
        params["mode"] = sec.str("mode", "hang", choices=("hang", "refuse"))
    elif kind == "network_latency":
        params["delay_ms"] = float(sec.num("delay_ms", min=100, max=5000))
        params["jitter_ms"] = float(sec.num("jitter_ms", 0.0, min=0, max=params["delay_ms"]))
    elif kind == "packet_loss":
        params["percent"] = float(sec.num("percent", min=5, max=50))
    elif kind == "bandwidth":
        params["kbps"] = float(sec.num("kbps", min=1, max=10_000_000))
    return service


def _parse_checks(sec: Section) -> dict[str, dict[str, Any]]:
    errs = _Errors()
    out: dict[str, dict[str, Any]] = {}
    for name in CHECK_NAMES:
        errs.attempt(_parse_check, sec, name, out)
    errs.raise_any()
    sec.done()
    return out


def _parse_check(sec: Section, name: str, out: dict[str, dict[str, Any]]) -> None:
    if not sec.has(name):
        out[name] = {"enabled": True}
        return
    raw = sec.raw(name)
    if raw is False:
        out[name] = {"enabled": False}
        return
    if not isinstance(raw, dict):
        raise sec.error(name, f"must be a mapping or false, got {raw!r}")
    body = dict(raw)
    enabled = body.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("must be true or false", where=sec.loc.where(f"{sec.p(name)}.enabled"))
    if enabled:  # a disabled check may keep an incomplete section
        from resgate.config.checks import validate_check_section

        validate_check_section(name, body, sec.p(name), sec.loc)
    out[name] = {"enabled": enabled, **body}


def parse_config(data: Any, loc: Located) -> GateConfig:
    """Validate parsed YAML and return a :class:`GateConfig`.

    Independent parts (the gate, the target and each service, infra, the load, each fault, guardrails,
    quiesce, each check, evidence) are validated one after another and every error is collected: one error
    is raised as a ConfigError naming field and line, several as :class:`ConfigErrors` listing each. A
    fault is validated only when what it depends on (target, load, infra) is valid.
    """
    root = Section(data, "", loc)
    errs = _Errors()
    gate = errs.attempt(_parse_gate, root)
    target = errs.attempt(lambda: _parse_target(root.section("target", required=True)))
    infra = errs.attempt(_parse_infra, root.section("infra"))
    kafka = errs.attempt(
        lambda: KafkaSettings.from_section(
            root.section("kafka"), default_region=target.aws.region if target and target.aws else None
        )
    )
    load = errs.attempt(_parse_load, root.section("load"))
    faults: list[Fault] = []
    faults_raw = errs.attempt(root.list, "faults", []) or []
    if target is not None and load is not None and infra is not None:
        for i, f in enumerate(faults_raw):
            fault = errs.attempt(
                lambda i=i, f=f: _parse_fault(Section(f, f"faults[{i}]", loc), i, target, load, infra)
            )
            if fault is not None:
                faults.append(fault)
        names = [f.name for f in faults]
        if len(set(names)) != len(names):
            errs.errors.append(root.error("faults", f"fault names must be unique: {names}"))
    guardrails = errs.attempt(_parse_guardrails, root.section("guardrails"))
    quiesce = errs.attempt(_parse_quiesce, root.section("quiesce"), loc)
    checks = errs.attempt(_parse_checks, root.section("checks"))
    evidence = errs.attempt(_parse_evidence, root.section("evidence"))
    errs.attempt(root.done)
    errs.raise_any()
    assert gate is not None and target is not None and infra is not None and load is not None
    assert guardrails is not None and quiesce is not None and checks is not None and evidence is not None
    name, description, allow_production, unknown_is_failure = gate
    return GateConfig(
        name=name,
        description=description,
        allow_production=allow_production,
        unknown_is_failure=unknown_is_failure,
        target=target,
        load=load,
        faults=faults,
        guardrails=guardrails,
        quiesce=quiesce,
        infra=infra,
        checks=checks,
        evidence=evidence,
        source=loc.source,
        raw=data,
        kafka=kafka or KafkaSettings(),
    )


def _parse_gate(root: Section) -> tuple[str, str, bool, bool]:
    gate = root.section("gate", required=True)
    name = _name(gate, "name")
    description = gate.str("description", "")
    allow_production = gate.bool("allow_production", False)
    unknown_is_failure = gate.bool("unknown_is_failure", True)
    gate.done()
    return name, description, allow_production, unknown_is_failure


def _parse_infra(sec: Section) -> Infra:
    infra = Infra(
        kafka_brokers=sec.num("kafka_brokers", 3, min=1, max=9, integer=True),
        kafka_partitions=sec.num("kafka_partitions", 6, min=1, max=256, integer=True),
    )
    sec.done()
    return infra


def _parse_guardrails(g: Section) -> Guardrails:
    guardrails = Guardrails(
        max_error_ratio=float(g.num("max_error_ratio", 0.5, min=0, max=1)),
        max_p95_ms=float(g.num("max_p95_ms", 5000.0, min=1)),
        window_s=float(g.num("window_s", 5.0, min=1)),
        consecutive_windows=g.num("consecutive_windows", 2, min=1, integer=True),
    )
    g.done()
    return guardrails


def _parse_quiesce(q: Section, loc: Located) -> Quiesce:
    groups = []
    for i, item in enumerate(q.list("consumer_groups", [])):
        cg = Section(item, f"quiesce.consumer_groups[{i}]", loc)
        groups.append(ConsumerGroup(group=cg.str("group"), topics=cg.str_list("topics")))
        cg.done()
    quiesce = Quiesce(
        timeout_s=float(q.num("timeout_s", 60.0, min=1)),
        consumer_groups=groups,
        drained_queries=q.str_list("drained_queries", []),
    )
    q.done()
    return quiesce


def _parse_evidence(ev: Section) -> Evidence:
    evidence = Evidence(root=ev.str("root", "evidence"))
    ev.done()
    return evidence


def load_config(path: str | Path) -> GateConfig:
    """Read, parse and validate a gate config file."""
    data, loc = read_yaml_file(Path(path))
    return parse_config(data, loc)


def load_config_text(text: str, source: str = "<config>") -> GateConfig:
    """Parse and validate gate config YAML text (tests, Lambda payloads)."""
    data, loc = load_yaml_with_lines(text, source)
    return parse_config(data, loc)


def check_blast_radius(cfg: GateConfig) -> None:
    """Refuse a target tagged as production unless the config explicitly allows it."""
    env_values = {
        cfg.target.environment.lower(),
        *(v.lower() for k, v in cfg.target.tags.items() if k.lower() in ("env", "environment", "stage")),
    }
    hits = sorted(env_values & set(PRODUCTION_TAG_VALUES))
    if hits and not cfg.allow_production:
        raise ConfigError(
            f"the target is tagged as production ({hits[0]}); set gate.allow_production: true to run faults "
            "against it",
            where="target.tags",
        )
