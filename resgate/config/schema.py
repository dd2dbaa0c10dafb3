"""The gate config: one YAML file, validated up front; read by `resgate run` and by the CDK app.

Every error names the field and the file line (``faults[1].kind (gate.yaml:23): unknown fault kind``) and
is raised before anything is started or injected. Check thresholds are validated by the checkers' own
``from_dict`` so that the same rules hold in-process and in the assertion Lambdas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from resgate.checks.registry import OPT_IN, parse_thresholds
from resgate.config.faults import fault_target, parse_fault
from resgate.config.model import (
    _NAME_RE,
    BALANCER_MODES,
    CHECK_NAMES,
    FAULT_KINDS,
    MAX_LOAD_USERS,
    NETWORK_DEPENDENCIES,
    NETWORK_FAULT_KINDS,
    PRODUCTION_TAG_VALUES,
    AwsDatabase,
    AwsTarget,
    ConsumerGroup,
    Evidence,
    Fault,
    GateConfig,
    Guardrails,
    Infra,
    Load,
    LocalService,
    Profile,
    Quiesce,
    Target,
)
from resgate.config.placeholders import check_placeholders
from resgate.contract.env import ENV_STREAM_SUBSCRIBERS
from resgate.contract.errors import ConfigError
from resgate.sections.fields import Errors, Section
from resgate.sections.kafka import KafkaSettings
from resgate.sections.yamlpos import Located, load_yaml_with_lines, read_yaml_file

__all__ = [
    "CHECK_NAMES",
    "FAULT_KINDS",
    "NETWORK_DEPENDENCIES",
    "NETWORK_FAULT_KINDS",
    "AwsTarget",
    "ConsumerGroup",
    "Evidence",
    "Fault",
    "GateConfig",
    "Guardrails",
    "Infra",
    "Load",
    "LocalService",
    "Profile",
    "Quiesce",
    "Target",
    "check_blast_radius",
    "fault_target",
    "load_config",
    "load_config_text",
    "parse_config",
]


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
        balancer=sec.str("balancer", "http", choices=BALANCER_MODES),
        path=sec.path,
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
    errs = Errors()
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
            database=_parse_aws_database(a.section("database")) if a.has("database") else None,
        )
        a.done()
    sec.done()
    return Target(environment=environment, tags=tags, services=services, setup=setup, aws=aws)


MAX_LOAD_WORKERS = 64
"""More Locust workers than this on one machine only adds scheduling noise; on Fargate, one task each."""


def _arrival_rate(sec: Section) -> float | None:
    if not sec.has("arrival_rate"):
        return None
    rate = float(sec.num("arrival_rate", min=0.001))
    if not rate < 1_000_000:
        raise sec.error("arrival_rate", f"must be < 1000000 requests/s, got {rate:g}")
    return rate


_DB_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")


def _parse_aws_database(sec: Section) -> AwsDatabase:
    """``target.aws.database``: ``{instance: <DB instance id>, force_failover?: bool}`` or ``{cluster: <Aurora
    cluster id>}``, exactly one of the two (RDS identifiers: a letter, then letters, digits, hyphens)."""
    given = [k for k in ("instance", "cluster") if sec.has(k)]
    if len(given) != 1:
        raise sec.error(
            "instance",
            "give exactly one of instance (an RDS DB instance id) or cluster (an Aurora DB cluster id), "
            f"got {given or 'neither'}",
        )
    key = given[0]
    ident = sec.str(key)
    if not _DB_IDENTIFIER.match(ident):
        raise sec.error(
            key, f"is not an RDS identifier (a letter, then letters, digits, hyphens), got {ident!r}"
        )
    force = bool(sec.bool("force_failover", False))
    if force and key == "cluster":
        raise sec.error(
            "force_failover", "applies to a DB instance's reboot; an Aurora cluster always fails over"
        )
    sec.done()
    return AwsDatabase(
        instance=ident if key == "instance" else None,
        cluster=ident if key == "cluster" else None,
        force_failover=force,
    )


def _parse_load(sec: Section) -> Load:
    load = Load(
        users=sec.num("users", 20, min=1, max=MAX_LOAD_USERS, integer=True),
        spawn_rate=float(sec.num("spawn_rate", 10.0, min=0.1)),
        duration_s=float(sec.num("duration_s", 60.0, min=1)),
        baseline_s=float(sec.num("baseline_s", 5.0, min=0)),
        locustfile=sec.str("locustfile", "loadgen/locustfile.py"),
        host=sec.str("host", None),
        env=sec.str_map("env", {}),
        workers=sec.num("workers", 0, min=0, max=MAX_LOAD_WORKERS, integer=True),
        arrival_rate=_arrival_rate(sec),
    )
    if load.baseline_s >= load.duration_s:
        raise sec.error("baseline_s", f"must be shorter than load.duration_s ({load.duration_s})")
    if load.workers > load.users:
        # Locust would leave a worker without users: its ledger part would be empty, not missing
        raise sec.error(
            "workers", f"must be <= load.users ({load.users}): every worker runs at least one user"
        )
    sec.done()
    return load


def _parse_checks(sec: Section) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``(sections, thresholds)``: each check's raw section with ``enabled``, and each enabled check's typed
    thresholds, parsed here once by its checker."""
    errs = Errors()
    out: dict[str, dict[str, Any]] = {}
    thresholds: dict[str, Any] = {}
    for name in CHECK_NAMES:
        errs.attempt(_parse_check, sec, name, out, thresholds)
    errs.raise_any()
    sec.done()
    return out, thresholds


