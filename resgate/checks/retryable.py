"""The retryable check: every request that failed under faults failed in a clear way a client can act on.

Each failed ledger record (outcome ``fail`` or ``info``) is put in one class by :func:`classify`:

==================================  =============================================================
class                               ledger ``status``
==================================  =============================================================
``rejected_conflict_409``           409 (duplicate idempotency key, order already final, …)
``throttled_429``                   429
``unavailable_503_retry_after``     503 with ``retry_after`` set
``unavailable_503_no_retry_after``  503 without ``retry_after``
``conn_refused``                    ``"conn_refused"`` (nothing reached the server)
``conn_reset``                      ``"conn_reset"`` (the request may or may not have been applied)
``timeout``                         ``"timeout"`` (the request may or may not have been applied)
``client_error_4xx``                any other 4xx (400/422: invalid input correctly rejected)
``server_error_5xx``                any other 5xx (500, 502, 504, …)
``other``                           anything else: ``"conn_error"``, a 2xx/3xx the client judged failed
==================================  =============================================================

Which classes are acceptable is data (:class:`RetryableThresholds`). By default: 409, 429, 503 with
Retry-After and connection refused are always acceptable. A timeout or a connection reset is
*indeterminate* — the server may have applied the request — so it is acceptable only when a retry is safe:
the request carried an idempotency key, its operation is a read (``safe_ops``, default ``get_order``,
``get_rfq``), or its HTTP method is safe to repeat (``safe_methods``, default GET, HEAD, OPTIONS: RFC 9110
§9.2.1). 4xx client errors are acceptable only when configured; 5xx other than 503 and ``other`` never
are by default. Under an ``overload`` burst a correct shed (429, or 503 with Retry-After) is an allowed
class like any other, so shedding never fails the good build here; a timeout with an idempotency key stays
allowed too (a retry is safe), and whether a burst was queued into timeouts instead of shed is the
``backpressure`` check's question. Note that the ledger's ``outcome`` (see ``loadgen.ledger.outcome_for``)
does not decide the class: a 503 is ``fail`` and a 500 is ``info``, and both are judged here by status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from resgate.checks.ledger import LedgerRecord, iter_ledger
from resgate.checks.result import UNKNOWN, CheckResult, ExampleCollector, judge
from resgate.contract.errors import ConfigError

NAME = "retryable"

CLASSES: tuple[str, ...] = (
    "rejected_conflict_409",
    "throttled_429",
    "unavailable_503_retry_after",
    "unavailable_503_no_retry_after",
    "conn_refused",
    "conn_reset",
    "timeout",
    "client_error_4xx",
    "server_error_5xx",
    "other",
)
DEFAULT_ALLOWED = frozenset(
    {
        "rejected_conflict_409",
        "throttled_429",
        "unavailable_503_retry_after",
        "conn_refused",
        "conn_reset",
        "timeout",
    }
)
DEFAULT_NEEDS_IDEMPOTENCY_KEY = frozenset({"timeout", "conn_reset"})
DEFAULT_SAFE_OPS = frozenset({"get_order", "get_rfq"})
DEFAULT_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FAILING_KINDS = frozenset({"not_retryable"})
UNDECIDED_KINDS = frozenset({"no_requests"})
EXAMPLES_PER_CLASS = 5
ERROR_SNIPPET_CHARS = 200


def classify(record: LedgerRecord) -> str | None:
    """The failure class of a record (one of :data:`CLASSES`), or ``None`` when its outcome is ``ok``."""
    if not record.failed:
        return None
    s = record.status
    if isinstance(s, str):
        return s if s in ("conn_refused", "conn_reset", "timeout") else "other"
    if s == 409:
        return "rejected_conflict_409"
    if s == 429:
        return "throttled_429"
    if s == 503:
        return (
            "unavailable_503_retry_after"
            if record.retry_after is not None
            else "unavailable_503_no_retry_after"
        )
    if 400 <= s < 500:
        return "client_error_4xx"
    if 500 <= s < 600:
        return "server_error_5xx"
    return "other"


def _names(v: Any, where: str, *, valid: Iterable[str] | None = None) -> frozenset[str]:
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ConfigError("must be a list of names", where=where)
    out = set()
    for i, x in enumerate(v):
        if not isinstance(x, str) or not x:
            raise ConfigError(f"must be a non-empty string, got {x!r}", where=f"{where}[{i}]")
        if valid is not None and x not in valid:
            raise ConfigError(
                f"unknown failure class {x!r}; known: {', '.join(CLASSES)}", where=f"{where}[{i}]"
            )
        out.add(x)
    return frozenset(out)


@dataclass(frozen=True)
class RetryableThresholds:
    """``allowed``: acceptable failure classes; ``needs_idempotency_key``: allowed classes that are acceptable
    only for requests with an idempotency key, a ``safe_ops`` operation or a ``safe_methods`` method."""

    allowed: frozenset[str] = DEFAULT_ALLOWED
    needs_idempotency_key: frozenset[str] = DEFAULT_NEEDS_IDEMPOTENCY_KEY
    safe_ops: frozenset[str] = DEFAULT_SAFE_OPS
    safe_methods: frozenset[str] = DEFAULT_SAFE_METHODS

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, *, where: str = "thresholds.retryable"
    ) -> RetryableThresholds:
        """Validate ``{allowed?: [class], needs_idempotency_key?: [class], safe_ops?: [op],
        safe_methods?: [method]}``; missing keys take the defaults; class names must be in :data:`CLASSES`;
        methods are compared in upper case."""
        d = d or {}
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        unknown = set(d) - {"allowed", "needs_idempotency_key", "safe_ops", "safe_methods"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        return cls(
            allowed=_names(d["allowed"], f"{where}.allowed", valid=CLASSES)
            if "allowed" in d
            else DEFAULT_ALLOWED,
            needs_idempotency_key=(
                _names(d["needs_idempotency_key"], f"{where}.needs_idempotency_key", valid=CLASSES)
                if "needs_idempotency_key" in d
                else DEFAULT_NEEDS_IDEMPOTENCY_KEY
            ),
            safe_ops=_names(d["safe_ops"], f"{where}.safe_ops") if "safe_ops" in d else DEFAULT_SAFE_OPS,
            safe_methods=(
                frozenset(m.upper() for m in _names(d["safe_methods"], f"{where}.safe_methods"))
                if "safe_methods" in d
                else DEFAULT_SAFE_METHODS
            ),
        )


Thresholds = RetryableThresholds


@dataclass(frozen=True)
class RetryableEvidence:
    """The client ledger's records."""

    records: tuple[LedgerRecord, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.retryable") -> RetryableEvidence:
        """Build from ``{records: [ledger record dicts]}``."""
        if not isinstance(d, Mapping) or not isinstance(d.get("records"), (list, tuple)):
            raise ConfigError("must be an object with a list 'records'", where=where)
        return cls(records=tuple(iter_ledger(d["records"], source=f"{where}.records")))


def rejection_reason(record: LedgerRecord, cls_name: str, thresholds: RetryableThresholds) -> str | None:
    """Why a failed record of class ``cls_name`` is not acceptable, or ``None`` when it is."""
    if cls_name not in thresholds.allowed:
        return f"failure class {cls_name} is not allowed"
    if (
        cls_name in thresholds.needs_idempotency_key
        and record.idempotency_key is None
        and record.op not in thresholds.safe_ops
        and (record.method or "").upper() not in thresholds.safe_methods
    ):
        return f"{cls_name} is indeterminate and the {record.op} request carried no idempotency key"
    return None


def _example(record: LedgerRecord, cls_name: str, reason: str) -> dict[str, Any]:
    ex: dict[str, Any] = {
        "kind": "not_retryable",
        "class": cls_name,
        "reason": reason,
        "ts": record.ts,
        "op": record.op,
        "client_id": record.client_id,
        "idempotency_key": record.idempotency_key,
        "status": record.status,
        "outcome": record.outcome,
    }
    for key in ("order_id", "name", "attempt", "retry_after"):
        value = getattr(record, key)
        if value is not None:
            ex[key] = value
    if record.error is not None:
        ex["error"] = record.error[:ERROR_SNIPPET_CHARS]
    return ex


def tally_failures(records: Iterable[LedgerRecord], thresholds: RetryableThresholds) -> dict[str, Any]:
    """Classify the failures: ``{requests, failed, by_class: {class: n}, rejected_by_class: {class: n},
    rejected: [(record, class, reason)]}`` (``rejected`` holds every not-acceptable failure, uncapped)."""
    requests = failed = 0
    by_class = dict.fromkeys(CLASSES, 0)
    rejected_by_class = dict.fromkeys(CLASSES, 0)
    rejected: list[tuple[LedgerRecord, str, str]] = []
    for r in records:
        requests += 1
        c = classify(r)
        if c is None:
            continue
        failed += 1
        by_class[c] += 1
        reason = rejection_reason(r, c, thresholds)
        if reason is not None:
            rejected_by_class[c] += 1
            rejected.append((r, c, reason))
    return {
        "requests": requests,
        "failed": failed,
        "by_class": by_class,
        "rejected_by_class": rejected_by_class,
        "rejected": rejected,
    }


def detect(tally: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The anomalies of a :func:`tally_failures` result: ``{"kind": "not_retryable", "count": n}`` when any
    failure is not acceptable, ``{"kind": "no_requests"}`` when the ledger is empty (nothing to judge)."""
    out: list[dict[str, Any]] = []
    if tally["requests"] == 0:
        out.append({"kind": "no_requests"})
    if tally["rejected"]:
        out.append({"kind": "not_retryable", "count": len(tally["rejected"])})
    return out


def check(evidence: RetryableEvidence, thresholds: RetryableThresholds) -> CheckResult:
    """Judge every failed request of the ledger.

    Returns a :class:`CheckResult` named ``"retryable"``: ``valid`` is False when any failure is not
    acceptable, "unknown" when the ledger is empty, else True. Counts are ``{requests, failed, allowed,
    not_allowed}`` plus one count per class in :data:`CLASSES`; ``examples`` hold up to
    :data:`EXAMPLES_PER_CLASS` not-acceptable requests per class (``{kind: "not_retryable", class, reason,
    ts, op, client_id, idempotency_key, status, outcome, order_id?, name?, error?}``); ``details =
    {not_allowed_by_class, allowed_classes}``.
    """
    m = tally_failures(evidence.records, thresholds)
    collectors = {c: ExampleCollector(EXAMPLES_PER_CLASS) for c in CLASSES}
    for record, c, reason in m["rejected"]:
        collectors[c].add(_example(record, c, reason))
    examples = [e for c in CLASSES for e in collectors[c].examples]
    not_allowed = len(m["rejected"])
    counts: dict[str, Any] = {
        "requests": m["requests"],
        "failed": m["failed"],
        "allowed": m["failed"] - not_allowed,
        "not_allowed": not_allowed,
        **m["by_class"],
    }
    details = {"not_allowed_by_class": m["rejected_by_class"], "allowed_classes": sorted(thresholds.allowed)}
    valid = judge(detect(m), failing=FAILING_KINDS, undecided=UNDECIDED_KINDS)
    if valid == UNKNOWN:
        return CheckResult(
            name=NAME, valid=UNKNOWN, counts=counts, error="the ledger holds no requests", details=details
        )
    return CheckResult(name=NAME, valid=valid, counts=counts, examples=examples, details=details)
