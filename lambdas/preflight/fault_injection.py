"""FIS's ECS task network actions need the target's tasks set up for them: what each service lacks.

``aws:ecs:task-network-blackhole-port``, ``-latency`` and ``-packet-loss`` run inside the target's tasks,
through an SSM agent sidecar that registers each task as an SSM managed instance, and the ECS agent's
fault-injection endpoints. A service whose task definition lacks any of that makes the experiment fail
mid-run (or, worse, resolve no target). :func:`find_missing` describes each service (``ecs:DescribeServices``)
and its task definition (``ecs:DescribeTaskDefinition``) and lists, per service, what to add:

- ``enableFaultInjection: true`` on the task definition;
- ``pidMode: task``;
- ``networkMode: awsvpc`` (or ``host``);
- the ``amazon-ssm-agent`` sidecar container (image ``public.ecr.aws/amazon-ssm-agent/amazon-ssm-agent`` or
  FIS's non-root ``aws-fis-ssm-agent-non-root``, ``essential: false``, FIS's registration command);
- ``MANAGED_INSTANCE_ROLE_NAME`` in the sidecar's environment: the SSM managed instance role;
- a task role (``taskRoleArn``), which needs ``ssm:CreateActivation``, ``ssm:AddTagsToResource`` and
  ``iam:PassRole`` on that managed instance role;
- ECS Exec turned off on the service (``enableExecuteCommand: false``).

:func:`check` returns ``{"ready": bool, "missing": {service: [what to add, ...]}, "message": str}`` for
the preflight Lambda (:mod:`lambdas.preflight.handler`); the state machine fails the run with ``message``
when ``ready`` is false. Standard library and boto3 only; the asset bundles its own boto3/botocore, because
botocore drops response fields its ECS model does not know, and a runtime botocore older than
``enableFaultInjection`` would report every service unready. :func:`require_model_field` checks that at
the start of every call and raises :class:`ModelTooOld` (the run fails, naming the botocore version)
rather than judge a task definition it cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SSM_AGENT_IMAGES = ("amazon-ssm-agent", "aws-fis-ssm-agent")
ROLE_ENV = "MANAGED_INSTANCE_ROLE_NAME"
NETWORK_MODES = ("awsvpc", "host")
README_SECTION = "README.md, 'Network faults on AWS'"

NEED_FAULT_INJECTION = "enableFaultInjection: true"
NEED_PID_MODE = "pidMode: task"
NEED_NETWORK_MODE = "networkMode: awsvpc"
NEED_SIDECAR = (
    "the amazon-ssm-agent sidecar container (image public.ecr.aws/amazon-ssm-agent/amazon-ssm-agent, "
    "essential: false, FIS's registration command)"
)
NEED_ROLE_ENV = f"{ROLE_ENV} in the amazon-ssm-agent container's environment (the SSM managed instance role)"
NEED_TASK_ROLE = (
    "a task role (taskRoleArn) allowed ssm:CreateActivation, ssm:AddTagsToResource and iam:PassRole on the "
    "SSM managed instance role"
)
NEED_EXEC_OFF = "ECS Exec turned off on the service (enableExecuteCommand: false)"


def task_definition_missing(task_definition: Mapping[str, Any]) -> list[str]:
    """What a ``DescribeTaskDefinition`` ``taskDefinition`` lacks, in the order of the module's list."""
    missing: list[str] = []
    if task_definition.get("enableFaultInjection") is not True:
        missing.append(NEED_FAULT_INJECTION)
    if task_definition.get("pidMode") != "task":
        missing.append(NEED_PID_MODE)
    if task_definition.get("networkMode", "bridge") not in NETWORK_MODES:
        missing.append(NEED_NETWORK_MODE)
    sidecar = next(
        (
            c
            for c in task_definition.get("containerDefinitions", [])
            if any(image in str(c.get("image", "")) for image in SSM_AGENT_IMAGES)
        ),
        None,
    )
    if sidecar is None:
        missing.append(NEED_SIDECAR)
        missing.append(NEED_ROLE_ENV)
    elif not any(e.get("name") == ROLE_ENV and e.get("value") for e in sidecar.get("environment", [])):
        missing.append(NEED_ROLE_ENV)
    if not task_definition.get("taskRoleArn"):
        missing.append(NEED_TASK_ROLE)
    return missing


def find_missing(ecs: Any, cluster: str, services: Sequence[str]) -> dict[str, list[str]]:
    """``{service: [what to add, ...]}`` for every service of ``services`` in ``cluster`` that is not set up
    for FIS's network actions (an empty dict: all are). ``ecs`` is a boto3 ECS client."""
    out: dict[str, list[str]] = {}
    described = ecs.describe_services(cluster=cluster, services=list(services))
    found = {s["serviceName"]: s for s in described.get("services", [])}
    for name in services:
        service = found.get(name)
        if service is None:
            out[name] = [f"the service itself: it is not in cluster {cluster}"]
            continue
        td = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        missing = task_definition_missing(td)
        if service.get("enableExecuteCommand"):
            missing.append(NEED_EXEC_OFF)
        if missing:
            out[name] = missing
    return out


def message(cluster: str, missing: Mapping[str, Sequence[str]]) -> str:
    """One sentence per service that is not set up, naming its task definition's gaps."""
    parts = [f"{name}: add {'; '.join(what)}" for name, what in missing.items()]
    return (
        f"the network faults need FIS's ECS task setup on cluster {cluster}; "
        + " | ".join(parts)
        + f" (see {README_SECTION})"
    )


def check(ecs: Any, cluster: str, services: Sequence[str]) -> dict[str, Any]:
    """``{"ready": bool, "missing": {service: [...]}, "message": str}`` for the state machine."""
    missing = find_missing(ecs, cluster, services)
    return {
        "ready": not missing,
        "missing": missing,
        "message": message(cluster, missing) if missing else "fault injection is set up on every service",
    }


class ModelTooOld(RuntimeError):
    """The ECS model of this botocore lacks a field the preflight reads."""


def require_model_field(
    ecs: Any, shape: str = "TaskDefinition", member: str = "enableFaultInjection"
) -> None:
    """Raise :class:`ModelTooOld` when ``ecs``'s service model has no ``member`` in ``shape``: botocore
    would drop the field from every response, and every service would look unready."""
    members = ecs.meta.service_model.shape_for(shape).members
    if member not in members:
        import botocore

        raise ModelTooOld(
            f"botocore {botocore.__version__}'s ECS model has no {shape}.{member}: it would drop the "
            "field from DescribeTaskDefinition and report every service unready; the preflight's asset "
            "must bundle a newer botocore (infra.constants.LAMBDA_EXTRA_REQUIREMENTS['preflight'])"
        )
