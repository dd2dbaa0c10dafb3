"""Phase 7, verdict: the verdict Lambda merges the results (false > unknown > true), writes
``verdict.json`` and the report under the run's prefix, and the run ends on its ``passed``.

Then the target's lock is released (only if this run holds it; a failed release is ignored, as the
lease bounds it). Passed → ``Gate passed`` (Succeed with the verdict as output, so a pipeline stage goes
on). Failed → an SNS notice (best effort) → ``Gate failed`` (error ``GateFailed``, cause the verdict's
reason). An error of the verdict Lambda itself enters the cleanup branch, which releases the lock too.
The load and the faults have ended by now.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn

from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.lock import LockSpec, release_state
from infra.state_machine.steps import Phase, Steps, dashboard_link, verdict_fields


def build_verdict(
    *,
    steps: Steps,
    cleanup: CleanupBranch,
    gate: str,
    verdict_function: lambda_.IFunction,
    check_names: Sequence[str],
    unknown_is_failure: bool,
    topic: sns.ITopic,
    lock: LockSpec,
    dashboard_url_format: str | None = None,
) -> Phase:
    """Returns the phase: entry ``Verdict``, no exits (it ends the run either way). With
    ``dashboard_url_format`` (:func:`infra.run_dashboard.run_url_format`), ``Link dashboard`` adds the
    dashboard's URL on the run's window to the verdict (``$.verdict.dashboard``): the notification and
    the execution's output carry it."""
    verdict = steps.lambda_invoke(
        "Verdict",
        verdict_function,
        {
            **verdict_fields(),
            "results.$": "$.results",
            "checks": list(check_names),
            "unknown_is_failure": unknown_is_failure,
            "guardrail_tripped.$": "$.guardrail_tripped",
            # report.md links the dashboard on the run's window (to the moment the verdict is taken)
            **({"dashboard.$": dashboard_link(dashboard_url_format)} if dashboard_url_format else {}),
        },
        result_selector={
            "passed.$": "$.Payload.passed",
            "result.$": "$.Payload.result",
            "reason.$": "$.Payload.reason",
            "failed_checks.$": "$.Payload.failed_checks",
            "unknown_checks.$": "$.Payload.unknown_checks",
            "evidence_uri.$": "$.Payload.evidence_uri",
        },
        result_path="$.verdict",
    )
    cleanup.catch(verdict)
    passed = steps.choice("Passed?")
    gate_failed = steps.fail("Gate failed", error="GateFailed", cause_path="$.verdict.reason")
    notify_failed = steps.sns_publish(
        "Notify failed",
        topic,
        {
            "gate": gate,
            "run_id.$": "$.run.run_id",
            "verdict.$": "$.verdict",
            "guardrail_tripped.$": "$.guardrail_tripped",
        },
        subject=f"ResilienceGate {gate}: FAILED",
    )
    notify_failed.add_catch(gate_failed, errors=["States.ALL"], result_path="$.notify_error")
    # The verdict is written: the target is free for the next run, whichever way this one ends.
    release = release_state(steps, "Release lock", lock)
    release.add_catch(passed, errors=["States.ALL"], result_path="$.lock_release_error")
    if dashboard_url_format is None:
        verdict.next(release.next(passed))
    else:
        link = steps.pass_(
            "Link dashboard",
            parameters={"url.$": dashboard_link(dashboard_url_format)},
            result_path="$.verdict.dashboard",
        )
        verdict.next(link).next(release.next(passed))
    passed.when(
        sfn.Condition.boolean_equals("$.verdict.passed", True),
        sfn.Succeed(steps.scope, "Gate passed", output_path="$.verdict"),
    ).otherwise(notify_failed.next(gate_failed))
    return Phase(entry=verdict)
