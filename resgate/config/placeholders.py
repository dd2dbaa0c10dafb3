"""``${...}`` placeholders in service commands and environments, filled in when the target starts.

Known: ``${python}`` (this interpreter), ``${port}`` (the replica's own port, filled by the supervisor
for each replica as it starts; the same number is in the replica's ``PORT`` environment variable),
``${pg.dsn}``, ``${kafka.bootstrap}``, ``${run_id}``, ``${env:NAME}`` (an environment variable of the gate
process, empty when unset). ``$$`` is a literal ``$``.

Service commands are argument lists run without a shell, so a shell-style ``$PORT`` or ``$HOME`` would reach
the program as those very characters: :func:`check_placeholders` refuses it and says what to write instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from resgate.contract.errors import ConfigError

_PATTERN = re.compile(r"\$\$|\$\{([^}]*)\}")
_SHELL_VAR = re.compile(r"\$\$|\$\{[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")
KNOWN = ("python", "port", "pg.dsn", "kafka.bootstrap", "run_id")
PORT = "${port}"


def check_placeholders(value: str, where: str) -> None:
    """Raise ConfigError for an unknown placeholder in ``value``, or a ``$NAME`` no shell will expand (used
    while validating a config)."""
    for m in _SHELL_VAR.finditer(value):
        name = m.group(1)
        if name is None:
            continue
        fix = (
            "${port} for the replica's port (it is also in the replica's PORT environment variable)"
            if name == "PORT"
            else f"${{env:{name}}} for the gate's environment variable {name}"
        )
        raise ConfigError(
            f"${name} would reach the program as those very characters: service commands run without a "
            f"shell. Write {fix}, or $$ for a literal $",
            where=where,
        )
    for m in _PATTERN.finditer(value):
        name = m.group(1)
        if name is None:
            continue
        if name not in KNOWN and not name.startswith("env:"):
            hint = " (the replica's port is ${port})" if name.lower() == "port" else ""
            raise ConfigError(
                f"unknown placeholder ${{{name}}}{hint}; known: "
                f"{', '.join('${' + k + '}' for k in KNOWN)} and ${{env:NAME}}",
                where=where,
            )


def fill(value: str, values: Mapping[str, str], *, keep: tuple[str, ...] = ()) -> str:
    """Replace every placeholder in ``value`` from ``values`` (and ``env:`` from os.environ); those named in
    ``keep`` (``port``: filled per replica by the supervisor) stay as they are, and so does ``$$``."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None or name in keep:
            return m.group(0)
        if name.startswith("env:"):
            return os.environ.get(name[4:], "")
        if name not in values:
            raise ConfigError(f"placeholder ${{{name}}} has no value here", where=value)
        return values[name]

    return _PATTERN.sub(sub, value)


def fill_port(value: str, port: int, replica: Mapping[str, str] | None = None) -> str:
    """``value`` with ``${port}`` replaced by ``port``, the placeholders named in ``replica`` (values of one
    replica, e.g. its own ``pg.dsn`` through a fault proxy of its own) by theirs, and ``$$`` by ``$`` (the
    last step before a spawn)."""
    own = replica or {}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "port":
            return str(port)
        if name is not None and name in own:
            return own[name]
        return m.group(0).replace("$$", "$")

    return _PATTERN.sub(sub, value)
