"""Names and defaults of the AWS side, kept in one module: context keys, placeholders, tags, env vars.

Everything the CDK app reads from ``-c key=value`` is named here (``CTX_*``), with the placeholder used
when a value is given neither by the gate config's ``target.aws`` section nor by the context. A stack
synthesised with placeholders is fine for review and tests; ``app.py`` warns about each one, because it
cannot be deployed usefully.
"""

from __future__ import annotations

from lambdas.common import settings as lambda_settings
from loadgen import live_metrics

# ------------------------------------------------------------------------------------------ context keys
CTX_GATE_CONFIG = "gate_config"
CTX_STACK_NAME = "stack_name"
CTX_ACCOUNT = "account"
CTX_REGION = "region"
CTX_TARGET_CLUSTER = "target_cluster"
CTX_TARGET_SERVICES = "target_services"  # JSON object or "name=ecs-service,name2=ecs-service2"
CTX_TARGET_TAGS = "target_tags"  # JSON object or "key=value,key2=value2"
CTX_TARGET_URL = "target_url"
CTX_TARGET_LOAD_BALANCER = "target_load_balancer"  # the ALB's CloudWatch dimension: app/<name>/<id>
CTX_VPC_ID = "vpc_id"
CTX_SUBNET_IDS = "subnet_ids"  # JSON list or comma-separated
CTX_AVAILABILITY_ZONES = "availability_zones"  # one per subnet; only needed for an honest VPC import
CTX_DB_SECRET_ARN = "db_secret_arn"
CTX_KAFKA_BOOTSTRAP = "kafka_bootstrap"
CTX_LOADGEN_IMAGE = "loadgen_image"  # an image URI: use it instead of building loadgen/Dockerfile
CTX_NOTIFY_EMAIL = "notify_email"
CTX_NIGHTLY_SCHEDULE = "nightly_schedule"  # an EventBridge cron() expression
CTX_SKIP_BUNDLING = "resgate:skip_bundling"
CTX_OPS_ITEMS = "ops_items"  # true: a FAIL or ERROR run opens an OpsCenter OpsItem (default false)

DEFAULT_GATE_CONFIG = "resgate/configs/paperbroker.yaml"
DEFAULT_NIGHTLY_SCHEDULE = "cron(0 3 * * ? *)"

# ------------------------------------------------------------------------------------------ placeholders
# Syntactically valid, obviously fake values: the stack synthesises, cdk-nag and the tests run, and a
# reader sees at once what has to be supplied before a deploy. Never a real account.
PLACEHOLDER_VPC_ID = "vpc-00000000000000000"
PLACEHOLDER_SUBNET_IDS = ("subnet-0000000000000000a", "subnet-0000000000000000b")
PLACEHOLDER_AZS = ("placeholder-az-a", "placeholder-az-b")
PLACEHOLDER_TARGET_URL = "http://gateway.placeholder.internal:8080"
PLACEHOLDER_LOAD_BALANCER = "app/placeholder-alb/0000000000000000"
PLACEHOLDER_KAFKA_BOOTSTRAP = "b-1.placeholder.kafka.invalid:9094"
PLACEHOLDER_SECRET_NAME = "resgate/{gate}/database"  # completed to an ARN in the stack's own account

# ------------------------------------------------------------------------------------------ evidence
EVIDENCE_PREFIX = lambda_settings.DEFAULT_EVIDENCE_PREFIX  # s3://<bucket>/evidence/gate=../dt=../run_id=../
ATHENA_RESULTS_PREFIX = "athena-results"
GLUE_DATABASE_SUFFIX = "_evidence"  # database name: resgate_<gate>_evidence (underscores only)

# ------------------------------------------------------------------------------------------ tags
TAG_GATE = "resgate:gate"
TAG_COMPONENT = "resgate:component"
# Tags of a started FIS experiment (no ':' so that state machine JSONPaths can address them).
EXPERIMENT_TAG_RUN_ID = lambda_settings.RUN_ID_TAG  # also on the load task; the cleanup Lambda reads it
EXPERIMENT_TAG_GATE = "ResGateGate"
# ECS managed tags FIS selects a service's tasks by (the services need enableECSManagedTags).
ECS_TAG_CLUSTER = "aws:ecs:clusterName"
ECS_TAG_SERVICE = "aws:ecs:serviceName"

