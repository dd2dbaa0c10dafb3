"""Validation of the `checks:` sections, delegated to each checker's own thresholds/config parser."""

from __future__ import annotations

import importlib
from typing import Any

from resgate.config.yamlpos import Located
from resgate.contract.errors import ConfigError

# check name -> (module, parser attribute). Each parser is ``from_dict(d, where=...)``.
PARSERS: dict[str, tuple[str, str]] = {
    "slo": ("resgate.checks.slo", "SloThresholds"),
    "recovery": ("resgate.checks.recovery", "RecoveryThresholds"),
    "retryable": ("resgate.checks.retryable", "RetryableThresholds"),
    "integrity": ("resgate.checks.integrity", "IntegrityConfig"),
    "replay": ("resgate.checks.replay", "ReplayConfig"),
}


def parse_check_section(name: str, body: dict[str, Any], where: str) -> Any:
    """Parse one check's section with the checker's own parser; return the typed thresholds/config."""
    module, attr = PARSERS[name]
    parser = getattr(importlib.import_module(module), attr)
    return parser.from_dict(body, where=where)


def validate_check_section(name: str, body: dict[str, Any], path: str, loc: Located) -> None:
    """Validate up front; re-raise the checker's ConfigError with the file line of the field."""
    try:
        parse_check_section(name, body, path)
    except ConfigError as e:
        field_path = e.where or path
        field_path = field_path.split(" (")[0]
        msg = str(e)
        if e.where and msg.startswith(f"{e.where}: "):
            msg = msg[len(e.where) + 2 :]
        raise ConfigError(msg, where=loc.where(field_path)) from None
