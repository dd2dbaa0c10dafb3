"""Step Functions' state limit with the largest results the checks can produce: each check Lambda writes
its full result to the run's store and hands the state machine a summary, so the ``Assertions`` Parallel's
output (every check's summary together) stays far below 256 KiB, and the verdict reads the full results back.

Step Functions limits a state's input and output to 256 KiB; a larger one fails the execution with
``States.DataLimitExceeded``, which a Catch of ``States.ALL`` does not handle (AWS Step Functions developer
guide, "Step Functions service quotas" and "Error handling in Step Functions").
"""

from __future__ import annotations

import json

from lambdas.common import settings
from lambdas.common.event import RunEvent
from lambdas.common.results import to_payload
from lambdas.verdict.handler import handler as verdict_handler
from resgate.checks.result import CheckResult
from tests.functional.support import load_event

CHECKS = ("slo", "recovery", "retryable", "integrity", "replay")
# Far more than any checker keeps (every examples cap full, each example larger than any checker writes).
EXAMPLES = 200
EXAMPLE_BYTES = 2_000


def _largest(name: str) -> CheckResult:
    examples = [{"kind": f"{name}-anomaly", "i": i, "detail": "x" * EXAMPLE_BYTES} for i in range(EXAMPLES)]
    counts = {f"{name}_count_{i}": i for i in range(60)}
    details = {"buckets": [{"lo": i, "hi": i + 1, "diff": "y" * 500} for i in range(200)]}
    return CheckResult(name, False, counts=counts, examples=examples, error="e" * 10_000, details=details)


def _size(obj: object) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def test_the_largest_results_of_every_check_pass_between_states_as_summaries_well_under_the_limit(
    evidence, lambda_context
):
    store = RunEvent.from_event(load_event("verdict")).store()
    full = {n: _largest(n) for n in CHECKS}
    summaries = [to_payload(full[n], store=store) for n in CHECKS]

    parallel_output = _size(summaries)
    whole = sum(_size(r.to_dict()) for r in full.values())
    margin = settings.STATE_LIMIT_BYTES - parallel_output
    print(
        f"\nstate limit {settings.STATE_LIMIT_BYTES} B; full results {whole} B in S3; the Parallel's results "
        f"{parallel_output} B; margin {margin} B ({margin / settings.STATE_LIMIT_BYTES:.0%})"
    )
    assert whole > settings.STATE_LIMIT_BYTES  # whole, they would not fit
    assert all(_size(s) <= settings.SUMMARY_LIMIT_BYTES for s in summaries)
    # The results leave three quarters of the state to the rest of the run's data (config, experiments...).
    assert parallel_output <= settings.STATE_LIMIT_BYTES // 4

    out = verdict_handler(load_event("verdict", results=summaries, checks=list(CHECKS)), lambda_context)

    assert _size(out) < settings.SUMMARY_LIMIT_BYTES
    assert out["result"] == "FAIL" and sorted(out["failed_checks"]) == sorted(CHECKS)
    rows = {r["name"]: r for r in map(json.loads, evidence.get("checks.jsonl").splitlines())}
    for name in CHECKS:  # the verdict's evidence has every example, read back from the full results
        assert len(rows[name]["examples"]) == EXAMPLES
        assert rows[name]["counts"] == full[name].counts
