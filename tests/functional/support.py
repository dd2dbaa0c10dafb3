"""Helpers of the functional tests: event fixtures, the evidence bucket, a fake Lambda context, output."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest

from resgate.contract.layout import RunKey
from resgate.evidence.store import relative_key

EVENTS = Path(__file__).resolve().parent / "events"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BUCKET = "resgate-evidence-test"
REGION = "us-east-1"


# One reader of botocore's service models (JSON files of up to a few MB) for the whole test session.
_MODELS = botocore.loaders.create_loader()


def fresh_default_session() -> None:
    """Make boto3's default session a new one that reads the service models through one shared loader.

    ``mock_aws`` resets boto3's default session when it starts (so no client keeps real credentials),
    and each new session loads and parses every model again: about 1 s per client on a loaded 2-core
    machine, several times per test. The shared loader caches only those files; credentials, config
    and clients are still new for every test."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _MODELS)
    boto3.setup_default_session(botocore_session=session)


@dataclass
class FakeLambdaContext:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str = "resgate-assertion-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:resgate-assertion-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_event(name: str, **overrides: Any) -> dict[str, Any]:
    """The event fixture ``events/<name>.json`` with top-level fields replaced by ``overrides``."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    event.update(overrides)
    return event


@dataclass
class Evidence:
    """The moto bucket and the run prefix of the event fixtures, with helpers to put and get files."""

    s3: Any
    bucket: str
    key: RunKey
    prefix: str = "evidence"

    def object_key(self, file: str) -> str:
        """The key of a run's file in the evidence layout (tables in their own folders)."""
        return f"{self.prefix}/{relative_key(self.key, file)}"

    def put(self, file: str, body: str | bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.object_key(file), Body=body)

    def put_jsonl(self, file: str, rows: list[Mapping[str, Any]], *, stamp: bool = False) -> None:
        """Write rows as JSON lines; ``stamp`` adds run_id and gate as the local EvidenceWriter does."""
        lines = []
        for row in rows:
            if stamp:
                row = {"run_id": self.key.run_id, "gate": self.key.gate, **row}
            lines.append(json.dumps(row))
        self.put(file, "\n".join(lines) + ("\n" if lines else ""))

    def get(self, file: str) -> str:
        return self.s3.get_object(Bucket=self.bucket, Key=self.object_key(file))["Body"].read().decode()

    def files(self) -> list[str]:
        """The names of the run's files, wherever the layout puts them (run folder, table folders)."""
        out = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/gate={self.key.gate}/")
        mine = f"/dt={self.key.date}/run_id={self.key.run_id}/"
        return sorted(o["Key"].rsplit("/", 1)[1] for o in out.get("Contents", []) if mine in o["Key"])


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def emitted(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The JSON lines printed during the test, split into (EMF metric blobs, other JSON lines). Powertools'
    Logger keeps the stdout it saw at import, so its records are usually not among them."""
    metrics, logs = [], []
    for line in capsys.readouterr().out.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        (metrics if isinstance(obj, dict) and "_aws" in obj else logs).append(obj)
    return metrics, logs


def as_payload(result_dict: Mapping[str, Any]) -> Any:
    """What a CheckResult dict looks like after the JSON trip through Step Functions."""
    return json.loads(json.dumps(result_dict))


def put_db_secret(dsn: str, name: str = "resgate/target-db") -> str:
    """Store ``dsn``'s parts in a (moto) Secrets Manager secret in the RDS JSON layout; return its ARN.

    The embedded Postgres speaks no TLS and trusts local connections, hence ``sslmode`` and a dummy
    password."""
    import boto3
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    secret = {
        "engine": "postgres",
        "host": info.get("host", "127.0.0.1"),
        "port": int(info.get("port", 5432)),
        "username": info.get("user", "postgres"),
        "password": info.get("password") or "unused-with-trust-auth",
        "dbname": info["dbname"],
        "sslmode": "disable",
    }
    sm = boto3.client("secretsmanager", region_name=REGION)
    return sm.create_secret(Name=name, SecretString=json.dumps(secret))["ARN"]


async def produce_json(bootstrap: str, topic: str, events: list[tuple[int, dict[str, Any]]]) -> None:
    """Produce ``(partition, event)`` pairs as JSON to ``topic`` and wait for every ack."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for p, event in events:
            await producer.send(topic, json.dumps(event).encode(), partition=p)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class OpsCenter:
    """A stubbed SSM client standing in for OpsCenter (moto 5.2.5 has no ``CreateOpsItem``): botocore's
    Stubber answers each ``create_ops_item`` after the client validated the request against the service
    model; ``created`` holds each request's parameters."""

    ssm: Any
    stubber: Any
    created: list[dict[str, Any]]

    def expect(self, count: int = 1) -> None:
        for i in range(count):
            self.stubber.add_response("create_ops_item", {"OpsItemId": f"oi-00000000000{i}"})


def timed(result_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A handler's check result without its ``duration_s`` (how long the check took, which no expected
    result can know), after asserting it is there and non-negative."""
    out = dict(result_dict)
    took = out.pop("duration_s", None)
    assert isinstance(took, float) and took >= 0, f"duration_s: {took!r}"
    return out
