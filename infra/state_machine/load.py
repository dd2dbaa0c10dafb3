"""Phase 3, the load (Locust on Fargate), in two parts around the faults.

:func:`build_load_start`: ``ecs:RunTask`` (the AWS SDK integration, which takes every RunTask parameter;
it returns once the task is created; the task carries ``startedBy`` and the run-id tag the abort cleanup
finds it by, and the run profile's users, spawn rate and duration as container environment overrides),
then poll until it is
RUNNING (bounded: ``MAX_POLLS_TASK_START``) → ``Schedule faults`` (:mod:`infra.state_machine.schedule`:
the baseline's end, every fault's time and the load's end, from the task's ``StartedAt``) → ``Select
profile faults`` (the faults the run's profile leaves out are moved past the load's end) → the baseline,
a wait until its end. Its exit is the baseline.

:func:`build_load_end`: wait until the load's scheduled end → poll until the task is STOPPED (bounded by
the load's expected duration) → its container exited with 0 → ``Quiesce`` (phase 5, the quiesce Lambda:
the wait of ``resgate run``, until the target is healthy and its data drained). A task that
stops early, never starts, is lost, or exits with an error enters the cleanup branch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from infra import constants as c
from infra.fault_experiments import ExperimentSpec
from infra.state_machine.cleanup import WORKERS_PATH, CleanupBranch, stop_workers
from infra.state_machine.profiles import PROFILE_PATH, build_fault_selection
from infra.state_machine.schedule import build_schedule
from infra.state_machine.steps import Phase, Steps, run_fields
from resgate.config.model import Quiesce
from resgate.contract import env as env_names

# The load task's status as :func:`_describe_load` leaves it.
STATUS_PATH = "$.load_status.task.LastStatus"


def profile_environment() -> list[dict[str, str]]:
    """The load container's environment overrides from the run's profile (``$.profile.load``, see
    :mod:`infra.state_machine.profiles`): users, spawn rate, duration, the load shape's overload steps
    and the leader losses to watch (``""``: none) replace the task definition's."""
    return [
        {"Name": env_names.ENV_USERS, "Value.$": f"{PROFILE_PATH}.load.users"},
        {"Name": env_names.ENV_SPAWN_RATE, "Value.$": f"{PROFILE_PATH}.load.spawn_rate"},
        {"Name": env_names.ENV_DURATION_S, "Value.$": f"{PROFILE_PATH}.load.duration_s"},
        {"Name": env_names.ENV_LOAD_SHAPE, "Value.$": f"{PROFILE_PATH}.load.shape"},
        {"Name": env_names.ENV_LEADER_WATCH, "Value.$": f"{PROFILE_PATH}.load.leader_watch"},
    ]


