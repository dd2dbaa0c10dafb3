"""``${...}`` placeholders in service commands and environments, filled in when the target starts.

Known: ``${python}`` (this interpreter), ``${pg.dsn}``, ``${kafka.bootstrap}``, ``${run_id}``,
``${env:NAME}`` (an environment variable of the gate process, empty when unset).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from resgate.contract.errors import ConfigError

_PATTERN = re.compile(r"\$\{([^}]+)\}")
KNOWN = ("python", "pg.dsn", "kafka.bootstrap", "run_id")


def check_placeholders(value: str, where: str) -> None:
    """Raise ConfigError for an unknown placeholder in ``value`` (used while validating a config)."""
    for name in _PATTERN.findall(value):
        if name not in KNOWN and not name.startswith("env:"):
            raise ConfigError(
                f"unknown placeholder ${{{name}}}; known: {list(KNOWN)} and ${{env:NAME}}", where=where
            )


def fill(value: str, values: Mapping[str, str]) -> str:
    """Replace every placeholder in ``value`` from ``values`` (and ``env:`` from os.environ)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("env:"):
            return os.environ.get(name[4:], "")
        if name not in values:
            raise ConfigError(f"placeholder ${{{name}}} has no value here", where=value)
        return values[name]

    return _PATTERN.sub(sub, value)
