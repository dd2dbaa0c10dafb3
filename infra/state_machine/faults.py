"""Phase 4, faults under load and under the guardrails: the FIS experiments, each at its scheduled time.

Starts, in ``at_s`` order, for each ``stop_task`` fault:

1. ``<fault> before load end?``: a fault whose time (``$.schedule.faults.<key>``, see
   :mod:`infra.state_machine.schedule`) is after the load's end is skipped (``Skip <fault>`` records
   it in ``$.schedule.skipped``; it has no experiment, so the timeline reports it as not started), as
   locally, where faults scheduled after the end of the load never run;
2. ``Before <fault>``: wait until its time (a time already past does not wait);
3. from the second fault on, ``Recheck <previous fault>`` (``fis:getExperiment``, once): *stopped* means
   its stop conditions, the guardrail alarms, fired; the remaining faults are skipped, as locally, and
   ``$.guardrail_tripped`` tells the verdict. The alarms are every experiment's stop conditions, so a
   breach stops every experiment running then, the latest one included;
4. ``Start <fault>`` (``fis:startExperiment``, tagged with the run id and the gate) and on to the next
   fault at once: no fault waits for another's experiment to end, because each experiment lasts its
   fault *and* its observation window (``aws:fis:wait``, at least a minute), longer than the gaps between
   faults.

Then the watch: every started experiment in turn is polled until it ends. *completed* goes on; *stopped*
is a tripped guardrail (the rest need no watching: the same alarms stop them); *failed* or *cancelled*
and a watch that runs out of time enter the cleanup branch. The watch is bounded by time, not by a fixed
count: it starts once the last fault is started (or skipped), and every experiment ends by then plus its
own length (its ``aws:fis:wait`` actions, the observation window of at least a minute) plus FIS's
latencies (``EXPERIMENT_WATCH_MARGIN_S``). ``Watch experiments`` (JSONata: ASL paths cannot divide)
turns that time into a number of polls for the execution's ``poll_s``, ``$.watch.max_polls``, each poll
counted as at least one second (a Wait of ``poll_s`` precedes every poll but each experiment's first,
which is made at once: an experiment that has already ended costs no wait; those first polls take at
most one ``poll_s`` per experiment off the margin), and the watch fails with ``FaultTimeout`` once
``$.loop.n`` reaches it. A fixed 40 polls gave up after 40 s at ``poll_s: 1``,
before the observation window had ended.
Every exit of the phase (the end of the watch, a tripped guardrail) continues to the end of the load.
Each experiment's id is kept in ``$.experiments.<key>.id``, which the cleanup branch stops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import aws_stepfunctions as sfn

from infra import constants as c
from infra.fault_experiments import ExperimentSpec
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.schedule import SCHEDULE_PATH, fault_time_path
from infra.state_machine.steps import Phase, Steps, continue_to

Exit = sfn.INextable | sfn.Choice
_ISO_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")


# Actions that hold for their ``duration`` parameter: the observation window's wait and the ECS task
# network actions (the wait starts after the network action, so their durations add up).
HELD_ACTIONS = ("aws:fis:wait", "aws:ecs:task-network-")
# Actions that run until their work ends, bounded by ``maxDuration`` (the SSM automation), or by how long
# RDS takes to reboot an instance or fail a cluster over (no parameter bounds those: minutes).
BOUNDED_ACTIONS = ("aws:ssm:start-automation-execution",)
RDS_ACTION_BOUND_S = 900
RDS_ACTIONS = ("aws:rds:reboot-db-instances", "aws:rds:failover-db-cluster")


def experiment_wait_s(spec: ExperimentSpec) -> int:
    """How long ``spec``'s experiment holds in all (the sum of the ``duration`` of its ``aws:fis:wait`` and
    network actions, the ``maxDuration`` of its automation, :data:`RDS_ACTION_BOUND_S` per RDS action),
    seconds."""
    total = 0
    for action in spec.rendered.get("actions", {}).values():
        action_id = str(action.get("actionId", ""))
        if action_id in RDS_ACTIONS:
            total += RDS_ACTION_BOUND_S
            continue
        key = "maxDuration" if action_id in BOUNDED_ACTIONS else "duration"
        if action_id.startswith(HELD_ACTIONS) or action_id in BOUNDED_ACTIONS:
            m = _ISO_DURATION.match(str(action.get("parameters", {}).get(key, "")))
            if m is None:
                params = action.get("parameters")
                raise ValueError(f"{spec.name}: {action.get('actionId')} duration {params!r}")
            h, mi, se = (int(g or 0) for g in m.groups())
            total += h * 3600 + mi * 60 + se
    return total


def watch_seconds(experiments: Sequence[ExperimentSpec]) -> int:
    """How long the watch may last from its start: the longest experiment's waits plus the margin."""
    return max(experiment_wait_s(s) for s in experiments) + c.EXPERIMENT_WATCH_MARGIN_S


