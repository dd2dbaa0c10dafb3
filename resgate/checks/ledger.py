"""The client ledger: one JSON line per client request, the ground truth the checkers judge against.

The load generator writes one record per request it made (``ts, op, client_id, idempotency_key, order_id?,
status, outcome, latency_ms`` and optional detail fields); :class:`LedgerRecord` is its typed, validated
form and :func:`iter_ledger` streams records from a file or from lines already in memory (the assertion
Lambdas read the same lines from S3). A malformed line is a ``ConfigError`` naming
``file:line:field``, never a silently skipped request.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.contract.errors import ConfigError
from resgate.contract.ledger import (
    FIELDS,
    OPTIONAL_FIELDS,
    OUTCOMES,
    REQUIRED_FIELDS,
    TRANSPORT_STATUSES,
    Outcome,
)

_KNOWN_FIELDS = FIELDS


def _bad(where: str, fld: str, msg: str) -> ConfigError:
    return ConfigError(msg, where=f"{where}:{fld}")


def _number(
    d: Mapping[str, Any], key: str, where: str, *, required: bool, minimum: float | None = None
) -> Any:
    if key not in d or d[key] is None:
        if required:
            raise _bad(where, key, "is required")
        return None
    v = d[key]
    if isinstance(v, str) and key == "retry_after":
        # Retry-After is a header; a writer may keep its text. Only delta-seconds is meaningful here.
        try:
            v = float(v.strip())
        except ValueError:
            raise _bad(where, key, f"must be a number of seconds or null, got {d[key]!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(where, key, f"must be a finite number, got {d[key]!r}")
    if minimum is not None and v < minimum:
        raise _bad(where, key, f"must be >= {minimum:g}, got {v!r}")
    return float(v)


def _text(d: Mapping[str, Any], key: str, where: str, *, required: bool, nonempty: bool = True) -> str | None:
    if key not in d or d[key] is None:
        if required:
            raise _bad(where, key, "is required")
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise _bad(where, key, f"must be a string, got {v!r}")
    v = str(v)
    if nonempty and not v:
        raise _bad(where, key, "must not be empty")
    return v


@dataclass(frozen=True)
class LedgerRecord:
    """One client request as the load generator saw it.

    ``status`` is the HTTP status (int) or one of :data:`TRANSPORT_STATUSES` when no response came back.
    ``idempotency_key`` may be ``None`` for requests that carry none (reads). Unknown JSON keys are kept in
    ``extra`` so newer writers do not break older readers.
    """

    ts: float
    op: str
    client_id: str
    idempotency_key: str | None
    status: int | str
    outcome: Outcome
    latency_ms: float
    order_id: str | None = None
    retry_after: float | None = None
    error: str | None = None
    attempt: int | None = None
    name: str | None = None
    symbol: str | None = None
    side: str | None = None
    qty: float | None = None
    price: float | None = None
    method: str | None = None
    order_status: str | None = None
    filled_qty: float | None = None
    intended_ts: float | None = None
    intended_latency_ms: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def failed(self) -> bool:
        """True for ``fail`` and ``info`` (indeterminate) outcomes."""
        return self.outcome != "ok"

    def latency(self, basis: str = "sent") -> float:
        """Milliseconds from the request's actual send (``"sent"``, Locust's measure) or from its intended
        start (``"intended"``: the open model's, falling back to the send time where none was recorded)."""
        if basis == "intended" and self.intended_latency_ms is not None:
            return self.intended_latency_ms
        return self.latency_ms

    @property
    def http_status(self) -> int | None:
        """The HTTP status, or ``None`` when the request got no response."""
        return self.status if isinstance(self.status, int) else None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "ledger") -> LedgerRecord:
        """Validate one decoded JSON record; raises :class:`ConfigError` with ``where:<field>``."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a ledger record must be a JSON object, got {type(d).__name__}", where=where)
        status = d.get("status")
        if isinstance(status, bool) or status is None:
            raise _bad(where, "status", f"must be an HTTP status or one of {sorted(TRANSPORT_STATUSES)}")
        if isinstance(status, float) and status.is_integer():
            status = int(status)
        if isinstance(status, int):
            if not 100 <= status <= 599:
                raise _bad(where, "status", f"HTTP status must be 100..599, got {status}")
        elif isinstance(status, str):
            if status.isdigit():
                status = int(status)
                if not 100 <= status <= 599:
                    raise _bad(where, "status", f"HTTP status must be 100..599, got {status}")
            elif status not in TRANSPORT_STATUSES:
                raise _bad(
                    where,
                    "status",
                    f"must be an HTTP status or one of {sorted(TRANSPORT_STATUSES)}, got {status!r}",
                )
        else:
            raise _bad(where, "status", f"must be an HTTP status or one of {sorted(TRANSPORT_STATUSES)}")
        outcome = d.get("outcome")
        if outcome not in OUTCOMES:
            raise _bad(where, "outcome", f"must be one of {sorted(OUTCOMES)}, got {outcome!r}")
        attempt = d.get("attempt")
        if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0):
            raise _bad(where, "attempt", f"must be an integer >= 0, got {attempt!r}")
        error = d.get("error")
        if error is not None and not isinstance(error, str):
            error = json.dumps(error, sort_keys=True, default=str)
        return cls(
            ts=_number(d, "ts", where, required=True),
            op=_text(d, "op", where, required=True),  # type: ignore[arg-type]
            client_id=_text(d, "client_id", where, required=True),  # type: ignore[arg-type]
            idempotency_key=_text(d, "idempotency_key", where, required=False, nonempty=False) or None,
            status=status,
            outcome=outcome,  # type: ignore[arg-type]
            latency_ms=_number(d, "latency_ms", where, required=True, minimum=0),
            order_id=_text(d, "order_id", where, required=False, nonempty=False) or None,
            retry_after=_number(d, "retry_after", where, required=False, minimum=0),
            error=error,
            attempt=attempt,
            name=_text(d, "name", where, required=False),
            symbol=_text(d, "symbol", where, required=False),
            side=_text(d, "side", where, required=False),
            qty=_number(d, "qty", where, required=False),
            price=_number(d, "price", where, required=False),
            method=_text(d, "method", where, required=False),
            order_status=_text(d, "order_status", where, required=False),
            filled_qty=_number(d, "filled_qty", where, required=False, minimum=0),
            intended_ts=_number(d, "intended_ts", where, required=False),
            intended_latency_ms=_number(d, "intended_latency_ms", where, required=False, minimum=0),
            extra={k: v for k, v in d.items() if k not in _KNOWN_FIELDS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record: required fields always, optional ones only when set, then ``extra``."""
        out: dict[str, Any] = {key: getattr(self, key) for key in REQUIRED_FIELDS}
        for key in OPTIONAL_FIELDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out


