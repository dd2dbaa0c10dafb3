"""An OpsCenter OpsItem for a failed or errored run, when the deployment asks for them.

One function, :func:`open_ops_item`, used by the verdict Lambda for FAIL and ERROR verdicts (the verdict
phase and the state machine's cleanup branch) and by the cleanup Lambda for aborted and timed-out
executions (through the same :func:`lambdas.common.verdict.close_run`). It is off unless the stack sets
``OPS_ITEMS=true`` (the CDK context flag ``ops_items``), and a PASS never opens one.

The OpsItem links what a responder needs: the run's ``report.md`` (S3 URI and console URL), its evidence
prefix and the execution (ARN and console URL; the ARN is also a related resource). It is tagged with the
gate (the IAM grant is conditioned on that tag) and deduplicated by the run (``/aws/dedup``), so a retried
invocation does not open a second one while the first is open. Opening it is best effort: a failure is
logged and counted, never raised, since the verdict it reports has already been written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.common import settings
from lambdas.common.aws import client

SOURCE = "ResilienceGate"
CATEGORY = "Availability"
SEVERITY = {"FAIL": "2", "ERROR": "3"}
PRIORITY = {"FAIL": 2, "ERROR": 3}
DESCRIPTION_MAX = 2048
TITLE_MAX = 1024


def enabled() -> bool:
    """True when the deployment turned OpsItems on (``OPS_ITEMS``)."""
    return (settings.resolve(None, settings.ENV_OPS_ITEMS) or "").strip().lower() in ("true", "1")


def console_region() -> str:
    return os.environ.get(settings.ENV_AWS_REGION) or "us-east-1"


def s3_console_url(bucket: str, key: str, region: str) -> str:
    """The S3 console page of one object."""
    return (
        f"https://{region}.console.aws.amazon.com/s3/object/{bucket}"
        f"?region={region}&bucketType=general&prefix={quote(key, safe='/=')}"
    )


def execution_console_url(execution_arn: str, region: str) -> str:
    """The Step Functions console page of one execution."""
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def ops_item_request(
    record: Mapping[str, Any],
    *,
    bucket: str,
    run_prefix: str,
    execution_arn: str | None,
    region: str,
) -> dict[str, Any]:
    """The ``CreateOpsItem`` parameters of a verdict ``record`` whose run's files are under
    ``s3://<bucket>/<run_prefix>`` (no leading or trailing ``/``)."""
    gate, run_id, result = record["gate"], record["run_id"], record["result"]
    report_key = f"{run_prefix}/report.md"
    links = {
        "report": f"s3://{bucket}/{report_key}",
        "report_console_url": s3_console_url(bucket, report_key, region),
        "evidence_prefix": f"s3://{bucket}/{run_prefix}/",
    }
    if execution_arn:
        links["execution_arn"] = execution_arn
        links["execution_console_url"] = execution_console_url(execution_arn, region)
    data: dict[str, dict[str, str]] = {
        k: {"Value": v, "Type": "SearchableString"} for k, v in {**links, "run_id": run_id}.items()
    }
    data["/aws/dedup"] = {
        "Value": json.dumps({"dedupString": f"resgate:{gate}:{run_id}"}),
        "Type": "SearchableString",
    }
    if execution_arn:
        data["/aws/resources"] = {"Value": json.dumps([{"arn": execution_arn}]), "Type": "SearchableString"}
    reason = record.get("reason") or "no reason given"
    lines = [
        f"ResilienceGate **{gate}**: run `{run_id}` ended **{result}**: {reason}",
        "",
        f"- report: {links['report']} ({links['report_console_url']})",
        f"- evidence: {links['evidence_prefix']}",
    ]
    if execution_arn:
        lines.append(f"- execution: {execution_arn} ({links['execution_console_url']})")
    return {
        "Title": f"ResilienceGate {gate}: {result} run {run_id}"[:TITLE_MAX],
        "Description": "\n".join(lines)[:DESCRIPTION_MAX],
        "Source": SOURCE,
        "Category": CATEGORY,
        "Severity": SEVERITY.get(result, "3"),
        "Priority": PRIORITY.get(result, 3),
        "OperationalData": data,
        "Tags": [{"Key": settings.OPS_ITEM_TAG_GATE, "Value": gate}],
    }


def open_ops_item(
    record: Mapping[str, Any],
    tools: Any,
    *,
    bucket: str,
    run_prefix: str,
    execution_arn: str | None,
) -> str | None:
    """Open the OpsItem of a FAIL or ERROR ``record`` when :func:`enabled`; return its id, else ``None``
    (disabled, a PASS, or a failure, which is logged and counted as ``OpsItemFailed``)."""
    if record.get("result") not in SEVERITY or not enabled():
        return None
    request = ops_item_request(
        record, bucket=bucket, run_prefix=run_prefix, execution_arn=execution_arn, region=console_region()
    )
    try:
        ops_item_id = client("ssm").create_ops_item(**request)["OpsItemId"]
    except (ClientError, BotoCoreError) as e:
        tools.logger.exception(
            "could not open the OpsItem", extra={"run_id": record.get("run_id"), "error": str(e)}
        )
        tools.metrics.add_metric(name="OpsItemFailed", unit=MetricUnit.Count, value=1)
        return None
    tools.logger.info("OpsItem opened", extra={"ops_item_id": ops_item_id, "run_id": record.get("run_id")})
    return ops_item_id
