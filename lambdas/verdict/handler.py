"""Lambda handler of the verdict: merge the check results, write the run's closing evidence, say pass/fail.

The state machine's Choice state branches on ``passed`` of the output
``{passed, result, reason, failed_checks, unknown_checks, evidence_uri}``.
"""

from __future__ import annotations

import time
from typing import Any

from lambdas.common.event import RunEvent
from lambdas.common.handler import Tools, lambda_handler
from lambdas.common.verdict import close_run


def _verdict(event: dict[str, Any], tools: Tools) -> dict[str, Any]:
    return close_run(RunEvent.from_event(event), tools, now=time.time())


handler = lambda_handler("verdict", _verdict)
