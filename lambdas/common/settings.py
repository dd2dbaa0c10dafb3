"""Names of the assertion Lambdas' environment variables and other constants, kept in one place.

Configuration resolves as: the explicit value (the event's field), then the environment variable, then
the default. The CDK construct that deploys the functions sets these variables by the names below.
"""

from __future__ import annotations

import os

# Environment variables set by the deployment.
ENV_EVIDENCE_BUCKET = "EVIDENCE_BUCKET"
ENV_EVIDENCE_PREFIX = "EVIDENCE_PREFIX"
ENV_DB_SECRET_ARN = "DB_SECRET_ARN"
ENV_DB_SSLMODE = "DB_SSLMODE"
ENV_KAFKA_BOOTSTRAP = "KAFKA_BOOTSTRAP"
# How the integrity/replay Lambdas reach the brokers (resgate.config.kafka; absent: PLAINTEXT).
ENV_KAFKA_SECURITY_PROTOCOL = "KAFKA_SECURITY_PROTOCOL"
ENV_KAFKA_SASL_MECHANISM = "KAFKA_SASL_MECHANISM"
ENV_KAFKA_REGION = "KAFKA_REGION"
ENV_KAFKA_CA_FILE = "KAFKA_CA_FILE"
KAFKA_ENV = {
    "security_protocol": ENV_KAFKA_SECURITY_PROTOCOL,
    "sasl_mechanism": ENV_KAFKA_SASL_MECHANISM,
    "region": ENV_KAFKA_REGION,
    "ca_file": ENV_KAFKA_CA_FILE,
}
# Where the replay Lambda runs a rebuild's ECS task (the target's image): the default cluster, and the
# subnets and security groups of its awsvpc network (comma-separated).
ENV_REPLAY_CLUSTER = "REPLAY_CLUSTER"
ENV_REPLAY_SUBNETS = "REPLAY_SUBNETS"
ENV_REPLAY_SECURITY_GROUPS = "REPLAY_SECURITY_GROUPS"
# The tag the replay Lambda puts on the rebuild tasks it starts: the only tasks its role may stop.
REPLAY_TASK_TAG = ("ResGateReplay", "rebuild")
# Set by the Lambda runtime: the default region of MSK IAM tokens.
ENV_AWS_REGION = "AWS_REGION"
ENV_UNKNOWN_IS_FAILURE = "UNKNOWN_IS_FAILURE"
# The cleanup Lambda's: the load generator's ECS cluster, the gate's FIS experiment template ids (a,b,c).
ENV_LOAD_CLUSTER = "LOAD_CLUSTER"
ENV_EXPERIMENT_TEMPLATE_IDS = "EXPERIMENT_TEMPLATE_IDS"
# ...and, to leave a trace of an aborted or timed-out run and release its target's lock: the gate's name,
# the notification topic, the lock table and the target's item key (infra.run_lock).
ENV_GATE_NAME = "GATE_NAME"
ENV_NOTIFY_TOPIC_ARN = "NOTIFY_TOPIC_ARN"
ENV_LOCK_TABLE = "LOCK_TABLE"
ENV_LOCK_KEY = "LOCK_KEY"
# The verdict and cleanup Lambdas open an OpsCenter OpsItem for a FAIL or ERROR run when "true"
# (lambdas.common.opsitem; the CDK context flag ops_items). The OpsItem carries the gate's tag.
ENV_OPS_ITEMS = "OPS_ITEMS"
# The lock table's attributes (infra.run_lock): the target's key, the holder's run id, the lease's end.
LOCK_KEY_ATTRIBUTE = "target"
LOCK_HOLDER_ATTRIBUTE = "run_id"
LOCK_EXPIRES_ATTRIBUTE = "expires_at"
OPS_ITEM_TAG_GATE = "ResGateGate"
# Read by Powertools itself.
ENV_POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_POWERTOOLS_TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"

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
