"""Settings of the paperbroker services, read from the environment.

Every paperbroker process (gateway, matcher, projector) calls :func:`load_settings` once at start. The
variables are:

- ``PB_DSN`` — Postgres connection string (falls back to ``RESGATE_PG_DSN``).
- ``PB_KAFKA_BOOTSTRAP`` — Kafka bootstrap servers (falls back to ``RESGATE_KAFKA_BOOTSTRAP``).
- ``PORT`` — HTTP port of this replica (the supervisor sets it; default 8080).
- ``PAPERBROKER_BUGS`` — comma list of seeded bugs (see :mod:`paperbroker.bugs`).
- ``PB_SLOW_START_S`` — readiness delay of the ``slow_start`` bug, seconds (default 45 > the 30 s RTO).
- ``PB_TOPIC_PREFIX`` — prefix of the topic names so tests can use their own topics; ``""`` gives
  ``pb.orders`` / ``pb.executions``, ``"t1"`` gives ``t1.pb.orders`` / ``t1.pb.executions``.
- ``PB_REPLICA`` — a name for this replica in logs (default: the supervisor's ``REPLICA_ID``, else
  ``pb-<pid>``).
- ``PB_HOST`` — the address the HTTP server binds (default ``127.0.0.1``).
- ``PB_MAX_IN_FLIGHT`` — the gateway's admission limit: requests one replica serves at once; beyond it
  a request is shed at once with 503 + ``Retry-After`` (default 32, four per pooled connection: above the
  default gate's 20 users, so one replica left after a kill serves them all).
- ``PB_LEASE_TTL_S`` — the matcher's leader lease, seconds (default 3; see :mod:`paperbroker.lease`).
- ``PB_SYMBOL_GROUPS`` — how many symbol groups the matcher splits the symbols into, each with a leader
  lease of its own (default 1: one leader matches every symbol; see :func:`paperbroker.lease.group_of`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from paperbroker.bugs import ENV_BUGS, parse_bugs
from paperbroker.events import TOPIC_EXECUTIONS, TOPIC_ORDERS
from resgate.contract.env import ENV_KAFKA_BOOTSTRAP, ENV_PG_DSN
from resgate.contract.errors import ConfigError

ENV_DSN = "PB_DSN"
ENV_KAFKA = "PB_KAFKA_BOOTSTRAP"
ENV_PORT = "PORT"
ENV_SLOW_START_S = "PB_SLOW_START_S"
ENV_TOPIC_PREFIX = "PB_TOPIC_PREFIX"
ENV_REPLICA = "PB_REPLICA"
ENV_HOST = "PB_HOST"
ENV_MAX_IN_FLIGHT = "PB_MAX_IN_FLIGHT"
ENV_LEASE_TTL_S = "PB_LEASE_TTL_S"
ENV_SYMBOL_GROUPS = "PB_SYMBOL_GROUPS"

DEFAULT_PORT = 8080
DEFAULT_SLOW_START_S = 45.0
DEFAULT_MAX_IN_FLIGHT = 32
DEFAULT_LEASE_TTL_S = 3.0
DEFAULT_SYMBOL_GROUPS = 1
MAX_SYMBOL_GROUPS = 64


class Topics(NamedTuple):
    """The two topic names of one paperbroker deployment."""

    orders: str
    executions: str


def topic_names(prefix: str = "") -> Topics:
    """Return ``Topics(orders, executions)``: ``""`` → the plain names, else ``<prefix>.<name>``."""
    prefix = (prefix or "").strip().rstrip(".")
    if not prefix:
        return Topics(TOPIC_ORDERS, TOPIC_EXECUTIONS)
    return Topics(f"{prefix}.{TOPIC_ORDERS}", f"{prefix}.{TOPIC_EXECUTIONS}")


@dataclass(frozen=True)
class Settings:
    """Settings of one paperbroker process."""

    dsn: str
    kafka_bootstrap: str
    port: int = DEFAULT_PORT
    bugs: frozenset[str] = frozenset()
    slow_start_s: float = DEFAULT_SLOW_START_S
    topic_prefix: str = ""
    replica: str = ""
    host: str = "127.0.0.1"
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S
    symbol_groups: int = DEFAULT_SYMBOL_GROUPS

    @property
    def topics(self) -> Topics:
        """The topic names for this deployment's prefix."""
        return topic_names(self.topic_prefix)

    @property
    def topic_orders(self) -> str:
        """Name of the orders topic (``pb.orders`` unless prefixed)."""
        return self.topics.orders

    @property
    def topic_executions(self) -> str:
        """Name of the executions topic (``pb.executions`` unless prefixed)."""
        return self.topics.executions

    def bug(self, name: str) -> bool:
        """True when seeded bug ``name`` is switched on for this process."""
        return name in self.bugs


