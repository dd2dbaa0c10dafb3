"""The public face of paperbroker's projections, and the rebuild command of the gate's replay check.

Four projectors build four read models from the events: ``orders`` → ``rm_orders`` (order blotter),
``trades`` → ``rm_trades`` (trade blotter), ``market`` → ``rm_market`` (with its helper
``rm_market_levels``) and ``positions`` → ``rm_positions``. The parts live in their own modules —
the tables in :mod:`paperbroker.read_models`, the pure projection logic in
:mod:`paperbroker.projection_plan`, the at-most-once transaction in :mod:`paperbroker.projection_apply`,
the rebuild from the topics in :mod:`paperbroker.projection_rebuild` — and this module names them all,
so ``paperbroker.projections:rebuild`` (the replay check's callable, ``rebuild(conn, schema,
end_offsets, *, bootstrap)``) and every name imported from here keep working. It also owns the command
``python -m paperbroker.projections rebuild``, configured by ``RESGATE_REPLAY_DSN``,
``RESGATE_REPLAY_SCHEMA``, ``RESGATE_REPLAY_END_OFFSETS`` (JSON ``{topic: {partition: end}}``) and
``RESGATE_KAFKA_BOOTSTRAP``; it prints the rebuild's stats as JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence

import psycopg

from paperbroker.projection_apply import apply_batch, apply_batch_async
from paperbroker.projection_plan import (
    PROJECTOR_EVENTS,
    PROJECTORS,
    ApplyStats,
    ProjectionOptions,
    Statement,
    build_plan,
    dedupe_keys,
)
from paperbroker.projection_rebuild import TruncatedLogError, iter_event_batches, rebuild
from paperbroker.read_models import (
    AUX_TABLES,
    DDL,
    READ_MODELS,
    SCHEMA_LOCK_KEY,
    check_schema_name,
    compare_schemas,
    ensure_schema,
    ensure_schema_async,
    schema_ddl,
    table_fingerprint,
)
from resgate.contract.env import (
    ENV_KAFKA_BOOTSTRAP,
    ENV_REPLAY_DSN,
    ENV_REPLAY_END_OFFSETS,
    ENV_REPLAY_SCHEMA,
)
from resgate.contract.errors import ConfigError, GateError

__all__ = [
    "AUX_TABLES",
    "DDL",
    "PROJECTORS",
    "PROJECTOR_EVENTS",
    "READ_MODELS",
    "SCHEMA_LOCK_KEY",
    "ApplyStats",
    "ProjectionOptions",
    "Statement",
    "TruncatedLogError",
    "apply_batch",
    "apply_batch_async",
    "build_plan",
    "check_schema_name",
    "compare_schemas",
    "dedupe_keys",
    "ensure_schema",
    "ensure_schema_async",
    "iter_event_batches",
    "main",
    "rebuild",
    "schema_ddl",
    "table_fingerprint",
]


# ------------------------------------------------------------------------------------------ command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperbroker.projections rebuild``: rebuild into RESGATE_REPLAY_SCHEMA; prints JSON stats.

    Exit codes: 0 done, 2 could not run (bad/missing settings, truncated log, unreachable services).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s projections %(levelname)s %(message)s")
    if args != ["rebuild"]:
        print("usage: python -m paperbroker.projections rebuild", file=sys.stderr)
        return 2
    try:
        env = os.environ
        dsn = env.get(ENV_REPLAY_DSN) or ""
        schema = env.get(ENV_REPLAY_SCHEMA) or ""
        bootstrap = env.get(ENV_KAFKA_BOOTSTRAP) or ""
        for name, value in (
            (ENV_REPLAY_DSN, dsn),
            (ENV_REPLAY_SCHEMA, schema),
            (ENV_KAFKA_BOOTSTRAP, bootstrap),
        ):
            if not value:
                raise ConfigError("is not set", where=name)
        try:
            ends = json.loads(env.get(ENV_REPLAY_END_OFFSETS) or "")
        except ValueError as e:
            raise ConfigError(f"not JSON: {e}", where=ENV_REPLAY_END_OFFSETS) from e
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            result = rebuild(conn, schema, ends, bootstrap=bootstrap)
    except (ConfigError, GateError, psycopg.Error) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), file=sys.stderr)
        return 2
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