# ------------------------------------------------------------------------------------------ Lambdas
CHECK_FUNCTIONS = ("slo", "recovery", "retryable", "integrity", "replay")
# Checks whose Lambda a stack deploys only when its gate config enables them: backpressure judges the
# ``overload`` faults (enabled by one, or by its own section; on AWS an overload by factor, a step of the
# load task's shape); streaming, a config's opt-in, reads the trades topic and the stream ledger.
STREAMING_FUNCTION = "streaming"
OPTIONAL_CHECK_FUNCTIONS = ("backpressure", STREAMING_FUNCTION)
DEPLOYABLE_CHECKS = (*CHECK_FUNCTIONS, *OPTIONAL_CHECK_FUNCTIONS)
# In the VPC with the Kafka bootstrap but no database secret, in a security group of its own: streaming
# reads the trades topic and the run's files, never the database.
TOPIC_CLIENTS = (STREAMING_FUNCTION,)
VERDICT_FUNCTION = "verdict"
# Steps that read the infrastructure instead of judging evidence: the timeline writes faults.jsonl and
# health.jsonl from FIS and ECS (and the load shape's overload rows, which it reads) before the checks.
# The cleanup stops a run's load task and faults when its execution was aborted or timed out (an
# EventBridge rule on the execution's status; the state machine's own cleanup branch cannot run then).
# The quiesce step waits (bounded) until the target is healthy and its data drained: the function
# `resgate run`'s quiesce calls (resgate.evidence.quiesce), with ECS as the health probe.
TIMELINE_FUNCTION = "timeline"
CLEANUP_FUNCTION = "cleanup"
QUIESCE_FUNCTION = "quiesce"
# The fault-injection preflight (infra.fault_experiments, with network faults only).
PREFLIGHT_FUNCTION = "preflight"
# The redeliver step of a duplicate_delivery fault (infra.fault_automation; in the VPC, reads and writes the
# fault's topics): FIS starts it through an SSM automation.
REDELIVER_FUNCTION = "redeliver"
FAULT_FUNCTIONS = (REDELIVER_FUNCTION,)
# Log groups of vended logs (Step Functions) under this prefix need no CloudWatch Logs resource policy entry.
VENDED_LOGS_PREFIX = "/aws/vendedlogs"
INFRA_FUNCTIONS = (TIMELINE_FUNCTION, CLEANUP_FUNCTION, QUIESCE_FUNCTION)
FUNCTION_NAMES = (*CHECK_FUNCTIONS, VERDICT_FUNCTION, *INFRA_FUNCTIONS)
NEEDS_DATABASE = ("integrity", "replay")  # the checks that read the database and the topics
# In the VPC, with the DB secret and the Kafka bootstrap: the database checks and the quiesce step.
IN_VPC = (*NEEDS_DATABASE, QUIESCE_FUNCTION)
LAMBDA_PYTHON = "3.12"
# Wheels for the Python 3.12 runtime (Amazon Linux 2023, glibc 2.34): manylinux2014 first, and
# manylinux_2_28 for packages that no longer publish manylinux2014 wheels (scipy >= 1.17).
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
# Third-party requirements per function (boto3 is in the runtime). The project's own packages (resgate,
# lambdas) are copied in; the pins follow constraints.txt.
LAMBDA_BASE_REQUIREMENTS = ("aws-lambda-powertools[tracer]==3.37.0", "PyYAML==6.0.3")
LAMBDA_EXTRA_REQUIREMENTS = {
    "slo": ("scipy==1.17.1", "numpy==2.4.6"),  # regression mode's Mann-Whitney U test (~165 MB of the asset)
    "integrity": (
        "psycopg[binary]==3.3.9",
        "aiokafka==0.14.0",
        "orjson==3.13.0",
        "msgspec==0.23.0",
    ),  # the ledger reader
    "replay": ("psycopg[binary]==3.3.9", "aiokafka==0.14.0"),
    "quiesce": ("psycopg[binary]==3.3.9", "aiokafka==0.14.0"),
    # The runtime's own botocore can predate enableFaultInjection in the ECS model (botocore drops response
    # fields its model does not know): the preflight brings its own, pinned as in constraints.txt.
    PREFLIGHT_FUNCTION: ("boto3==1.44.5", "botocore==1.44.5"),
    REDELIVER_FUNCTION: ("aiokafka==0.14.0",),
    STREAMING_FUNCTION: ("aiokafka==0.14.0",),
}
LAMBDA_SOURCE_PACKAGES = ("resgate", "lambdas")
ENV_EVIDENCE_BUCKET = lambda_settings.ENV_EVIDENCE_BUCKET
ENV_EVIDENCE_PREFIX = lambda_settings.ENV_EVIDENCE_PREFIX
ENV_DB_SECRET_ARN = lambda_settings.ENV_DB_SECRET_ARN
ENV_KAFKA_BOOTSTRAP = lambda_settings.ENV_KAFKA_BOOTSTRAP
ENV_UNKNOWN_IS_FAILURE = lambda_settings.ENV_UNKNOWN_IS_FAILURE
ENV_LOAD_CLUSTER = lambda_settings.ENV_LOAD_CLUSTER
ENV_EXPERIMENT_TEMPLATE_IDS = lambda_settings.ENV_EXPERIMENT_TEMPLATE_IDS
ENV_GATE_NAME = lambda_settings.ENV_GATE_NAME
ENV_NOTIFY_TOPIC_ARN = lambda_settings.ENV_NOTIFY_TOPIC_ARN
ENV_LOCK_TABLE = lambda_settings.ENV_LOCK_TABLE
ENV_LOCK_KEY = lambda_settings.ENV_LOCK_KEY
ENV_OPS_ITEMS = lambda_settings.ENV_OPS_ITEMS
OPS_ITEM_TAG_GATE = lambda_settings.OPS_ITEM_TAG_GATE
# The functions that open an OpsItem for a failed or errored run (when ops_items is on).
OPS_ITEM_FUNCTIONS = (VERDICT_FUNCTION, CLEANUP_FUNCTION)
ENV_POWERTOOLS_SERVICE_NAME = lambda_settings.ENV_POWERTOOLS_SERVICE_NAME
ENV_POWERTOOLS_METRICS_NAMESPACE = lambda_settings.ENV_POWERTOOLS_METRICS_NAMESPACE
METRICS_NAMESPACE = lambda_settings.METRICS_NAMESPACE

