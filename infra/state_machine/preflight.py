"""Phase 1, validate and preflight: the execution input, the run's evidence location, the target.

Init (run id = the execution name, ``dt`` = its start date, the default waits) → the profile the input
names, whose load duration and fault times become the waits' defaults (:mod:`infra.state_machine.profiles`;
an unknown one is ``InvalidInput`` naming the known ones) → merge the input's
``waits`` → locate the run's evidence prefix → validate every wait: a whole number of seconds, 0 to a
year (a bad input enters the cleanup branch as ``InvalidInput`` before anything is started, so it gets an
ERROR verdict and a notice like any other failed run) → take the target's lock, waiting at most
``waits.lock_wait_s`` for another run to release it, else ``TargetBusy`` naming the holder
(:mod:`infra.state_machine.lock`) → the target's ECS services exist (``ecs:describeServices``; a missing
one is ``TargetNotFound``) → with network faults, the preflight Lambda checks that their services' task
definitions are set up for FIS's ECS task network actions (a gap is ``FaultInjectionNotReady`` naming what
to add) → copy the gate config to the run's evidence prefix. The phase's exit is that copy.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn

from infra import constants as c
from infra.fault_experiments import ExperimentSpec
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.lock import LockSpec, build_acquire
from infra.state_machine.schedule import offset_key
from infra.state_machine.steps import Phase, Steps
from resgate.config.schema import GateConfig

WAIT_KEYS = ("baseline_s", "poll_s", "start_poll_s", "quiesce_s", "load_s", "lock_wait_s")
# A standard execution lasts at most a year; the bound also keeps States.MathAdd within its int32 domain.
MAX_WAIT_S = 365 * 24 * 3600
BASE64_DECODE_MAX_CHARS = 10_000  # the input limit of States.Base64Decode
FAULT_INJECTION_NOT_READY = "FaultInjectionNotReady"


def default_waits(
    config: GateConfig,
    experiments: Sequence[ExperimentSpec],
    *,
    poll_s: int,
    lock_wait_s: int = c.DEFAULT_LOCK_WAIT_S,
) -> dict[str, int]:
    """The ``waits`` defaults from the gate config, in whole seconds: the poll interval and the quiesce
    wait (delays), and the offsets from the load's start (:mod:`infra.state_machine.schedule`): the end of
    the baseline, each fault's ``at_<key>`` (its ``at_s``, rounded up) and the end of the load; and how
    long a run waits for another run's lock on the target (``lock_wait_s``)."""
    waits = {
        "baseline_s": math.ceil(config.load.baseline_s),
        "poll_s": poll_s,
        # The load task's start is polled often: the fault schedule counts from it, so a fault due before
        # the first poll would fire that much late.
        "start_poll_s": min(poll_s, c.START_POLL_S),
        "quiesce_s": math.ceil(config.quiesce.timeout_s),
        "load_s": math.ceil(config.load.duration_s),
        "lock_wait_s": lock_wait_s,
    }
    for spec in experiments:
        waits[offset_key(spec.key)] = max(0, math.ceil(spec.at_s))
    return waits


def config_body(config_text: str) -> dict[str, str]:
    """The ``Body`` of the gate config's copy: the text itself, or, when it holds ``${…}`` (the local
    runner's placeholders), ``States.Base64Decode`` of it. CloudFormation substitutes ``${…}`` only inside
    ``Fn::Sub``, but cfn-lint reads them in the definition's ``Fn::Join`` as misplaced variables (E1029),
    and so would a reviewer; encoded, the template carries no such text. The intrinsic takes at most
    10,000 characters; a config too long for that stays plain text."""
    encoded = base64.b64encode(config_text.encode("utf-8")).decode("ascii")
    if "${" in config_text and len(encoded) <= BASE64_DECODE_MAX_CHARS:
        return {"Body.$": f"States.Base64Decode('{encoded}')"}
    return {"Body": config_text}


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
    lock: LockSpec,
    profile: tuple[sfn.Choice, sfn.Pass] | None = None,
    preflight_function: lambda_.IFunction | None = None,
    network_services: Sequence[str] = (),
) -> Phase:
    """Returns the phase: entry ``Init``, exit ``Write gate config``. ``profile`` (the first and last
    state of :func:`infra.state_machine.profiles.build_profile_choice`) runs right after ``Init``;
    ``preflight_function`` (:class:`infra.fault_experiments.FaultExperiments`'s, with network faults)
    checks ``network_services`` once the target is found (:func:`_fault_injection_check`)."""
    init, locate = _read_input(
        steps, gate=gate, waits=waits, evidence_bucket_name=evidence_bucket_name, profile=profile
    )
    validate, valid_waits = _validate_waits(steps, cleanup, wait_keys=list(waits))
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
            **config_body(config_text),
            "ContentType": "application/yaml",
        },
        ResultPath="$.last_call",
    )
    cleanup.catch(write_config)
    after_target: sfn.IChainable = write_config
    if preflight_function is not None and network_services:
        after_target = _fault_injection_check(
            steps,
            cleanup,
            function=preflight_function,
            target_cluster=target_cluster,
            services=network_services,
            then=write_config,
        )
    target_ok.when(sfn.Condition.number_equals("$.preflight.missing", 0), after_target).otherwise(
        cleanup.fail(
            "Target not found",
            "TargetNotFound",
            f"a service of {', '.join(target_services)} is missing from ECS cluster {target_cluster}",
        )
    )
    take_lock, lock_taken = build_acquire(steps, cleanup, lock)
    valid_waits.next(take_lock)
    lock_taken.next(describe_target)
    describe_target.next(target_ok)
    return Phase(entry=init, exits=(write_config,))


