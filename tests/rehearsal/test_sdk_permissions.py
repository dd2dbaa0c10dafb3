"""The rehearsal's IAM check of the Lambdas' and tasks' own AWS calls (support/sdk_guard.py): a call their
boto3 makes to S3, Secrets Manager or DynamoDB is judged against the caller's role in the synthesized
template (the default rehearsal config's assembly, the one ``make test``'s rehearsal runs) before it reaches
the S3/Secrets Manager/DynamoDB twin, and a call the role does not allow fails as AWS fails it.

Each test puts real boto3 clients (moto in-process behind them) through the check's endpoint; a role is
weakened by editing the synthesized template's policy, as a rehearsal mutant does.

AWS pages the request map follows (support/permissions.py):
- Amazon S3 API reference, "HeadObject" and "GetObject": ``s3:GetObject`` on the object; for a key that does
  not exist, 404 with ``s3:ListBucket`` on the bucket, else 403 (a HEAD's error is a bare ``403 Forbidden``);
  "ListObjectsV2": ``s3:ListBucket`` on the bucket; "PutObject": ``s3:PutObject`` on the object.
- Amazon S3 user guide, "Troubleshoot access denied (403 Forbidden) errors in Amazon S3": same-account
  denials name the policy type ("because no identity-based policy allows", "with an explicit deny in a
  resource-based policy").
- AWS Secrets Manager API reference, "GetSecretValue": ``secretsmanager:GetSecretValue`` on the secret;
  ``kms:Decrypt`` only for a customer managed key.
- Amazon DynamoDB developer guide, "DynamoDB API permissions: Actions, resources, and conditions reference":
  each item operation (a conditional one included) is the action of its name on the table ARN;
  "Using IAM policy conditions for fine-grained access control": ``dynamodb:LeadingKeys``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra import constants as c
from tests.rehearsal.support import sdk_guard
from tests.rehearsal.support.assembly import Assembly, synthesize
from tests.rehearsal.support.configs import rehearsal_config
from tests.rehearsal.support.interpreter import TwinEndpoint
from tests.rehearsal.support.permissions import Permissions
from tests.rehearsal.support.rehearsal import _object_exists, _secret_arn

REGION = "us-east-1"
PREFIX = "evidence/gate=paperbroker"
RUN_KEY = f"{PREFIX}/dt=2026-12-07/run_id=r1/verdict.json"


@pytest.fixture(scope="module")
def synthesized() -> Assembly:
    return synthesize(rehearsal_config(), log=lambda _: None)


def _role_of(assembly: Assembly, lid: str) -> str:
    res = assembly.resources[lid]["Properties"]
    return str((res.get("Role") or res.get("TaskRoleArn"))["Fn::GetAtt"][0])


def _function(assembly: Assembly, name: str) -> str:
    return next(lid for lid, f in assembly.functions.items() if f.name == name)


def _task(assembly: Assembly) -> str:
    (lid,) = [k for k in assembly.of_type("AWS::ECS::TaskDefinition") if k.startswith("LoadGenerator")]
    return lid


def without(assembly: Assembly, role: str, action: str) -> None:
    """Remove ``action`` from every statement of ``role``'s policies (a statement left empty is dropped)."""
    for r in assembly.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} not in r["Properties"]["Roles"]:
            continue
        doc = r["Properties"]["PolicyDocument"]
        kept = []
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            st["Action"] = [a for a in actions if a != action]
            if st["Action"]:
                kept.append(st)
        doc["Statement"] = kept


