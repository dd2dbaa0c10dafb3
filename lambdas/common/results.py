"""CheckResult ↔ Step Functions payload, the handlers' error policy, and what every handler logs and emits.

- :func:`errors_logged` is the handlers' outer guard: it logs the exception with its traceback and
  re-raises, wrapping run-time failures in :class:`resgate.contract.errors.GateError` (``raise … from e``).
- :func:`to_payload` writes a result's full form to the run's store and returns a small summary for the
  state machine (Step Functions' 256 KiB state limit); :func:`full_result` reads a summary's full form
  back; :func:`from_payload` reads a branch output (including a Catch's ``{Error, Cause}``).
- :func:`publish` logs the result, adds the metrics and tracing annotations, and returns the payload.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from lambdas.common import settings
from lambdas.common.event import RunEvent
from resgate.checks.result import UNKNOWN, CheckResult
from resgate.contract.errors import ConfigError, GateError
from resgate.evidence.store import RunStore, jsonable

# ------------------------------------------------------------------------------------------ error policy


@contextmanager
def errors_logged(logger: Logger, name: str, metrics: Metrics | None = None) -> Iterator[None]:
    """Log any exception with its traceback and re-raise it: ConfigError as is (the event or thresholds are
    invalid), GateError as is, anything else as ``GateError`` from the original. With ``metrics``, also
    emit ``CheckErrored = 1`` (dimension ``check``) so an alarm can watch for assertions that did not run."""
    try:
        yield
    except Exception as e:
        if metrics is not None:
            metrics.add_dimension(name="check", value=name)
            metrics.add_metric(name="CheckErrored", unit=MetricUnit.Count, value=1)
        if isinstance(e, ConfigError):
            logger.exception("invalid event or configuration", extra={"check": name})
            raise
        if isinstance(e, GateError):
            logger.exception("assertion could not run", extra={"check": name})
            raise
        logger.exception("assertion failed", extra={"check": name})
        raise GateError(f"{name}: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------------ payloads


def _size(payload: Mapping[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def to_payload(
    result: CheckResult,
    *,
    store: RunStore | None = None,
    limit_bytes: int = settings.SUMMARY_LIMIT_BYTES,
) -> dict[str, Any]:
    """``result.to_dict()`` made JSON-safe, as the state machine carries it: whole when it fits in
    ``limit_bytes`` (8 KiB by default), else a summary of at most ``limit_bytes``.

    A summary keeps ``name, valid, counts, error`` (capped), the result's own ``details`` while they fit
    and as many of the first :data:`~lambdas.common.settings.TRIMMED_EXAMPLES` examples as fit; its
    ``details`` also hold ``{summary: true, full_result: <uri>, examples_total, truncated}`` (counts too
    large to fit are left to the full result, ``details.counts_in_full_result``). With ``store`` the full
    result is written to ``result-<name>.json`` in the run prefix, where the verdict reads it back
    (:func:`full_result`); without one ``full_result`` is null."""
    payload = jsonable(result.to_dict())
    if _size(payload) <= limit_bytes:
        return payload
    full_uri = None
    if store is not None:
        full_uri = store.write_text(
            settings.FULL_RESULT_FILE.format(name=result.name), json.dumps(payload, separators=(",", ":"))
        )
    examples = payload["examples"]
    own: dict[str, Any] = {
        "summary": True,
        "full_result": full_uri,
        "examples_total": len(examples),
        "truncated": len(examples) > settings.TRIMMED_EXAMPLES,
    }
    summary: dict[str, Any] = {
        "name": payload["name"],
        "valid": payload["valid"],
        "counts": payload["counts"],
        "examples": examples[: settings.TRIMMED_EXAMPLES],
        # the result's own details while they fit (the full result always has them)
        "details": {**(payload.get("details") or {}), **own},
    }
    if payload.get("error") is not None:
        summary["error"] = str(payload["error"])[: settings.SUMMARY_ERROR_CHARS]
    if _size(summary) > limit_bytes and payload.get("details"):
        summary["details"] = {**own, "truncated": True}
    details = summary["details"]
    while summary["examples"] and _size(summary) > limit_bytes:
        summary["examples"] = summary["examples"][:-1]
        details["truncated"] = True
    if _size(summary) > limit_bytes:
        summary["counts"] = {}
        details["counts_in_full_result"] = True
    return summary


def full_result(entry: Any, store: RunStore | None) -> Any:
    """The full result a summary points to (``details.full_result``), read from ``store``; ``entry`` itself
    when it is no summary or there is no store. When the file cannot be read the summary stands (its
    ``valid`` and ``counts`` are the result's) with ``details.full_result_error`` saying why."""
    if store is None or not isinstance(entry, Mapping):
        return entry
    details = entry.get("details")
    if not (isinstance(details, Mapping) and details.get("summary") and details.get("full_result")):
        return entry
    name = settings.FULL_RESULT_FILE.format(name=entry.get("name"))
    try:
        return json.loads(store.read_text(name))
    except (GateError, OSError, ValueError) as e:
        return {**entry, "details": {**details, "full_result_error": f"{type(e).__name__}: {e}"[:500]}}


def from_payload(entry: Any, index: int) -> CheckResult:
    """Read one branch output of the Parallel state back into a CheckResult.

    Accepts a check payload, a Lambda invoke response ``{"Payload": payload}``, and a Catch output
    ``{"name"?, "Error", "Cause"}`` or ``{"name", "error": {"Error", "Cause"}}``; the last two, and anything
    unreadable, become ``unknown`` with the reason (named ``check-<index>`` when the entry has no name).
    """
    if isinstance(entry, Mapping) and isinstance(entry.get("Payload"), Mapping) and "valid" not in entry:
        entry = entry["Payload"]
    if not isinstance(entry, Mapping):
        return CheckResult.unknown(f"check-{index}", f"result is not an object: {str(entry)[:200]}")
    name = str(entry.get("name") or entry.get("check") or f"check-{index}")
    failure = (
        entry if "Error" in entry else entry.get("error") if isinstance(entry.get("error"), Mapping) else None
    )
    if failure is not None:
        return CheckResult.unknown(name, f"the check did not complete: {_describe_failure(failure)}")
    try:
        return CheckResult.from_dict(entry)
    except (KeyError, TypeError, ValueError) as e:
        return CheckResult.unknown(name, f"malformed result payload: {type(e).__name__}: {e}")


def _describe_failure(failure: Mapping[str, Any]) -> str:
    error = str(failure.get("Error") or "Error")
    cause = failure.get("Cause")
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, Mapping) and parsed.get("errorMessage"):
            cause = parsed["errorMessage"]
    return f"{error}: {cause}"[:1000] if cause else error