def _fault_injection_check(
    steps: Steps,
    cleanup: CleanupBranch,
    *,
    function: lambda_.IFunction,
    target_cluster: str,
    services: Sequence[str],
    then: sfn.IChainable,
) -> sfn.IChainable:
    """``Check fault injection`` (the preflight Lambda, :mod:`lambdas.preflight.handler`: the services'
    task definitions have ``enableFaultInjection``, ``pidMode: task``, the SSM agent sidecar with its
    managed instance role, a task role, and ECS Exec off) → ``Fault injection ready?`` → ``then``, or
    ``Fault injection not set up``: the cleanup branch with ``FaultInjectionNotReady`` and the Lambda's
    message, which names per service what to add. A failing Lambda enters the cleanup branch too."""
    check = steps.lambda_invoke(
        "Check fault injection",
        function,
        {"cluster": target_cluster, "services": list(services)},
        result_selector={"ready.$": "$.Payload.ready", "message.$": "$.Payload.message"},
        result_path="$.fault_injection",
    )
    cleanup.catch(check)
    not_ready = steps.pass_(
        "Fault injection not set up",
        parameters={"Error": FAULT_INJECTION_NOT_READY, "Cause.$": "$.fault_injection.message"},
        result_path="$.error",
    )
    not_ready.next(cleanup.entry)
    ready = steps.choice("Fault injection ready?")
    ready.when(sfn.Condition.boolean_equals("$.fault_injection.ready", True), then).otherwise(not_ready)
    check.next(ready)
    return check


def _read_input(
    steps: Steps,
    *,
    gate: str,
    waits: Mapping[str, int],
    evidence_bucket_name: str,
    profile: tuple[sfn.Choice, sfn.Pass] | None,
) -> tuple[sfn.Pass, sfn.Pass]:
    """Init → (the profile's states) → (Waits given? → Merge waits) → Locate evidence; returns ``(Init,
    Locate evidence)``. The profile sets the waits' defaults before the input's own ``waits`` merge."""
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
            **({"profile.$": "$.profile"} if profile is not None else {}),
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
    if profile is None:
        init.next(has_waits)
    else:
        init.next(profile[0])
        profile[1].next(has_waits)
    return init, locate


def _validate_waits(
    steps: Steps, cleanup: CleanupBranch, *, wait_keys: Sequence[str]
) -> tuple[sfn.Choice, sfn.Pass]:
    """``Validate input`` → ``Round waits`` → ``Whole seconds?`` → ``Use whole seconds``; any wait that is
    not a whole number of seconds in 0..:data:`MAX_WAIT_S` enters the cleanup branch as ``InvalidInput``.
    Returns ``(the first state, the last one)``; the last one's next state is left to the caller.

    A Wait's ``SecondsPath`` must be a non-negative integer: 2.5 fails the Wait with ``States.Runtime``,
    which no Catch handles (no ERROR verdict, no notice). ASL has no integer test, so the check is a round
    trip: ``States.MathAdd(x, 0)`` rounds a non-integer to the nearest integer (documented for MathAdd's
    arguments), and ``x`` is whole exactly when it equals that result. MathAdd is only reached once every
    wait is known to be a number in range (a string would make it fail with States.Runtime too), and the
    rounded copy replaces the waits, so a Wait never sees ``2.0`` either.
    """
    cause = (
        f"every waits.* must be a whole number of seconds, 0 to {MAX_WAIT_S} (keys: {', '.join(wait_keys)})"
    )
    invalid_input = cleanup.fail("Invalid input", "InvalidInput", cause)
    numbers = sfn.Condition.and_(
        *(
            sfn.Condition.and_(
                sfn.Condition.is_numeric(f"$.waits.{k}"),
                sfn.Condition.number_greater_than_equals(f"$.waits.{k}", 0),
                sfn.Condition.number_less_than_equals(f"$.waits.{k}", MAX_WAIT_S),
            )
            for k in wait_keys
        )
    )
    rounded = steps.pass_(
        "Round waits",
        parameters={f"{k}.$": f"States.MathAdd($.waits.{k}, 0)" for k in wait_keys},
        result_path="$.whole_waits",
    )
    whole = sfn.Condition.and_(
        *(sfn.Condition.number_equals_json_path(f"$.waits.{k}", f"$.whole_waits.{k}") for k in wait_keys)
    )
    use_whole = steps.pass_("Use whole seconds", input_path="$.whole_waits", result_path="$.waits")
    is_whole = steps.choice("Whole seconds?")
    is_whole.when(whole, use_whole).otherwise(invalid_input)
    validate = steps.choice("Validate input")
    validate.when(numbers, rounded.next(is_whole)).otherwise(invalid_input)
    return validate, use_whole
