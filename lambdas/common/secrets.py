"""The database DSN from Secrets Manager and the Kafka bootstrap, for the integrity and replay Lambdas.

The secret follows the RDS convention (what an RDS/Aurora attached secret or CDK's ``DatabaseSecret``
holds): a JSON object ``{"host", "port", "username", "password", "dbname", "engine"?}``. An optional
``sslmode`` key (else env ``DB_SSLMODE``, else ``require``) sets libpq's TLS mode. The DSN is built with
libpq's own quoting and is never logged (it holds the password): :func:`redacted` is what may be logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.common import settings
from lambdas.common.event import RunEvent
from resgate.contract.errors import ConfigError, GateError


def db_secret_arn(event: RunEvent) -> str:
    """The secret's ARN (or name) from the event's ``db_secret_arn``, else env ``DB_SECRET_ARN``."""
    arn = settings.resolve(event.get(settings.EVENT_DB_SECRET_ARN), settings.ENV_DB_SECRET_ARN)
    if not isinstance(arn, str) or not arn:
        raise ConfigError(
            f"is required (or set {settings.ENV_DB_SECRET_ARN})",
            where=f"event.{settings.EVENT_DB_SECRET_ARN}",
        )
    return arn


def kafka_bootstrap(event: RunEvent) -> str | None:
    """The MSK bootstrap brokers: the event's ``kafka_bootstrap``, else env ``KAFKA_BOOTSTRAP``."""
    v = settings.resolve(event.get(settings.EVENT_KAFKA_BOOTSTRAP), settings.ENV_KAFKA_BOOTSTRAP)
    if v is not None and (not isinstance(v, str) or not v.strip()):
        raise ConfigError(
            f"must be host:port[,host:port…], got {v!r}", where=f"event.{settings.EVENT_KAFKA_BOOTSTRAP}"
        )
    return v.strip() if v else None


def dsn_from_secret_value(secret: Mapping[str, Any], *, where: str = "secret") -> str:
    """A libpq DSN from an RDS-style secret mapping; raises ConfigError naming a missing or bad field."""
    import psycopg  # only the database checks' bundles have it; the others import this module

    for key in ("host", "username", "password"):
        if not isinstance(secret.get(key), str) or not secret[key]:
            raise ConfigError("is required (a non-empty string)", where=f"{where}.{key}")
    port = secret.get("port", settings.DEFAULT_DB_PORT)
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ConfigError(f"must be a port number, got {port!r}", where=f"{where}.port") from None
    if not 0 < port < 65536:
        raise ConfigError(f"must be a port number, got {port!r}", where=f"{where}.port")
    dbname = secret.get("dbname") or settings.DEFAULT_DB_NAME
    sslmode = secret.get("sslmode") or settings.resolve(
        None, settings.ENV_DB_SSLMODE, settings.DEFAULT_DB_SSLMODE
    )
    return psycopg.conninfo.make_conninfo(
        host=secret["host"],
        port=port,
        user=secret["username"],
        password=secret["password"],
        dbname=str(dbname),
        sslmode=str(sslmode),
    )


def dsn_from_secret(arn: str, *, client: Any = None) -> str:
    """Fetch the secret ``arn`` and return its libpq DSN (see :func:`dsn_from_secret_value`).

    Raises GateError when Secrets Manager cannot be read, ConfigError when the secret is not RDS-style JSON.
    """
    sm = client if client is not None else boto3.client("secretsmanager")
    try:
        value = sm.get_secret_value(SecretId=arn)
    except (ClientError, BotoCoreError) as e:
        raise GateError(f"could not read the database secret {arn}: {e}") from e
    text = value.get("SecretString")
    if not text:
        raise ConfigError("holds no SecretString (expected RDS-style JSON)", where=f"secret {arn}")
    try:
        secret = json.loads(text)
    except json.JSONDecodeError:
        # Never echo the text: it is a secret.
        raise ConfigError("is not JSON (expected RDS-style JSON)", where=f"secret {arn}") from None
    if not isinstance(secret, Mapping):
        raise ConfigError("must be a JSON object (expected RDS-style JSON)", where=f"secret {arn}")
    return dsn_from_secret_value(secret, where=f"secret {arn}")


def redacted(dsn: str) -> str:
    """The DSN without its password, for logs."""
    import psycopg  # only the database checks' bundles have it; the others import this module

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    if "password" in info:
        info["password"] = "***"
    return psycopg.conninfo.make_conninfo(**info)