def load_settings(environ: Mapping[str, str] | None = None, *, require: bool = True) -> Settings:
    """Read :class:`Settings` from ``environ`` (default ``os.environ``).

    With ``require`` (the default) a missing DSN or bootstrap is a ConfigError naming the variable.
    """
    env = os.environ if environ is None else environ
    dsn = env.get(ENV_DSN) or env.get(ENV_PG_DSN) or ""
    bootstrap = env.get(ENV_KAFKA) or env.get(ENV_KAFKA_BOOTSTRAP) or ""
    if require and not dsn:
        raise ConfigError("Postgres DSN is not set", where=ENV_DSN)
    if require and not bootstrap:
        raise ConfigError("Kafka bootstrap servers are not set", where=ENV_KAFKA)
    try:
        port = int(env.get(ENV_PORT) or DEFAULT_PORT)
    except ValueError as e:
        raise ConfigError(f"not an integer: {env.get(ENV_PORT)!r}", where=ENV_PORT) from e
    if not 0 <= port <= 65535:
        raise ConfigError(f"out of range: {port}", where=ENV_PORT)
    try:
        slow_start_s = float(env.get(ENV_SLOW_START_S) or DEFAULT_SLOW_START_S)
    except ValueError as e:
        raise ConfigError(f"not a number: {env.get(ENV_SLOW_START_S)!r}", where=ENV_SLOW_START_S) from e
    if slow_start_s < 0:
        raise ConfigError(f"must be >= 0: {slow_start_s}", where=ENV_SLOW_START_S)
    try:
        max_in_flight = int(env.get(ENV_MAX_IN_FLIGHT) or DEFAULT_MAX_IN_FLIGHT)
    except ValueError as e:
        raise ConfigError(f"not an integer: {env.get(ENV_MAX_IN_FLIGHT)!r}", where=ENV_MAX_IN_FLIGHT) from e
    if max_in_flight < 1:
        raise ConfigError(f"must be >= 1: {max_in_flight}", where=ENV_MAX_IN_FLIGHT)
    try:
        lease_ttl_s = float(env.get(ENV_LEASE_TTL_S) or DEFAULT_LEASE_TTL_S)
    except ValueError as e:
        raise ConfigError(f"not a number: {env.get(ENV_LEASE_TTL_S)!r}", where=ENV_LEASE_TTL_S) from e
    if not 0.3 <= lease_ttl_s <= 60:
        raise ConfigError(f"must be between 0.3 and 60 s: {lease_ttl_s}", where=ENV_LEASE_TTL_S)
    try:
        symbol_groups = int(env.get(ENV_SYMBOL_GROUPS) or DEFAULT_SYMBOL_GROUPS)
    except ValueError as e:
        raise ConfigError(f"not an integer: {env.get(ENV_SYMBOL_GROUPS)!r}", where=ENV_SYMBOL_GROUPS) from e
    if not 1 <= symbol_groups <= MAX_SYMBOL_GROUPS:
        raise ConfigError(
            f"must be between 1 and {MAX_SYMBOL_GROUPS}: {symbol_groups}", where=ENV_SYMBOL_GROUPS
        )
    return Settings(
        dsn=dsn,
        kafka_bootstrap=bootstrap,
        port=port,
        bugs=parse_bugs(env.get(ENV_BUGS)),
        slow_start_s=slow_start_s,
        topic_prefix=(env.get(ENV_TOPIC_PREFIX) or "").strip(),
        replica=env.get(ENV_REPLICA) or env.get("REPLICA_ID") or f"pb-{os.getpid()}",
        host=env.get(ENV_HOST) or "127.0.0.1",
        max_in_flight=max_in_flight,
        lease_ttl_s=lease_ttl_s,
        symbol_groups=symbol_groups,
    )
