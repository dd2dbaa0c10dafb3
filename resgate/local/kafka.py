"""Embedded Kafka: librdkafka's mock cluster in a child process, with fault controls; or a real broker.

The mock cluster (a Kafka-protocol implementation inside librdkafka, shipped with the ``confluent-kafka``
wheel) lives only as long as the process that created it, so it runs in a dedicated child process that
dies with its parent (stdin EOF and PR_SET_PDEATHSIG). Fault controls: broker down/up, per-broker
round-trip latency, injected request errors.

**Retention:** each mock partition keeps at most 5 MiB (and 100k message sets) and silently drops the
oldest data beyond that. Use enough partitions for the volume, and detect a truncated log with
:func:`resgate.checks.topics.topic_bounds` / ``truncated_partitions`` (earliest offset > 0).

When ``RESGATE_KAFKA_BOOTSTRAP`` is set, :func:`kafka_from_env` returns that broker and starts nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from resgate.contract.env import ENV_KAFKA_BOOTSTRAP
from resgate.contract.errors import ConfigError, DependencyMissing, GateError

# Kafka protocol API keys, for injected request errors.
API_KEYS = {
    "Produce": 0,
    "Fetch": 1,
    "ListOffsets": 2,
    "Metadata": 3,
    "OffsetCommit": 8,
    "OffsetFetch": 9,
    "FindCoordinator": 10,
    "JoinGroup": 11,
    "Heartbeat": 12,
    "SyncGroup": 14,
    "InitProducerId": 22,
}
# A few Kafka error codes that make sense to inject.
ERROR_CODES = {
    "NOT_LEADER_OR_FOLLOWER": 6,
    "REQUEST_TIMED_OUT": 7,
    "NOT_ENOUGH_REPLICAS": 19,
    "NOT_COORDINATOR": 16,
    "COORDINATOR_NOT_AVAILABLE": 15,
    "BROKER_NOT_AVAILABLE": 8,
}


class EmbeddedKafka:
    """A librdkafka mock cluster in a child process.

    ``bootstrap`` is the ``host:port,...`` list; brokers have ids ``1..brokers``. Topics are created with
    :meth:`create_topic` (auto-created topics get librdkafka's default partition count).
    """

    def __init__(
        self, *, brokers: int = 3, default_partitions: int = 6, start_timeout_s: float = 20.0
    ) -> None:
        if brokers < 1:
            raise ConfigError("must be at least 1", where="kafka.brokers")
        if default_partitions < 1:
            raise ConfigError("must be at least 1", where="kafka.default_partitions")
        self.brokers = brokers
        self.default_partitions = default_partitions
        self.start_timeout_s = start_timeout_s
        self.bootstrap = ""
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    @property
    def controllable(self) -> bool:
        return True

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the child process and read its bootstrap servers."""
        try:
            import confluent_kafka  # noqa: F401
        except ImportError as e:
            raise DependencyMissing(
                "the embedded Kafka needs the confluent-kafka wheel (pip install confluent-kafka), "
                f"or set {ENV_KAFKA_BOOTSTRAP} to a real broker"
            ) from e
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "resgate.local._kafka_mock_child", str(self.brokers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        atexit.register(self.close)
        hello = self._readline(self.start_timeout_s)
        if "error" in hello:
            self.close()
            raise GateError(f"embedded Kafka failed to start: {hello['error']}")
        self.bootstrap = hello["bootstrap"]

    def _readline(self, timeout_s: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(timeout_s)
        if not result or not result[0]:
            raise GateError(f"embedded Kafka child did not answer within {timeout_s:.0f}s")
        return json.loads(result[0])

    def _command(self, op: str, **args: Any) -> None:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None or self._proc.stdin is None:
                raise GateError("embedded Kafka is not running")
            self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self._proc.stdin.flush()
            reply = self._readline(10.0)
        if not reply.get("ok"):
            raise GateError(f"embedded Kafka {op} failed: {reply.get('error')}")

    def _broker(self, broker: int) -> int:
        if not 1 <= int(broker) <= self.brokers:
            raise ConfigError(f"broker id {broker} is not in 1..{self.brokers}", where="fault.broker")
        return int(broker)

    def create_topic(self, name: str, partitions: int | None = None, replication: int = 1) -> None:
        """Create a topic with ``partitions`` (default: the cluster's default) partitions."""
        self._command(
            "create_topic",
            topic=name,
            partitions=partitions or self.default_partitions,
            replication=replication,
        )

    def set_broker_down(self, broker: int) -> None:
        """Take broker ``broker`` down: its connections close and new ones are refused."""
        self._command("broker_down", broker=self._broker(broker))

    def set_broker_up(self, broker: int) -> None:
        """Bring broker ``broker`` back."""
        self._command("broker_up", broker=self._broker(broker))

    def set_rtt(self, broker: int, rtt_ms: int) -> None:
        """Add ``rtt_ms`` of round-trip latency to every request to ``broker`` (0 removes it)."""
        if rtt_ms < 0:
            raise ConfigError("must be >= 0", where="fault.rtt_ms")
        self._command("set_rtt", broker=self._broker(broker), rtt_ms=int(rtt_ms))

    def push_request_errors(self, api: str | int, errors: list[str | int]) -> None:
        """Make the next ``len(errors)`` requests of ``api`` (name or key) fail with these error codes."""
        key = API_KEYS.get(api) if isinstance(api, str) else api
        if key is None:
            raise ConfigError(f"unknown Kafka API {api!r}; known: {sorted(API_KEYS)}", where="fault.api")
        codes = []
        for e in errors:
            code = ERROR_CODES.get(e) if isinstance(e, str) else e
            if code is None:
                raise ConfigError(
                    f"unknown Kafka error {e!r}; known: {sorted(ERROR_CODES)}", where="fault.errors"
                )
            codes.append(code)
        self._command("push_request_errors", api_key=key, errors=codes)

    def clear_request_errors(self, api: str | int) -> None:
        key = API_KEYS.get(api) if isinstance(api, str) else api
        self._command("clear_request_errors", api_key=key)

    def close(self) -> None:
        """Stop the child process (and with it the cluster). Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait(timeout=5)
        finally:
            if proc.stdout:
                proc.stdout.close()


@dataclass
class ExternalKafka:
    """A real broker named by ``RESGATE_KAFKA_BOOTSTRAP``; fault controls are not available."""

    bootstrap: str
    default_partitions: int = 6

    @property
    def controllable(self) -> bool:
        return False

    def __enter__(self) -> ExternalKafka:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None

    def create_topic(self, name: str, partitions: int | None = None, replication: int = 1) -> None:
        """Create a topic through the admin API (ignored when it exists)."""
        asyncio.run(
            _admin_create_topic(self.bootstrap, name, partitions or self.default_partitions, replication)
        )


async def _admin_create_topic(bootstrap: str, name: str, partitions: int, replication: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, replication)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


def kafka_from_env(*, brokers: int = 3, default_partitions: int = 6) -> EmbeddedKafka | ExternalKafka:
    """The broker named by ``RESGATE_KAFKA_BOOTSTRAP`` if set, else a new (not started) embedded cluster."""
    bootstrap = os.environ.get(ENV_KAFKA_BOOTSTRAP)
    if bootstrap:
        return ExternalKafka(bootstrap, default_partitions)
    return EmbeddedKafka(brokers=brokers, default_partitions=default_partitions)
