"""pytest plugin: real Postgres and Kafka for integration tests, started once per session.

Loaded for every run via ``-p resgate.testing.fixtures`` (pyproject addopts). With ``RESGATE_PG_DSN`` /
``RESGATE_KAFKA_BOOTSTRAP`` set, the existing servers are used and nothing is started.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from resgate.local.kafka import EmbeddedKafka, ExternalKafka, kafka_from_env
from resgate.local.postgres import (
    EmbeddedPostgres,
    ExternalPostgres,
    create_database,
    drop_database,
    postgres_from_env,
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres | ExternalPostgres]:
    """The session's Postgres server (embedded, or the one named by RESGATE_PG_DSN). Has ``.dsn``."""
    server = postgres_from_env()
    with server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: EmbeddedPostgres | ExternalPostgres) -> Iterator[str]:
    """DSN of a fresh, empty database on the session's server; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = create_database(pg_server.dsn, name)
    try:
        yield dsn
    finally:
        try:
            drop_database(pg_server.dsn, name)
        except Exception:  # the server may have been stopped by the test; nothing left to clean then
            pass


@pytest.fixture(scope="session")
def kafka() -> Iterator[EmbeddedKafka | ExternalKafka]:
    """The session's Kafka (embedded mock cluster with 3 brokers, or RESGATE_KAFKA_BOOTSTRAP)."""
    broker = kafka_from_env()
    with broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka: EmbeddedKafka | ExternalKafka) -> str:
    """Bootstrap servers of the session's Kafka."""
    return kafka.bootstrap


_topic_counter = itertools.count()


@pytest.fixture
def new_topic(kafka: EmbeddedKafka | ExternalKafka) -> Callable[..., str]:
    """Factory ``new_topic(partitions=3, prefix="t") -> name`` creating a uniquely named topic."""

    def make(partitions: int = 3, prefix: str = "t") -> str:
        name = f"{prefix}.{os.getpid()}.{next(_topic_counter)}.{uuid.uuid4().hex[:6]}"
        kafka.create_topic(name, partitions)
        return name

    return make
