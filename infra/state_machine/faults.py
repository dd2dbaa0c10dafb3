"""Phase 4, faults under load and under the guardrails: the FIS experiments, one after the other.

For each ``stop_task`` fault in ``at_s`` order: wait (``waits.before_<key>``), ``fis:startExperiment``
(tagged with the run id and the gate), then poll ``fis:getExperiment`` until it ends (bounded:
``MAX_POLLS_EXPERIMENT``). *completed* goes on to the next fault; *stopped* means the experiment's stop
conditions (the guardrail alarms) fired: the remaining faults are skipped, as locally, and
``$.guardrail_tripped`` tells the verdict; *failed* or *cancelled* and a poll that runs out enter the
cleanup branch. Every exit of the phase (the last fault, a tripped guardrail) continues to the end of the
load. Each experiment's id is kept in ``$.experiments.<key>.id``, which the cleanup branch stops.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_stepfunctions as sfn

from infra import constants as c
from infra.fault_experiments import ExperimentSpec
from infra.state_machine.cleanup import CleanupBranch
from infra.state_machine.steps import Phase, Steps, continue_to


def build_faults(
    *, steps: Steps, cleanup: CleanupBranch, gate: str, experiments: Sequence[ExperimentSpec]
) -> Phase:
    """Returns the phase: entry the first fault's wait, exits the last fault's end and every tripped
    guardrail (no states at all without experiments: the load runs undisturbed)."""
    entry: sfn.IChainable | None = None
    previous: sfn.INextable | sfn.Choice | None = None
    tripped_exits: list[sfn.INextable] = []
    for spec in experiments:
        before, ended, tripped = _fault(steps, cleanup, gate, spec)
        if previous is None:
            entry = before
        else:
            continue_to(previous, before)
        tripped_exits.append(tripped)
        previous = ended
    if previous is None:
        return Phase(entry=None)
    return Phase(entry=entry, exits=(*tripped_exits, previous))


def _fault(
    steps: Steps, cleanup: CleanupBranch, gate: str, spec: ExperimentSpec
) -> tuple[sfn.Wait, sfn.Choice, sfn.Pass]:
    """One fault: Before → Start → poll until it ends; returns ``(its first state, the Choice whose
    default branch is "completed", the Pass that records a tripped guardrail)``."""
    k = spec.key
    before = steps.wait(f"Before {spec.name}", f"$.waits.before_{k}")
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
    reset = steps.reset_polls(f"Reset {spec.name} polls")
    wait = steps.wait(f"Wait for {spec.name}", "$.waits.poll_s")
    get = steps.sdk(
        f"Get {spec.name}",
        "fis",
        "getExperiment",
        {"Id.$": f"$.experiments.{k}.id"},
        ResultSelector={"status.$": "$.Experiment.State.Status", "raw.$": "$.Experiment.State"},
        ResultPath=f"$.experiments.{k}.state",
    )
    cleanup.catch(get)
    ended = steps.choice(f"{spec.name} ended?")
    count = steps.count_polls(f"Count {spec.name} polls")
    status = f"$.experiments.{k}.state.status"
    tripped = steps.pass_(
        f"Guardrail tripped in {spec.name}",
        parameters={"fault": spec.name, "experiment_state.$": f"$.experiments.{k}.state.raw"},
        result_path="$.guardrail_tripped",
    )
    before.next(start).next(reset).next(wait).next(get).next(ended)
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
            sfn.Condition.number_greater_than_equals("$.loop.n", c.MAX_POLLS_EXPERIMENT),
        ),
        cleanup.fail(
            f"{spec.name} timed out", "FaultTimeout", f"FIS experiment of fault {spec.name} did not end"
        ),
    )
    ended.when(sfn.Condition.not_(sfn.Condition.string_equals(status, "completed")), count)
    count.next(wait)
    return before, ended, tripped
