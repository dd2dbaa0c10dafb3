"""The assertion Lambdas' constants: event fields, metric names, limits, and their environment variables'
names (defined in :mod:`resgate.contract.env` with every other environment name, bound here as ``ENV_*``).

Configuration resolves as: the explicit value (the event's field), then the environment variable, then
the default. The CDK construct that deploys the functions sets these variables by the names below.
"""

from __future__ import annotations

import os

from resgate.contract import env

# The deployment's environment variables: their names are defined in resgate.contract.env (ENV_LAMBDA_*).
ENV_EVIDENCE_BUCKET = env.ENV_LAMBDA_EVIDENCE_BUCKET
ENV_EVIDENCE_PREFIX = env.ENV_LAMBDA_EVIDENCE_PREFIX
ENV_DB_SECRET_ARN = env.ENV_LAMBDA_DB_SECRET_ARN
ENV_DB_SSLMODE = env.ENV_LAMBDA_DB_SSLMODE
ENV_KAFKA_BOOTSTRAP = env.ENV_LAMBDA_KAFKA_BOOTSTRAP
ENV_KAFKA_SECURITY_PROTOCOL = env.ENV_LAMBDA_KAFKA_SECURITY_PROTOCOL
ENV_KAFKA_SASL_MECHANISM = env.ENV_LAMBDA_KAFKA_SASL_MECHANISM
ENV_KAFKA_REGION = env.ENV_LAMBDA_KAFKA_REGION
ENV_KAFKA_CA_FILE = env.ENV_LAMBDA_KAFKA_CA_FILE
ENV_REPLAY_CLUSTER = env.ENV_LAMBDA_REPLAY_CLUSTER
ENV_REPLAY_SUBNETS = env.ENV_LAMBDA_REPLAY_SUBNETS
ENV_REPLAY_SECURITY_GROUPS = env.ENV_LAMBDA_REPLAY_SECURITY_GROUPS
ENV_AWS_REGION = env.ENV_LAMBDA_AWS_REGION
ENV_UNKNOWN_IS_FAILURE = env.ENV_LAMBDA_UNKNOWN_IS_FAILURE
ENV_LOAD_CLUSTER = env.ENV_LAMBDA_LOAD_CLUSTER
ENV_EXPERIMENT_TEMPLATE_IDS = env.ENV_LAMBDA_EXPERIMENT_TEMPLATE_IDS
ENV_GATE_NAME = env.ENV_LAMBDA_GATE_NAME
ENV_NOTIFY_TOPIC_ARN = env.ENV_LAMBDA_NOTIFY_TOPIC_ARN
ENV_LOCK_TABLE = env.ENV_LAMBDA_LOCK_TABLE
ENV_LOCK_KEY = env.ENV_LAMBDA_LOCK_KEY
ENV_OPS_ITEMS = env.ENV_LAMBDA_OPS_ITEMS
ENV_POWERTOOLS_SERVICE_NAME = env.ENV_LAMBDA_POWERTOOLS_SERVICE_NAME
ENV_POWERTOOLS_METRICS_NAMESPACE = env.ENV_LAMBDA_POWERTOOLS_METRICS_NAMESPACE
ENV_POWERTOOLS_TRACE_DISABLED = env.ENV_LAMBDA_POWERTOOLS_TRACE_DISABLED
KAFKA_ENV = {
    "security_protocol": ENV_KAFKA_SECURITY_PROTOCOL,
    "sasl_mechanism": ENV_KAFKA_SASL_MECHANISM,
    "region": ENV_KAFKA_REGION,
    "ca_file": ENV_KAFKA_CA_FILE,
}
# The tag the replay Lambda puts on the rebuild tasks it starts: the only tasks its role may stop.
REPLAY_TASK_TAG = ("ResGateReplay", "rebuild")
# The lock table's attributes (infra.run_lock): the target's key, the holder's run id, the lease's end.
LOCK_KEY_ATTRIBUTE = "target"
LOCK_HOLDER_ATTRIBUTE = "run_id"
LOCK_EXPIRES_ATTRIBUTE = "expires_at"
# The OpsItem's tag naming the gate (lambdas.common.opsitem).
OPS_ITEM_TAG_GATE = "ResGateGate"

# Event field names shared by every handler.
EVENT_RUN_ID = "run_id"
EVENT_GATE = "gate"
EVENT_DT = "dt"
EVENT_BUCKET = "evidence_bucket"
EVENT_PREFIX = "evidence_prefix"
EVENT_THRESHOLDS = "thresholds"
EVENT_CONFIG = "config"
EVENT_DB_SECRET_ARN = "db_secret_arn"
EVENT_KAFKA_BOOTSTRAP = "kafka_bootstrap"
EVENT_KAFKA = "kafka"  # {security_protocol?, sasl_mechanism?, region?, ca_file?}
# Where integrity and replay take their section from: the event's "config", or "thresholds" as for the rest.
CONFIG_KEYS = (EVENT_CONFIG, EVENT_THRESHOLDS)

# What the state machine marks a run's load task and FIS experiments with (no ':' so that state machine
# JSONPaths can address the tag): the cleanup after an abort finds them by it.
RUN_ID_TAG = "ResGateRunId"
LOAD_STARTED_BY = "resgate"  # ecs:RunTask's startedBy of the load task

METRICS_NAMESPACE = "ResilienceGate"
# Each check Lambda's EMF metrics of its result (0 or 1; dimensions service, gate, check): infra's dashboard
# and alarms read them by these names.
METRIC_CHECK_VALID = "CheckValid"
METRIC_CHECK_FAILED = "CheckFailed"
METRIC_CHECK_UNKNOWN = "CheckUnknown"
CHECK_METRICS = (METRIC_CHECK_VALID, METRIC_CHECK_FAILED, METRIC_CHECK_UNKNOWN)
CORRELATION_ID_PATH = EVENT_RUN_ID
DEFAULT_EVIDENCE_PREFIX = "evidence"
DEFAULT_DB_SSLMODE = "require"
DEFAULT_DB_PORT = 5432
DEFAULT_DB_NAME = "postgres"

# Read size when streaming evidence files from S3 line by line.
S3_READ_CHUNK_BYTES = 1 << 20
# Step Functions limits a state's input and output to 256 KiB (States.DataLimitExceeded, which no Catch of
# States.ALL handles, and Pass/Choice states cannot catch at all). A check's full result goes to the run's
# store only (FULL_RESULT_FILE); the state machine carries a summary of at most SUMMARY_LIMIT_BYTES per
# check (name, valid, counts, error, the first examples that fit), so the Assertions Parallel's output of
# every check together stays far below the state limit.
STATE_LIMIT_BYTES = 256 * 1024
SUMMARY_LIMIT_BYTES = 8 * 1024
# Examples kept in a summary (as many as fit), and the characters of its error.
TRIMMED_EXAMPLES = 5
SUMMARY_ERROR_CHARS = 1000
# File name (inside the run prefix) of a check's full result; the verdict reads it back.
FULL_RESULT_FILE = "result-{name}.json"


def resolve(explicit: str | None, env_name: str, default: str | None = None) -> str | None:
    """``explicit`` if non-empty, else the environment variable ``env_name`` if set, else ``default``."""
    if explicit:
        return explicit
    return os.environ.get(env_name) or default
