"""The run lock's states: take the target's lock in preflight, release it on every ending.

**Acquire** (in preflight, once the waits are valid, before anything touches the target)::

    Lock lease → Acquire lock ─ok→ (next phase)
        ↑            └ ConditionalCheckFailed → Lock wait over? ─no→ Wait for lock ─┐
        └───────────────────────────────────────────────────────────────────────────┘
                                                └ yes → Read lock holder → Holder known?
                                                    ─yes→ Target busy → cleanup branch
                                                    ─no (released meanwhile)→ Lock lease

``Lock lease`` (JSONata: JSONPath has no clock arithmetic, see :mod:`infra.state_machine.schedule`)
sets ``$.lock``: ``now_s`` (the state's entered time, epoch seconds), ``deadline_s`` (the first try's time
plus ``waits.lock_wait_s``, kept across tries), and the DynamoDB number strings ``now`` and ``expires``
(now plus the lease). ``Acquire lock`` is a conditional ``PutItem`` (Step Functions' optimized DynamoDB
integration) that succeeds when no run holds the target, when the holder's lease has ended, or when the
holder is this run (a retried put that had succeeded). A run that finds the target held polls every
``waits.poll_s`` until its deadline, then enters the cleanup branch as ``TargetBusy`` with a cause that
names the holder's run id, execution and start time. The cleanup branch stops only what *this* run
started (nothing, here), so the holder's load and experiments are untouched, and its release is
conditional on the holder being this run.

**Release** (:func:`release_state`): a ``DeleteItem`` conditioned on ``run_id`` = this run; a refusal
(the lock was taken over after the lease, or never taken) and any other error are caught, as the lease
bounds a lost release anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_cdk import Aws
from aws_cdk import aws_stepfunctions as sfn

from infra.run_lock import LOCK_EXPIRES_ATTRIBUTE, LOCK_HOLDER_ATTRIBUTE, LOCK_KEY_ATTRIBUTE
from infra.state_machine.steps import Steps

if TYPE_CHECKING:  # the cleanup branch releases the lock too (release_state): no import cycle
    from infra.state_machine.cleanup import CleanupBranch

LOCK_PATH = "$.lock"
CONDITION_FAILED = "DynamoDB.ConditionalCheckFailedException"
TARGET_BUSY = "TargetBusy"


@dataclass(frozen=True)
class LockSpec:
    """Where a target's lock is: the table's name, the target's item key, the lease in seconds."""

    table_name: str
    key: str
    lease_s: int


def dynamodb_resource(action: str) -> str:
    """The optimized DynamoDB integration ARN of ``action`` (``putItem``, ``getItem``, ``deleteItem``)."""
    return f"arn:{Aws.PARTITION}:states:::dynamodb:{action}"


def lease_expression(lease_s: int) -> str:
    """The JSONata ``Output`` of ``Lock lease``: the input with ``lock`` set (see the module)."""
    return (
        "{% ("
        "$now := $floor($toMillis($states.context.State.EnteredTime) / 1000); "
        "$lock := $states.input.lock; "
        "$deadline := $exists($lock.deadline_s) ? $lock.deadline_s "
        ": $now + $states.input.waits.lock_wait_s; "
        "$merge([$states.input, {'lock': {"
        "'now_s': $now, 'deadline_s': $deadline, "
        f"'now': $string($now), 'expires': $string($now + {int(lease_s)})"
        "}}])"
        ") %}"
    )


def build_acquire(
    steps: Steps, cleanup: CleanupBranch, lock: LockSpec
) -> tuple[sfn.IChainable, sfn.INextable]:
    """The acquisition states; returns ``(Lock lease, Acquire lock)``: the caller continues from the
    second once the lock is held."""
    lease = sfn.Pass.jsonata(steps.scope, "Lock lease", outputs=lease_expression(lock.lease_s))
    run_id = {"S.$": "$.run.run_id"}
    acquire = steps.task(
        "Acquire lock",
        dynamodb_resource("putItem"),
        {
            "TableName": lock.table_name,
            "Item": {
                LOCK_KEY_ATTRIBUTE: {"S": lock.key},
                LOCK_HOLDER_ATTRIBUTE: run_id,
                "execution": {"S.$": "$$.Execution.Id"},
                "since": {"S.$": "$$.Execution.StartTime"},
                LOCK_EXPIRES_ATTRIBUTE: {"N.$": f"{LOCK_PATH}.expires"},
            },
            "ConditionExpression": "attribute_not_exists(#key) OR #expires < :now OR #holder = :me",
            "ExpressionAttributeNames": {
                "#key": LOCK_KEY_ATTRIBUTE,
                "#expires": LOCK_EXPIRES_ATTRIBUTE,
                "#holder": LOCK_HOLDER_ATTRIBUTE,
            },
            "ExpressionAttributeValues": {":now": {"N.$": f"{LOCK_PATH}.now"}, ":me": run_id},
        },
        ResultPath="$.last_call",
    )
    wait_over = steps.choice("Lock wait over?")
    acquire.add_catch(wait_over, errors=[CONDITION_FAILED], result_path="$.lock_refused")
    cleanup.catch(acquire)
    read_holder = steps.task(
        "Read lock holder",
        dynamodb_resource("getItem"),
        {"TableName": lock.table_name, "Key": {LOCK_KEY_ATTRIBUTE: {"S": lock.key}}, "ConsistentRead": True},
        ResultPath=f"{LOCK_PATH}.holder",
    )
    cleanup.catch(read_holder)
    busy = steps.pass_(
        "Target busy",
        parameters={
            "Error": TARGET_BUSY,
            "Cause.$": (
                f"States.Format('target busy: {lock.key} is held by run {{}} (execution {{}}) since {{}}; "
                "waited {} s for it', "
                f"{LOCK_PATH}.holder.Item.{LOCK_HOLDER_ATTRIBUTE}.S, {LOCK_PATH}.holder.Item.execution.S, "
                f"{LOCK_PATH}.holder.Item.since.S, $.waits.lock_wait_s)"
            ),
        },
        result_path="$.error",
    )
    busy.next(cleanup.entry)
    holder_known = steps.choice("Holder known?")
    holder_known.when(
        sfn.Condition.is_present(f"{LOCK_PATH}.holder.Item.{LOCK_HOLDER_ATTRIBUTE}.S"), busy
    ).otherwise(lease)
    read_holder.next(holder_known)
    wait = steps.wait("Wait for lock", "$.waits.poll_s")
    wait.next(lease)
    wait_over.when(
        sfn.Condition.number_greater_than_equals_json_path(f"{LOCK_PATH}.now_s", f"{LOCK_PATH}.deadline_s"),
        read_holder,
    ).otherwise(wait)
    lease.next(acquire)
    return lease, acquire


def release_state(steps: Steps, name: str, lock: LockSpec) -> sfn.CustomState:
    """A conditional ``DeleteItem`` of the target's lock, only if this run holds it. The caller routes
    its Catch (``$.lock_release_error``) and its next state to the same state: a release never fails a
    run."""
    return steps.task(
        name,
        dynamodb_resource("deleteItem"),
        {
            "TableName": lock.table_name,
            "Key": {LOCK_KEY_ATTRIBUTE: {"S": lock.key}},
            "ConditionExpression": "#holder = :me",
            "ExpressionAttributeNames": {"#holder": LOCK_HOLDER_ATTRIBUTE},
            "ExpressionAttributeValues": {":me": {"S.$": "$.run.run_id"}},
        },
        ResultPath="$.last_call",
    )