def _parse_check(sec: Section, name: str, out: dict[str, dict[str, Any]], thresholds: dict[str, Any]) -> None:
    if not sec.has(name) and name in OPT_IN:
        out[name] = {"enabled": False}
        return
    if not sec.has(name):
        out[name] = {"enabled": True}
        # An absent section is the checker's defaults; a checker that has none (integrity and replay need
        # their tables) fails when the check is run, as a section that is not valid on its own.
        try:
            thresholds[name] = parse_thresholds(name, {}, sec.p(name))
        except ConfigError as e:
            thresholds[name] = e
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
        thresholds[name] = _parse_check_section(name, body, sec.p(name), sec.loc)
    out[name] = {"enabled": enabled, **body}


def _parse_check_section(name: str, body: dict[str, Any], path: str, loc: Located) -> Any:
    """The check's typed thresholds, parsed by its checker; its ConfigError re-raised with the field's
    line."""
    try:
        return parse_thresholds(name, body, path)
    except ConfigError as e:
        field_path = (e.where or path).split(" (")[0]
        msg = str(e)
        if e.where and msg.startswith(f"{e.where}: "):
            msg = msg[len(e.where) + 2 :]
        raise ConfigError(msg, where=loc.where(field_path)) from None


def parse_config(data: Any, loc: Located) -> GateConfig:
    """Validate parsed YAML and return a :class:`GateConfig`.

    Independent parts (the gate, the target and each service, infra, the load, each fault, guardrails,
    quiesce, each check, evidence) are validated one after another and every error is collected: one error
    is raised as a ConfigError naming field and line, several as :class:`ConfigErrors` listing each. A
    fault is validated only when what it depends on (target, load, infra) is valid.
    """
    root = Section(data, "", loc)
    errs = Errors()
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
                lambda i=i, f=f: parse_fault(Section(f, f"faults[{i}]", loc), i, target, load, infra)
            )
            if fault is not None:
                faults.append(fault)
        names = [f.name for f in faults]
        if len(set(names)) != len(names):
            errs.errors.append(root.error("faults", f"fault names must be unique: {names}"))
    profiles = _parse_profiles(root, loc, errs, target, load, infra, faults, faults_raw)
    guardrails = errs.attempt(_parse_guardrails, root.section("guardrails"))
    quiesce = errs.attempt(_parse_quiesce, root.section("quiesce"), loc)
    checks_and_thresholds = errs.attempt(_parse_checks, root.section("checks"))
    if checks_and_thresholds is not None and len(faults) == len(faults_raw):
        fault_names = {f.name for f in faults} | {f.name for p in profiles.values() for f in p.faults}
        errs.attempt(_check_phase_faults, checks_and_thresholds[0], fault_names, loc)
    if checks_and_thresholds is not None and load is not None:
        errs.attempt(_check_latency_from, checks_and_thresholds[1], load, profiles, loc)
        errs.attempt(_check_stream_subscribers, checks_and_thresholds[0], load, loc)
    evidence = errs.attempt(_parse_evidence, root.section("evidence"))
    errs.attempt(root.done)
    errs.raise_any()
    assert gate is not None and target is not None and infra is not None and load is not None
    assert guardrails is not None and quiesce is not None and checks_and_thresholds is not None
    assert evidence is not None
    checks, thresholds = checks_and_thresholds
    _checks_of_fault_kinds(
        root, checks, thresholds, [*faults, *(f for p in profiles.values() for f in p.faults)]
    )
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
        profiles=profiles,
        loc=loc,
        thresholds=thresholds,
    )