def build_load_start(
    *,
    steps: Steps,
    cleanup: CleanupBranch,
    cluster_arn: str,
    task_definition_arn: str,
    container_name: str,
    subnet_ids: Sequence[str],
    security_group_id: str,
    experiments: Sequence[ExperimentSpec] = (),
    workers: int = 0,
) -> Phase:
    """Returns the phase: entry ``Start load task``, exit ``Baseline``; ``experiments`` are the faults
    ``Schedule faults`` gives a time (in ``at_s`` order) and ``Select profile faults`` keeps or skips.
    The task's users, spawn rate and duration are the run's profile's (:func:`profile_environment`).
    ``workers`` (the most any profile asks for, :func:`infra.load_generator.max_load_workers`) > 0: the task
    is the master (``RESGATE_LOAD_ROLE=master``, the profile's worker count) and, once it is RUNNING,
    :func:`_build_worker_start` starts the profile's workers before ``Schedule faults``."""
    fault_keys = [s.key for s in experiments]
    network = {
        "AwsvpcConfiguration": {
            "Subnets": list(subnet_ids),
            "SecurityGroups": [security_group_id],
            "AssignPublicIp": "DISABLED",
        }
    }
    role = [
        {"Name": env_names.ENV_LOAD_ROLE, "Value": "master"},
        {"Name": env_names.ENV_LOAD_NODE, "Value": c.LOADGEN_MASTER_NODE},
        {"Name": env_names.ENV_LOAD_WORKERS, "Value.$": f"{PROFILE_PATH}.load.workers"},
    ]
    # ecs:RunTask through the AWS SDK integration: it returns once the task is created. Not the optimized
    # ecs:runTask integration, which takes only some of RunTask's parameters (no StartedBy, Tags or
    # Count; the rehearsal's interpreter drops them as Step Functions does), so the abort cleanup could
    # not find the task by its startedBy and run-id tag.
    start_load = steps.sdk(
        "Start load task",
        "ecs",
        "runTask",
        {
            "Cluster": cluster_arn,
            "TaskDefinition": task_definition_arn,
            "LaunchType": "FARGATE",
            "Count": 1,
            # Idempotent: a retry after a timeout or an unmodelled error (Ecs.EcsException) that had in fact
            # started the task gets that task back, not a second load (64 hex characters, RunTask's limit).
            "ClientToken.$": "States.Hash($$.Execution.Id, 'SHA-256')",
            "StartedBy": c.LOADGEN_STARTED_BY,
            "Tags": [{"Key": c.EXPERIMENT_TAG_RUN_ID, "Value.$": "$.run.run_id"}],
            "NetworkConfiguration": network,
            "Overrides": {
                "ContainerOverrides": [
                    {
                        "Name": container_name,
                        "Environment": [
                            {"Name": env_names.ENV_EVIDENCE_S3_URI, "Value.$": "$.locations.evidence_uri"},
                            *profile_environment(),
                            *(role if workers else []),
                        ],
                    }
                ]
            },
        },
        ResultSelector={"tasks.$": "$.Tasks"},
        ResultPath="$.load_start",
    )
    cleanup.catch(start_load)
    # moto's JSONPath returns a list for a path that indexes in the middle ($.a[0].b); AWS a scalar.
    # Paths here end at the index ($.a[0]) or have none, which both evaluate alike.
    remember_load = steps.pass_(
        "Remember load task", parameters={"task.$": "$.load_start.tasks[0]"}, result_path="$.load"
    )
    load_created = steps.choice("Load task created?")
    start_load.next(load_created)
    load_created.when(sfn.Condition.is_present("$.load_start.tasks[0]"), remember_load).otherwise(
        cleanup.fail(
            "Load task not created", "LoadTaskNotCreated", "ecs:RunTask returned no task (see Failures)"
        )
    )

    reset_start = steps.reset_polls("Reset load start polls")
    wait_running = steps.wait("Wait for load task", "$.waits.start_poll_s")
    describe_start, picked_start = _describe_load(steps, cleanup, "Describe load task", cluster_arn)
    running = steps.choice("Load running?")
    count_start = steps.count_polls("Count load start polls")
    schedule = build_schedule(steps, fault_keys)
    baseline = steps.wait_until("Baseline", "$.schedule.baseline_end")
    select = build_fault_selection(steps, experiments)
    (schedule.next(select) if select is not None else schedule).next(baseline)
    remember_load.next(reset_start).next(wait_running).next(describe_start)
    picked_start.next(running)
    after_master = schedule
    if workers:
        after_master = _build_worker_start(
            steps,
            cleanup,
            workers=workers,
            cluster_arn=cluster_arn,
            task_definition_arn=task_definition_arn,
            container_name=container_name,
            network=network,
            then=schedule,
        )
    running.when(sfn.Condition.string_equals(STATUS_PATH, "RUNNING"), after_master)
    running.when(
        sfn.Condition.string_equals(STATUS_PATH, "STOPPED"),
        cleanup.fail("Load task stopped early", "LoadTaskStopped", "the load task stopped before the faults"),
    )
    running.when(
        sfn.Condition.number_greater_than_equals("$.loop.n", c.MAX_POLLS_TASK_START),
        cleanup.fail(
            "Load task start timed out", "LoadTaskStartTimeout", "the load task did not reach RUNNING"
        ),
    )
    running.otherwise(count_start)
    count_start.next(wait_running)
    return Phase(entry=start_load, exits=(baseline,))


