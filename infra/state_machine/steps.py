"""The building blocks every phase of the gate state machine uses: a state factory and a built phase.

:class:`Steps` creates states in one scope (the :class:`~infra.gate_state_machine.GateStateMachine`), so
that state names stay unique across phases; SDK calls are ``CustomState`` tasks, which carry no generated
IAM policy (the state machine construct grants what they need). :class:`Phase` is what a phase builder
returns: the state the previous phase continues to and the states that continue to the next phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


def sdk_resource(service: str, action: str) -> str:
    """The ``aws-sdk`` integration ARN of ``service:action``."""
    return f"arn:{Aws.PARTITION}:states:::aws-sdk:{service}:{action}"


def run_fields() -> dict[str, str]:
    """The run event's common fields (see :mod:`lambdas`); bucket and prefix come from the env."""
    return {"run_id.$": "$.run.run_id", "gate.$": "$.run.gate", "dt.$": "$.run.dt"}


def continue_to(state: sfn.INextable | sfn.Choice, target: sfn.IChainable) -> None:
    """Make ``target`` the next state of ``state`` (a Choice's default branch)."""
    if isinstance(state, sfn.Choice):
        state.otherwise(target)
    else:
        state.next(target)


@dataclass(frozen=True)
class Phase:
    """A built phase: ``entry`` is where the previous phase continues (None: the phase has no states,
    e.g. no faults), ``exits`` the states that continue to the next phase (none: it ends the run)."""

    entry: sfn.IChainable | None
    exits: Sequence[sfn.INextable | sfn.Choice] = ()


def chain(*phases: Phase) -> sfn.IChainable:
    """Connect ``phases`` in order (every exit of one to the entry of the next one that has states);
    returns the first phase's entry, the definition's start."""
    built = [(p.entry, p.exits) for p in phases if p.entry is not None]
    if not built:
        raise ValueError("a state machine needs at least one phase with states")
    for (_, exits), (entry, _) in pairwise(built):
        for state in exits:
            continue_to(state, entry)
    return built[0][0]


class Steps:
    """Creates the states of the gate state machine in ``scope`` (state names are construct ids)."""

    def __init__(self, scope: Construct) -> None:
        self.scope = scope

    def pass_(self, name: str, **kw: Any) -> sfn.Pass:
        return sfn.Pass(self.scope, name, **kw)

    def choice(self, name: str) -> sfn.Choice:
        return sfn.Choice(self.scope, name)

    def wait(self, name: str, seconds_path: str) -> sfn.Wait:
        """A Wait whose seconds come from the execution's data (tests pass 0)."""
        return sfn.Wait(self.scope, name, time=sfn.WaitTime.seconds_path(seconds_path))

    def fail(self, name: str, **kw: Any) -> sfn.Fail:
        return sfn.Fail(self.scope, name, **kw)

    def task(self, name: str, resource: str, parameters: dict[str, Any], **extra: Any) -> sfn.CustomState:
        """A Task state written as ASL (``extra`` are ASL fields: ``ResultPath``, ``ResultSelector``)."""
        state = {"Type": "Task", "Resource": resource, "Parameters": parameters, **extra}
        return sfn.CustomState(self.scope, name, state_json=state)

    def sdk(
        self, name: str, service: str, action: str, parameters: dict[str, Any], **extra: Any
    ) -> sfn.CustomState:
        """An ``aws-sdk:<service>:<action>`` task (parameters in the API's PascalCase)."""
        return self.task(name, sdk_resource(service, action), parameters, **extra)

    def reset_polls(self, name: str) -> sfn.Pass:
        """Sets the poll counter ``$.loop.n`` to 0 (before a polling loop)."""
        return self.pass_(name, result=sfn.Result.from_object({"n": 0}), result_path="$.loop")

    def count_polls(self, name: str) -> sfn.Pass:
        """Adds one to the poll counter ``$.loop.n``."""
        return self.pass_(name, parameters={"n.$": "States.MathAdd($.loop.n, 1)"}, result_path="$.loop")