# ------------------------------------------------------------------------------------------ publishing

_UNIT_SUFFIXES = (
    ("_ms", MetricUnit.Milliseconds),
    ("_s", MetricUnit.Seconds),
    ("_rps", MetricUnit.CountPerSecond),
    ("_ratio", MetricUnit.NoUnit),
    ("ratio", MetricUnit.NoUnit),
)


def metric_unit(count_name: str) -> MetricUnit:
    """The CloudWatch unit of a count by its name's suffix (``p95_ms`` → Milliseconds, else Count)."""
    for suffix, unit in _UNIT_SUFFIXES:
        if count_name.endswith(suffix):
            return unit
    return MetricUnit.Count


def add_result_metrics(metrics: Metrics, result: CheckResult, event: RunEvent) -> None:
    """EMF metrics of one result, dimensions ``service, gate, check``: ``CheckValid``/``CheckFailed``/
    ``CheckUnknown`` (0 or 1) and every top-level numeric count under its own name (``p95_ms``, ``lost``…)."""
    metrics.add_dimension(name="gate", value=event.gate)
    metrics.add_dimension(name="check", value=result.name)
    validity = (result.valid is True, result.valid is False, result.valid == UNKNOWN)
    for name, on in zip(settings.CHECK_METRICS, validity, strict=True):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=int(on))
    for key, value in result.counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        metrics.add_metric(name=str(key), unit=metric_unit(str(key)), value=value)


def publish(result: CheckResult, *, event: RunEvent, store: RunStore | None, tools: Any) -> dict[str, Any]:
    """Log the result, emit its metrics, annotate the trace; return the Step Functions payload.
    ``tools`` is the function's :class:`lambdas.common.handler.Tools`."""
    logger, metrics, tracer = tools.logger, tools.metrics, tools.tracer
    tracer.put_annotation(key="run_id", value=event.run_id)
    tracer.put_annotation(key="check", value=result.name)
    tracer.put_annotation(key="valid", value=str(result.valid))
    add_result_metrics(metrics, result, event)
    payload = to_payload(result, store=store)
    logger.info(
        f"{result.name}: {result.valid}",
        extra={
            "check": result.name,
            "valid": result.valid,
            "counts": payload["counts"],
            "error": result.error,
        },
    )
    if result.valid is not True:
        logger.info("examples", extra={"check": result.name, "examples": payload["examples"][:5]})
    return payload
