"""Permissions enforced in the rehearsal: every call a twin answers is evaluated against the IAM policy the
synthesized template gives the principal that would make it on AWS, and a call its role does not allow
fails with AccessDenied, as AWS answers it.

Principals (:class:`Permissions`): the state machine's role for its task states (``lambda:invoke``,
``ecs:runTask``, ``sns:publish``, ``dynamodb:*``, every ``aws-sdk:`` task), each Lambda function's role for
the calls its handler makes to the ECS, FIS and SSM twins and to S3, Secrets Manager and DynamoDB (the
function's subprocess signs with an access key id that names its role: :meth:`Permissions.access_key`),
the load task's task role for its S3 calls (its key names its task definition), and each experiment
template's role for what FIS does to run its actions (:meth:`Permissions.fis_denial`, the permissions the
FIS actions reference lists per action, :data:`infra.fis_actions.ACTION_PERMISSIONS`).

The calls to S3, Secrets Manager and DynamoDB go to moto's server, which carries no caller to a hook: the
process's own boto3 puts each to :meth:`Permissions.authorize` first (:mod:`.sdk_guard`). An S3 request is
also judged by the bucket's policy in the template (:meth:`Permissions.decide`: an explicit Deny there, such
as cdk-nag's TLS-only ``aws:SecureTransport`` deny, wins; the rehearsal's plain-HTTP endpoint stands in for
the HTTPS one boto3 uses on AWS, so requests carry ``aws:SecureTransport = true``).

:func:`requests` maps one API call (its operation and the API's own member names) to the IAM requests AWS
authorizes for it: ``(action, resource ARN, condition context)`` with the condition keys the service sets
(``ecs:cluster``, ``iam:PassedToService`` for the roles ``RunTask`` passes, ``aws:RequestTag/*`` and
``aws:TagKeys`` on a tagging create, ``aws:ResourceTag/*`` of an experiment, ``dynamodb:LeadingKeys``,
``ecs:CreateAction``, ``s3:prefix``). A call it has no mapping for is refused (:class:`Unmapped`): a
rehearsal cannot vouch for a permission it does not evaluate. A ``GetObject``/``HeadObject`` of a key that
does not exist also needs ``s3:ListBucket`` (else S3 answers 403, not 404).
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
from tests.rehearsal.support.iam_eval import RESOURCE_DENY, AccessDenied, Decision, evaluate

Request = tuple[str, str, dict[str, Any]]
_TO_ECS_TASKS = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
_KEY_PREFIX = "ASIAREHEARSAL"
# Every request reached AWS over HTTPS (boto3's default): the key a TLS-only bucket policy tests.
_TLS = {"aws:SecureTransport": "true"}


class Unmapped(Exception):
    """A call the rehearsal cannot evaluate (no mapping of its operation to IAM requests)."""

    code = "AccessDeniedException"


class Denied(ClientError):
    """:class:`AccessDenied` as boto3 raises it (code ``AccessDeniedException``, ``AccessDenied`` for S3)."""

    def __init__(self, service: str, operation: str, denied: AccessDenied) -> None:
        self.code, self.status, message = refusal(service, operation, str(denied))
        self.denied = denied
        meta = {"HTTPStatusCode": self.status, "RequestId": "rehearsal"}
        super().__init__(
            {"Error": {"Code": self.code, "Message": message}, "ResponseMetadata": meta}, operation
        )


def refusal(service: str, operation: str, message: str) -> tuple[str, int, str]:
    """``(error code, HTTP status, message)`` of an access denial as the service answers it: S3's
    ``AccessDenied`` (403), and a ``HeadObject``'s bare ``403``/``Forbidden`` (a HEAD response has no body:
    S3 API reference, "HeadObject"); the JSON services' ``AccessDeniedException`` (400)."""
    if service == "s3":
        return ("403", 403, "Forbidden") if operation == "head_object" else ("AccessDenied", 403, message)
    return "AccessDeniedException", 400, message


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
        object_exists: Callable[[str, str], bool] | None = None,
        secret_arn: Callable[[str], str] | None = None,
        database_tags: Mapping[str, str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.assembly = assembly
        self.experiment_tags = experiment_tags
        # (bucket, key) -> whether the object exists (S3's 403-for-404 rule); None: taken to exist.
        self.object_exists = object_exists
        # A secret's name -> its ARN (AWS authorizes on the ARN, random suffix included).
        self.secret_arn = secret_arn
        self.database_tags = {str(k): str(v) for k, v in (database_tags or {}).items()}
        self.log = log
        self.denials: list[str] = []
        # The processes' own calls allowed by :meth:`authorize`: {"<role id> <service>:<operation>": count}.
        self.judged: dict[str, int] = {}

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
        """The access key id a function's (or a task's) process signs with: it names the function (the
        task definition), and so its role."""
        return f"{_KEY_PREFIX}{function_id}"

    def caller(self, access_key: str | None) -> Principal:
        """The principal of a signed request to a twin endpoint: the role of the function, or the task role
        of the task definition, its key names; Unmapped for a key that names neither."""
        lid = (access_key or "").removeprefix(_KEY_PREFIX)
        kind = self.assembly.resources.get(lid, {}).get("Type") if access_key else None
        if access_key and access_key.startswith(_KEY_PREFIX):
            if kind == "AWS::Lambda::Function":
                return self.function(lid)
            if kind == "AWS::ECS::TaskDefinition":
                return self._role_of(lid, "TaskRoleArn")
        raise Unmapped(f"a call signed by {access_key!r}, which names no function or task of the template")

    # ------------------------------------------------------------------ checks
    def check(self, principal: Principal, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """Raise :class:`Denied` (or :class:`Unmapped`) unless ``principal`` may make the call."""
        try:
            for action, resource, context in self.requests(service, operation, params):
                decision = self.decide(principal, action, resource, context)
                if not decision.allowed:
                    why = AccessDenied(principal.arn, action, resource, decision.reason)
                    raise Denied(service, operation, why)
        except (Denied, Unmapped) as e:
            self.denials.append(f"{principal.role_id}: {e.denied if isinstance(e, Denied) else e}")
            self.log(f"iam: denied {service}:{operation} to {principal.role_id}: {e}")
            raise

    def authorize(
        self, access_key: str | None, service: str, operation: str, params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The answer to a process's own boto3 (:mod:`.sdk_guard`): None when the caller its key names may
        make the call, else ``{code, message, status}`` as the service words the refusal."""
        try:
            principal = self.caller(access_key)
            self.check(principal, service, operation, params)
            key = f"{principal.role_id} {service}:{operation}"
            self.judged[key] = self.judged.get(key, 0) + 1
        except Denied as e:
            return {"code": e.code, "message": e.response["Error"]["Message"], "status": e.status}
        except Unmapped as e:
            if not any(d.endswith(str(e)) for d in self.denials):
                self.denials.append(f"{access_key}: {e}")
            code, status, message = refusal(service, operation, str(e))
            return {"code": code, "message": message, "status": status}
        return None

    def bucket_policy(self, bucket: str) -> list[dict[str, Any]]:
        """The statements of the template's policy on the bucket named ``bucket`` (none without one)."""
        res = self.assembly.resources
        for r in res.values():
            if r["Type"] == "AWS::S3::BucketPolicy" and render(r["Properties"]["Bucket"], res) == bucket:
                return _as_list(render(r["Properties"]["PolicyDocument"]["Statement"], res))
        return []

    def _bucket_key(self, bucket: str) -> str | None:
        """The customer managed KMS key ARN of the bucket named ``bucket``'s default encryption, if any."""
        res = self.assembly.resources
        for lid, r in res.items():
            if r["Type"] != "AWS::S3::Bucket" or render({"Ref": lid}, res) != bucket:
                continue
            rules = (r["Properties"].get("BucketEncryption") or {}).get(
                "ServerSideEncryptionConfiguration", []
            )
            for rule in rules:
                default = rule.get("ServerSideEncryptionByDefault") or {}
                if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get(
                    "KMSMasterKeyID"
                ):
                    key = str(render(default["KMSMasterKeyID"], res))
                    return key if key.startswith("arn:") else f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}"
        return None

    def decide(
        self, principal: Principal, action: str, resource: str, context: Mapping[str, Any]
    ) -> Decision:
        """The decision on one request (IAM user guide, "Policy evaluation logic", same account): an explicit
        Deny in the role's policies or in the resource's policy (an S3 bucket policy) denies; else an Allow
        in either allows; else the request is implicitly denied. A bucket policy's statement counts when its
        ``Principal`` is ``*`` or names the role."""
        resource_policy = []
        if resource.startswith("arn:aws:s3:::"):
            bucket = resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
            resource_policy = [st for st in self.bucket_policy(bucket) if _names(st, principal.arn)]
        on_resource = evaluate(resource_policy, action, resource, context)
        if on_resource.reason == "explicit deny":
            return Decision(False, RESOURCE_DENY, on_resource.statement)
        identity = evaluate(principal.statements, action, resource, context)
        if identity.allowed or identity.reason == "explicit deny" or not on_resource.allowed:
            return identity
        return on_resource

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
        if service == "s3":
            return self._s3(operation, p)
        if service == "dynamodb" and operation in ("put_item", "get_item", "delete_item", "update_item"):
            # DynamoDB API permissions reference: each item operation is authorized as the action of its
            # name on the table (a ConditionExpression needs nothing more), with dynamodb:LeadingKeys.
            table = str(p["TableName"]).rsplit("/", 1)[-1]
            schema = res.get(table, {}).get("Properties", {}).get("KeySchema", [])
            hash_key = next((k["AttributeName"] for k in schema if k["KeyType"] == "HASH"), None)
            item = p.get("Key") or p.get("Item") or {}
            leading = [next(iter(item[hash_key].values()))] if hash_key in item else []
            action = "dynamodb:" + "".join(w.title() for w in operation.split("_"))
            return [(action, _table_arn(table, res), {"dynamodb:LeadingKeys": leading})]
        if service == "secretsmanager" and operation in ("get_secret_value", "describe_secret"):
            # Secrets Manager API reference, "GetSecretValue": secretsmanager:GetSecretValue on the secret
            # (kms:Decrypt only for a customer managed key, which the gate's own stack does not create).
            secret = str(p["SecretId"])
            if not secret.startswith("arn:"):
                secret = self.secret_arn(secret) if self.secret_arn else _secret(secret)
            action = "secretsmanager:" + "".join(w.title() for w in operation.split("_"))
            return [(action, secret, {})]
        if service == "kms" and operation in ("decrypt", "encrypt", "generate_data_key"):
            key = str(p.get("KeyId") or "*")
            arn = key if key.startswith("arn:") else f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}"
            return [("kms:" + "".join(w.title() for w in operation.split("_")), arn, {})]
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

    def _s3(self, operation: str, p: Mapping[str, Any]) -> list[Request]:
        """S3's requests (Amazon S3 API reference, each operation's "Permissions"; user guide, "Required
        permissions for Amazon S3 API operations"): an object operation on ``arn:aws:s3:::bucket/key``, a
        listing as ``s3:ListBucket`` on ``arn:aws:s3:::bucket`` with ``s3:prefix``."""
        bucket = f"arn:aws:s3:::{p['Bucket']}"
        obj = f"{bucket}/{p['Key']}" if "Key" in p else bucket
        # SSE-KMS with a customer managed key (the bucket's default encryption in the template): an upload
        # also needs kms:GenerateDataKey on the key, a download kms:Decrypt, a multipart upload both (S3
        # user guide, "Using server-side encryption with AWS KMS keys", "Multipart upload API and
        # permissions"). SSE-S3, the gate's, and the aws/s3 managed key need no KMS permission.
        key = self._bucket_key(str(p["Bucket"]))
        via = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
        if operation in ("get_object", "head_object"):
            out: list[Request] = [("s3:GetObject", obj, dict(_TLS))]
            if self.object_exists is not None and not self.object_exists(str(p["Bucket"]), str(p["Key"])):
                # HeadObject/GetObject of a missing key: 404 with s3:ListBucket on the bucket, else 403.
                out.append(("s3:ListBucket", bucket, {**_TLS, "s3:prefix": str(p["Key"])}))
            elif key and operation == "get_object":
                out.append(("kms:Decrypt", key, via))
            return out
        if operation in ("put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload"):
            out = [("s3:PutObject", obj, dict(_TLS))]
            if p.get("Tagging"):
                out.append(("s3:PutObjectTagging", obj, dict(_TLS)))
            if p.get("ACL"):
                out.append(("s3:PutObjectAcl", obj, dict(_TLS)))
            if key:
                out.append(("kms:GenerateDataKey", key, via))
                if operation != "put_object":
                    out.append(("kms:Decrypt", key, via))
            return out
        if operation == "copy_object":
            source = p["CopySource"]
            src = f"{source['Bucket']}/{source['Key']}" if isinstance(source, Mapping) else str(source)
            return [("s3:PutObject", obj, dict(_TLS)), ("s3:GetObject", f"arn:aws:s3:::{src}", dict(_TLS))]
        simple = {"abort_multipart_upload": "s3:AbortMultipartUpload", "delete_object": "s3:DeleteObject"}
        if operation in simple:
            return [(simple[operation], obj, dict(_TLS))]
        if operation in ("list_objects_v2", "list_objects", "head_bucket"):
            prefix = {"s3:prefix": str(p["Prefix"])} if p.get("Prefix") is not None else {}
            return [("s3:ListBucket", bucket, {**_TLS, **prefix})]
        raise Unmapped(f"the rehearsal has no IAM mapping for s3:{operation}")

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


def _names(statement: Mapping[str, Any], role_arn: str) -> bool:
    """A resource policy's statement applies to ``role_arn``: its ``Principal`` is ``*`` or names it."""
    principal = statement.get("Principal")
    if principal == "*":
        return True
    arns = _as_list(principal.get("AWS", [])) if isinstance(principal, Mapping) else []
    return "*" in arns or role_arn in arns


def _table_arn(table: str, resources: Mapping[str, Any]) -> str:
    if table in resources:
        return fake_get_att(table, "Arn", dict(resources))
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"


def _secret(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}"


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
