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

    {"name": "nightly", "load": {"users": "60", "spawn_rate": "30", "duration_s": "90", "workers": "2",
     "shape": "", "leader_watch": ""}, "workers": 2,
     "faults": {"kill_gateway": true, "kill_matcher": false, ...},
     "left_out": ["kill-matcher"],
     "waits": {"load_s": 90, "at_kill_gateway": 20, ...}}

``workers`` (a number) is how many worker tasks the run starts (:mod:`infra.state_machine.load`).
``load`` holds strings: they are the load task's container environment overrides in ``ecs:runTask``
(:mod:`infra.state_machine.load`); ``shape`` is ``RESGATE_LOAD_SHAPE``, the profile's ``overload`` faults
by ``factor`` as the load shape's steps (:mod:`resgate.contract.shape`; ``""``: none), so the task's Locust
multiplies its users at each one's ``at_s`` (counted from its own start) for its ``duration_s``;
``leader_watch`` is ``RESGATE_LEADER_WATCH``, the profile's ``leader_loss`` faults as the load task's
watches (:mod:`loadgen.leader_watch`: the target's ECS cluster and service, the fault's health ``port`` and
``health_path``, its times; ``""``: none), so the task samples the leader figures around each one.
``faults`` says which experiments the profile runs:
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
from infra.network_faults import LEADER_HEALTH_PATH
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.schedule import TIMESTAMP_PICTURE, offset_key
from infra.state_machine.steps import Steps
from loadgen.leader_watch import LeaderWatch, encode_watches
from resgate.config.faults import shape_steps
from resgate.config.schema import Fault, GateConfig, Load
from resgate.contract.shape import encode_steps

PROFILE_PATH = "$.profile"
DEFAULT_STATE = "Config's own load and faults"


def leader_watches(
    faults: Sequence[Fault], experiments: Sequence[ExperimentSpec], *, cluster: str
) -> list[LeaderWatch]:
    """The load task's watch of each ``leader_loss`` of ``faults`` (at the profile's ``at_s``): the target's
    ECS service is its experiment's, the cluster the target's; the fault's ``port`` (required on AWS,
    :func:`infra.network_faults.refusal`) and ``health_path`` (default ``/health``)."""
    service = {spec.name: spec.service for spec in experiments}
    return [
        LeaderWatch(
            fault_id=f.name,
            target=f.target or "",
            cluster=cluster,
            service=service[f.name],
            port=int(f.params["port"]),
            path=str(f.params.get("health_path", LEADER_HEALTH_PATH)),
            at_s=f.at_s,
            duration_s=float(f.params["duration_s"]),
            observe_s=float(f.params["observe_s"]),
        )
        for f in faults
        if f.kind == "leader_loss" and f.name in service
    ]


def profile_record(
    name: str,
    load: Load,
    faults: Sequence[Fault],
    experiments: Sequence[ExperimentSpec],
    *,
    cluster: str = "",
) -> dict[str, Any]:
    """The ``$.profile`` record of a profile (module docstring); ``name`` is "" for the config's own;
    ``cluster`` is the target's ECS cluster (the leader watches')."""
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
            "shape": encode_steps(shape_steps(faults)),
            "leader_watch": encode_watches(leader_watches(faults, experiments, cluster=cluster)),
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
    *,
    cluster: str = "",
) -> tuple[sfn.Choice, sfn.Pass]:
    """``Profile given?`` … ``Apply profile``; returns ``(the first state, the last one)``, whose next
    state is left to the caller. ``wait_keys`` are the keys of ``$.waits`` (the config's defaults): a
    profile sets ``load_s`` and every ``at_<key>``, the others are kept. ``cluster``: the target's ECS
    cluster (:func:`leader_watches`)."""
    known = sorted(config.profiles)
    own_record = profile_record("", config.load, config.faults, experiments, cluster=cluster)
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
            result=sfn.Result.from_object(
                profile_record(name, p.load, p.faults, experiments, cluster=cluster)
            ),
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
