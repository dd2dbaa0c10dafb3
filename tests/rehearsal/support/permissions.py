"""Permissions enforced in the rehearsal: every call a twin answers is evaluated against the IAM policy the
synthesized template gives the principal that would make it on AWS, and a call its role does not allow
fails with AccessDenied, as AWS answers it.

Principals (:class:`Permissions`): the state machine's role for its task states (``lambda:invoke``,
``ecs:runTask``, ``sns:publish``, ``dynamodb:*``, every ``aws-sdk:`` task), each Lambda function's role for
the calls its handler makes to the ECS, FIS and SSM twins (the function's subprocess signs with an access
key id that names its role: :meth:`Permissions.access_key`), and each experiment template's role for what
FIS does to run its actions (:meth:`Permissions.fis_denial`, the permissions the FIS actions reference lists
per action, :data:`infra.fis_actions.ACTION_PERMISSIONS`).

:func:`requests` maps one API call (its operation and the API's own member names) to the IAM requests AWS
authorizes for it: ``(action, resource ARN, condition context)`` with the condition keys the service sets
(``ecs:cluster``, ``iam:PassedToService`` for the roles ``RunTask`` passes, ``aws:RequestTag/*`` and
``aws:TagKeys`` on a tagging create, ``aws:ResourceTag/*`` of an experiment, ``dynamodb:LeadingKeys``,
``ecs:CreateAction``). A call it has no mapping for is refused (:class:`Unmapped`): a rehearsal cannot
vouch for a permission it does not evaluate. The moto-served S3/Secrets Manager calls of the Lambdas and the
load task are not evaluated (moto's server does not carry the caller's role to a hook); the state machine's
own S3 call is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from infra.fis_actions import ACTION_PERMISSIONS, TARGET_RESOLUTION
from tests.infra.support.aws_rules import fis_requests
from tests.infra.support.cfn import ACCOUNT, REGION, fake_get_att, render
from tests.rehearsal.support.iam_eval import AccessDenied, evaluate

Request = tuple[str, str, dict[str, Any]]
_TO_ECS_TASKS = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
_KEY_PREFIX = "ASIAREHEARSAL"


class Unmapped(Exception):
    """A call the rehearsal cannot evaluate (no mapping of its operation to IAM requests)."""

    code = "AccessDeniedException"


class Denied(ClientError):
    """:class:`AccessDenied` as boto3 raises it (code ``AccessDeniedException``, ``AccessDenied`` for S3)."""

    def __init__(self, service: str, operation: str, denied: AccessDenied) -> None:
        self.code = "AccessDenied" if service == "s3" else denied.code
        self.denied = denied
        meta = {"HTTPStatusCode": 403, "RequestId": "rehearsal"}
        super().__init__(
            {"Error": {"Code": self.code, "Message": str(denied)}, "ResponseMetadata": meta}, operation
        )


def _ecs(kind: str, rest: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:{kind}/{rest}"


def _cluster(p: Mapping[str, Any]) -> tuple[str, str]:
    """``(cluster ARN, cluster name)`` of a call's ``cluster`` (a name or an ARN; ``default`` if absent)."""
    c = str(p.get("cluster") or "default")
    name = c.rsplit("/", 1)[-1]
    return (c if c.startswith("arn:") else _ecs("cluster", name)), name


def _task(t: str, cluster: str) -> str:
    return t if t.startswith("arn:") else _ecs("task", f"{cluster}/{t}")


def _request_tags(tags: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """``aws:RequestTag/<k>`` and ``aws:TagKeys`` of a create's tags (a map, or a list of key/value)."""
    if not tags:
        return {}
    if isinstance(tags, Mapping):
        pairs = {str(k): str(v) for k, v in tags.items()}
    else:
        pairs = {str(t.get("key", t.get("Key"))): str(t.get("value", t.get("Value"))) for t in tags}
    return {**{f"aws:RequestTag/{k}": v for k, v in pairs.items()}, "aws:TagKeys": list(pairs)}


@dataclass(frozen=True)
class Principal:
    """A role of the template: its logical id and the statements of every policy attached to it."""

    role_id: str
    statements: list[dict[str, Any]]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.role_id}"

    def require(self, service: str, operation: str, reqs: Sequence[Request]) -> None:
        """Raise :class:`Denied` for the first request the role does not allow."""
        for action, resource, context in reqs:
            decision = evaluate(self.statements, action, resource, context)
            if not decision.allowed:
                raise Denied(service, operation, AccessDenied(self.arn, action, resource, decision.reason))


