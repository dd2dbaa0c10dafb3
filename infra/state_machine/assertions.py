"""Phase 6, assertions: gather the evidence the run itself does not write, then run every check.

``Write timeline`` (the timeline Lambda) writes ``faults.jsonl`` from the run's FIS experiments and
``health.jsonl`` from the target services' ECS tasks, the recovery check's evidence; its
``observed_until`` goes to the recovery check. Then the Parallel ``Assertions`` runs the enabled checks'
Lambdas; each branch catches its own error as ``{name, Error, Cause}``, which the verdict counts as
unknown, so one failing check never hides the others. A failing timeline or Parallel enters cleanup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn

from infra import constants as c
from infra.fault_experiments import ExperimentSpec
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.steps import Phase, Steps, run_fields
from resgate.config.schema import GateConfig


def build_assertions(
    *,
    steps: Steps,
    cleanup: CleanupBranch,
    config: GateConfig,
    check_names: Sequence[str],
    check_functions: Mapping[str, lambda_.IFunction],
    timeline_function: lambda_.IFunction,
    target_cluster: str,
    experiments: Sequence[ExperimentSpec],
    load_duration_s: int,
    services: Mapping[str, str] | None = None,
) -> Phase:
    """Returns the phase: entry ``Write timeline``, exit the ``Assertions`` Parallel (``$.results``).
    ``services`` ({fault target: ECS service}) are the services the timeline reads the health of: every
    fault's target, an ``overload`` step's too (no experiment); the experiments' targets by default."""
    timeline = steps.lambda_invoke(
        "Write timeline",
        timeline_function,
        {
            **run_fields(),
            "cluster": target_cluster,
            # Fault targets are the gate config's service names; health rows use the same names.
            "services": dict(services)
            if services is not None
            else {s.fault.target: s.service for s in experiments},
            "faults": {
                s.key: {"name": s.name, "kind": s.fault.kind, "target": s.fault.target} for s in experiments
            },
            "experiments.$": "$.experiments",
            "started_at.$": "$$.Execution.StartTime",
            "ended_at.$": "$$.State.EnteredTime",
        },
        result_selector={
            "observed_until.$": "$.Payload.observed_until",
            "fault_events.$": "$.Payload.fault_events",
            "health_events.$": "$.Payload.health_events",
        },
        result_path="$.timeline",
    )
    # GateError = FIS, ECS or S3 failed: worth one more try before the run is given up (cleanup).
    timeline.add_retry(errors=["GateError"], interval=Duration.seconds(5), max_attempts=2, backoff_rate=2)
    cleanup.catch(timeline)
    assertions = sfn.Parallel(steps.scope, "Assertions", result_path="$.results")
    for name in check_names:
        assertions.branch(_check_branch(steps, name, check_functions[name], config, load_duration_s))
    cleanup.catch(assertions)
    timeline.next(assertions)
    return Phase(entry=timeline, exits=(assertions,))


def check_payload(name: str, config: GateConfig, load_duration_s: int) -> dict[str, Any]:
    """The check's event: the run's fields and its config section (``config`` for the database checks,
    ``thresholds`` for the others); slo gets the run's load duration (its profile's,
    ``$.profile.waits.load_s``; ``load_duration_s`` is the config's own), recovery the timeline's end."""
    section = {k: v for k, v in config.checks.get(name, {}).items() if k != "enabled"}
    payload: dict[str, Any] = {**run_fields()}
    payload["config" if name in c.NEEDS_DATABASE else "thresholds"] = section
    if name == "slo":
        # The run's profile's load duration (the config's own without a profile).
        payload["duration_s.$"] = "$.profile.waits.load_s"
    if name == "recovery":
        payload["observed_until.$"] = "$.timeline.observed_until"
    if name in c.NEEDS_DATABASE:
        # The quiesce step's outcome: state compared before the data drained is unknown, as locally.
        payload["quiesce"] = {"settled.$": "$.quiesce.settled", "reason.$": "$.quiesce.reason"}
    return payload


def _check_branch(
    steps: Steps, name: str, fn: lambda_.IFunction, config: GateConfig, load_duration_s: int
) -> sfn.IChainable:
    """One Parallel branch: invoke the check; any error becomes ``{name, Error, Cause}``."""
    invoke = steps.lambda_invoke(
        f"Check {name}", fn, check_payload(name, config, load_duration_s), output_path="$.Payload"
    )
    # GateError = an infrastructure failure (S3, database, Kafka): worth one more try.
    invoke.add_retry(errors=["GateError"], interval=Duration.seconds(5), max_attempts=2, backoff_rate=2)
    errored = steps.pass_(
        f"Check {name} errored",
        parameters={"name": name, "Error.$": "$.Error", "Cause.$": "$.Cause"},
    )
    invoke.add_catch(errored, errors=["States.ALL"])
    return invoke
