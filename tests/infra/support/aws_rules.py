"""Static rules over a synthesized CloudFormation template: what AWS enforces that a synth does not check.

- :func:`fis_filter_path_errors`: every FIS target filter path is PascalCase element by element (FIS user
  guide, "Targets for AWS FIS" → "Resource filters": ``AvailabilityZone``, not ``availabilityZone``, even
  where the Describe output is camelCase; an unmatched filter with ``emptyTargetResolutionMode: fail`` fails
  the experiment).
- :func:`fis_permission_errors`: every action of every experiment template has the permissions the FIS
  actions reference lists for it (:data:`infra.fis_actions.ACTION_PERMISSIONS`) on the template's role,
  each evaluated (Action, Resource and the condition keys ECS and SSM set) by the rehearsal's IAM evaluator.
- :func:`passrole_errors`: a role allowed ``ecs:RunTask`` on a task definition of the template may pass
  that task definition's task and execution roles (``iam:PassRole``): ECS checks PassRole for the roles
  already in the task definition, not only for overrides.

Each returns a list of sentences naming the template/role/action; empty means the rule holds. The
evaluation is action-level with wildcards (``ecs:*``), and resource-level where a rule names a resource.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from typing import Any

from infra.fis_actions import ACTION_PERMISSIONS
from tests.infra.support.cfn import ACCOUNT, REGION, render
from tests.rehearsal.support.iam_eval import evaluate

_PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def _resources(template: dict[str, Any], rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, r in template["Resources"].items():
        if r["Type"] == rtype:
            yield logical_id, r


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """The Allow statements of every policy of role ``role_id`` (inline and ``AWS::IAM::Policy``)."""
    out: list[dict[str, Any]] = []
    role = template["Resources"].get(role_id, {})
    for p in role.get("Properties", {}).get("Policies", []) or []:
        out += _as_list(p["PolicyDocument"]["Statement"])
    for _, r in _resources(template, "AWS::IAM::Policy"):
        if {"Ref": role_id} in r["Properties"].get("Roles", []):
            out += _as_list(r["Properties"]["PolicyDocument"]["Statement"])
    return [s for s in out if s.get("Effect", "Allow") == "Allow"]


def _allows(statement: dict[str, Any], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in _as_list(statement["Action"]))


def _role_of(arn: Any) -> str | None:
    """The logical id of a role given as ``{"Fn::GetAtt": [id, "Arn"]}``."""
    if isinstance(arn, dict) and "Fn::GetAtt" in arn and arn["Fn::GetAtt"][1] == "Arn":
        return str(arn["Fn::GetAtt"][0])
    return None


def fis_filter_path_errors(template: dict[str, Any]) -> list[str]:
    """Filter paths of FIS targets that are not PascalCase element by element."""
    errors: list[str] = []
    for tid, r in _resources(template, "AWS::FIS::ExperimentTemplate"):
        for target_name, target in r["Properties"].get("Targets", {}).items():
            for f in target.get("Filters", []) or []:
                bad = [e for e in str(f["Path"]).split(".") if not _PASCAL.match(e)]
                if bad:
                    errors.append(
                        f"{tid} target {target_name}: filter path {f['Path']!r} is not PascalCase "
                        f"(element {bad[0]!r}); FIS filter paths are PascalCase (AvailabilityZone)"
                    )
    return errors


def fis_requests(permission: str, *, cluster: str, tags: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The requests FIS makes with ``permission`` for an ECS task target of cluster ``cluster`` carrying
    ``tags``: ``[(resource ARN, condition context)]`` with the keys the service sets (``ecs:cluster``, the
    task's tags as ``aws:ResourceTag/*``, the managed instance's ``ssm:resourceTag/ECS_TASK_ARN``)."""
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
    on_cluster = {"ecs:cluster": f"{arn}:cluster/{cluster}"}
    task = f"{arn}:task/{cluster}/0123456789abcdef0"
    if permission == "ecs:DescribeTasks":
        return [(task, on_cluster)]
    if permission == "ecs:ListTasks":
        # A Fargate cluster's tasks are listed with no container instance: the request's resource is "*".
        return [("*", on_cluster)]
    if permission == "ecs:DescribeContainerInstances":
        return [(f"{arn}:container-instance/{cluster}/0123456789abcdef0", on_cluster)]
    if permission == "ecs:StopTask":
        return [(task, {**on_cluster, **{f"aws:ResourceTag/{k}": v for k, v in tags.items()}})]
    if permission == "ssm:SendCommand":
        return [
            (f"arn:aws:ssm:{REGION}::document/AWSFIS-Run-Network-Latency-ECS", {}),
            (
                f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/mi-0123456789abcdef0",
                {"ssm:resourceTag/ECS_TASK_ARN": task},
            ),
        ]
    return [("*", {})]