class Permissions:
    """The principals of an assembly (see the module). ``experiment_tags(id)`` gives an experiment's tags
    (the FIS twin's), for ``aws:ResourceTag/*`` of the FIS calls; ``database_tags`` are the tags the
    deployment's database (``target.aws.database``) carries, for ``aws:ResourceTag/*`` of the RDS actions
    (README's AWS fault table asks the user to tag it with the gate's target tags); ``log`` records every
    denial."""

    def __init__(
        self,
        assembly: Any,
        *,
        experiment_tags: Callable[[str], Mapping[str, str]] = lambda _id: {},
        database_tags: Mapping[str, str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.assembly = assembly
        self.experiment_tags = experiment_tags
        self.database_tags = {str(k): str(v) for k, v in (database_tags or {}).items()}
        self.log = log
        self.denials: list[str] = []

    # ------------------------------------------------------------------ principals
    def principal(self, role_id: str) -> Principal:
        """The role ``role_id``'s statements (inline policies and every ``AWS::IAM::Policy`` naming it),
        rendered with the rehearsal's fake ARNs."""
        res = self.assembly.resources
        out: list[dict[str, Any]] = []
        for p in res.get(role_id, {}).get("Properties", {}).get("Policies", []) or []:
            out += _as_list(p["PolicyDocument"]["Statement"])
        for r in res.values():
            if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"].get("Roles", []):
                out += _as_list(r["Properties"]["PolicyDocument"]["Statement"])
        return Principal(role_id, render(out, res))

    def _role_of(self, logical_id: str, prop: str) -> Principal:
        ref = self.assembly.resources[logical_id]["Properties"][prop]
        if not (isinstance(ref, dict) and "Fn::GetAtt" in ref):
            raise Unmapped(f"{logical_id}.{prop} is not a role of this template")
        return self.principal(str(ref["Fn::GetAtt"][0]))

    def machine(self) -> Principal:
        (lid,) = self.assembly.of_type("AWS::StepFunctions::StateMachine")
        return self._role_of(lid, "RoleArn")

    def function(self, function_id: str) -> Principal:
        return self._role_of(function_id, "Role")

    def access_key(self, function_id: str) -> str:
        """The access key id a function's subprocess signs with: it names the function (and so its role)."""
        return f"{_KEY_PREFIX}{function_id}"

    def caller(self, access_key: str | None) -> Principal:
        """The principal of a signed request to a twin endpoint; Unmapped for a key that names none."""
        fn = (access_key or "").removeprefix(_KEY_PREFIX)
        if not access_key or not access_key.startswith(_KEY_PREFIX) or fn not in self.assembly.resources:
            raise Unmapped(f"a call signed by {access_key!r}, which names no function of the template")
        return self.function(fn)

    # ------------------------------------------------------------------ checks
    def check(self, principal: Principal, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """Raise :class:`Denied` (or :class:`Unmapped`) unless ``principal`` may make the call."""
        try:
            principal.require(service, operation, self.requests(service, operation, params))
        except (Denied, Unmapped) as e:
            self.denials.append(f"{principal.role_id}: {e}")
            self.log(f"iam: denied {service}:{operation} to {principal.role_id}: {e}")
            raise

    def fis_denial(self, template_id: str, action_id: str) -> str | None:
        """Why FIS could not run ``action_id`` of experiment template ``template_id`` with its role (the
        permissions the FIS actions reference lists for the action, and what resolving its ECS task targets
        by tags needs), or None when the role allows every request."""
        props = self.assembly.resources[template_id]["Properties"]
        if action_id not in ACTION_PERMISSIONS:
            return f"FIS action {action_id} has no row in infra.fis_actions.ACTION_PERMISSIONS"
        principal = self._role_of(template_id, "RoleArn")
        tags = {
            k: str(v)
            for t in props.get("Targets", {}).values()
            for k, v in self.assembly.render(t.get("ResourceTags") or {}).items()
        }
        wanted = list(ACTION_PERMISSIONS[action_id])
        if wanted and action_id.startswith("aws:ecs:"):  # ECS task targets are resolved by their tags
            wanted += [p for p in TARGET_RESOLUTION if p not in wanted]
        cluster = tags.get("aws:ecs:clusterName", "")
        # What the RDS and automation actions act on: the targets' databases, the automation document and
        # the role it passes to SSM (as the static rule reads them: aws_rules.fis_permission_errors).
        databases = [
            str(a)
            for t in props.get("Targets", {}).values()
            for a in self.assembly.render(t.get("ResourceArns") or [])
        ]
        action = next((a for a in props.get("Actions", {}).values() if a["ActionId"] == action_id), {})
        params = self.assembly.render(dict(action.get("Parameters") or {}))
        passed = (
            json.loads(params["documentParameters"]).get("AutomationAssumeRole")
            if params.get("documentParameters")
            else None
        )
        for permission in wanted:
            for resource, context in fis_requests(
                permission,
                cluster=cluster,
                # An RDS action's target is the database itself, by ARN: its own tags are the condition's.
                tags=self.database_tags if permission.startswith("rds:") else tags,
                databases=databases,
                document=params.get("documentArn"),
                passed_role=passed,
            ):
                decision = evaluate(principal.statements, permission, resource, context)
                if not decision.allowed:
                    why = str(AccessDenied(principal.arn, permission, resource, decision.reason))
                    self.denials.append(f"{principal.role_id}: {why}")
                    return why
        return None

    # ------------------------------------------------------------------ the request map
    def requests(self, service: str, operation: str, p: Mapping[str, Any]) -> list[Request]:
        """The IAM requests of one call (see the module). Raises :class:`Unmapped` for an unknown call."""
        key = f"{service}:{operation}"
        res = self.assembly.resources
        if key == "lambda:invoke":
            fn = str(p["FunctionName"])
            arn = fn if fn.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}"
            return [("lambda:InvokeFunction", arn, {})]
        if key == "sns:publish":
            return [("sns:Publish", str(p["TopicArn"]), {})]
        if service == "s3" and operation in ("put_object", "get_object"):
            action = "s3:PutObject" if operation == "put_object" else "s3:GetObject"
            return [(action, f"arn:aws:s3:::{p['Bucket']}/{p['Key']}", {})]
        if service == "dynamodb" and operation in ("put_item", "get_item", "delete_item", "update_item"):
            table = str(p["TableName"])
            schema = res.get(table, {}).get("Properties", {}).get("KeySchema", [])
            hash_key = next((k["AttributeName"] for k in schema if k["KeyType"] == "HASH"), None)
            item = p.get("Key") or p.get("Item") or {}
            leading = [next(iter(item[hash_key].values()))] if hash_key in item else []
            action = "dynamodb:" + "".join(w.title() for w in operation.split("_"))
            return [(action, fake_get_att(table, "Arn", res), {"dynamodb:LeadingKeys": leading})]
        if service == "ecs":
            return self._ecs(operation, p)
        if service == "fis":
            return self._fis(operation, p)
        if key == "ssm:create_ops_item":
            # Tagging at creation is also authorized as ssm:AddTagsToResource on the new OpsItem.
            opsitem, tags = f"arn:aws:ssm:{REGION}:{ACCOUNT}:opsitem/*", _request_tags(p.get("Tags"))
            out = [("ssm:CreateOpsItem", opsitem, tags)]
            return out + ([("ssm:AddTagsToResource", opsitem, tags)] if p.get("Tags") else [])
        raise Unmapped(f"the rehearsal has no IAM mapping for {key}")

    def _ecs(self, operation: str, p: Mapping[str, Any]) -> list[Request]:
        cluster_arn, cluster = _cluster(p)
        on = {"ecs:cluster": cluster_arn}
        if operation == "describe_services":
            return [
                ("ecs:DescribeServices", _ecs("service", f"{cluster}/{s.rsplit('/', 1)[-1]}"), on)
                for s in p["services"]
            ]
        if operation == "describe_tasks":
            return [("ecs:DescribeTasks", _task(t, cluster), on) for t in p["tasks"]]
        if operation == "stop_task":
            return [("ecs:StopTask", _task(p["task"], cluster), on)]
        if operation == "list_tasks":
            instance = p.get("containerInstance")
            return [("ecs:ListTasks", _ecs("container-instance", f"{cluster}/{instance or '*'}"), on)]
        if operation == "describe_task_definition":
            return [("ecs:DescribeTaskDefinition", "*", {})]
        if operation == "run_task":
            td = str(p["taskDefinition"])
            td_arn = td if td.startswith("arn:") else _ecs("task-definition", td if ":" in td else f"{td}:1")
            out: list[Request] = [("ecs:RunTask", td_arn, on)]
            if p.get("tags"):
                # Tag on create (Amazon ECS developer guide, "Grant permission to tag resources on
                # creation"): ecs:CreateAction names the creating call; ecs:cluster as for the task itself.
                create = {**on, "ecs:CreateAction": "RunTask"}
                out.append(("ecs:TagResource", _ecs("task", f"{cluster}/new"), create))
            out += [("iam:PassRole", role, dict(_TO_ECS_TASKS)) for role in self._passed_roles(td_arn, p)]
            return out
        raise Unmapped(f"the rehearsal has no IAM mapping for ecs:{operation}")

    def _passed_roles(self, td_arn: str, p: Mapping[str, Any]) -> list[str]:
        """The roles a RunTask passes: the task definition's task and execution roles (ECS checks PassRole
        for those, not only for overrides) and the overrides' roles."""
        roles: list[str] = []
        res = self.assembly.resources
        for lid, r in res.items():
            if r["Type"] == "AWS::ECS::TaskDefinition" and render({"Ref": lid}, res) == td_arn:
                for prop in ("TaskRoleArn", "ExecutionRoleArn"):
                    if r["Properties"].get(prop) is not None:
                        roles.append(str(render(r["Properties"][prop], res)))
        overrides = p.get("overrides") or {}
        roles += [str(overrides[k]) for k in ("taskRoleArn", "executionRoleArn") if overrides.get(k)]
        return roles

    def _fis(self, operation: str, p: Mapping[str, Any]) -> list[Request]:
        arn = f"arn:aws:fis:{REGION}:{ACCOUNT}"
        if operation == "start_experiment":
            tags = _request_tags(p.get("tags"))
            out: list[Request] = [
                ("fis:StartExperiment", f"{arn}:experiment-template/{p['experimentTemplateId']}", {}),
                ("fis:StartExperiment", f"{arn}:experiment/new", tags),
            ]
            if p.get("tags"):
                out.append(("fis:TagResource", f"{arn}:experiment/new", tags))
            return out
        if operation in ("get_experiment", "stop_experiment"):
            action = "fis:GetExperiment" if operation == "get_experiment" else "fis:StopExperiment"
            tags = self.experiment_tags(str(p["id"]))
            return [
                (action, f"{arn}:experiment/{p['id']}", {f"aws:ResourceTag/{k}": v for k, v in tags.items()})
            ]
        if operation == "list_experiment_resolved_targets":
            tags = self.experiment_tags(str(p["experimentId"]))
            return [
                (
                    "fis:ListExperimentResolvedTargets",
                    f"{arn}:experiment/{p['experimentId']}",
                    {f"aws:ResourceTag/{k}": v for k, v in tags.items()},
                )
            ]
        if operation == "list_experiments":
            return [("fis:ListExperiments", "*", {})]
        raise Unmapped(f"the rehearsal has no IAM mapping for fis:{operation}")


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


class Guarded:
    """A twin as a principal calls it: each method checks the principal's permission for the call first
    (:meth:`Permissions.check`); the API's own member names are expected (after any PascalCase conversion)."""

    def __init__(self, service: str, twin: Any, principal: Principal, permissions: Permissions) -> None:
        self.service, self.twin, self.principal, self.permissions = service, twin, principal, permissions

    def __getattr__(self, op: str) -> Any:
        method = getattr(self.twin, op)

        def call(**params: Any) -> Any:
            self.permissions.check(self.principal, self.service, op, params)
            return method(**params)

        return call
