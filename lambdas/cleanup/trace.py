"""What an execution that ended without its own cleanup still owes: the target's lock and its trace.

- **Lock**: the target's lock (:mod:`infra.run_lock`) is released with a ``DeleteItem`` conditioned on the
  holder being this run, so a run that never held it (one that gave up as "target busy", or whose lease was
  taken over) cannot release another run's lock. Done for every status the rule sends (ABORTED,
  TIMED_OUT, FAILED: for FAILED the cleanup branch has normally released it already).
- **Trace**: an ERROR ``verdict.json`` with ``error = "execution <STATUS>"`` (for FAILED, with the
  execution's own error and cause), written by :func:`lambdas.common.verdict.close_run` (so by
  :func:`resgate.evidence.run_files.write_run_files`, like every other verdict, and with the run's OpsItem
  when configured), then the failure notice on the gate's topic, shaped like the state machine's
  ``Notify error``. For ABORTED and TIMED_OUT always; for FAILED only when the run has no ``verdict.json``:
  a run that failed through its cleanup branch or its verdict wrote one and notified, but a failure no
  Catch can handle (``States.DataLimitExceeded``, a failing Pass or Choice state, a runtime error) ends the
  execution with neither.

Failures go to the report's ``failures``; the caller raises once everything was tried.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.cleanup.inputs import AbortedRun, GateResources
from lambdas.common import settings
from lambdas.common.aws import error_code
from lambdas.common.event import RunEvent
from lambdas.common.verdict import close_run
from resgate.contract.errors import ConfigError, GateError

TRACE_STATUSES = ("ABORTED", "TIMED_OUT")
# The Error of the notice, as the state machine's Notify error names the original error.
ERROR_NAMES = {"ABORTED": "ExecutionAborted", "TIMED_OUT": "ExecutionTimedOut", "FAILED": "ExecutionFailed"}
VERDICT_TABLE = "verdicts"


def release_lock(dynamodb: Any, resources: GateResources, run_id: str) -> str:
    """Release the target's lock if ``run_id`` holds it: ``"released"`` or ``"not held"``. Raises
    :class:`GateError` on any other failure."""
    try:
        dynamodb.delete_item(
            TableName=resources.lock_table,
            Key={settings.LOCK_KEY_ATTRIBUTE: {"S": resources.lock_key}},
            ConditionExpression="#holder = :me",
            ExpressionAttributeNames={"#holder": settings.LOCK_HOLDER_ATTRIBUTE},
            ExpressionAttributeValues={":me": {"S": run_id}},
        )
    except (ClientError, BotoCoreError) as e:
        if error_code(e) == "ConditionalCheckFailedException":
            return "not held"
        raise GateError(f"could not release the lock of {resources.lock_key}: {e}") from e
    return "released"


def record_error_verdict(run: AbortedRun, resources: GateResources, tools: Any) -> dict[str, Any]:
    """Write the run's ERROR verdict (and open its OpsItem when configured); return ``close_run``'s
    output. Raises :class:`GateError` when the run's date is unknown or a file cannot be written."""
    if run.dt is None:
        raise GateError(f"the event of {run.run_id} has no startDate: the run's evidence prefix is unknown")
    event = {
        "run_id": run.run_id,
        "gate": resources.gate,
        "dt": run.dt,
        "results": [],
        "checks": [],
        "error": run.error_text,
        "started_at": run.started_at,
        "execution_arn": run.execution_arn,
    }
    try:
        return close_run(RunEvent.from_event(event), tools, now=run.stopped_at or time.time())
    except (ClientError, BotoCoreError) as e:
        raise GateError(f"could not write the ERROR verdict of {run.run_id}: {e}") from e


def has_verdict(run: AbortedRun, resources: GateResources) -> bool:
    """True when the run's ``verdict.json`` exists (its own cleanup branch or verdict wrote it). False when
    the run's date is unknown (no prefix to look under). Raises :class:`GateError` when S3 cannot say."""
    if run.dt is None:
        return False
    store = RunEvent.from_event({"run_id": run.run_id, "gate": resources.gate, "dt": run.dt}).store()
    try:
        return store.exists(VERDICT_TABLE)
    except (ClientError, BotoCoreError) as e:
        raise GateError(f"could not look for the verdict of {run.run_id}: {e}") from e


def notify(sns: Any, run: AbortedRun, resources: GateResources, evidence_uri: str | None) -> None:
    """Publish the failure notice of the run on the gate's topic. Raises :class:`GateError`."""
    message = {
        "gate": resources.gate,
        "run_id": run.run_id,
        "result": "ERROR",
        "error": {"Error": run.error or ERROR_NAMES.get(run.status, run.status), "Cause": run.error_text},
        "execution_arn": run.execution_arn,
        "evidence_uri": evidence_uri,
    }
    try:
        sns.publish(
            TopicArn=resources.topic_arn,
            Subject=f"ResilienceGate {resources.gate}: the gate could not run"[:100],
            Message=json.dumps(message),
        )
    except (ClientError, BotoCoreError) as e:
        raise GateError(f"could not notify {resources.topic_arn}: {e}") from e


def leave_trace(
    run: AbortedRun, resources: GateResources, tools: Any, *, dynamodb: Any, sns: Any
) -> tuple[dict[str, Any], list[str]]:
    """Release the lock and, for ABORTED / TIMED_OUT (and FAILED without a verdict), record the ERROR
    verdict and notify. Returns
    ``({lock, verdict, notified}, failures)``: each step is tried whatever the others did."""
    out: dict[str, Any] = {"lock": None, "verdict": None, "notified": False}
    failures: list[str] = []
    try:
        out["lock"] = release_lock(dynamodb, resources, run.run_id)
    except GateError as e:
        failures.append(str(e))
    if run.status not in TRACE_STATUSES:
        try:
            if has_verdict(run, resources):
                return out, failures
        except GateError as e:  # unknown: leave a trace rather than none
            failures.append(str(e))
    evidence_uri = None
    try:
        recorded = record_error_verdict(run, resources, tools)
        out["verdict"], evidence_uri = recorded["result"], recorded["evidence_uri"]
    except (GateError, ConfigError) as e:
        failures.append(str(e))
    try:
        notify(sns, run, resources, evidence_uri)
        out["notified"] = True
    except GateError as e:
        failures.append(str(e))
    return out, failures
