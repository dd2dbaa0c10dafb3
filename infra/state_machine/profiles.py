"""The run's profile on AWS: the execution input names one (``{"profile": "nightly"}``), synthesised here.

The gate config's profiles (:mod:`resgate.config.profiles`, each validated at synth) become states:
``Profile given?`` → ``Which profile?`` (a Choice on ``$.input.profile``) → ``Profile <name>`` (a Pass
that writes the profile's record to ``$.profile``), or without a profile ``Config's own load and faults``
(the config's load and every fault, the pipeline run) → ``Apply profile``: the profile's load duration and
fault times become the defaults of ``waits`` (``load_s``, ``at_<fault key>``), which the execution
input's own ``waits`` still override (rehearsals scale them) and which ``Schedule faults``
(:mod:`infra.state_machine.schedule`) turns into timestamps. An unknown name enters the cleanup branch
as ``InvalidInput`` naming the known profiles, before the lock is taken or anything is started.

The record (``$.profile``)::

    {"name": "nightly", "load": {"users": "60", "spawn_rate": "30", "duration_s": "90", "workers": "2"},
     "workers": 2, "faults": {"kill_gateway": true, "kill_matcher": false, ...}, "left_out": ["kill-matcher"],
     "waits": {"load_s": 90, "at_kill_gateway": 20, ...}}

``workers`` (a number) is how many worker tasks the run starts (:mod:`infra.state_machine.load`).
``load`` holds strings: they are the load task's container environment overrides in ``ecs:runTask``
(:mod:`infra.state_machine.load`). ``faults`` says which experiments the profile runs:
``Select profile faults`` (a JSONata Pass right after ``Schedule faults``) moves each fault the profile
leaves out to a second after the load's end, so the fault phase skips it like any fault due after the
load (it starts no experiment; the timeline lists it as not started); ``$.profile.left_out`` names it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from aws_cdk import aws_stepfunctions as sfn

from infra.fault_experiments import ExperimentSpec
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.schedule import TIMESTAMP_PICTURE, offset_key
from infra.state_machine.steps import Steps
from resgate.config.schema import Fault, GateConfig, Load

PROFILE_PATH = "$.profile"
DEFAULT_STATE = "Config's own load and faults"


def profile_record(
    name: str, load: Load, faults: Sequence[Fault], experiments: Sequence[ExperimentSpec]
) -> dict[str, Any]:
    """The ``$.profile`` record of a profile (module docstring); ``name`` is "" for the config's own."""
    at = {f.name: f.at_s for f in faults}
    waits: dict[str, int] = {"load_s": math.ceil(load.duration_s)}
    for spec in experiments:
        # A fault the profile leaves out keeps the config's time: Select profile faults skips it anyway.
        waits[offset_key(spec.key)] = max(0, math.ceil(at.get(spec.name, spec.at_s)))
    return {
        "name": name,
        "load": {
            "users": str(load.users),
            "spawn_rate": f"{load.spawn_rate:g}",
            "duration_s": f"{load.duration_s:g}",
            "workers": str(load.workers),
        },
        "workers": load.workers,
        "faults": {spec.key: spec.name in at for spec in experiments},
        "left_out": [spec.name for spec in experiments if spec.name not in at],
        "waits": waits,
    }


def build_profile_choice(
    steps: Steps,
    cleanup: CleanupBranch,
    config: GateConfig,
    experiments: Sequence[ExperimentSpec],
    wait_keys: Sequence[str],
) -> tuple[sfn.Choice, sfn.Pass]:
    """``Profile given?`` … ``Apply profile``; returns ``(the first state, the last one)``, whose next
    state is left to the caller. ``wait_keys`` are the keys of ``$.waits`` (the config's defaults): a
    profile sets ``load_s`` and every ``at_<key>``, the others are kept."""
    known = sorted(config.profiles)
    own_record = profile_record("", config.load, config.faults, experiments)
    unknown = cleanup.fail(
        "Unknown profile",
        "InvalidInput",
        f"unknown profile; known profiles: {', '.join(known) or 'none (the config has no profiles)'}",
    )
    apply_profile = steps.pass_(
        "Apply profile",
        parameters={
            f"{k}.$": f"{PROFILE_PATH}.waits.{k}" if k in own_record["waits"] else f"$.waits.{k}"
            for k in wait_keys
        },
        result_path="$.waits",
    )
    own = steps.pass_(
        DEFAULT_STATE,
        result=sfn.Result.from_object(own_record),
        result_path=PROFILE_PATH,
    )
    own.next(apply_profile)
    which = steps.choice("Which profile?")
    for name in known:
        p = config.profiles[name]
        state = steps.pass_(
            f"Profile {name}",
            result=sfn.Result.from_object(profile_record(name, p.load, p.faults, experiments)),
            result_path=PROFILE_PATH,
        )
        state.next(apply_profile)
        which.when(sfn.Condition.string_equals("$.input.profile", name), state)
    which.otherwise(unknown)
    given = steps.choice("Profile given?")
    given.when(sfn.Condition.is_present("$.input.profile"), which).otherwise(own)
    return given, apply_profile


def selection_expression(experiments: Sequence[ExperimentSpec]) -> str:
    """The JSONata ``Output`` of ``Select profile faults``: the input with each fault the profile leaves
    out moved to a second after ``schedule.load_end``."""
    s, on = "$states.input.schedule", "$states.input.profile.faults"
    times = ", ".join(
        f"'{x.key}': $lookup({on}, '{x.key}') ? $lookup({s}.faults, '{x.key}') : $after" for x in experiments
    )
    return (
        "{% ("
        f"$after := $fromMillis($toMillis({s}.load_end) + 1000, '{TIMESTAMP_PICTURE}'); "
        f"$merge([$states.input, {{'schedule': $merge([{s}, "
        f"{{'faults': {{{times}}}}}])}}])"
        ") %}"
    )


def build_fault_selection(steps: Steps, experiments: Sequence[ExperimentSpec]) -> sfn.Pass | None:
    """``Select profile faults`` (None without experiments: nothing to select)."""
    if not experiments:
        return None
    return sfn.Pass.jsonata(steps.scope, "Select profile faults", outputs=selection_expression(experiments))
