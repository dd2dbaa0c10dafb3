"""The run event every assertion Lambda receives: which run, where its evidence is, which thresholds apply.

:meth:`RunEvent.from_event` validates the common fields before anything is read, raising
``ConfigError`` naming the field (``event.dt``); the rest of the event stays available
as ``raw`` for the check-specific fields.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdas.common import settings
from resgate.contract.errors import ConfigError
from resgate.contract.layout import RunKey
from resgate.evidence.s3 import S3Store

# The same rule as gate names in the gate config; run ids are what resgate and Step Functions generate.
_GATE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_DT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _text(event: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    v = event.get(key)
    if not isinstance(v, str) or not pattern.match(v):
        raise ConfigError(f"must be {what}, got {v!r}", where=f"event.{key}")
    return v


@dataclass(frozen=True)
class RunEvent:
    """A validated run event: the run's key, the evidence bucket and prefix, and the raw event."""

    run: RunKey
    bucket: str
    prefix: str
    raw: Mapping[str, Any]

    @classmethod
    def from_event(cls, event: Any) -> RunEvent:
        """Validate ``{run_id, gate, dt, evidence_bucket?, evidence_prefix?, ...}``; see :mod:`lambdas`."""
        if not isinstance(event, Mapping):
            raise ConfigError(f"must be a JSON object, got {type(event).__name__}", where="event")
        run_id = _text(event, settings.EVENT_RUN_ID, _RUN_ID_RE, "a run id ([A-Za-z0-9._:-], no '/')")
        gate = _text(event, settings.EVENT_GATE, _GATE_RE, "a gate name (lowercase letters, digits, - and _)")
        date = _text(event, settings.EVENT_DT, _DT_RE, "a date YYYY-MM-DD")
        try:
            dt.date.fromisoformat(date)
        except ValueError as e:
            raise ConfigError(f"is not a calendar date: {e}", where=f"event.{settings.EVENT_DT}") from None
        bucket = settings.resolve(event.get(settings.EVENT_BUCKET), settings.ENV_EVIDENCE_BUCKET)
        if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
            raise ConfigError(
                f"must be an S3 bucket name (or set {settings.ENV_EVIDENCE_BUCKET}), got {bucket!r}",
                where=f"event.{settings.EVENT_BUCKET}",
            )
        prefix = settings.resolve(
            event.get(settings.EVENT_PREFIX), settings.ENV_EVIDENCE_PREFIX, settings.DEFAULT_EVIDENCE_PREFIX
        )
        if not isinstance(prefix, str) or ".." in prefix.split("/"):
            raise ConfigError(
                f"must be an S3 key prefix, got {prefix!r}", where=f"event.{settings.EVENT_PREFIX}"
            )
        return cls(
            run=RunKey(gate=gate, date=date, run_id=run_id),
            bucket=bucket,
            prefix=prefix.strip("/"),
            raw=event,
        )

    def store(self, *, client: Any = None) -> S3Store:
        """The run's files: the S3 store under the event's bucket and prefix."""
        return S3Store(self.bucket, self.prefix, self.run, client=client)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def gate(self) -> str:
        return self.run.gate

    def get(self, key: str, default: Any = None) -> Any:
        """A raw event field."""
        return self.raw.get(key, default)

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        """The event field ``key`` as an object, ``None`` when absent; raises ConfigError for other types."""
        v = self.raw.get(key)
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise ConfigError(f"must be an object, got {type(v).__name__}", where=f"event.{key}")
        return v

    def number(self, key: str, *, positive: bool = False) -> float | None:
        """The event field ``key`` as a finite number (``> 0`` when ``positive``), ``None`` when absent."""
        v = self.raw.get(key)
        if v is None:
            return None
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or v != v
            or v in (float("inf"), float("-inf"))
        ):
            raise ConfigError(f"must be a finite number, got {v!r}", where=f"event.{key}")
        if positive and v <= 0:
            raise ConfigError(f"must be > 0, got {v!r}", where=f"event.{key}")
        return float(v)

    def flag(self, key: str, env_name: str | None = None, *, default: bool) -> bool:
        """A boolean event field, else the environment variable (``true``/``false``), else ``default``."""
        v = self.raw.get(key)
        if v is None and env_name is not None:
            text = settings.resolve(None, env_name)
            if text is not None:
                if text.strip().lower() not in ("true", "false", "1", "0"):
                    raise ConfigError(f"must be true or false, got {text!r}", where=env_name)
                return text.strip().lower() in ("true", "1")
        if v is None:
            return default
        if not isinstance(v, bool):
            raise ConfigError(f"must be true or false, got {v!r}", where=f"event.{key}")
        return v