def iter_ledger(
    path_or_lines: str | os.PathLike[str] | Iterable[str | bytes | Mapping[str, Any]],
    *,
    source: str | None = None,
) -> Iterator[LedgerRecord]:
    """Stream :class:`LedgerRecord` s from a JSON-lines file path or from an iterable of lines.

    Lines may be ``str`` or ``bytes`` (or already decoded dicts); blank lines are skipped. A line that is
    not JSON or not a valid record raises :class:`ConfigError` with ``where="<source>:<line>[:<field>]"``,
    where ``source`` defaults to the file path (or ``"ledger"`` for in-memory lines).
    """
    if isinstance(path_or_lines, (str, os.PathLike)):
        path = os.fspath(path_or_lines)
        with open(path, encoding="utf-8") as f:
            yield from _iter_lines(f, source or path)
    else:
        yield from _iter_lines(path_or_lines, source or "ledger")


def _iter_lines(lines: Iterable[str | bytes | Mapping[str, Any]], source: str) -> Iterator[LedgerRecord]:
    for lineno, line in enumerate(lines, start=1):
        where = f"{source}:{lineno}"
        if isinstance(line, Mapping):
            yield LedgerRecord.from_dict(line, where=where)
            continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(f"not UTF-8: {e}", where=where) from e
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"not a JSON line: {e.msg} at column {e.colno}", where=where) from e
        yield LedgerRecord.from_dict(d, where=where)


def load_ledger(
    path_or_lines: str | os.PathLike[str] | Iterable[str | bytes | Mapping[str, Any]],
    *,
    source: str | None = None,
) -> list[LedgerRecord]:
    """Read a whole ledger into a list (see :func:`iter_ledger`)."""
    return list(iter_ledger(path_or_lines, source=source))
