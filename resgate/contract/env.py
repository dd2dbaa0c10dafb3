"""Names of every environment variable that crosses a process boundary: read by the gate, set by it for
the load generator and the target's replay rebuild, or read by the embedded services.

Configuration resolves as: explicit value, then the environment variable, then the default.
"""

from __future__ import annotations

# --- the gate and its embedded services ----------------------------------------------------------------
ENV_PG_DSN = "RESGATE_PG_DSN"
ENV_KAFKA_BOOTSTRAP = "RESGATE_KAFKA_BOOTSTRAP"
ENV_PG_BIN = "RESGATE_PG_BIN"
ENV_EVIDENCE_ROOT = "RESGATE_EVIDENCE_ROOT"

# --- set by the replay check for the target's rebuild command (its read models' own code) ---------------
ENV_REPLAY_DSN = "RESGATE_REPLAY_DSN"
"""DSN of the database holding the shadow schema the rebuild writes into."""
ENV_REPLAY_SCHEMA = "RESGATE_REPLAY_SCHEMA"
"""Name of the shadow schema the rebuild creates and fills."""
ENV_REPLAY_END_OFFSETS = "RESGATE_REPLAY_END_OFFSETS"
"""JSON ``{topic: {partition: end offset}}``: the rebuild reads each partition up to this offset."""

# --- read by the locustfile (every Locust process) -----------------------------------------------------
ENV_LEDGER_DIR = "RESGATE_LEDGER_DIR"
"""Directory for ``ledger-<pid>.jsonl`` and ``live-<pid>.jsonl`` (created when missing)."""
ENV_SYMBOLS = "RESGATE_SYMBOLS"
"""Comma-separated symbols to trade (default ``AAPL,MSFT,GOOG,AMZN``)."""
ENV_REF_PRICES = "RESGATE_REF_PRICES"
"""Reference prices, ``SYM=price,...``; symbols not listed use a built-in default (100 when unknown)."""
ENV_PRICE_BAND_PCT = "RESGATE_PRICE_BAND_PCT"
"""Limit prices are drawn uniformly within +-this percent of the reference (default 1.0)."""
ENV_MAX_QTY = "RESGATE_MAX_QTY"
"""Order and RFQ quantities are drawn from 1..this (default 100)."""
ENV_CONNECT_TIMEOUT_S = "RESGATE_CONNECT_TIMEOUT_S"
"""TCP connect timeout in seconds (default 2.0)."""
ENV_NETWORK_TIMEOUT_S = "RESGATE_NETWORK_TIMEOUT_S"
"""Timeout for a whole response in seconds (default 3.0)."""
ENV_MAX_ATTEMPTS = "RESGATE_MAX_ATTEMPTS"
"""Attempts per client request, the first one included (default 4; 1 disables retries)."""
ENV_RETRY_AFTER_CAP_S = "RESGATE_RETRY_AFTER_CAP_S"
"""Longest pause before a retry, whatever Retry-After says (default 2.0)."""
ENV_BACKOFF_BASE_S = "RESGATE_BACKOFF_BASE_S"
"""Backoff without Retry-After: ``base * 2**(attempt-1)`` with full jitter, capped (default 0.1)."""
ENV_WAIT_MIN_S = "RESGATE_WAIT_MIN_S"
"""Think time between a user's tasks, lower bound in seconds (default 0.1)."""
ENV_WAIT_MAX_S = "RESGATE_WAIT_MAX_S"
"""Think time between a user's tasks, upper bound in seconds (default 0.5)."""
ENV_LOAD_NODE = "RESGATE_LOAD_NODE"
"""Prefix that makes client ids unique across processes and tasks (default: 6 random hex digits)."""
ENV_LOAD_ROLE = "RESGATE_LOAD_ROLE"
"""The load task's part in a distributed load on Fargate (``loadgen.run.main``): ``master`` (runs Locust's
master for ``RESGATE_LOAD_WORKERS`` worker tasks, collects their ledger parts and uploads the merged
evidence; with 0 workers it runs the load itself) or ``worker`` (a Locust worker of the master at
``RESGATE_MASTER_HOST``, uploading its own ledger part); unset: one process, as locally."""
ENV_LOAD_WORKERS = "RESGATE_LOAD_WORKERS"
"""The number of worker tasks a master expects (``load.workers``, a profile may change it); they are named
``w1``..``wN`` (their ``RESGATE_LOAD_NODE``)."""
ENV_MASTER_HOST = "RESGATE_MASTER_HOST"
"""A worker's master: the master task's private IPv4 address (``ecs:DescribeTasks``)."""
ENV_MASTER_PORT = "RESGATE_MASTER_PORT"
"""The master's Locust port (default 5557; the load security group admits it from the load tasks only)."""
ENV_MASTER_BIND_HOST = "RESGATE_MASTER_BIND_HOST"
"""Where a master listens (default 0.0.0.0, the task's interface on Fargate; the rehearsal's 127.0.0.1)."""
ENV_ARRIVAL_RATE = "RESGATE_ARRIVAL_RATE"
"""Open model: task iterations per second over all users (``load.arrival_rate``; shared by
``RESGATE_USERS`` users); unset = closed model, the users' think times."""
ENV_LEDGER_FLUSH_RECORDS = "RESGATE_LEDGER_FLUSH_RECORDS"
"""Buffered ledger records that trigger a write (default 2000; the buffer is also written every second)."""
ENV_RESEND_RATIO = "RESGATE_RESEND_RATIO"
"""Fraction of accepted orders the client sends once more with the same key and body (a response the
client never saw, e.g. a FIX resend after a reconnect); default 0.02, 0 turns it off."""
ENV_STREAM_SUBSCRIBERS = "RESGATE_STREAM_SUBSCRIBERS"
"""Market-data subscribers per load process (``loadgen.stream_user.StreamUser``, default 0: none); each
subscribes to the target's ``/stream`` and writes the stream ledger (``stream-<pid>.jsonl``)."""
ENV_LOAD_SHAPE = "RESGATE_LOAD_SHAPE"
"""The load's overload steps (``overload`` faults in their ``factor`` form), as JSON
(:func:`resgate.contract.shape.encode_steps`): when set, the ledger hook installs
:class:`loadgen.load_shape.OverloadShape`, which multiplies the users by each step's factor for its
duration, locally and on Fargate alike; empty or unset, no shape (Locust's ``-u``/``-r``/``-t``)."""
ENV_LEADER_WATCH = "RESGATE_LEADER_WATCH"
"""The leader losses the load task watches on AWS, as JSON (:func:`loadgen.leader_watch.encode_watches`):
for each, the task samples the target service's ECS tasks' ``/health`` leader figures from a little before
its ``at_s`` (counted from the task's start, as the fault schedule counts) until ``duration_s + observe_s``
after, and uploads the records in ``leader_samples.jsonl``; empty or unset, nothing is watched."""
ENV_CONN_MAX_AGE_S = "RESGATE_CONN_MAX_AGE_S"
"""A trader opens a new connection before its next request once its connection is this old (default 2 s;
0 keeps one connection for the whole run). A load balancer that works per connection, like the local
gate's, then keeps spreading the traffic over every healthy replica, including one that was replaced."""

