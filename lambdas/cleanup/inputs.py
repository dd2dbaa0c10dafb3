"""What the cleanup Lambda acts on: the execution from the EventBridge event, the gate's resources from env.

The event is EventBridge's *Step Functions Execution Status Change* (``source: aws.states``); only its
``detail`` is read: ``name`` (the execution name = the run id), ``status`` (ABORTED, TIMED_OUT or FAILED)
and ``executionArn``. The load cluster and the gate's experiment template ids come from the environment
(``LOAD_CLUSTER``, ``EXPERIMENT_TEMPLATE_IDS`` comma-separated), set by the stack. Invalid values raise
:class:`resgate.contract.errors.ConfigError` naming the field before any AWS call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdas.common import settings
from resgate.contract.errors import ConfigError

STATUSES = ("ABORTED", "TIMED_OUT", "FAILED")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:/_.-]{0,1023}$")
_TEMPLATE_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


@dataclass(frozen=True)
class AbortedRun:
    """The run whose execution ended without its own cleanup: ``run_id`` (execution name), ``status``."""

    run_id: str
    status: str
    execution_arn: str | None

    @classmethod
    def from_event(cls, event: Any) -> AbortedRun:
        """Validate the EventBridge event's ``detail.name``, ``detail.status``, ``detail.executionArn``."""
        if not isinstance(event, Mapping):
            raise ConfigError(f"must be a JSON object, got {type(event).__name__}", where="event")
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise ConfigError("must be the execution status change's detail object", where="event.detail")
        name = detail.get("name")
        if not isinstance(name, str) or not _RUN_ID_RE.match(name):
            raise ConfigError(
                f"must be an execution name (the run id), got {name!r}", where="event.detail.name"
            )
        status = detail.get("status")
        if status not in STATUSES:
            raise ConfigError(f"must be one of {list(STATUSES)}, got {status!r}", where="event.detail.status")
        arn = detail.get("executionArn")
        if arn is not None and not isinstance(arn, str):
            raise ConfigError(f"must be a string, got {arn!r}", where="event.detail.executionArn")
        return cls(run_id=name, status=status, execution_arn=arn)


@dataclass(frozen=True)
class GateResources:
    """The gate's load cluster and FIS experiment template ids."""

    load_cluster: str
    template_ids: tuple[str, ...]

    @classmethod
    def from_env(cls) -> GateResources:
        """Read and validate ``LOAD_CLUSTER`` (required) and ``EXPERIMENT_TEMPLATE_IDS`` (may be empty)."""
        cluster = settings.resolve(None, settings.ENV_LOAD_CLUSTER)
        if not cluster or not _CLUSTER_RE.match(cluster):
            raise ConfigError(
                f"must be an ECS cluster name or ARN, got {cluster!r}", where=settings.ENV_LOAD_CLUSTER
            )
        raw = settings.resolve(None, settings.ENV_EXPERIMENT_TEMPLATE_IDS) or ""
        ids = tuple(t.strip() for t in raw.split(",") if t.strip())
        bad = [t for t in ids if not _TEMPLATE_ID_RE.match(t)]
        if bad:
            raise ConfigError(
                f"not FIS experiment template ids: {bad}", where=settings.ENV_EXPERIMENT_TEMPLATE_IDS
            )
        return cls(load_cluster=cluster, template_ids=ids)