def fis_permission_errors(template: dict[str, Any]) -> list[str]:
    """Requests of an FIS action that its template's role does not allow, for every permission the FIS
    actions reference lists for the action: each evaluated with its resource and condition keys
    (:func:`fis_requests`, :mod:`tests.rehearsal.support.iam_eval`) on the role's statements rendered with
    the test ARNs (account 123456789012, us-east-1)."""
    errors: list[str] = []
    resources = template["Resources"]
    for tid, r in _resources(template, "AWS::FIS::ExperimentTemplate"):
        role_id = _role_of(r["Properties"]["RoleArn"])
        if role_id is None:
            errors.append(f"{tid}: its role is not a role of this template")
            continue
        statements = render(role_statements(template, role_id), resources)
        targets = list(r["Properties"].get("Targets", {}).values())
        tags = {k: str(v) for t in targets for k, v in render(t.get("ResourceTags") or {}, resources).items()}
        cluster = tags.get("aws:ecs:clusterName", "")
        for action in r["Properties"]["Actions"].values():
            action_id = action["ActionId"]
            if action_id not in ACTION_PERMISSIONS:
                errors.append(f"{tid}: FIS action {action_id} is not in infra.fis_actions.ACTION_PERMISSIONS")
                continue
            for permission in ACTION_PERMISSIONS[action_id]:
                for resource, context in fis_requests(permission, cluster=cluster, tags=tags):
                    if not evaluate(statements, permission, resource, context).allowed:
                        errors.append(
                            f"{tid}: FIS action {action_id} needs {permission} on {resource} "
                            f"(context {context}) from role {role_id}"
                        )
    return errors


def passrole_errors(template: dict[str, Any]) -> list[str]:
    """Roles of a task definition that a role allowed to ``ecs:RunTask`` it may not pass: ``iam:PassRole``
    on the role's ARN with ``iam:PassedToService = ecs-tasks.amazonaws.com`` (the key ECS's RunTask sets),
    evaluated by the rehearsal's IAM evaluator on the statements rendered with the test ARNs. A role allowed
    to run a task definition outside the template must be allowed to pass some role to ECS tasks (the
    config names them; synth refuses an ``ecs_task`` without them)."""
    errors: list[str] = []
    resources = template["Resources"]
    task_defs = dict(_resources(template, "AWS::ECS::TaskDefinition"))
    to_ecs = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    for role_id, _ in _resources(template, "AWS::IAM::Role"):
        raw = role_statements(template, role_id)
        run = [s for s in raw if _allows(s, "ecs:RunTask")]
        if not run:
            continue
        statements = render(raw, resources)
        for td_id, td in task_defs.items():
            if not any(json.dumps({"Ref": td_id}) in json.dumps(s.get("Resource")) for s in run):
                continue
            for key in ("TaskRoleArn", "ExecutionRoleArn"):
                passed = td["Properties"].get(key)
                if passed is None:
                    continue
                arn = str(render(passed, resources))
                if not evaluate(statements, "iam:PassRole", arn, to_ecs).allowed:
                    errors.append(
                        f"role {role_id} may ecs:RunTask {td_id} but not iam:PassRole its {key} {arn}"
                    )
        external = [
            s for s in run if not any(json.dumps({"Ref": t}) in json.dumps(s["Resource"]) for t in task_defs)
        ]
        passes = [s for s in statements if _allows(s, "iam:PassRole")]
        named = [r for s in passes for r in _as_list(s.get("Resource")) if r != "*"]
        if external and not any(evaluate(statements, "iam:PassRole", r, to_ecs).allowed for r in named):
            errors.append(
                f"role {role_id} may ecs:RunTask a task definition outside this template but may pass no "
                "role (iam:PassRole of the task definition's task and execution roles)"
            )
    return errors