# --- read by the container entrypoint (``python -m loadgen.run``) ---------------------------------------
ENV_TARGET_HOST = "RESGATE_TARGET_HOST"
"""Base URL of the system under load (``LOCUST_HOST`` is accepted too)."""
ENV_USERS = "RESGATE_USERS"
ENV_SPAWN_RATE = "RESGATE_SPAWN_RATE"
ENV_DURATION_S = "RESGATE_DURATION_S"
ENV_STOP_TIMEOUT_S = "RESGATE_STOP_TIMEOUT_S"
ENV_LOCUSTFILE = "RESGATE_LOCUSTFILE"
"""The locustfile the container runs: a path in the image, or ``s3://bucket/key.py`` (downloaded first);
default the bundled paperbroker locustfile. The gate's ledger plugin is loaded beside it either way."""
ENV_EVIDENCE_S3_URI = "RESGATE_EVIDENCE_S3_URI"
"""``s3://bucket/prefix/`` of the run's evidence; when set, the entrypoint uploads ledger and stats there."""

# --- set by the replay check for the rebuild too: how to connect to the brokers (resgate.sections.kafka) -
ENV_KAFKA_SECURITY_PROTOCOL = "RESGATE_KAFKA_SECURITY_PROTOCOL"
"""``PLAINTEXT``, ``SSL`` or ``SASL_SSL``; absent means PLAINTEXT."""
ENV_KAFKA_SASL_MECHANISM = "RESGATE_KAFKA_SASL_MECHANISM"
"""``AWS_MSK_IAM`` (SASL/OAUTHBEARER with AWS's MSK signer) when the protocol is ``SASL_SSL``."""
ENV_KAFKA_REGION = "RESGATE_KAFKA_REGION"
"""The AWS region MSK IAM tokens are signed for."""
ENV_KAFKA_CA_FILE = "RESGATE_KAFKA_CA_FILE"
"""A PEM file of the CAs the brokers' certificates are verified against (default: the system's)."""