def build_load_end(
    *,
    steps: Steps,
    cleanup: CleanupBranch,
    cluster_arn: str,
    duration_s: int,
    quiesce_function: lambda_.IFunction,
    quiesce: Quiesce,
    target_cluster: str,
    target_services: Sequence[str],
    workers: int = 0,
) -> Phase:
    """Returns the phase: entry ``Wait for load end`` (the faults continue there, also after a tripped
    guardrail), exit ``Quiesce``. ``duration_s`` (load + stop timeout) bounds the polls. ``Quiesce``
    invokes ``quiesce_function`` (:mod:`lambdas.quiesce`) with the config's ``quiesce`` section and the
    target's services, bounded by ``$.waits.quiesce_s``; its result goes to ``$.quiesce``. With
    ``workers``, once the master exited with 0 (it has collected the workers' parts), every worker task
    still running is stopped (:func:`stop_workers`) before ``Quiesce``."""
    max_polls = c.MAX_POLLS_LOAD_END + math.ceil(duration_s / c.DEFAULT_POLL_S)
    load_end_wait = steps.wait_until("Wait for load end", "$.schedule.load_end")
    reset_end = steps.reset_polls("Reset load end polls")
    describe_end, picked_end = _describe_load(steps, cleanup, "Describe finished load task", cluster_arn)
    stopped = steps.choice("Load finished?")
    has_container = steps.choice("Load container reported?")
    count_end = steps.count_polls("Count load end polls")
    wait_end = steps.wait("Wait for load to finish", "$.waits.poll_s")
    exit_ok = steps.choice("Load exit code 0?")
    quiesce_state = build_quiesce(
        steps,
        cleanup,
        quiesce_function,
        quiesce=quiesce,
        target_cluster=target_cluster,
        target_services=target_services,
    )
    load_end_wait.next(reset_end).next(describe_end)
    picked_end.next(stopped)
    stopped.when(sfn.Condition.string_equals(STATUS_PATH, "STOPPED"), has_container)
    stopped.when(
        sfn.Condition.number_greater_than_equals("$.loop.n", max_polls),
        cleanup.fail("Load did not stop", "LoadTaskStopTimeout", "the load task ran past its expected end"),
    )
    stopped.otherwise(count_end)
    count_end.next(wait_end).next(describe_end)
    load_failed = cleanup.fail(
        "Load failed", "LoadFailed", "the load task exited with an error (see its log)"
    )
    pick_container = steps.pass_(
        "Pick load container",
        parameters={"container.$": "$.load_status.task.Containers[0]"},
        result_path="$.load_exit",
    )
    has_container.when(
        sfn.Condition.is_present("$.load_status.task.Containers[0]"), pick_container
    ).otherwise(load_failed)
    exit_code = "$.load_exit.container.ExitCode"
    pick_container.next(exit_ok)
    after_load = (
        quiesce_state if not workers else stop_workers(steps, "", cluster_arn, workers, then=quiesce_state)
    )
    exit_ok.when(
        sfn.Condition.and_(sfn.Condition.is_present(exit_code), sfn.Condition.number_equals(exit_code, 0)),
        after_load,
    ).otherwise(load_failed)
    return Phase(entry=load_end_wait, exits=(quiesce_state,))


def build_quiesce(
    steps: Steps,
    cleanup: CleanupBranch,
    function: lambda_.IFunction,
    *,
    quiesce: Quiesce,
    target_cluster: str,
    target_services: Sequence[str],
) -> tasks.LambdaInvoke:
    """``Quiesce``: the quiesce Lambda waits until every target service is healthy and the consumer
    groups and ``drained_queries`` are drained, at most ``$.waits.quiesce_s`` (the function ``resgate
    run``'s quiesce calls: :func:`resgate.evidence.quiesce.wait_quiet`); ``$.quiesce`` is its result,
    which integrity and replay receive (unsettled: unknown, as locally). A failure enters cleanup."""
    state = steps.lambda_invoke(
        "Quiesce",
        function,
        {
            **run_fields(),
            "cluster": target_cluster,
            "services": {s: s for s in target_services},
            "consumer_groups": [
                {"group": g.group, "topics": list(g.topics)} for g in quiesce.consumer_groups
            ],
            "drained_queries": list(quiesce.drained_queries),
            "timeout_s.$": "$.waits.quiesce_s",
        },
        result_selector={
            "settled.$": "$.Payload.settled",
            "healthy.$": "$.Payload.healthy",
            "waited_s.$": "$.Payload.waited_s",
            "reason.$": "$.Payload.reason",
        },
        result_path="$.quiesce",
    )
    # GateError = ECS, Secrets Manager or the database failed: worth one more try.
    state.add_retry(errors=["GateError"], interval=Duration.seconds(5), max_attempts=2, backoff_rate=2)
    cleanup.catch(state)
    return state


