"""Calls to AWS APIs from the handlers that act on infrastructure (timeline, cleanup): one error policy.

Every failure of an AWS call (``ClientError``, ``BotoCoreError``) becomes a ``GateError``
naming what was being done, with the original exception chained, so the state machine's Retry/Catch can
handle it and nothing is silently skipped. Timestamps from the APIs (``datetime``) become epoch seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from resgate.contract.errors import ConfigError, GateError

T = TypeVar("T")


def client(service: str) -> Any:
    """The boto3 client of ``service``. Handlers call it through their own module name, so tests can
    hand in stubbed clients with ``monkeypatch.setattr(handler, "client", ...)``."""
    return boto3.client(service)


def error_code(e: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (``"ValidationException"``), else ``""``."""
    if isinstance(e, ClientError):
        return str(e.response.get("Error", {}).get("Code") or "")
    return ""


def call(what: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)``; any AWS failure raises :class:`GateError` ``"could not <what>: <error>"``."""
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as e:
        raise GateError(f"could not {what}: {e}") from e


def pages(what: str, client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every page of ``client.get_paginator(operation)``; failures as in :func:`call`."""
    try:
        yield from client.get_paginator(operation).paginate(**kwargs)
    except (ClientError, BotoCoreError) as e:
        raise GateError(f"could not {what}: {e}") from e


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (the APIs' per-call limits)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def epoch(v: Any) -> float | None:
    """An API timestamp as epoch seconds: ``datetime`` (naive = UTC), a number, or ``None``."""
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise GateError(f"unexpected timestamp from AWS: {v!r}")


def event_time(v: Any, where: str) -> float:
    """An event field that is a time: epoch seconds or an ISO-8601 string (``$$.Execution.StartTime``), as
    epoch seconds. Raises :class:`ConfigError` naming ``where`` otherwise."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
        return float(v)
    if isinstance(v, str) and v:
        try:
            t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
    raise ConfigError(f"must be epoch seconds or an ISO-8601 time, got {v!r}", where=where)
