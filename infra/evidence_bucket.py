"""The evidence store on AWS: the S3 bucket, its Glue tables (Hive partitions gate/dt/run_id) and Athena.

Runs write ``s3://<bucket>/evidence/gate=<name>/dt=<YYYY-MM-DD>/run_id=<id>/<file>``: the same keys as a
local run folder (:mod:`resgate.contract.layout`), so the SQL of ``resgate query`` runs in Athena too.

Every table of :data:`resgate.contract.layout.TABLES` is one file *inside* the run folder, and Athena reads
every object under a partition's folder: a Glue table is therefore located at the evidence root, its
SerDe skips lines that are not JSON (``ignore.malformed.json``), and each query names its file with
``"$path" LIKE '%/<file>'`` — the named queries here do. New runs become partitions with the
``<table>: load partitions`` named queries (``MSCK REPAIR TABLE``), e.g. after each nightly run.
Nested JSON values (``counts``, ``detail``, histograms) are ``string`` columns: use ``json_extract``.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import constants as c
from infra.nag import acknowledge
from resgate.contract.layout import TABLES

PARTITION_KEYS = ("gate", "dt", "run_id")

# Data columns per table (the partition columns gate/dt/run_id are not repeated: Hive refuses that).
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "ledger": (
        ("ts", "double"),
        ("op", "string"),
        ("client_id", "string"),
        ("idempotency_key", "string"),
        ("order_id", "string"),
        ("status", "string"),  # an HTTP status or a transport word (timeout, conn_reset, ...)
        ("outcome", "string"),
        ("latency_ms", "double"),
        ("attempt", "int"),
        ("name", "string"),
        ("symbol", "string"),
        ("side", "string"),
        ("qty", "double"),
        ("price", "double"),
        ("retry_after", "double"),
        ("error", "string"),
    ),
    "checks": (
        ("name", "string"),
        ("valid", "string"),  # true | false | unknown
        ("counts", "string"),
        ("examples", "string"),
        ("error", "string"),
        ("details", "string"),
    ),
    "faults": (
        ("ts", "double"),
        ("fault_id", "string"),
        ("kind", "string"),
        ("target", "string"),
        ("event", "string"),
        ("detail", "string"),
    ),
    "health": (
        ("ts", "double"),
        ("service", "string"),
        ("replica", "string"),
        ("event", "string"),
        ("detail", "string"),
    ),
    "verdicts": (
        ("result", "string"),
        ("passed", "boolean"),
        ("exit_code", "int"),
        ("reason", "string"),
        ("failed_checks", "array<string>"),
        ("unknown_checks", "array<string>"),
        ("started_at", "double"),
        ("ended_at", "double"),
        ("guardrail_tripped", "string"),
    ),
    "load_stats": (
        ("name", "string"),
        ("method", "string"),
        ("num_requests", "bigint"),
        ("num_none_requests", "bigint"),
        ("num_failures", "bigint"),
        ("total_response_time", "double"),
        ("max_response_time", "double"),
        ("min_response_time", "double"),
        ("total_content_length", "bigint"),
        ("start_time", "double"),
        ("last_request_timestamp", "double"),
        ("response_times", "string"),
        ("num_reqs_per_sec", "string"),
        ("num_fail_per_sec", "string"),
    ),
}

# name -> (description, SQL with {db} and the tables' files); each query names its file by "$path".
NAMED_QUERIES: dict[str, tuple[str, str]] = {
    "latest-verdicts": (
        "The 50 latest verdicts of this gate",
        "SELECT gate, dt, run_id, result, reason, failed_checks, unknown_checks FROM {db}.verdicts "
        "WHERE \"$path\" LIKE '%/{verdicts}' ORDER BY run_id DESC LIMIT 50",
    ),
    "check-results": (
        "Every check result per run (set the run_id)",
        "SELECT run_id, name, valid, counts, error FROM {db}.checks "
        "WHERE \"$path\" LIKE '%/{checks}' AND run_id = 'RUN_ID' ORDER BY name",
    ),
    "ledger-outcomes": (
        "Requests per status and outcome of one run (set the run_id)",
        "SELECT status, outcome, count(*) AS requests FROM {db}.ledger "
        "WHERE \"$path\" LIKE '%/{ledger}' AND run_id = 'RUN_ID' GROUP BY status, outcome ORDER BY 3 DESC",
    ),
    "fault-timeline": (
        "The fault timeline of one run (set the run_id)",
        "SELECT from_unixtime(ts) AS at, fault_id, kind, target, event, detail FROM {db}.faults "
        "WHERE \"$path\" LIKE '%/{faults}' AND run_id = 'RUN_ID' ORDER BY ts",
    ),
}


def glue_database_name(gate: str) -> str:
    """``resgate_<gate>_evidence`` (Glue and Athena want lowercase letters, digits and underscores)."""
    return f"resgate_{gate.replace('-', '_')}{c.GLUE_DATABASE_SUFFIX}"


class EvidenceStore(Construct):
    """The evidence bucket (+ its access-log bucket), the Glue database and tables, the Athena workgroup.

    Attributes: ``bucket``, ``access_log_bucket``, ``database`` (``CfnDatabase``), ``database_name``,
    ``tables`` ({table: ``CfnTable``}), ``workgroup`` (``CfnWorkGroup``), ``named_queries`` ({name:
    ``CfnNamedQuery``}), ``gate_prefix`` (``evidence/gate=<name>/``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, gate: str) -> None:
        super().__init__(scope, construct_id)
        self.gate = gate
        self.gate_prefix = f"{c.EVIDENCE_PREFIX}/gate={gate}/"
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_log_bucket,
            "AwsSolutions-S1",
            "This is the server access log bucket of the evidence bucket; logging it again would recurse.",
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="evidence-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(prefix=f"{c.ATHENA_RESULTS_PREFIX}/", expiration=Duration.days(30)),
                s3.LifecycleRule(noncurrent_version_expiration=Duration.days(90)),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        account = Stack.of(self).account
        self.database_name = glue_database_name(gate)
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description=f"ResilienceGate evidence of gate {gate}: one partition per run (gate/dt/run_id)",
            ),
        )
        location = f"s3://{self.bucket.bucket_name}/{c.EVIDENCE_PREFIX}/"
        self.tables: dict[str, glue.CfnTable] = {}
        for table, file_name in TABLES.items():
            t = glue.CfnTable(
                self,
                f"Table{table.title().replace('_', '')}",
                catalog_id=account,
                database_name=self.database_name,
                table_input=glue.CfnTable.TableInputProperty(
                    name=table,
                    description=f"{file_name} of every run (filter with \"$path\" LIKE '%/{file_name}')",
                    table_type="EXTERNAL_TABLE",
                    parameters={"classification": "json", "resgate.file": file_name},
                    partition_keys=[
                        glue.CfnTable.ColumnProperty(name=k, type="string") for k in PARTITION_KEYS
                    ],
                    storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                        location=location,
                        input_format="org.apache.hadoop.mapred.TextInputFormat",
                        output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                        serde_info=glue.CfnTable.SerdeInfoProperty(
                            serialization_library="org.openx.data.jsonserde.JsonSerDe",
                            parameters={"ignore.malformed.json": "true", "case.insensitive": "true"},
                        ),
                        columns=[glue.CfnTable.ColumnProperty(name=n, type=ty) for n, ty in COLUMNS[table]],
                    ),
                ),
            )
            t.add_resource_dependency(self.database)
            self.tables[table] = t

        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=f"resgate-{gate}",
            description=f"Queries over the evidence of gate {gate}",
            state="ENABLED",
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=10 * 1024**3,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.bucket.bucket_name}/{c.ATHENA_RESULTS_PREFIX}/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        files = {t: f for t, f in TABLES.items()}
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for name, (description, sql) in NAMED_QUERIES.items():
            self._named_query(name, description, sql.format(db=self.database_name, **files))
        for table in TABLES:
            self._named_query(
                f"load-partitions-{table.replace('_', '-')}",
                f"Register new runs as partitions of {table}",
                f"MSCK REPAIR TABLE {self.database_name}.{table}",
            )

    def _named_query(self, name: str, description: str, sql: str) -> None:
        q = athena.CfnNamedQuery(
            self,
            f"Query-{name}",
            name=f"resgate-{self.gate}-{name}",
            description=description,
            database=self.database_name,
            query_string=sql,
            work_group=self.workgroup.name,
        )
        q.add_resource_dependency(self.workgroup)
        q.add_resource_dependency(self.database)
        self.named_queries[name] = q

    # ---------------------------------------------------------------------------------------- access
    def gate_objects_arn(self) -> str:
        """ARN pattern of every evidence object of this gate: ``arn:…:<bucket>/evidence/gate=<name>/*``."""
        return self.bucket.arn_for_objects(f"{self.gate_prefix}*")

    def evidence_statements(self, *, write: bool) -> list[iam.PolicyStatement]:
        """Prefix-scoped statements: get (and put) objects under the gate's prefix, list only that prefix.

        ``ListBucket`` is needed so that a missing evidence file is a 404 (``EvidenceMissing``), not a 403.
        """
        actions = ["s3:GetObject", "s3:PutObject"] if write else ["s3:GetObject"]
        return [
            iam.PolicyStatement(actions=actions, resources=[self.gate_objects_arn()]),
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{self.gate_prefix}*"]}},
            ),
        ]

    def put_statement(self) -> iam.PolicyStatement:
        """Put-only access under the gate's prefix (the load generator, the state machine's config copy)."""
        return iam.PolicyStatement(actions=["s3:PutObject"], resources=[self.gate_objects_arn()])