def _describe_load(
    steps: Steps, cleanup: CleanupBranch, name: str, cluster_arn: str
) -> tuple[sfn.CustomState, sfn.Pass]:
    """DescribeTasks of the load task → ``$.load_status.task`` (a missing task enters cleanup); returns
    ``(the DescribeTasks state, the Pass that picked the task)``."""
    d = steps.sdk(
        name,
        "ecs",
        "describeTasks",
        {"Cluster": cluster_arn, "Tasks.$": "States.Array($.load.task.TaskArn)"},
        ResultSelector={"tasks.$": "$.Tasks"},
        ResultPath="$.load_status",
    )
    cleanup.catch(d)
    found = steps.choice(f"{name}: found?")
    pick = steps.pass_(
        f"{name}: pick", parameters={"task.$": "$.load_status.tasks[0]"}, result_path="$.load_status"
    )
    found.when(sfn.Condition.is_present("$.load_status.tasks[0]"), pick).otherwise(
        cleanup.fail(f"{name}: lost", "LoadTaskLost", "ecs:DescribeTasks does not know the load task")
    )
    d.next(found)
    return d, pick


WORKERS_STATUS = "$.workers_status"


def worker_environment(node: str) -> list[dict[str, str]]:
    """A worker task's container environment overrides: the run's evidence prefix and profile (as the
    master's), its role and node name, and its master: the master task's private IPv4 address from
    ``ecs:DescribeTasks`` (``Containers[0].NetworkInterfaces[0].PrivateIpv4Address``, an ``awsvpc`` task's
    elastic network interface)."""
    return [
        {"Name": env_names.ENV_EVIDENCE_S3_URI, "Value.$": "$.locations.evidence_uri"},
        *profile_environment(),
        {"Name": env_names.ENV_LOAD_ROLE, "Value": "worker"},
        {"Name": env_names.ENV_LOAD_NODE, "Value": node},
        {"Name": env_names.ENV_MASTER_HOST, "Value.$": MASTER_IP_PATH},
    ]


MASTER_IP_PATH = "$.load_master.ip"
"""The master task's private IPv4 address, picked from ``ecs:DescribeTasks``
(``Containers[0].NetworkInterfaces[0].PrivateIpv4Address``) by ``Remember load master``."""


def worker_count_expression() -> str:
    """The JSONata ``Output`` of ``Count load workers``: ``$.workers_status`` becomes ``{running, stopped,
    expected, started_at}`` (``started_at``: the last RUNNING worker's ``StartedAt`` in epoch ms)."""
    tasks = "$states.input.workers_status.tasks"
    ms = (
        "($type(StartedAt) = 'string' ? $toMillis(StartedAt) : "
        "(StartedAt > 100000000000 ? StartedAt : StartedAt * 1000))"
    )
    return (
        "{% $merge([$states.input, {'workers_status': {"
        f"'running': $count({tasks}[LastStatus = 'RUNNING']), "
        f"'stopped': $count({tasks}[LastStatus = 'STOPPED']), "
        "'expected': $count($states.input.load_workers), "
        f"'started_at': $max({tasks}[LastStatus = 'RUNNING'].{ms})"
        "}}]) %}"
    )


# The load starts when the last worker connects: the schedule counts from the last worker's start.
STARTED_EXPRESSION = (
    "{% $merge([$states.input, {'load_status': $merge([$states.input.load_status, {'task': "
    "$merge([$states.input.load_status.task, {'StartedAt': $states.input.workers_status.started_at}])"
    "}])}]) %}"
)


