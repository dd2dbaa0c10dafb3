"""The local target: embedded (or env-provided) Postgres and Kafka, the supervised services, the balancer.

It is the local stand-in for what the CDK stack points at on AWS (RDS, MSK, an ECS service behind an ALB).
``LocalTarget`` is a context manager: whatever was started is stopped on every exit path.

Network paths (``paths``): the balancer carries ``(exposed, "clients")``; a service that a network fault
names with ``postgres`` gets its own :class:`~resgate.local.faultproxy.FaultProxy` and ``${pg.dsn}`` pointing
at it. A service that a ``leader_loss`` with ``mode: partition`` targets gets one proxy *per replica*
(``replica_paths``, keyed by replica id, each replica's ``${pg.dsn}`` its own, chained in front of the
service's path when that is proxied too), so a fault cuts one replica (the leader) off from the database
while its standbys keep theirs. Kafka is not proxied: its clients connect to every broker address the cluster
advertises, so Kafka network faults use the embedded broker's own controls (see ``resgate.runner.faults``).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from resgate.config.placeholders import fill
from resgate.config.runnable import config_dir
from resgate.config.schema import GateConfig, LocalService, parse_config
from resgate.contract.errors import ConfigError, GateError
from resgate.local.balancer import Balancer
from resgate.local.faultproxy import FaultProxy, dsn_address, proxied_dsn
from resgate.local.http_balancer import HttpBalancer
from resgate.local.kafka import EmbeddedKafka, ExternalKafka, kafka_from_env
from resgate.local.postgres import EmbeddedPostgres, ExternalPostgres, create_database, postgres_from_env
from resgate.local.spec import ServiceSpec
from resgate.local.supervisor import Supervisor
from resgate.local.toxics import Toxics
from resgate.sections.yamlpos import Located


def resolve_callable(ref: str, where: str) -> Callable[..., Any]:
    """Import ``module:function``; a ConfigError names the field when it does not resolve."""
    module, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {ref!r}: {e}", where=where) from e
    if not callable(fn):
        raise ConfigError(f"{ref!r} is not callable", where=where)
    return fn


def parse_services(services: Sequence[Mapping[str, Any]], source: str = "<services>") -> list[LocalService]:
    """Validate services given as plain data in the gate config's ``target.local.services`` shape.

    A system under test describes its services this way (e.g. ``paperbroker.system.system_services``)
    without importing the gate; the gate config's own parser checks them, so the rules are the config's.
    Returns the parsed services; a ConfigError names ``target.local.services[i].<field>``.
    """
    data = {"gate": {"name": "services"}, "target": {"local": {"services": [dict(s) for s in services]}}}
    return parse_config(data, Located(source, {})).target.services


def service_specs(
    services: Sequence[LocalService],
    *,
    values: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    cwd: str | None = None,
    replica_values: Sequence[Mapping[str, str]] = (),
) -> list[ServiceSpec]:
    """The supervisor's ServiceSpecs for the config's local services: ``${...}`` placeholders in commands and
    environments filled from ``values`` (``${port}`` and the placeholders ``replica_values`` names are left
    for the supervisor to fill per replica), health polled on ``http://127.0.0.1:{port}<health_path>``, run
    in ``cwd`` (the config file's folder), each tagged ``{"service": name, **tags}``. Returns them in the
    order given."""
    vals = dict(values or {})
    keep = ("port", *sorted({k for v in replica_values for k in v}))
    return [
        ServiceSpec(
            name=s.name,
            command=[fill(part, vals, keep=keep) for part in s.command],
            replicas=s.replicas,
            env={k: fill(v, vals, keep=keep) for k, v in s.env.items()},
            health_url=f"http://127.0.0.1:{{port}}{s.health_path}",
            restart_delay_s=s.restart_delay_s,
            start_timeout_s=s.start_timeout_s,
            tags={"service": s.name, **(tags or {})},
            zones=list(s.zones),
            cwd=cwd,
            replica_values=[dict(v) for v in replica_values],
        )
        for s in services
    ]


_PG_FAULTS = frozenset({"db_blip"})
_KAFKA_FAULTS = frozenset({"kafka_broker_down", "kafka_latency", "duplicate_delivery"})


def _mentions(cfg: GateConfig, placeholder: str) -> bool:
    return any(placeholder in part for s in cfg.target.services for part in (*s.command, *s.env.values()))


def needs_postgres(cfg: GateConfig) -> bool:
    """Whether the run needs a Postgres: a service uses ``${pg.dsn}``, or the setup hook, the integrity or
    replay check, a drained query or a database fault does."""
    return bool(
        _mentions(cfg, "${pg.dsn}")
        or cfg.target.setup
        or {"integrity", "replay"} & set(cfg.enabled_checks())
        or cfg.quiesce.drained_queries
        or any(f.kind in _PG_FAULTS or f.params.get("dependency") == "postgres" for f in cfg.faults)
    )


def needs_kafka(cfg: GateConfig) -> bool:
    """Whether the run needs Kafka: a service uses ``${kafka.bootstrap}``, or the setup hook, the integrity
    or replay check, a consumer group to drain or a Kafka fault does."""
    return bool(
        _mentions(cfg, "${kafka.bootstrap}")
        or cfg.target.setup
        or {"integrity", "replay"} & set(cfg.enabled_checks())
        or cfg.quiesce.consumer_groups
        or any(f.kind in _KAFKA_FAULTS or f.params.get("dependency") == "kafka" for f in cfg.faults)
    )


class LocalTarget:
    """Starts the infrastructure and services of a gate config; exposes the handles faults need.

    Attributes after ``start()``: ``pg`` (server), ``dsn`` (the run's database), ``kafka``, ``bootstrap``,
    ``supervisor``, ``host`` (base URL the load uses), ``log_dir``.
    """

    def __init__(
        self,
        cfg: GateConfig,
        run_id: str,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        log_dir: Path | None = None,
        say: Callable[[str], None] = print,
        kept_logs: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.on_event = on_event
        self.say = say
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="resgate-logs-"))
        # where the run keeps the service logs once it ends (the evidence's logs/ folder): error messages
        # name that path, since log_dir is a temporary folder removed at the end of the run
        self.kept_logs = kept_logs or self.log_dir
        self._stack = ExitStack()
        self.pg: EmbeddedPostgres | ExternalPostgres | None = None
        self.kafka: EmbeddedKafka | ExternalKafka | None = None
        self.supervisor: Supervisor | None = None
        self.balancer: Balancer | None = None  # an HttpBalancer (balancer: http) or the TCP one
        self.dsn = ""
        self.bootstrap = ""
        self.host = cfg.load.host or ""
        self.paths: dict[tuple[str, str], Toxics] = {}  # (service, dependency) -> the toxics of that path
        self._proxies: dict[tuple[str, str], Balancer] = {}  # the proxy carrying each path
        self.replica_paths: dict[tuple[str, str], FaultProxy] = {}  # (replica id, dependency) -> its proxy

    def __enter__(self) -> LocalTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_infra(self) -> None:
        """Start Postgres and Kafka (or attach to RESGATE_PG_DSN / RESGATE_KAFKA_BOOTSTRAP), each only when
        the run needs it (:func:`needs_postgres`, :func:`needs_kafka`)."""
        if needs_postgres(self.cfg):
            self.say("starting Postgres")
            self.pg = self._stack.enter_context(postgres_from_env())
            # A database per run keeps runs apart even on a shared server.
            self.dsn = create_database(self.pg.dsn, f"resgate_{uuid.uuid4().hex[:10]}")
        if not needs_kafka(self.cfg):
            return
        self.say("starting Kafka")
        self.kafka = self._stack.enter_context(
            kafka_from_env(
                brokers=self.cfg.infra.kafka_brokers, default_partitions=self.cfg.infra.kafka_partitions
            )
        )
        self.bootstrap = self.kafka.bootstrap

    def values(self) -> dict[str, str]:
        return {
            "python": sys.executable,
            "pg.dsn": self.dsn,
            "kafka.bootstrap": self.bootstrap,
            "run_id": self.run_id,
        }

    def setup(self) -> None:
        """Run the target's setup hook (schemas, topics), called as ``fn(dsn, bootstrap, kafka=...)``."""
        if not self.cfg.target.setup:
            return
        fn = resolve_callable(self.cfg.target.setup, "target.local.setup")
        self.say(f"setting up the target ({self.cfg.target.setup})")
        try:
            fn(self.dsn, self.bootstrap, kafka=self.kafka)
        except Exception as e:
            raise GateError(f"target setup {self.cfg.target.setup} failed: {e}") from e

    def start_services(self, timeout_s: float | None = None) -> None:
        """Start the supervised services and the balancer in front of the exposed one; wait until healthy."""
        services = self.cfg.target.services
        if not services:
            if not self.host:
                raise ConfigError("no local services and no load.host: nothing to test", where="target.local")
            return
        cwd = str(config_dir(self.cfg))
        specs: list[ServiceSpec] = []
        for s in services:
            vals = self._service_values(s.name)
            specs += service_specs(
                [s],
                values=vals,
                tags=self.cfg.target.tags,
                cwd=cwd,
                replica_values=self._replica_values(s, vals),
            )
        self.supervisor = Supervisor(specs, log_dir=self.log_dir, on_event=self.on_event)
        self._stack.callback(self.supervisor.shutdown)
        self.say(f"starting {sum(s.replicas for s in services)} replicas of {len(services)} services")
        self.supervisor.start()
        exposed = next((s for s in services if s.expose), None)
        if exposed is not None and not self.cfg.load.host:
            sup = self.supervisor
            if exposed.balancer == "http":
                self.balancer = HttpBalancer(
                    0,
                    backends=lambda: sup.healthy_endpoints(exposed.name),
                    registered=lambda: sup.running_endpoints(exposed.name),
                    name=exposed.name,
                )
            else:
                self.balancer = Balancer(
                    0, backends=lambda: sup.healthy_endpoints(exposed.name), name=exposed.name
                )
            port = self.balancer.start()
            self._stack.callback(self.balancer.stop)
            self.host = f"http://127.0.0.1:{port}"
            self.paths[(exposed.name, "clients")] = self.balancer.toxics
            self._proxies[(exposed.name, "clients")] = self.balancer
        limit = timeout_s or max(s.start_timeout_s for s in services)
        if not self.supervisor.wait_healthy(limit):
            raise GateError(self._start_error(limit))

    def _start_error(self, limit: float) -> str:
        """Why the services did not start: each failed replica with its health check's last answer, the
        last lines of its log and where the log is kept."""
        assert self.supervisor is not None
        failed = self.supervisor.failed_starts()
        if failed:
            parts = []
            for f in failed:
                tail = "\n".join(f"    | {line}" for line in f["log_tail"]) or "    | (empty log)"
                parts.append(
                    f"service {f['service']}, replica {f['replica']} failed to start: {f['reason']}\n"
                    f"  last health check: {f['last_probe'] or 'none answered yet'}\n"
                    f"  log: {self.kept_logs / Path(f['log']).name}, last lines:\n{tail}"
                )
            return "\n".join(parts)
        lines = [f"services did not become healthy within {limit:.0f}s:"]
        for r in self.supervisor.status():
            if r["state"] != "healthy":
                log = self.kept_logs / f"{r['replica']}.log"
                lines.append(
                    f"  {r['replica']}: {r['state']}, {r['restarts']} restarts, last health check: "
                    f"{r['last_probe'] or 'none answered yet'}; log: {log}"
                )
        return "\n".join(lines)

    def _service_values(self, service: str) -> dict[str, str]:
        """Placeholder values for one service: ``${pg.dsn}`` goes through a fault proxy when a network
        fault names the path ``[service, postgres]``."""
        vals = self.values()
        wanted = {
            f.params.get("service")
            for f in self.cfg.faults
            if f.params.get("dependency") == "postgres" and f.params.get("service")
        }
        if service in wanted and self.dsn:
            proxy = FaultProxy(dsn_address(self.dsn), name=f"{service}-postgres")
            proxy.start()
            self._stack.callback(proxy.stop)
            self.paths[(service, "postgres")] = proxy.toxics
            self._proxies[(service, "postgres")] = proxy
            vals["pg.dsn"] = proxied_dsn(self.dsn, proxy.address)
        return vals

    def _replica_values(self, service: LocalService, vals: Mapping[str, str]) -> list[dict[str, str]]:
        """Each replica's own ``${pg.dsn}`` through a proxy of its own, for a service a ``leader_loss`` with
        ``mode: partition`` targets (upstream: the service's ``${pg.dsn}``, itself a proxy when a network
        fault names the service's path); empty for every other service."""
        wanted = any(
            f.kind == "leader_loss" and f.params.get("mode") == "partition" and f.target == service.name
            for f in self.cfg.faults
        )
        if not wanted or not vals.get("pg.dsn"):
            return []
        out = []
        for i in range(service.replicas):
            rid = f"{service.name}-{i}"  # the supervisor's replica id (resgate.local.replica)
            proxy = FaultProxy(dsn_address(vals["pg.dsn"]), name=f"{rid}-postgres")
            proxy.start()
            self._stack.callback(proxy.stop)
            self.replica_paths[(rid, "postgres")] = proxy
            out.append({"pg.dsn": proxied_dsn(vals["pg.dsn"], proxy.address)})
        return out

    def replica_path(self, replica_id: str, dependency: str) -> FaultProxy | None:
        """The proxy carrying one replica's own path to ``dependency`` (``postgres``), or None when that
        replica has none (see :meth:`_replica_values`)."""
        return self.replica_paths.get((replica_id, dependency))

    def path(self, service: str, dependency: str) -> Toxics | None:
        """The toxics of the path ``service → dependency`` (``clients`` → service for "clients"); None
        when the path is not proxied (Kafka, or a service no network fault named)."""
        return self.paths.get((service, dependency))

    def path_stats(self, service: str, dependency: str) -> dict[str, int] | None:
        """The counters of the proxy carrying ``service → dependency`` (connections, refused…), or None."""
        proxy = self._proxies.get((service, dependency))
        return proxy.stats() if proxy is not None else None

    def close(self) -> None:
        """Stop everything that was started, in reverse order."""
        if self.balancer is not None and self.supervisor is not None:
            self.say(f"balancer: {self.balancer_summary()}")
        self._stack.close()

    def balancer_summary(self) -> str:
        """Requests (``balancer: http``) or client connections (``tcp``) per replica behind the balancer,
        e.g. ``gateway-0=12 gateway-1=11 gateway-1#2=9`` (``#2``: the replica's first replacement)."""
        assert self.balancer is not None and self.supervisor is not None
        # Each start of a replica listens on a new port: name them gateway-1, gateway-1#2 (its first
        # replacement), ... from the supervisor's started/restarted events.
        names: dict[int, str] = {}
        starts: dict[str, int] = {}
        for e in self.supervisor.timeline():
            port = e["detail"].get("port")
            if e["event"] in ("started", "restarted") and isinstance(port, int):
                n = starts[e["replica"]] = starts.get(e["replica"], 0) + 1
                names[port] = e["replica"] if n == 1 else f"{e['replica']}#{n}"
        per = self.balancer.connections_per_backend()
        parts = [f"{names.get(port, f'{host}:{port}')}={n}" for (host, port), n in sorted(per.items())]
        stats = self.balancer.stats()
        if isinstance(self.balancer, HttpBalancer):
            answered = ", ".join(f"{stats[f'http_{c}']} x {c}" for c in (502, 503, 504) if stats[f"http_{c}"])
            routed = " ".join(parts) or "none routed"
            return f"{stats['requests']} requests on {stats['connections']} client connections ({routed})" + (
                f", answered itself: {answered}" if answered else ""
            )
        return f"{stats['connections']} connections ({' '.join(parts) or 'none piped'})" + (
            f", {stats['no_backend']} reset for want of a healthy backend" if stats["no_backend"] else ""
        )