# ------------------------------------------------------------------------------------------ load generator
LOADGEN_CONTAINER = "loadgen"
LOADGEN_STARTED_BY = lambda_settings.LOAD_STARTED_BY
LOADGEN_DOCKERFILE = "loadgen/Dockerfile"
LOADGEN_NODE = "fargate-0"
LOADGEN_MASTER_PORT = 5557  # Locust's master port (loadgen.run.DEFAULT_MASTER_PORT)
LOADGEN_MASTER_NODE = "master"  # a distributed load's master task (the workers are w1..wN)
DEFAULT_LOCUSTFILE = "loadgen/locustfile.py"  # the bundled paperbroker locustfile (load.locustfile default)
LOADGEN_STOP_TIMEOUT_S = 5  # RESGATE_STOP_TIMEOUT_S; the container's stopTimeout is this + 25 s
# The load task's own guardrail metrics (loadgen/live_metrics.py publishes them; the alarms read them).
LOAD_METRICS_NAMESPACE = live_metrics.NAMESPACE
LOAD_METRIC_ERROR_RATIO = live_metrics.METRIC_ERROR_RATIO
LOAD_METRIC_P95 = live_metrics.METRIC_P95
LOAD_METRICS_DIMENSION = live_metrics.DIMENSION_GATE
LOAD_METRICS_PERIOD_S = live_metrics.DEFAULT_PERIOD_S

# ------------------------------------------------------------------------------------------ guardrails
# CloudWatch alarm periods for high-resolution metrics: 10, 20 or 30 s, else a multiple of 60.
HIGH_RESOLUTION_PERIODS_S = (10, 20, 30)
# FIS's aws:fis:wait takes one minute to 12 hours: the observation window after each fault is kept within.
OBSERVATION_WINDOW_MIN_S = 60
OBSERVATION_WINDOW_MAX_S = 12 * 3600

# ------------------------------------------------------------------------------------------ state machine
# Default poll interval and bounds of every polling loop: each loop gives up (and cleans up) after
# max polls, whatever poll_s the execution input sets.
DEFAULT_POLL_S = 15
START_POLL_S = 2  # the load task's start is polled this often (the fault schedule counts from it)
MAX_POLLS_TASK_START = 300  # about 10 minutes at START_POLL_S
# The experiment watch is bounded by time, not by a fixed count (state_machine.faults): it may last as long
# as an experiment (its aws:fis:wait actions) plus this margin for FIS's initiating and its stop-task
# action (tens of seconds each) and for polls slowed by retried throttling (at most about 45 s a call).
EXPERIMENT_WATCH_MARGIN_S = 180
MAX_POLLS_LOAD_END = 60  # after the expected end of the load
STATE_MACHINE_TIMEOUT_S = 4 * 3600
# The run lock (infra.run_lock): how long a second run waits for the target by default (waits.lock_wait_s),
# and the lease: longer than any execution can last, so a live run never loses its lock, plus the time
# the abort cleanup takes to release it; a lost release heals when the lease ends.
DEFAULT_LOCK_WAIT_S = 600
LOCK_LEASE_S = STATE_MACHINE_TIMEOUT_S + 15 * 60
FIS_ACTIVE_STATUSES = ("pending", "initiating", "running", "stopping")
# The execution input's waits that are offsets from the load's start, not delays (see state_machine.schedule).
FAULT_OFFSET_PREFIX = "at_"
# Step Functions execution statuses after which the cleanup Lambda runs. ABORTED and TIMED_OUT skip the
# state machine's cleanup branch; FAILED is harmless (every stop ignores "already stopped").
CLEANUP_ON_STATUSES = ("ABORTED", "TIMED_OUT", "FAILED")
FIS_TEMPLATE_DIR = "fis_templates"
FIS_STOP_TASK_TEMPLATE = "stop_task.json"

# Profiles (resgate.config.profiles): the nightly rule names this one when the gate config has it.
NIGHTLY_PROFILE = "nightly"
PIPELINE_PROFILE = "pipeline"  # the CodeBuild pipeline project's (infra/pipeline_action.py), when present
# The run dashboard (infra/run_dashboard.py) and the FIS experiment reports (infra/fault_experiments.py).
LOAD_METRIC_REQUESTS = live_metrics.METRIC_REQUESTS
CHECK_METRICS = lambda_settings.CHECK_METRICS  # lambdas/common/results.py, dimension check
FIS_REPORTS_PREFIX = "fis-reports"  # s3://<evidence bucket>/fis-reports/gate=<gate>/<experiment id>/...