class Harness:
    """The check's endpoint over ``assembly``'s roles, the moto twins' names (the evidence bucket, the run
    lock table, the database secret and another one), and sessions that sign as a function or task."""

    def __init__(
        self, assembly: Assembly, admin: boto3.session.Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.assembly = assembly
        self.monkeypatch = monkeypatch
        self.url = ""  # the check's endpoint
        self.bucket = next(
            f.environment[c.ENV_EVIDENCE_BUCKET]
            for f in assembly.functions.values()
            if c.ENV_EVIDENCE_BUCKET in f.environment
        )
        (self.table,) = assembly.of_type("AWS::DynamoDB::Table")
        sm = admin.client("secretsmanager")
        self.secret = _secret_arn(sm)("resgate/paperbroker/database")
        self.other_secret = _secret_arn(sm)("resgate/other/database")
        self.permissions = Permissions(
            assembly,
            object_exists=_object_exists(admin.client("s3")),
            secret_arn=_secret_arn(sm),
            log=lambda _: None,
        )

    def session(self, lid: str) -> boto3.session.Session:
        """A session created after the check is installed, signing with the key that names ``lid``."""
        self.monkeypatch.setenv("AWS_ACCESS_KEY_ID", self.permissions.access_key(lid))
        return boto3.session.Session(region_name=REGION)


def _twins(assembly: Assembly, admin: boto3.session.Session) -> None:
    """The evidence bucket (one run's verdict in it, and an object outside the gate's prefix), the run lock
    table and two secrets, as the rehearsal names them, in moto."""
    bucket = next(
        f.environment[c.ENV_EVIDENCE_BUCKET]
        for f in assembly.functions.values()
        if c.ENV_EVIDENCE_BUCKET in f.environment
    )
    s3 = admin.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=RUN_KEY, Body=b"{}")
    s3.put_object(Bucket=bucket, Key="other/verdict.json", Body=b"{}")
    for table, res in assembly.of_type("AWS::DynamoDB::Table").items():
        admin.client("dynamodb").create_table(
            TableName=table,
            KeySchema=res["Properties"]["KeySchema"],
            AttributeDefinitions=res["Properties"]["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )
    for name in ("resgate/paperbroker/database", "resgate/other/database"):
        admin.client("secretsmanager").create_secret(Name=name, SecretString="{}")


@pytest.fixture(scope="module")
def checked(synthesized: Assembly) -> Iterator[tuple[TwinEndpoint, boto3.session.Session]]:
    """moto with the twins (:func:`_twins`), the check's endpoint, and the check installed for every session
    created from now on in this module (the twins' own admin session is made before)."""
    with mock_aws(), TwinEndpoint(None, None) as endpoint:
        admin = boto3.session.Session(region_name=REGION)
        _twins(synthesized, admin)
        with sdk_guard.installed(endpoint.url):
            yield endpoint, admin


@pytest.fixture
def harness(
    synthesized: Assembly,
    checked: tuple[TwinEndpoint, boto3.session.Session],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Harness]:
    """``harness(edit=None)``: a :class:`Harness` over a copy of the synthesized template (``edit`` changes
    it first), which the check's endpoint now judges by."""
    endpoint, admin = checked

    def make(edit: Callable[[Assembly], None] | None = None) -> Harness:
        template = copy.deepcopy(synthesized.template)
        assembly = Assembly(synthesized.outdir, template, synthesized.assets)
        if edit is not None:
            edit(assembly)
        h = Harness(assembly, admin, monkeypatch)
        endpoint.authorize = h.permissions.authorize
        h.url = endpoint.url
        return h

    return make


def _error(e: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


# ---------------------------------------------------------------------------------------------- S3


def test_a_check_lambda_may_read_write_and_list_its_gates_evidence(harness: Callable[..., Harness]) -> None:
    h = harness()
    s3 = h.session(_function(h.assembly, "slo")).client("s3")
    s3.put_object(Bucket=h.bucket, Key=RUN_KEY, Body=b'{"result": "PASS"}')
    assert s3.get_object(Bucket=h.bucket, Key=RUN_KEY)["Body"].read() == b'{"result": "PASS"}'
    listed = s3.list_objects_v2(Bucket=h.bucket, Prefix=f"{PREFIX}/dt=2026-12-07/")
    assert [o["Key"] for o in listed["Contents"]] == [RUN_KEY]
    assert h.permissions.denials == []


def test_a_put_the_role_no_longer_allows_is_refused_with_s3s_access_denied(
    harness: Callable[..., Harness],
) -> None:
    probe = harness()
    fn = _function(probe.assembly, "verdict")
    role = _role_of(probe.assembly, fn)
    h = harness(lambda a: without(a, role, "s3:PutObject"))
    with pytest.raises(ClientError) as e:
        h.session(fn).client("s3").put_object(Bucket=h.bucket, Key=RUN_KEY, Body=b"{}")
    code, status, message = _error(e)
    assert (code, status) == ("AccessDenied", 403)
    assert message == (
        f"User: arn:aws:iam::123456789012:role/{role} is not authorized to perform: s3:PutObject "
        f"on resource: arn:aws:s3:::{h.bucket}/{RUN_KEY} "
        "because no identity-based policy allows the s3:PutObject action"
    )
    assert h.permissions.denials and h.permissions.denials[0].startswith(f"{role}: ")


def test_a_key_outside_the_gates_prefix_and_a_listing_of_the_whole_bucket_are_refused(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    s3 = h.session(_function(h.assembly, "slo")).client("s3")
    with pytest.raises(ClientError, match=r"s3:GetObject on resource: arn:aws:s3:::\S+/other/verdict.json"):
        s3.get_object(Bucket=h.bucket, Key="other/verdict.json")
    # The grant's s3:prefix condition (evidence/gate=paperbroker/*): no prefix, no listing.
    with pytest.raises(ClientError, match="s3:ListBucket on resource: arn:aws:s3:::"):
        s3.list_objects_v2(Bucket=h.bucket)


def test_a_deny_in_the_bucket_policy_wins_over_the_roles_allow(harness: Callable[..., Harness]) -> None:
    def deny_puts(a: Assembly) -> None:
        (policy,) = [
            p
            for p in a.of_type("AWS::S3::BucketPolicy").values()
            if a.render(p["Properties"]["Bucket"]) == a.render({"Ref": _bucket_id(a)})
        ]
        policy["Properties"]["PolicyDocument"]["Statement"].append(
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:PutObject", "Resource": "*"}
        )

    h = harness(deny_puts)
    with pytest.raises(ClientError) as e:
        h.session(_function(h.assembly, "slo")).client("s3").put_object(
            Bucket=h.bucket, Key=RUN_KEY, Body=b""
        )
    assert _error(e)[2].endswith("with an explicit deny in a resource-based policy")


def test_the_tls_only_deny_of_the_bucket_policy_is_evaluated_and_holds_for_https_requests(
    harness: Callable[..., Harness],
) -> None:
    # cdk-nag's AwsSolutions-S10 statement: Deny s3:* when aws:SecureTransport is false. boto3 reaches S3
    # over HTTPS on AWS, so the rehearsal's requests carry aws:SecureTransport=true and pass it; the same
    # statement denies one that does not.
    h = harness()
    (policy,) = h.permissions.bucket_policy(h.bucket)
    assert policy["Effect"] == "Deny" and policy["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    principal = h.permissions.caller(h.permissions.access_key(_function(h.assembly, "slo")))
    obj = f"arn:aws:s3:::{h.bucket}/{RUN_KEY}"
    assert h.permissions.decide(principal, "s3:GetObject", obj, {"aws:SecureTransport": "true"}).allowed
    plain = h.permissions.decide(principal, "s3:GetObject", obj, {"aws:SecureTransport": "false"})
    assert plain.reason == "explicit deny in a resource-based policy"


def test_a_bucket_encrypted_with_a_customer_managed_key_also_needs_the_keys_permissions(
    harness: Callable[..., Harness],
) -> None:
    """Amazon S3 user guide, "Using server-side encryption with AWS KMS keys (SSE-KMS)": to upload or
    download an object encrypted with a KMS key you need ``kms:GenerateDataKey`` and ``kms:Decrypt`` on the
    key. The gate's bucket is SSE-S3 (AES256), which needs none; were it SSE-KMS, a role without the key's
    permissions could no longer write the evidence."""
    key = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"

    def kms_bucket(a: Assembly) -> None:
        bucket = a.resources[_bucket_id(a)]["Properties"]
        (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}  # the gate's own
        rule["ServerSideEncryptionByDefault"] = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}

    h = harness(kms_bucket)
    fn = _function(h.assembly, "verdict")
    with pytest.raises(ClientError, match=f"kms:GenerateDataKey on resource: {key}"):
        h.session(fn).client("s3").put_object(Bucket=h.bucket, Key=RUN_KEY, Body=b"{}")

    def kms_bucket_and_grant(a: Assembly) -> None:
        kms_bucket(a)
        (policy,) = [
            r
            for r in a.of_type("AWS::IAM::Policy").values()
            if {"Ref": _role_of(a, fn)} in r["Properties"]["Roles"]
        ]
        grant = {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": key}
        policy["Properties"]["PolicyDocument"]["Statement"].append(grant)

    h = harness(kms_bucket_and_grant)
    s3 = h.session(fn).client("s3")
    s3.put_object(Bucket=h.bucket, Key=RUN_KEY, Body=b"{}")
    assert s3.get_object(Bucket=h.bucket, Key=RUN_KEY)["Body"].read() == b"{}"


def test_a_missing_object_is_404_with_list_bucket_and_a_bare_403_without(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    fn = _function(h.assembly, "verdict")
    missing = f"{PREFIX}/dt=2026-12-07/run_id=r1/none.json"
    with pytest.raises(ClientError) as e:
        h.session(fn).client("s3").head_object(Bucket=h.bucket, Key=missing)
    assert _error(e)[:2] == ("404", 404)

    h = harness(lambda a: without(a, _role_of(a, fn), "s3:ListBucket"))
    s3 = h.session(fn).client("s3")
    s3.head_object(Bucket=h.bucket, Key=RUN_KEY)  # present: s3:GetObject is enough
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=h.bucket, Key=missing)
    assert _error(e) == ("403", 403, "Forbidden")
    assert "s3:ListBucket" in h.permissions.denials[-1]


def test_the_timeline_lambda_finds_a_runs_load_shape_absent_with_a_404_and_reads_no_other_evidence(
    harness: Callable[..., Harness],
) -> None:
    """Amazon S3 API reference, "HeadObject": a missing key is 404 only with ``s3:ListBucket``. The timeline
    looks for every run's ``load_shape.jsonl``; with ``s3:PutObject`` alone its HeadObject was a 403, and the
    default config's every rehearsed (and deployed) run ended in ERROR at ``Write timeline``."""
    h = harness()
    s3 = h.session(_function(h.assembly, "timeline")).client("s3")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=h.bucket, Key=f"{PREFIX}/dt=2026-12-07/run_id=r1/load_shape.jsonl")
    assert _error(e)[:2] == ("404", 404)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=h.bucket, Key=RUN_KEY)
    assert _error(e)[0] == "AccessDenied" and "s3:GetObject" in _error(e)[2]


def test_the_load_task_signs_as_its_task_role_which_may_put_but_not_read_evidence(
    harness: Callable[..., Harness],
) -> None:
    h = harness()
    s3 = h.session(_task(h.assembly)).client("s3")
    s3.put_object(Bucket=h.bucket, Key=f"{PREFIX}/ledger/dt=2026-12-07/run_id=r1/ledger.jsonl", Body=b"")
    with pytest.raises(
        ClientError, match=f"role/{_role_of(h.assembly, _task(h.assembly))} is not authorized"
    ):
        s3.get_object(Bucket=h.bucket, Key=RUN_KEY)


# ------------------------------------------------------------------------------------------ Secrets Manager


def test_a_database_check_reads_the_configs_secret_and_no_other(harness: Callable[..., Harness]) -> None:
    h = harness()
    sm = h.session(_function(h.assembly, "integrity")).client("secretsmanager")
    assert sm.get_secret_value(SecretId=h.secret)["SecretString"] == "{}"
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=h.other_secret)
    code, status, message = _error(e)
    assert (code, status) == ("AccessDeniedException", 400)
    assert f"secretsmanager:GetSecretValue on resource: {h.other_secret} because" in message
    # A name is authorized on the secret's ARN (with its random suffix), as AWS resolves it.
    assert sm.get_secret_value(SecretId="resgate/paperbroker/database")["ARN"] == h.secret


def test_get_secret_value_is_refused_once_the_grant_is_removed(harness: Callable[..., Harness]) -> None:
    probe = harness()
    fn = _function(probe.assembly, "quiesce")
    h = harness(lambda a: without(a, _role_of(a, fn), "secretsmanager:GetSecretValue"))
    with pytest.raises(ClientError) as e:
        h.session(fn).client("secretsmanager").get_secret_value(SecretId=h.secret)
    assert _error(e)[0] == "AccessDeniedException"
    assert "no identity-based policy allows the secretsmanager:GetSecretValue action" in _error(e)[2]


# ---------------------------------------------------------------------------------------------- DynamoDB


def test_the_cleanup_lambda_may_release_its_gates_lock_only(harness: Callable[..., Harness]) -> None:
    h = harness()
    ddb = h.session(_function(h.assembly, "cleanup")).client("dynamodb")
    ddb.delete_item(TableName=h.table, Key={"target": {"S": "paperbroker/paperbroker"}})
    table_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{h.table}"
    with pytest.raises(ClientError, match=f"dynamodb:DeleteItem on resource: {table_arn}"):
        ddb.delete_item(TableName=h.table, Key={"target": {"S": "other/gate"}})  # dynamodb:LeadingKeys
    # Taking a lock (a conditional PutItem) is the state machine's, not the cleanup Lambda's.
    with pytest.raises(ClientError) as e:
        ddb.put_item(
            TableName=h.table,
            Item={"target": {"S": "paperbroker/paperbroker"}},
            ConditionExpression="attribute_not_exists(target)",
        )
    assert _error(e)[0] == "AccessDeniedException" and "dynamodb:PutItem" in _error(e)[2]


def test_delete_item_is_refused_once_the_grant_is_removed(harness: Callable[..., Harness]) -> None:
    probe = harness()
    fn = _function(probe.assembly, "cleanup")
    h = harness(lambda a: without(a, _role_of(a, fn), "dynamodb:DeleteItem"))
    with pytest.raises(ClientError) as e:
        h.session(fn).client("dynamodb").delete_item(
            TableName=h.table, Key={"target": {"S": "paperbroker/paperbroker"}}
        )
    assert _error(e)[:2] == ("AccessDeniedException", 400)


# ----------------------------------------------------------------------------------------- the process side


def test_a_call_is_refused_when_the_rehearsal_cannot_be_asked() -> None:
    answer = sdk_guard.ask("http://127.0.0.1:9", "key", "s3", "put_object", {"Bucket": "b", "Body": b"x"})
    assert answer is not None and answer["code"] == "AccessDenied"


def test_a_process_with_the_guard_folder_on_its_path_checks_its_own_boto3(
    harness: Callable[..., Harness], tmp_path: Any
) -> None:
    # The load task's way in: the folder's sitecustomize installs the check before the task's code runs,
    # importing nothing that imports ssl (botocore, urllib) until the task does: Locust's gevent patches ssl
    # after startup, and a task that had imported it first died with a RecursionError (no load at all).
    h = harness()
    folder = sdk_guard.guard_folder(tmp_path)
    script = (
        "import sys, json\n"
        "early = sorted(m for m in ('ssl', 'botocore', 'urllib.request') if m in sys.modules)\n"
        "import boto3\n"
        "from botocore.exceptions import ClientError\n"
        "s3 = boto3.client('s3', region_name='us-east-1', endpoint_url='http://127.0.0.1:9')\n"
        "try:\n"
        f"    s3.get_object(Bucket={h.bucket!r}, Key={RUN_KEY!r})\n"
        "except ClientError as e:\n"
        "    print(json.dumps({'early': early, **e.response['Error']}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(folder),
        "AWS_ACCESS_KEY_ID": h.permissions.access_key(_task(h.assembly)),
        sdk_guard.ENV_URL: h.url,
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    error = json.loads(out.stdout.strip().splitlines()[-1])
    assert error["early"] == [], error
    assert error["Code"] == "AccessDenied" and "s3:GetObject" in error["Message"], out.stderr


def _bucket_id(a: Assembly) -> str:
    (lid,) = [k for k in a.of_type("AWS::S3::Bucket") if k.startswith("EvidenceBucket")]
    return lid
