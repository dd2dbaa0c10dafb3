"""The evidence store on AWS: the S3 bucket, one Glue table per evidence table (projected partitions), Athena.

Runs write under ``s3://<bucket>/evidence/`` with the keys of a local evidence root
(:mod:`resgate.contract.layout`), so the SQL of ``resgate query`` runs in Athena too:
``gate=<name>/<table>/dt=<YYYY-MM-DD>/run_id=<id>/<file>`` for the tables, the run's other files in
``gate=<name>/dt=<YYYY-MM-DD>/run_id=<id>/``.

Athena reads every object under a table's location, subfolders included, so each table is located at its own
folder ``evidence/gate=<name>/<table>/`` and holds only its own files. Partitions are *projected*, never
registered: ``gate`` is an ``enum`` of this stack's gate and ``dt`` a ``date`` from :data:`PROJECTION_START`
to ``NOW``; ``storage.location.template`` names the day's folder, whose ``run_id=<id>/`` subfolders Athena
reads. So a run is queryable as soon as its files are written (no ``MSCK REPAIR``, no crawler), and
``run_id`` is a column of every row (``write_jsonl`` and the load task stamp it), so a query spans runs.
Nested JSON values (``counts``, ``detail``, histograms) are ``string`` columns: use ``json_extract``.
The named queries use unqualified table names (the query's database is the stack's) and sort by time
(``started_at``, ``ts``); ``tests/infra`` runs them in DuckDB over a run's evidence.
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
from resgate.contract.layout import COLUMNS, TABLES, table_folder

# Projected partitions; run_id is a data column (a projected run_id would be "injected": one run per query).
PARTITION_KEYS = ("gate", "dt")
# The first day dt is projected from (no run is older); the last is NOW.
PROJECTION_START = "2024-01-01"

# name -> (description, SQL). Unqualified table names: Athena runs a named query in its database, DuckDB
# (`resgate query`) has the same tables; times are epoch seconds, shown with from_unixtime.
NAMED_QUERIES: dict[str, tuple[str, str]] = {
    "latest-verdicts": (
        "The 50 latest verdicts of this gate, newest first",
        "SELECT from_unixtime(started_at) AS started, run_id, result, reason, failed_checks, unknown_checks "
        "FROM verdicts ORDER BY started_at DESC, run_id DESC LIMIT 50",
    ),
    "latest-check-results": (
        "Every check result of the 20 latest runs, newest run first",
        "SELECT from_unixtime(v.started_at) AS started, c.run_id, c.name, c.valid, c.error "
        "FROM checks c JOIN (SELECT run_id, started_at FROM verdicts ORDER BY started_at DESC LIMIT 20) v "
        "ON c.run_id = v.run_id ORDER BY v.started_at DESC, c.name",
    ),
    "check-results": (
        "Every check result of one run (set the run_id)",
        "SELECT run_id, name, valid, counts, error FROM checks WHERE run_id = 'RUN_ID' ORDER BY name",
    ),
    "ledger-outcomes": (
        "Requests per status and outcome of one run (set the run_id)",
        "SELECT status, outcome, count(*) AS requests FROM ledger WHERE run_id = 'RUN_ID' "
        "GROUP BY status, outcome ORDER BY requests DESC, status, outcome",
    ),
    "fault-timeline": (
        "The fault timeline of one run, in time order (set the run_id)",
        "SELECT from_unixtime(ts) AS at, fault_id, kind, target, event FROM faults "
        "WHERE run_id = 'RUN_ID' ORDER BY ts, fault_id",
    ),
    "score-trend": (
        "The resilience score and band of the 50 latest runs, newest first",
        "SELECT from_unixtime(started_at) AS started, run_id, result, score, score_band FROM verdicts "
        "ORDER BY started_at DESC, run_id DESC LIMIT 50",
    ),
    "recent-faults": (
        "The 100 latest fault events of every run, newest first",
        "SELECT from_unixtime(ts) AS at, run_id, fault_id, kind, target, event FROM faults "
        "ORDER BY ts DESC, fault_id LIMIT 100",
    ),
    "run-phases": (
        "The SLO figures of each phase of one run (baseline, each fault's during and recovery, steady)",
        "SELECT key, fault_kind, duration_s, requests, error_ratio, throughput_rps, p50_ms, p95_ms, p99_ms "
        "FROM phases WHERE run_id = 'RUN_ID' ORDER BY start_ts, key",
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
                description=f"ResilienceGate evidence of gate {gate}: one table per file, projected gate/dt",
            ),
        )
        self.tables: dict[str, glue.CfnTable] = {}
        for table, file_name in TABLES.items():
            t = glue.CfnTable(
                self,
                f"Table{table.title().replace('_', '')}",
                catalog_id=account,
                database_name=self.database_name,
                table_input=self._table_input(table, file_name),
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
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for name, (description, sql) in NAMED_QUERIES.items():
            self._named_query(name, description, sql)

    def table_location(self, table: str) -> str:
        """``s3://<bucket>/evidence/gate=<name>/<table>/``: the table's own folder."""
        return f"s3://{self.bucket.bucket_name}/{c.EVIDENCE_PREFIX}/{table_folder(self.gate, table)}"

    def _table_input(self, table: str, file_name: str) -> glue.CfnTable.TableInputProperty:
        """A JSON-lines table at its own folder with gate/dt projected (see the module docstring)."""
        template = f"s3://{self.bucket.bucket_name}/{c.EVIDENCE_PREFIX}/gate=${{gate}}/{table}/dt=${{dt}}/"
        return glue.CfnTable.TableInputProperty(
            name=table,
            description=f"{file_name} of every run (a run is a folder run_id=<id>/ under its day)",
            table_type="EXTERNAL_TABLE",
            parameters={
                "classification": "json",
                "resgate.file": file_name,
                "projection.enabled": "true",
                "projection.gate.type": "enum",
                "projection.gate.values": self.gate,
                "projection.dt.type": "date",
                "projection.dt.format": "yyyy-MM-dd",
                "projection.dt.range": f"{PROJECTION_START},NOW",
                "projection.dt.interval": "1",
                "projection.dt.interval.unit": "DAYS",
                "storage.location.template": template,
            },
            partition_keys=[glue.CfnTable.ColumnProperty(name=k, type="string") for k in PARTITION_KEYS],
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                location=self.table_location(table),
                input_format="org.apache.hadoop.mapred.TextInputFormat",
                output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                serde_info=glue.CfnTable.SerdeInfoProperty(
                    serialization_library="org.openx.data.jsonserde.JsonSerDe",
                    parameters={"ignore.malformed.json": "true", "case.insensitive": "true"},
                ),
                columns=[
                    glue.CfnTable.ColumnProperty(name=n, type=ty)
                    for n, ty in (("run_id", "string"), *COLUMNS[table])
                ],
            ),
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

    def run_file_read_statements(self, file_name: str) -> list[iam.PolicyStatement]:
        """Get one of the runs' files (``<gate prefix>dt=…/run_id=…/<file_name>``) and list the gate's
        prefix (a missing file is then a 404, not a 403)."""
        return [
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{self.gate_prefix}dt=*/run_id=*/{file_name}")],
            ),
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{self.gate_prefix}*"]}},
            ),
        ]

    def put_statement(self) -> iam.PolicyStatement:
        """Put-only access under the gate's prefix (the load generator, the state machine's config copy)."""
        return iam.PolicyStatement(actions=["s3:PutObject"], resources=[self.gate_objects_arn()])
