"""Replay checker: rebuild each read model from its topics into a shadow schema and compare with the live one.

For every configured read model (:class:`ReadModelSpec`) :func:`gather` records the topics' end offsets
and refuses to go on when a topic no longer starts at offset 0 (retention truncated the log, so a rebuild
could not be complete: "unknown" with that reason). Otherwise it creates a uniquely named shadow schema,
runs the configured rebuild into it — a Python callable ``fn(conn, schema, end_offsets, *, bootstrap)``,
a command that gets the same through environment variables, or an ECS task of the target's own image
(on AWS; :mod:`.rebuild`) — and compares the live and rebuilt
tables by row count and an order-independent checksum computed in SQL. On a mismatch it localises the
difference by key-hash buckets and lists capped example keys with their live and rebuilt values.
:func:`check` is the pure judge over :class:`ReplayFindings`.

Modules: :mod:`.config` (the config), :mod:`.check` (the findings and the pure judge) and :mod:`.gather`
(the rebuild and the fingerprint/bucket SQL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resgate.checks.replay.check import NAME, ModelFindings, ReplayFindings, check
from resgate.checks.replay.config import (
    EcsTaskSpec,
    ReadModelSpec,
    RebuildFn,
    RebuildSpec,
    ReplayConfig,
    ReplayThresholds,
)

if TYPE_CHECKING:
    from resgate.checks.replay.gather import gather
    from resgate.checks.replay.rebuild import RebuildJob, RebuildRunner, run_container_locally

_REBUILD_NAMES = ("RebuildJob", "RebuildRunner", "run_container_locally")


def __getattr__(name: str) -> Any:
    # The I/O modules import psycopg: loaded on first use, so a Lambda that only names this checker (through
    # resgate.checks.registry) does not need psycopg in its bundle.
    # Importing the submodule ``gather`` binds the package attribute ``gather`` to that module: rebind it to
    # the function, as the eager ``from .gather import gather`` did.
    if name == "gather":
        from resgate.checks.replay.gather import gather as fn

        globals()["gather"] = fn
        return fn
    if name in _REBUILD_NAMES:
        from resgate.checks.replay import rebuild

        value = getattr(rebuild, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Thresholds = ReplayConfig
"""The parser of the ``checks.replay`` section: :func:`gather`'s config (the read models and their
rebuilds), whose ``thresholds`` (a :class:`ReplayThresholds`) are all :func:`check` takes."""


__all__ = [
    "NAME",
    "EcsTaskSpec",
    "ModelFindings",
    "ReadModelSpec",
    "RebuildFn",
    "RebuildJob",
    "RebuildRunner",
    "RebuildSpec",
    "ReplayConfig",
    "ReplayFindings",
    "ReplayThresholds",
    "Thresholds",
    "check",
    "gather",
    "run_container_locally",
]
