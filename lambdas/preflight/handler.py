"""The preflight Lambda: are the target services' tasks set up for FIS's ECS task network actions?

Takes ``{"cluster": ..., "services": [...]}`` and returns
:func:`lambdas.preflight.fault_injection.check`'s ``{"ready", "missing", "message"}``, after checking that
the bundled botocore's ECS model knows ``enableFaultInjection`` (else :class:`ModelTooOld`, and the run
fails naming the botocore version, rather than reporting every service unready).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lambdas.preflight.fault_injection import check, require_model_field


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    import boto3

    ecs = boto3.client("ecs")
    require_model_field(ecs)
    return check(ecs, str(event["cluster"]), [str(s) for s in event["services"]])