# --- read by the load task's metrics publisher (``loadgen.live_metrics``; set by the CDK app on Fargate) ---
ENV_METRICS_NAMESPACE = "RESGATE_METRICS_NAMESPACE"
"""CloudWatch namespace the load task publishes its error ratio and p95 to; unset: nothing is published."""
ENV_METRICS_GATE = "RESGATE_METRICS_GATE"
"""The gate's name, the ``Gate`` dimension of the load metrics."""
ENV_METRICS_PERIOD_S = "RESGATE_METRICS_PERIOD_S"
"""Seconds per published datapoint: 10, 20, 30 or a multiple of 60 (default 10)."""

# --- set by the deployment (infra/) on the gate's AWS Lambdas, read by lambdas/common -------------------
# (``lambdas.common.settings`` calls each ``ENV_<X>``: the name here without ``LAMBDA_``.)
ENV_LAMBDA_EVIDENCE_BUCKET = "EVIDENCE_BUCKET"
ENV_LAMBDA_EVIDENCE_PREFIX = "EVIDENCE_PREFIX"
ENV_LAMBDA_DB_SECRET_ARN = "DB_SECRET_ARN"
ENV_LAMBDA_DB_SSLMODE = "DB_SSLMODE"
ENV_LAMBDA_KAFKA_BOOTSTRAP = "KAFKA_BOOTSTRAP"
# How the integrity/replay Lambdas reach the brokers (resgate.sections.kafka; absent: PLAINTEXT).
ENV_LAMBDA_KAFKA_SECURITY_PROTOCOL = "KAFKA_SECURITY_PROTOCOL"
ENV_LAMBDA_KAFKA_SASL_MECHANISM = "KAFKA_SASL_MECHANISM"
ENV_LAMBDA_KAFKA_REGION = "KAFKA_REGION"
ENV_LAMBDA_KAFKA_CA_FILE = "KAFKA_CA_FILE"
# Where the replay Lambda runs a rebuild's ECS task (the target's image): the default cluster, and the
# subnets and security groups of its awsvpc network (comma-separated).
ENV_LAMBDA_REPLAY_CLUSTER = "REPLAY_CLUSTER"
ENV_LAMBDA_REPLAY_SUBNETS = "REPLAY_SUBNETS"
ENV_LAMBDA_REPLAY_SECURITY_GROUPS = "REPLAY_SECURITY_GROUPS"
# Set by the Lambda runtime: the default region of MSK IAM tokens.
ENV_LAMBDA_AWS_REGION = "AWS_REGION"
ENV_LAMBDA_UNKNOWN_IS_FAILURE = "UNKNOWN_IS_FAILURE"
# The cleanup Lambda's: the load generator's ECS cluster, the gate's FIS experiment template ids (a,b,c).
ENV_LAMBDA_LOAD_CLUSTER = "LOAD_CLUSTER"
ENV_LAMBDA_EXPERIMENT_TEMPLATE_IDS = "EXPERIMENT_TEMPLATE_IDS"
# ...and, to leave a trace of an aborted or timed-out run and release its target's lock: the gate's name,
# the notification topic, the lock table and the target's item key (infra.run_lock).
ENV_LAMBDA_GATE_NAME = "GATE_NAME"
ENV_LAMBDA_NOTIFY_TOPIC_ARN = "NOTIFY_TOPIC_ARN"
ENV_LAMBDA_LOCK_TABLE = "LOCK_TABLE"
ENV_LAMBDA_LOCK_KEY = "LOCK_KEY"
# The verdict and cleanup Lambdas open an OpsCenter OpsItem for a FAIL or ERROR run when "true"
# (lambdas.common.opsitem; the CDK context flag ops_items). The OpsItem carries the gate's tag.
ENV_LAMBDA_OPS_ITEMS = "OPS_ITEMS"
# Read by Powertools itself.
ENV_LAMBDA_POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_LAMBDA_POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_LAMBDA_POWERTOOLS_TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"