def watch_expression(seconds: int) -> str:
    """The JSONata ``Output`` of ``Watch experiments``: the input with the poll counter reset
    (``loop.n``) and ``watch``: ``{"seconds": <seconds>, "max_polls": ceil(seconds / max(poll_s, 1))}``."""
    poll = "$states.input.waits.poll_s"
    return (
        "{% $merge([$states.input, {'loop': {'n': 0}, 'watch': {"
        f"'seconds': {seconds}, 'max_polls': $ceil({seconds} / ({poll} > 1 ? {poll} : 1))"
        "}}]) %}"
    )


def build_faults(
    *, steps: Steps, cleanup: CleanupBranch, gate: str, experiments: Sequence[ExperimentSpec]
) -> Phase:
    """Returns the phase: entry the first fault's load-end check, exits the end of the watch and every
    tripped guardrail (no states at all without experiments: the load runs undisturbed)."""
    if not experiments:
        return Phase(entry=None)
    tripped_exits: list[Exit] = []
    entry: sfn.IChainable | None = None
    pending: list[Exit] = []  # states whose next state is the next fault's first one (or the watch)
    previous: ExperimentSpec | None = None
    for spec in experiments:
        first, done, tripped = _start(steps, cleanup, gate, spec, previous)
        if entry is None:
            entry = first
        for state in pending:
            continue_to(state, first)
        pending = done
        tripped_exits += tripped
        previous = spec
    watch_entry, watch_exits = _watch(steps, cleanup, experiments)
    for state in pending:
        continue_to(state, watch_entry)
    return Phase(entry=entry, exits=(*watch_exits, *tripped_exits))


def _start(
    steps: Steps, cleanup: CleanupBranch, gate: str, spec: ExperimentSpec, previous: ExperimentSpec | None
) -> tuple[sfn.Choice, list[Exit], list[Exit]]:
    """One fault's start: returns ``(its first state, the states that go on to the next fault, the
    tripped-guardrail exits)``."""
    k = spec.key
    in_load = steps.choice(f"{spec.name} before load end?")
    skip = steps.pass_(
        f"Skip {spec.name}",
        parameters={
            "fault": spec.name,
            "at.$": fault_time_path(k),
            "load_end.$": f"{SCHEDULE_PATH}.load_end",
            "reason": "scheduled after the end of the load",
        },
        result_path=f"{SCHEDULE_PATH}.skipped.{k}",
    )
    before = steps.wait_until(f"Before {spec.name}", fault_time_path(k))
    in_load.when(
        sfn.Condition.timestamp_less_than_equals_json_path(fault_time_path(k), f"{SCHEDULE_PATH}.load_end"),
        before,
    ).otherwise(skip)
    start = steps.sdk(
        f"Start {spec.name}",
        "fis",
        "startExperiment",
        {
            "ExperimentTemplateId": spec.template.ref,
            "ClientToken.$": "States.UUID()",
            "Tags": {c.EXPERIMENT_TAG_RUN_ID + ".$": "$.run.run_id", c.EXPERIMENT_TAG_GATE: gate},
        },
        ResultSelector={"id.$": "$.Experiment.Id"},
        ResultPath=f"$.experiments.{k}",
    )
    cleanup.catch(start)
    if previous is None:
        before.next(start)
        return in_load, [start, skip], []
    # The previous fault was started or skipped; only a started one has an experiment to recheck.
    p = previous.key
    started = steps.choice(f"{previous.name} started before {spec.name}?")
    recheck = _get_experiment(steps, cleanup, f"Recheck {previous.name}", previous)
    stopped = steps.choice(f"Guardrail tripped before {spec.name}?")
    tripped = _tripped(steps, f"Guardrail tripped in {previous.name} before {spec.name}", previous)
    before.next(started)
    started.when(sfn.Condition.is_present(f"$.experiments.{p}.id"), recheck).otherwise(start)
    recheck.next(stopped)
    stopped.when(sfn.Condition.string_equals(f"$.experiments.{p}.state.status", "stopped"), tripped)
    stopped.otherwise(start)
    return in_load, [start, skip], [tripped]


