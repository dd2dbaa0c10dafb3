"""What the cleanup Lambda acts on: the execution from the EventBridge event, the gate's resources from env.

The event is EventBridge's *Step Functions Execution Status Change* (``source: aws.states``); only its
``detail`` is read: ``name`` (the execution name = the run id), ``status`` (ABORTED, TIMED_OUT or FAILED),
``executionArn``, ``startDate`` / ``stopDate`` (epoch milliseconds) and, for FAILED, ``error`` /
``cause``. The run's identity follows from it as the state machine derives it: the run id is the execution
name and ``dt`` the UTC date of its start (``$$.Execution.StartTime``), the gate is the stack's; no
``states:DescribeExecution`` is needed. The load cluster, the gate's experiment template ids, the gate's
name, the notification topic and the lock come from the environment, set by the stack. Invalid values
raise :class:`resgate.contract.errors.ConfigError` naming the field before any AWS call.
"""

from __future__ import annotations

import datetime as dt
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
_GATE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_TOPIC_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_LOCK_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}/[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class AbortedRun:
    """The run whose execution ended without its own cleanup: ``run_id`` (execution name), ``status``,
    ``execution_arn``, ``started_at`` / ``stopped_at`` (epoch seconds, when the event has them)."""

    run_id: str
    status: str
    execution_arn: str | None
    started_at: float | None = None
    stopped_at: float | None = None
    error: str | None = None
    cause: str | None = None

    @property
    def error_text(self) -> str:
        """``execution <STATUS>``, with the execution's error and cause when the event has them."""
        text = f"execution {self.status}"
        if self.error:
            text += f": {self.error}"
        if self.cause:
            text += f": {self.cause}"
        return text[:2000]

    @property
    def dt(self) -> str | None:
        """The run's ``dt`` (the UTC date of the execution's start), as the state machine's ``Init``."""
        if self.started_at is None:
            return None
        return dt.datetime.fromtimestamp(self.started_at, dt.UTC).date().isoformat()

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
        return cls(
            run_id=name,
            status=status,
            execution_arn=arn,
            started_at=_epoch_ms(detail.get("startDate"), "event.detail.startDate"),
            stopped_at=_epoch_ms(detail.get("stopDate"), "event.detail.stopDate"),
            error=_text(detail.get("error"), "event.detail.error"),
            cause=_text(detail.get("cause"), "event.detail.cause"),
        )


def _text(v: Any, where: str) -> str | None:
    """An optional string of the event (a FAILED execution's ``error`` and ``cause``)."""
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ConfigError(f"must be a string, got {type(v).__name__}", where=where)
    return v


def _epoch_ms(v: Any, where: str) -> float | None:
    """An event time in epoch milliseconds as epoch seconds; ``None`` when absent."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e14:
        raise ConfigError(f"must be epoch milliseconds, got {v!r}", where=where)
    return v / 1000.0


@dataclass(frozen=True)
class GateResources:
    """The gate's load cluster and FIS experiment template ids; its name, notification topic, lock table
    and the target's lock key."""

    load_cluster: str
    template_ids: tuple[str, ...]
    gate: str
    topic_arn: str
    lock_table: str
    lock_key: str

    @classmethod
    def from_env(cls) -> GateResources:
        """Read and validate ``LOAD_CLUSTER`` (required), ``EXPERIMENT_TEMPLATE_IDS`` (may be empty),
        ``GATE_NAME``, ``NOTIFY_TOPIC_ARN``, ``LOCK_TABLE``, ``LOCK_KEY`` (required)."""
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
        gate = _required(settings.ENV_GATE_NAME, _GATE_RE, "a gate name")
        topic = _required(settings.ENV_NOTIFY_TOPIC_ARN, _TOPIC_RE, "an SNS topic ARN")
        table = _required(settings.ENV_LOCK_TABLE, _TABLE_RE, "a DynamoDB table name")
        key = _required(settings.ENV_LOCK_KEY, _LOCK_KEY_RE, "a lock key <cluster>/<gate>")
        return cls(
            load_cluster=cluster, template_ids=ids, gate=gate, topic_arn=topic, lock_table=table, lock_key=key
        )


def _required(env_name: str, pattern: re.Pattern[str], what: str) -> str:
    v = settings.resolve(None, env_name)
    if not v or not pattern.match(v):
        raise ConfigError(f"must be {what}, got {v!r}", where=env_name)
    return v
