"""What the local supervisor runs: :class:`ServiceSpec` and its validation, done before any process starts.

A spec names the program (an argument list, never a shell string), how many replicas, their environment
(the supervisor adds ``PORT``, ``REPLICA_ID``, ``REPLICA_INDEX`` and ``SERVICE_NAME``), the health URL
template and the restart policy. Every invalid field is one ConfigError naming the field.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from resgate.contract.errors import ConfigError

RESERVED_ENV = ("PORT", "REPLICA_ID", "REPLICA_INDEX", "SERVICE_NAME")
MAX_REPLICAS = 64

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def is_number(v: object) -> bool:
    """True for a finite int or float (bool excluded)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_str_map(value: object, where: str) -> None:
    """Raise ConfigError at ``where`` unless ``value`` maps non-empty strings to strings."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"must be a mapping of strings to strings, got {type(value).__name__}", where=where)
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"keys must be non-empty strings, got {k!r}", where=where)
        if not isinstance(v, str):
            raise ConfigError(
                f"value of {k!r} must be a string, got {type(v).__name__}", where=f"{where}.{k}"
            )


def _resolve_executable(cmd0: str, env: Mapping[str, str], cwd: str | None) -> str | None:
    if "/" in cmd0:
        path = cmd0 if os.path.isabs(cmd0) else os.path.join(cwd or os.getcwd(), cmd0)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(cmd0, path=env.get("PATH", os.environ.get("PATH", os.defpath)))


@dataclass(kw_only=True)
class ServiceSpec:
    """One supervised service: ``replicas`` copies of ``command``, each on its own port.

    ``health_url`` is a template with ``{port}`` (e.g. ``http://127.0.0.1:{port}/ready``); without it a
    replica counts as healthy as soon as it runs. Invalid fields raise ConfigError naming the field.
    """

    name: str = ""
    command: list[str] = field(default_factory=list)
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    restart_delay_s: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    start_timeout_s: float = 60.0
    zones: list[str] = field(default_factory=list)  # replica i runs in zones[i % len(zones)]
    # placeholder values of each replica by index, filled at its spawn like ${port} (e.g. its own pg.dsn
    # through a fault proxy of its own, so a fault can cut one replica off from the database)
    replica_values: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "") -> None:
        """Raise ConfigError (``where`` = prefix + field name) for the first invalid field."""
        p = f"{where}." if where else ""
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"service name {self.name!r} must be 1-63 characters of letters, digits, '_', '-', '.'"
                " starting with a letter or digit",
                where=f"{p}name",
            )
        if isinstance(self.command, str):
            raise ConfigError("must be a list of arguments, not a shell string", where=f"{p}command")
        if not isinstance(self.command, list | tuple) or not self.command:
            raise ConfigError("missing: give the program and its arguments as a list", where=f"{p}command")
        for i, arg in enumerate(self.command):
            if not isinstance(arg, str) or (i == 0 and not arg):
                raise ConfigError(f"must be a non-empty string, got {arg!r}", where=f"{p}command[{i}]")
        check_str_map(self.env, f"{p}env")
        for key in RESERVED_ENV:
            if key in self.env:
                raise ConfigError(f"{key} is set by the supervisor for each replica", where=f"{p}env.{key}")
        if self.cwd is not None and (not isinstance(self.cwd, str) or not os.path.isdir(self.cwd)):
            raise ConfigError(f"not an existing directory: {self.cwd!r}", where=f"{p}cwd")
        if _resolve_executable(self.command[0], self.env, self.cwd) is None:
            raise ConfigError(f"executable {self.command[0]!r} not found", where=f"{p}command[0]")
        if not isinstance(self.replicas, int) or isinstance(self.replicas, bool):
            raise ConfigError(f"must be an integer, got {self.replicas!r}", where=f"{p}replicas")
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ConfigError(
                f"must be between 1 and {MAX_REPLICAS}, got {self.replicas}", where=f"{p}replicas"
            )
        if self.health_url is not None:
            self._validate_health_url(f"{p}health_url")
        if not is_number(self.restart_delay_s) or self.restart_delay_s < 0:
            raise ConfigError(
                f"must be a number >= 0, got {self.restart_delay_s!r}", where=f"{p}restart_delay_s"
            )
        if not is_number(self.start_timeout_s) or self.start_timeout_s <= 0:
            raise ConfigError(
                f"must be a number > 0, got {self.start_timeout_s!r}", where=f"{p}start_timeout_s"
            )
        check_str_map(self.tags, f"{p}tags")
        if not isinstance(self.zones, list | tuple) or not all(isinstance(z, str) and z for z in self.zones):
            raise ConfigError(f"must be a list of zone names, got {self.zones!r}", where=f"{p}zones")
        if not isinstance(self.replica_values, list | tuple):
            raise ConfigError("must be a list of mappings, one per replica", where=f"{p}replica_values")
        if self.replica_values and len(self.replica_values) != self.replicas:
            raise ConfigError(
                f"must give one mapping per replica ({self.replicas}), got {len(self.replica_values)}",
                where=f"{p}replica_values",
            )
        for i, values in enumerate(self.replica_values):
            check_str_map(values, f"{p}replica_values[{i}]")

    def zone_of(self, index: int) -> str | None:
        """The zone of replica ``index`` (round-robin over ``zones``), None without zones."""
        return self.zones[index % len(self.zones)] if self.zones else None

    def _validate_health_url(self, where: str) -> None:
        url = self.health_url
        if not isinstance(url, str) or "{port}" not in url:
            raise ConfigError(f"must be a URL template containing {{port}}, got {url!r}", where=where)
        try:
            parts = urlsplit(url.format(port=1))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"bad URL template {url!r}: {e}", where=where) from e
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"must be an http://host:{{port}}/path URL, got {url!r}", where=where)

    def probe_target(self, port: int) -> tuple[str, int, str] | None:
        """``(host, port, path?query)`` to GET for a replica on ``port``; None without ``health_url``."""
        if self.health_url is None:
            return None
        parts = urlsplit(self.health_url.format(port=port))
        path = parts.path or "/"
        return (
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            f"{path}?{parts.query}" if parts.query else path,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "service") -> ServiceSpec:
        """Build a spec from a config mapping; unknown keys and bad values raise ConfigError at ``where``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a mapping, got {type(data).__name__}", where=where)
        known = set(cls.__dataclass_fields__)
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown field; known: {', '.join(sorted(known))}", where=f"{where}.{key}")
        spec = cls.__new__(cls)  # fill the fields without __post_init__, then validate with the path prefix
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                value = f.default
            setattr(spec, f.name, value)
        spec.validate(where)
        return spec


# --- fault parameters of the supervisor's primitives ---------------------------------------------------


def check_percent(percent: object) -> float:
    """A fault's ``percent`` of replicas, 0..100; ConfigError naming ``percent`` otherwise."""
    if not is_number(percent) or not 0 <= percent <= 100:  # type: ignore[operator]
        raise ConfigError(f"must be a number from 0 to 100, got {percent!r}", where="percent")
    return float(percent)  # type: ignore[arg-type]


def check_duration(duration_s: object) -> float:
    """A fault's ``duration_s`` >= 0; ConfigError naming ``duration_s`` otherwise."""
    if not is_number(duration_s) or duration_s < 0:  # type: ignore[operator]
        raise ConfigError(f"must be a number of seconds >= 0, got {duration_s!r}", where="duration_s")
    return float(duration_s)  # type: ignore[arg-type]


def count_for(percent: float, n: int) -> int:
    """ceil(percent% of n), at least 1 when percent > 0."""
    if percent <= 0 or n <= 0:
        return 0
    return max(1, min(n, math.ceil(round(percent * n / 100.0, 9))))
