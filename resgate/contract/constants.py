"""Exit codes and defaults shared by the gate, its checkers and the Lambdas."""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_CANNOT_RUN = 2

DEFAULT_RTO_SECONDS = 30.0
DEFAULT_EXAMPLES_CAP = 20

# librdkafka's mock cluster keeps at most this much per partition, then silently drops the oldest data.
KAFKA_MOCK_PARTITION_RETENTION_BYTES = 5 * 1024 * 1024