FAULT_KIND_CHECKS = {"backpressure": "overload"}
"""Checks that judge one fault kind: without a section of their own they run only when the gate (or one
of its profiles) has a fault of that kind (else every gate without one would be "unknown")."""


def _checks_of_fault_kinds(
    root: Section, checks: dict[str, dict[str, Any]], thresholds: dict[str, Any], faults: list[Fault]
) -> None:
    kinds = {f.kind for f in faults}
    section = root.raw("checks") if root.has("checks") else None
    for name, kind in FAULT_KIND_CHECKS.items():
        if kind not in kinds and not (isinstance(section, dict) and name in section):
            checks[name] = {"enabled": False}
            thresholds.pop(name, None)


def _check_stream_subscribers(checks: dict[str, dict[str, Any]], load: Load, loc: Located) -> None:
    """An enabled ``checks.streaming`` needs a stream ledger: the load must run market-data subscribers
    (``load.env.RESGATE_STREAM_SUBSCRIBERS`` >= 1), or the check could only ever be unknown."""
    if not (checks.get("streaming") or {}).get("enabled"):
        return
    raw = str(load.env.get(ENV_STREAM_SUBSCRIBERS, "")).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"needs a stream ledger: set load.env.{ENV_STREAM_SUBSCRIBERS} to 1 or more market-data"
            f" subscribers (got {raw or 'nothing'})",
            where=loc.where("checks.streaming"),
        )


def _check_phase_faults(checks: dict[str, dict[str, Any]], fault_names: set[str], loc: Located) -> None:
    """A ``checks.slo.phases.<during|recovery>.per_fault`` key must name a fault of the gate (or of one of
    its profiles) or a fault kind: a typo would otherwise silently judge nothing."""
    slo = checks.get("slo") or {}
    if not slo.get("enabled", True):
        return
    from resgate.checks.slo import PhaseLimits

    limits = PhaseLimits.from_dict(slo.get("phases"), where="checks.slo.phases")
    for path, name in limits.fault_keys():
        if name not in fault_names and name not in FAULT_KINDS:
            raise ConfigError(
                f"no fault or fault kind named {name!r}; faults: {sorted(fault_names)}, kinds: "
                f"{list(FAULT_KINDS)}",
                where=loc.where(f"checks.slo.phases.{path}"),
            )


def _check_latency_from(
    thresholds: dict[str, Any], load: Load, profiles: dict[str, Profile], loc: Located
) -> None:
    """``checks.slo.latency_from: intended`` judges latency from each request's intended start, which only the
    open model has: the load (and every profile's) must set ``arrival_rate``, or the check could judge
    nothing."""
    slo = thresholds.get("slo")
    if slo is None or getattr(slo, "latency_from", "sent") != "intended":
        return
    closed = ["load"] * (load.arrival_rate is None) + [
        f"profiles.{n}" for n, p in profiles.items() if p.load.arrival_rate is None
    ]
    if closed:
        raise ConfigError(
            f"'intended' needs the open model: set load.arrival_rate (closed model in {', '.join(closed)})",
            where=loc.where("checks.slo.latency_from"),
        )


def _parse_profiles(
    root: Section,
    loc: Located,
    errs: Errors,
    target: Target | None,
    load: Load | None,
    infra: Infra | None,
    faults: list[Fault],
    faults_raw: list[Any],
) -> dict[str, Profile]:
    """Every profile, validated as a whole config (:mod:`resgate.config.profiles`); errors go to ``errs``.
    Profiles are checked only once what they derive from (target, load, infra, every fault) is valid."""
    from resgate.config.profiles import parse_profiles

    if target is None or load is None or infra is None or len(faults) != len(faults_raw):
        errs.attempt(root.raw, "profiles", None)
        return {}
    parsed = parse_profiles(
        root,
        loc,
        base_load=dict(root.raw("load", {})),
        base_faults=[(f.name, dict(raw)) for f, raw in zip(faults, faults_raw, strict=True)],
        parse_load=_parse_load,
        parse_fault=lambda sec, i, pload: parse_fault(sec, i, target, pload, infra),
        name_re=_NAME_RE,
        attempt=errs.attempt,
    )
    return {n: Profile(name=n, load=pl, faults=pf) for n, (pl, pf) in parsed.items()}


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
