"""Lambda handler of the SLO assertion: latency percentiles, error ratio and throughput of the load phase.

Evidence: Locust's ``load_stats.jsonl`` in the run's S3 prefix, or the ALB's CloudWatch metrics when the
event says ``"source": "cloudwatch"`` (:func:`lambdas.slo.sources.slo_gather`); optional ``duration_s``.
"""

from __future__ import annotations

from lambdas.common.handler import check_handler
from lambdas.slo.sources import slo_gather

handler = check_handler("slo", gather=slo_gather)
