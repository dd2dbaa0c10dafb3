"""The gate config schema and its loader (shared by `resgate run` and the CDK app).

The names below are loaded on first use, so importing a submodule (the shims ``resgate.config.fields``,
``kafka``, ``yamlpos``, say) does not load the parser and, through it, the checkers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resgate.config.schema import GateConfig, check_blast_radius, load_config, load_config_text

__all__ = ["GateConfig", "check_blast_radius", "load_config", "load_config_text"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from resgate.config import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'resgate.config' has no attribute {name!r}")
