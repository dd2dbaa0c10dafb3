"""Phase 1, validate and preflight: the execution input, the run's evidence location, the target.

Init (run id = the execution name, ``dt`` = its start date, the default waits) → merge the input's
``waits`` → locate the run's evidence prefix → validate every wait (a bad input fails with
``InvalidInput`` before anything is started, the one error that bypasses the cleanup branch) → the
target's ECS services exist (``ecs:describeServices``; a missing one is ``TargetNotFound``) → copy the gate
config to the run's evidence prefix. The phase's exit is that copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from aws_cdk import aws_stepfunctions as sfn

from infra import constants as c
from infra.fault_experiments import ExperimentSpec
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.steps import Phase, Steps
from resgate.config.schema import GateConfig

WAIT_KEYS = ("baseline_s", "poll_s", "quiesce_s", "load_rest_s")


def default_waits(
    config: GateConfig, experiments: Sequence[ExperimentSpec], *, poll_s: int
) -> dict[str, int]:
    """The ``waits`` defaults from the gate config: baseline, poll interval, quiesce, the delay before
    each experiment (since the previous one, or since the end of the baseline) and what is left of the
    load after the last fault."""
    waits = {
        "baseline_s": math.ceil(config.load.baseline_s),
        "poll_s": poll_s,
        "quiesce_s": math.ceil(config.quiesce.timeout_s),
    }
    previous = config.load.baseline_s
    for spec in experiments:
        waits[f"before_{spec.key}"] = max(0, math.ceil(spec.at_s - previous))
        previous = spec.at_s
    waits["load_rest_s"] = max(0, math.ceil(config.load.duration_s - previous))
    return waits


def run_prefix(gate: str) -> str:
    """The run's evidence prefix with two ``{}`` for ``States.Format``: the date and the run id."""
    return f"{c.EVIDENCE_PREFIX}/gate={gate}/dt={{}}/run_id={{}}/"


def build_preflight(
    *,
    steps: Steps,
    cleanup: CleanupBranch,
    gate: str,
    waits: Mapping[str, int],
    evidence_bucket_name: str,
    config_text: str,
    target_cluster: str,
    target_services: Sequence[str],
) -> Phase:
    """Returns the phase: entry ``Init``, exit ``Write gate config``."""
    init, locate = _read_input(steps, gate=gate, waits=waits, evidence_bucket_name=evidence_bucket_name)
    validate = _validate_waits(steps, wait_keys=list(waits))
    locate.next(validate)
    describe_target = steps.sdk(
        "Describe target services",
        "ecs",
        "describeServices",
        {"Cluster": target_cluster, "Services": list(target_services)},
        ResultSelector={"missing.$": "States.ArrayLength($.Failures)"},
        ResultPath="$.preflight",
    )
    cleanup.catch(describe_target)
    target_ok = steps.choice("Target found?")
    write_config = steps.sdk(
        "Write gate config",
        "s3",
        "putObject",
        {
            "Bucket": evidence_bucket_name,
            "Key.$": "$.locations.config_key",
            "Body": config_text,
            "ContentType": "application/yaml",
        },
        ResultPath="$.last_call",
    )
    cleanup.catch(write_config)
    target_ok.when(sfn.Condition.number_equals("$.preflight.missing", 0), write_config).otherwise(
        cleanup.fail(
            "Target not found",
            "TargetNotFound",
            f"a service of {', '.join(target_services)} is missing from ECS cluster {target_cluster}",
        )
    )
    validate.otherwise(describe_target)
    describe_target.next(target_ok)
    return Phase(entry=init, exits=(write_config,))


def _read_input(
    steps: Steps, *, gate: str, waits: Mapping[str, int], evidence_bucket_name: str
) -> tuple[sfn.Pass, sfn.Pass]:
    """Init → (Waits given? → Merge waits) → Locate evidence; returns ``(Init, Locate evidence)``."""
    init = steps.pass_(
        "Init",
        parameters={
            "run": {
                "run_id.$": "$$.Execution.Name",
                "gate": gate,
                "dt.$": "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, 'T'), 0)",
            },
            "input.$": "$",
            "waits": dict(waits),
            "load": {},
            "experiments": {},
            "guardrail_tripped": "",  # CDK drops a null; the verdict reads "" as none
        },
    )
    merge_waits = steps.pass_(
        "Merge waits",
        parameters={
            "run.$": "$.run",
            "input.$": "$.input",
            "waits.$": "States.JsonMerge($.waits, $.input.waits, false)",
            "load.$": "$.load",
            "experiments.$": "$.experiments",
            "guardrail_tripped.$": "$.guardrail_tripped",
        },
    )
    prefix = run_prefix(gate)
    uri = f"s3://{evidence_bucket_name}/{prefix}"
    locate = steps.pass_(
        "Locate evidence",
        parameters={
            "evidence_uri.$": f"States.Format('{uri}', $.run.dt, $.run.run_id)",
            "config_key.$": f"States.Format('{prefix}config.yaml', $.run.dt, $.run.run_id)",
        },
        result_path="$.locations",
    )
    has_waits = steps.choice("Waits given?")
    has_waits.when(sfn.Condition.is_present("$.input.waits"), merge_waits.next(locate)).otherwise(locate)
    init.next(has_waits)
    return init, locate


def _validate_waits(steps: Steps, *, wait_keys: Sequence[str]) -> sfn.Choice:
    """``Validate input``: any wait that is not a number >= 0 → ``Invalid input``; its default branch is
    left to the caller."""
    valid = sfn.Condition.and_(
        *(
            sfn.Condition.and_(
                sfn.Condition.is_numeric(f"$.waits.{k}"),
                sfn.Condition.number_greater_than_equals(f"$.waits.{k}", 0),
            )
            for k in wait_keys
        )
    )
    invalid_input = steps.fail(
        "Invalid input",
        error="InvalidInput",
        cause=f"every waits.* must be a number >= 0 (keys: {', '.join(wait_keys)})",
    )
    validate = steps.choice("Validate input")
    validate.when(sfn.Condition.not_(valid), invalid_input)
    return validate
