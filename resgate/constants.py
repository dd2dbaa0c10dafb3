"""Names of environment variables and other constants, kept in one place."""

from __future__ import annotations

ENV_PG_DSN = "RESGATE_PG_DSN"
ENV_KAFKA_BOOTSTRAP = "RESGATE_KAFKA_BOOTSTRAP"
ENV_PG_BIN = "RESGATE_PG_BIN"
ENV_EVIDENCE_ROOT = "RESGATE_EVIDENCE_ROOT"

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_CANNOT_RUN = 2

DEFAULT_RTO_SECONDS = 30.0
DEFAULT_EXAMPLES_CAP = 20

# librdkafka's mock cluster keeps at most this much per partition, then silently drops the oldest data.
KAFKA_MOCK_PARTITION_RETENTION_BYTES = 5 * 1024 * 1024