def _build_worker_start(
    steps: Steps,
    cleanup: CleanupBranch,
    *,
    workers: int,
    cluster_arn: str,
    task_definition_arn: str,
    container_name: str,
    network: dict[str, object],
    then: sfn.IChainable,
) -> sfn.IChainable:
    """The profile's workers, ``w1``..``wN`` (``$.profile.workers`` of at most ``workers``), each with its
    own ``ecs:RunTask`` (its own node name; RunTask's overrides are per call) and its ARN appended to
    ``$.load_workers``; then poll until every one is RUNNING (bounded: ``MAX_POLLS_TASK_START``; one
    STOPPED enters cleanup) and count the load's start from the last one's ``StartedAt``; then ``then``.
    A profile with no workers goes on to ``then`` at once (its master ran the load itself). Returns the
    first state."""
    reset = steps.reset_polls("Reset load worker polls")
    wait = steps.wait("Wait for load workers", "$.waits.start_poll_s")
    describe = steps.sdk(
        "Describe load workers",
        "ecs",
        "describeTasks",
        {"Cluster": cluster_arn, "Tasks.$": WORKERS_PATH},
        ResultSelector={"tasks.$": "$.Tasks"},
        ResultPath=WORKERS_STATUS,
    )
    cleanup.catch(describe)
    count = sfn.Pass.jsonata(steps.scope, "Count load workers", outputs=worker_count_expression())
    running = steps.choice("Load workers running?")
    started = sfn.Pass.jsonata(steps.scope, "Load workers started", outputs=STARTED_EXPRESSION)
    count_polls = steps.count_polls("Count load worker polls")
    reset.next(wait).next(describe).next(count).next(running)
    started.next(then)
    count_polls.next(wait)
    running.when(
        sfn.Condition.number_greater_than(f"{WORKERS_STATUS}.stopped", 0),
        cleanup.fail(
            "Load worker stopped early", "LoadWorkerStopped", "a load worker task stopped before the faults"
        ),
    )
    running.when(
        sfn.Condition.number_equals_json_path(f"{WORKERS_STATUS}.running", f"{WORKERS_STATUS}.expected"),
        started,
    )
    running.when(
        sfn.Condition.number_greater_than_equals("$.loop.n", c.MAX_POLLS_TASK_START),
        cleanup.fail(
            "Load workers start timed out",
            "LoadWorkerStartTimeout",
            "a load worker task did not reach RUNNING",
        ),
    )
    running.otherwise(count_polls)

    next_start: sfn.IChainable = reset
    for i in range(workers, 0, -1):
        node = f"w{i}"
        start = steps.sdk(
            f"Start load worker {node}",
            "ecs",
            "runTask",
            {
                "Cluster": cluster_arn,
                "TaskDefinition": task_definition_arn,
                "LaunchType": "FARGATE",
                "Count": 1,
                "ClientToken.$": f"States.Hash(States.Format('{{}}-{node}', $$.Execution.Id), 'SHA-256')",
                "StartedBy": c.LOADGEN_STARTED_BY,
                "Tags": [{"Key": c.EXPERIMENT_TAG_RUN_ID, "Value.$": "$.run.run_id"}],
                "NetworkConfiguration": network,
                "Overrides": {
                    "ContainerOverrides": [{"Name": container_name, "Environment": worker_environment(node)}]
                },
            },
            ResultSelector={"tasks.$": "$.Tasks"},
            ResultPath="$.load_worker_start",
        )
        cleanup.catch(start)
        created = steps.choice(f"Load worker {node} created?")
        remember = sfn.Pass.jsonata(
            steps.scope,
            f"Remember load worker {node}",
            outputs="{% $merge([$states.input, {'load_workers': "
            "$append($states.input.load_workers, [$states.input.load_worker_start.tasks[0].TaskArn])}]) %}",
        )
        start.next(created)
        created.when(sfn.Condition.is_present("$.load_worker_start.tasks[0]"), remember).otherwise(
            cleanup.fail(
                f"Load worker {node} not created", "LoadTaskNotCreated", "ecs:RunTask returned no worker task"
            )
        )
        remember.next(next_start)
        in_profile = steps.choice(f"Load worker {node} in profile?")
        in_profile.when(sfn.Condition.number_greater_than_equals("$.profile.workers", i), start)
        in_profile.otherwise(reset if i > 1 else then)
        next_start = in_profile
    # JSONata: moto's JSONPath returns a list for a path that indexes in the middle; AWS a scalar.
    first = sfn.Pass.jsonata(
        steps.scope,
        "Remember load master",
        outputs="{% $merge([$states.input, {'load_workers': [], 'load_master': {'ip': "
        "$states.input.load_status.task.Containers[0].NetworkInterfaces[0].PrivateIpv4Address}}]) %}",
    )
    known = steps.choice("Load master address known?")
    first.next(known)
    known.when(sfn.Condition.is_present(MASTER_IP_PATH), next_start).otherwise(
        cleanup.fail(
            "Load master address unknown",
            "LoadMasterAddressUnknown",
            "ecs:DescribeTasks gave the RUNNING master task no private IPv4 address",
        )
    )
    return first