def _watch(
    steps: Steps, cleanup: CleanupBranch, experiments: Sequence[ExperimentSpec]
) -> tuple[sfn.Pass, list[Exit]]:
    """Poll every started experiment until it ends, in order, within the watch's time (module
    docstring); returns ``(the first state, the exits: the last check and every tripped guardrail)``."""
    entry = sfn.Pass.jsonata(
        steps.scope, "Watch experiments", outputs=watch_expression(watch_seconds(experiments))
    )
    previous: Exit = entry
    exits: list[Exit] = []
    for spec in experiments:
        k = spec.key
        started = steps.choice(f"{spec.name} started?")
        wait = steps.wait(f"Wait for {spec.name}", "$.waits.poll_s")
        get = _get_experiment(steps, cleanup, f"Get {spec.name}", spec)
        ended = steps.choice(f"{spec.name} ended?")
        count = steps.count_polls(f"Count {spec.name} polls")
        status = f"$.experiments.{k}.state.status"
        tripped = _tripped(steps, f"Guardrail tripped in {spec.name}", spec)
        # The first poll at once (an experiment may have ended already), the next ones after poll_s.
        started.when(sfn.Condition.is_present(f"$.experiments.{k}.id"), get)
        get.next(ended)
        wait.next(get)
        ended.when(sfn.Condition.string_equals(status, "stopped"), tripped)
        ended.when(
            sfn.Condition.or_(
                sfn.Condition.string_equals(status, "failed"),
                sfn.Condition.string_equals(status, "cancelled"),
            ),
            cleanup.fail(f"{spec.name} failed", "FaultFailed", f"FIS experiment of fault {spec.name} failed"),
        )
        ended.when(
            sfn.Condition.and_(
                sfn.Condition.not_(sfn.Condition.string_equals(status, "completed")),
                sfn.Condition.number_greater_than_equals_json_path("$.loop.n", "$.watch.max_polls"),
            ),
            cleanup.fail(
                f"{spec.name} timed out", "FaultTimeout", f"FIS experiment of fault {spec.name} did not end"
            ),
        )
        ended.when(sfn.Condition.not_(sfn.Condition.string_equals(status, "completed")), count)
        count.next(wait)
        exits.append(tripped)
        continue_to(previous, started)
        # Not started (skipped) and completed both go on to the next experiment.
        skipped_on = steps.pass_(f"{spec.name} watched")
        started.otherwise(skipped_on)
        ended.otherwise(skipped_on)
        previous = skipped_on
    return entry, [previous, *exits]


def _get_experiment(steps: Steps, cleanup: CleanupBranch, name: str, spec: ExperimentSpec) -> sfn.CustomState:
    """``fis:getExperiment`` of ``spec``'s experiment → ``$.experiments.<key>.state`` (status and raw)."""
    k = spec.key
    get = steps.sdk(
        name,
        "fis",
        "getExperiment",
        {"Id.$": f"$.experiments.{k}.id"},
        ResultSelector={"status.$": "$.Experiment.State.Status", "raw.$": "$.Experiment.State"},
        ResultPath=f"$.experiments.{k}.state",
    )
    cleanup.catch(get)
    return get


def _tripped(steps: Steps, name: str, spec: ExperimentSpec) -> sfn.Pass:
    """Records the tripped guardrail: the fault whose experiment its stop conditions stopped."""
    return steps.pass_(
        name,
        parameters={"fault": spec.name, "experiment_state.$": f"$.experiments.{spec.key}.state.raw"},
        result_path="$.guardrail_tripped",
    )
