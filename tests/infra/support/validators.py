"""Offline validators of the synthesized gate stack: what a reviewer with an AWS account would check.

Plain functions over the template (``dict``) or the rendered state machine definition (``dict``), each
returning a list of problems (empty: valid), so a test asserts ``== []`` and the message names them:

- :func:`cfn_lint_findings`: cfn-lint over the template (errors and warnings, as ``(rule, path, text)``);
- :func:`vpc_functions_without_eni_access`: every Lambda with a ``VpcConfig`` has a role whose policies
  (inline, attached ``AWS::IAM::Policy``, managed) allow ``ec2:CreateNetworkInterface``, without which
  CreateFunction fails;
- :func:`tasks_without_throttling_retry`: every Task state retries throttling;
- :func:`sdk_task_parameter_errors` and :func:`fis_template_errors`: botocore's ``ParamValidator`` over each
  ``aws-sdk:`` task's Parameters and each FIS experiment template, against the API's input shape.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from typing import Any

import botocore.session
from botocore.model import Shape
from botocore.validate import ParamValidator

from tests.infra.support.cfn import render

_SESSION = botocore.session.get_session()
# AWS managed policies a test may meet, as the actions they allow (only what these checks ask about).
_MANAGED_ACTIONS = {
    "AWSLambdaVPCAccessExecutionRole": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces"],
}
THROTTLING = re.compile(r"(Throttling|TooManyRequests|Throttled)Exception$")


def cfn_lint_findings(template: dict[str, Any], *, region: str = "us-east-1") -> list[tuple[str, str, str]]:
    """cfn-lint's matches over ``template``: ``(rule id, "Resources/<id>/…" path, message)``; rule ids
    starting with ``E`` are errors, ``W`` warnings, ``I`` informational."""
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(template), config=ManualArgs(regions=[region]))
    return [(m.rule.id, "/".join(str(p) for p in m.path), m.message) for m in matches]


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _allows(statements: list[dict[str, Any]], action: str) -> bool:
    return any(
        st.get("Effect") == "Allow"
        and any(fnmatch.fnmatchcase(action, a) for a in _as_list(st.get("Action")))
        for st in statements
    )


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement the role ``role_id`` gets: its inline ``Policies``, ``AWS::IAM::Policy`` and
    ``AWS::IAM::ManagedPolicy`` resources that name it, and the known AWS managed policies it attaches."""
    resources = template["Resources"]
    role = resources[role_id]["Properties"]
    out: list[dict[str, Any]] = []
    for p in role.get("Policies", []):
        out += _as_list(p["PolicyDocument"]["Statement"])
    for r in resources.values():
        policy = r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        if policy and {"Ref": role_id} in r["Properties"].get("Roles", []):
            out += _as_list(r["Properties"]["PolicyDocument"]["Statement"])
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn and arn["Ref"] in resources:
            out += _as_list(resources[arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"])
            continue
        name = json.dumps(arn).rsplit("/", 1)[-1].strip('"]}')
        if name in _MANAGED_ACTIONS:
            out.append({"Effect": "Allow", "Action": _MANAGED_ACTIONS[name], "Resource": "*"})
    return out


def vpc_functions_without_eni_access(template: dict[str, Any]) -> list[str]:
    """The logical ids of Lambda functions with a ``VpcConfig`` whose role may not create network
    interfaces (``ec2:CreateNetworkInterface``, ``ec2:DescribeNetworkInterfaces``)."""
    bad = []
    for fid, r in template["Resources"].items():
        if r["Type"] != "AWS::Lambda::Function" or "VpcConfig" not in r["Properties"]:
            continue
        role = r["Properties"]["Role"]
        role_id = role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else None
        statements = role_statements(template, role_id) if role_id else []
        missing = [
            a
            for a in ("ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces")
            if not _allows(statements, a)
        ]
        if missing:
            bad.append(f"{fid} (role {role_id}): no {', '.join(missing)}")
    return bad


def definition_of(template: dict[str, Any]) -> dict[str, Any]:
    """The (only) state machine's definition, tokens rendered to fake values (see :mod:`.cfn`)."""
    resources = template["Resources"]
    (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    return json.loads(render(machine["Properties"]["DefinitionString"], resources))


def states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``(name, state)`` of the definition, including those in Parallel branches and Map items."""
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from states(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from states(state[key])


def tasks_without_throttling_retry(definition: dict[str, Any]) -> list[str]:
    """Task states with no Retrier that covers throttling (an ``…ThrottlingException`` /
    ``…TooManyRequestsException`` name, or ``States.TaskFailed`` / ``States.ALL``)."""
    bad = []
    for name, state in states(definition):
        if state["Type"] != "Task":
            continue
        errors = [e for r in state.get("Retry", []) for e in r["ErrorEquals"]]
        if not any(THROTTLING.search(e) or e in ("States.TaskFailed", "States.ALL") for e in errors):
            bad.append(name)
    return bad


def _placeholder(shape: Shape) -> Any:
    """A value of ``shape``'s type for a member only known at run time (a JSONPath)."""
    return {
        "string": "runtime-value",
        "integer": 1,
        "long": 1,
        "boolean": True,
        "double": 1.0,
        "float": 1.0,
        "list": [],
        "map": {},
        "structure": {},
        "blob": b"",
        "timestamp": "2026-01-01T00:00:00Z",
    }[shape.type_name]


def conform(value: Any, shape: Shape, path: str, problems: list[str]) -> Any:
    """``value`` with its structure member names mapped case-insensitively onto ``shape``'s (Step
    Functions and CloudFormation spell them PascalCase, botocore often camelCase). A ``<name>.$`` key
    (a JSONPath, known at run time) must name a member; it becomes a placeholder of the member's type.
    Unknown names are kept, for the validator to report."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = {m.lower(): m for m in shape.members}
        out: dict[str, Any] = {}
        for key, v in value.items():
            dynamic = key.endswith(".$")
            name = key[:-2] if dynamic else key
            member = members.get(name.lower())
            if member is None:
                if dynamic:
                    problems.append(f"{path}.{name}: no such member of {shape.name}")
                else:
                    out[name] = v
                continue
            sub = shape.members[member]
            out[member] = _placeholder(sub) if dynamic else conform(v, sub, f"{path}.{member}", problems)
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [conform(v, shape.member, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if shape.type_name == "map" and isinstance(value, dict):
        # A map key ending in .$ (a tag whose value is a JSONPath) is a key with a run-time value.
        return {
            (k[:-2] if k.endswith(".$") else k): (
                _placeholder(shape.value)
                if k.endswith(".$")
                else conform(v, shape.value, f"{path}.{k}", problems)
            )
            for k, v in value.items()
        }
    return value


def validate_input(service: str, operation: str, params: dict[str, Any], where: str) -> list[str]:
    """botocore's ``ParamValidator`` over ``params`` (mapped by :func:`conform`) against the input shape of
    ``service``'s ``operation`` (PascalCase, e.g. ``DescribeServices``)."""
    model = _SESSION.get_service_model(service).operation_model(operation)
    problems: list[str] = []
    conformed = conform(params, model.input_shape, where, problems)
    report = ParamValidator().validate(conformed, model.input_shape)
    if report.has_errors():
        problems.append(f"{where}: {report.generate_report()}")
    return problems


_SDK = re.compile(r":states:::aws-sdk:([a-z0-9]+):([A-Za-z0-9]+)$")
_OPTIMIZED = {":states:::ecs:runTask": ("ecs", "RunTask")}


def sdk_task_parameter_errors(definition: dict[str, Any]) -> list[str]:
    """Problems of every ``aws-sdk:<service>:<action>`` task (and the optimized ``ecs:runTask``): its
    Parameters against the action's input shape; an unknown service or action is a problem too."""
    problems: list[str] = []
    for name, state in states(definition):
        if state["Type"] != "Task":
            continue
        resource = state["Resource"]
        m = _SDK.search(resource)
        target = (m.group(1), m.group(2)[:1].upper() + m.group(2)[1:]) if m else None
        target = target or next((t for suffix, t in _OPTIMIZED.items() if resource.endswith(suffix)), None)
        if target is None:
            continue
        try:
            problems += validate_input(*target, state.get("Parameters", {}), where=name)
        except Exception as e:  # an unknown service or operation
            problems.append(f"{name}: {target[0]}:{target[1]}: {type(e).__name__}: {e}")
    return problems


def fis_template_errors(template: dict[str, Any]) -> list[str]:
    """Problems of every ``AWS::FIS::ExperimentTemplate`` (tokens rendered to fake values) against
    ``fis`` ``CreateExperimentTemplate``'s input shape."""
    resources = template["Resources"]
    problems: list[str] = []
    for tid, r in resources.items():
        if r["Type"] == "AWS::FIS::ExperimentTemplate":
            props = {"ClientToken": "token", **_api_names(render(r["Properties"], resources))}
            problems += validate_input("fis", "CreateExperimentTemplate", props, where=tid)
    return problems


# CloudFormation names a few FIS members differently from the API (the rest differ only in case).
_CFN_TO_API = {"ExperimentReportS3Configuration": "s3Configuration"}


def _api_names(node: Any) -> Any:
    """``node`` with CloudFormation's member names that are not the API's renamed (:data:`_CFN_TO_API`)."""
    if isinstance(node, dict):
        return {_CFN_TO_API.get(k, k): _api_names(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_api_names(v) for v in node]
    return node
