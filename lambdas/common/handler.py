"""The one shape of every check Lambda: a factory that holds the Powertools decorator stack, the error policy
and the parse → gather → judge → publish steps, so each handler module only names its checker and sources.

A handler built here validates the event, finds the check's thresholds (the event's section, else the run's
``config.yaml``), builds the :class:`~resgate.evidence.sources.Sources` from the event, and calls
:func:`resgate.evidence.sources.run_check` — the function the local runner calls — on the run's S3 store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.results import errors_logged, publish
from lambdas.common.sources import event_sources
from lambdas.common.thresholds import check_section
from resgate.checks.registry import parse_thresholds
from resgate.checks.result import UNKNOWN
from resgate.evidence.sources import Sources, run_check

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
SourcesOf = Callable[[RunEvent, Any, Logger], Sources]
GatherOf = Callable[[RunEvent, Any, Logger], Callable[[], Any] | None]


@dataclass(frozen=True)
class Tools:
    """The Powertools objects of one Lambda function, handed to its body."""

    logger: Logger
    metrics: Metrics
    tracer: Tracer


Body = Callable[[dict[str, Any], Tools], dict[str, Any]]


def lambda_handler(
    name: str, body: Body, *, correlation_id_path: str = settings.CORRELATION_ID_PATH
) -> Handler:
    """A Lambda handler: module Logger/Metrics/Tracer, their three decorators (context and correlation id
    in the logs, EMF metrics, tracing) and the error policy of :func:`lambdas.common.results.errors_logged`
    around ``body(event, tools)``."""
    tools = Tools(Logger(), Metrics(namespace=settings.METRICS_NAMESPACE), Tracer())

    @tools.metrics.log_metrics
    @tools.tracer.capture_lambda_handler
    @tools.logger.inject_lambda_context(correlation_id_path=correlation_id_path)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        with errors_logged(tools.logger, name, tools.metrics):
            return body(event, tools)

    handler.tools = tools  # type: ignore[attr-defined]  # for tests and tooling: the function's Logger etc.
    return handler


def check_handler(
    name: str,
    *,
    config_keys: Sequence[str] = (settings.EVENT_THRESHOLDS,),
    sources: SourcesOf = event_sources,
    gather: GatherOf | None = None,
) -> Handler:
    """The Lambda handler of check ``name``; returns ``CheckResult.to_dict()`` (trimmed to fit a state
    payload). ``sources(event, thresholds, logger)`` validates the event's source fields before anything is
    read; ``gather(event, thresholds, logger)`` may return a callable that builds the evidence from a source
    only AWS has (else the run's files are used, as locally)."""

    def body(event: dict[str, Any], tools: Tools) -> dict[str, Any]:
        run = RunEvent.from_event(event)
        store = run.store()
        section, where = check_section(run, store, name, keys=config_keys)
        thresholds = parse_thresholds(name, section, where)
        src = sources(run, thresholds, tools.logger)
        custom = gather(run, thresholds, tools.logger) if gather is not None else None
        result = run_check(name, store, thresholds, src, gather=custom)
        if result.valid == UNKNOWN:
            tools.logger.warning("the check cannot decide", extra={"check": name, "reason": result.error})
        return publish(result, event=run, store=store, tools=tools)

    handler = lambda_handler(name, body)
    handler.__doc__ = f"Run ``resgate.checks.{name}.check`` on the run's evidence; return its CheckResult."
    return handler
