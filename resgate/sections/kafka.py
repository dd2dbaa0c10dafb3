"""How the gate connects to the target's Kafka brokers: the ``kafka:`` section of the gate config.

Locally the embedded brokers speak PLAINTEXT (the default); on AWS the brokers are MSK with TLS (port 9094)
or IAM authentication (SASL/OAUTHBEARER signed by AWS's MSK signer, port 9098)::

    kafka:
      security_protocol: SASL_SSL     # PLAINTEXT (default) | SSL | SASL_SSL
      sasl_mechanism: AWS_MSK_IAM     # required with SASL_SSL (the only mechanism)
      region: eu-west-1               # the signer's region; default target.aws.region
      ca_file: /etc/ssl/msk-ca.pem    # optional: default is the system trust store (MSK's CAs are public)
      cluster_arn: arn:aws:kafka:eu-west-1:123456789012:cluster/trading/0b1c…-2
                                      # the MSK cluster: scopes the Lambdas' kafka-cluster:* permissions

One :class:`KafkaSettings` holds them wherever they come from: the gate config (:meth:`KafkaSettings.
from_section`), a Lambda event's ``kafka`` object or the Lambda's environment (:meth:`KafkaSettings.
resolve`), and the environment handed to a replay rebuild (:meth:`KafkaSettings.to_env`). Every value is
validated before any client exists, raising ConfigError naming the field. The aiokafka client arguments
are made from it by :func:`resgate.checks.topics.client_kwargs`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from resgate.contract.errors import ConfigError
from resgate.sections.fields import Section

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS = ("AWS_MSK_IAM",)
# MSK's listener port per protocol (plaintext, TLS, IAM).
BROKER_PORTS = {"PLAINTEXT": 9092, "SSL": 9094, "SASL_SSL": 9098}
FIELDS = ("security_protocol", "sasl_mechanism", "region", "ca_file", "cluster_arn")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_CLUSTER_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:kafka:([a-z0-9-]+):(\d{12}):cluster/([A-Za-z0-9-]+)/([A-Za-z0-9-]+)$"
)


@dataclass(frozen=True)
class KafkaSettings:
    """The brokers' security settings; the default is PLAINTEXT (the embedded brokers)."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    region: str | None = None
    ca_file: str | None = None
    cluster_arn: str | None = None

    def __post_init__(self) -> None:
        validate(self, lambda f: f"kafka.{f}")

    @property
    def iam(self) -> bool:
        """True when the clients authenticate with MSK IAM (SASL/OAUTHBEARER)."""
        return self.sasl_mechanism == "AWS_MSK_IAM"

    @property
    def tls(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    @property
    def broker_port(self) -> int:
        """MSK's port for this protocol: 9092 plaintext, 9094 TLS, 9098 IAM."""
        return BROKER_PORTS[self.security_protocol]

    def to_dict(self) -> dict[str, str]:
        """The set fields, e.g. ``{"security_protocol": "SSL"}`` (a Lambda event's ``kafka`` object)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_env(self, names: Mapping[str, str]) -> dict[str, str]:
        """The set fields as environment variables named by ``names`` (``{field: VARIABLE}``)."""
        return {names[k]: v for k, v in self.to_dict().items() if k in names}

    @classmethod
    def from_section(cls, sec: Section, *, default_region: str | None = None) -> KafkaSettings:
        """The gate config's ``kafka`` section (unknown keys refused; errors name the field and line)."""
        values = {f: sec.str(f, None) for f in FIELDS}
        sec.done()
        if values["region"] is None and values["sasl_mechanism"] is not None:
            values["region"] = default_region
        return _build(values, lambda f: sec.where(sec.p(f)))

    @classmethod
    def resolve(
        cls,
        explicit: Any,
        env: Mapping[str, str],
        names: Mapping[str, str],
        *,
        where: str = "event.kafka",
        default_region: str | None = None,
    ) -> KafkaSettings:
        """Per field: the ``explicit`` mapping's value (a Lambda event's ``kafka``), else the environment
        variable ``names[field]``, else the default. Errors name ``where.<field>`` or the variable."""
        if explicit is None:
            explicit = {}
        if not isinstance(explicit, Mapping):
            raise ConfigError(f"must be an object, got {type(explicit).__name__}", where=where)
        unknown = sorted(set(map(str, explicit)) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown keys {unknown}; known: {list(FIELDS)}", where=where)
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for f in FIELDS:
            if explicit.get(f) is not None:
                values[f], origin[f] = explicit[f], f"{where}.{f}"
            elif f in names and env.get(names[f]):
                values[f], origin[f] = env[names[f]], names[f]
            else:
                values[f], origin[f] = None, f"{where}.{f}"
        if values["region"] is None and values["sasl_mechanism"] is not None:
            values["region"] = default_region
        return _build(values, lambda f: origin[f])


def _build(values: Mapping[str, Any], where: Callable[[str], str]) -> KafkaSettings:
    for f, v in values.items():
        if v is not None and (not isinstance(v, str) or not v):
            raise ConfigError(f"must be a non-empty string, got {v!r}", where=where(f))
    settings = KafkaSettings.__new__(KafkaSettings)
    for f in FIELDS:
        object.__setattr__(settings, f, values.get(f))
    if settings.security_protocol is None:
        object.__setattr__(settings, "security_protocol", "PLAINTEXT")
    validate(settings, where)
    return settings


def validate(s: KafkaSettings, where: Callable[[str], str]) -> None:
    """Raise ConfigError naming the first invalid field of ``s`` (``where(field)`` says how)."""
    if s.security_protocol not in PROTOCOLS:
        raise ConfigError(
            f"must be one of {list(PROTOCOLS)}, got {s.security_protocol!r}", where=where("security_protocol")
        )
    if s.sasl_mechanism is not None and s.sasl_mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            f"must be one of {list(SASL_MECHANISMS)}, got {s.sasl_mechanism!r}", where=where("sasl_mechanism")
        )
    if s.security_protocol == "SASL_SSL" and s.sasl_mechanism is None:
        raise ConfigError("is required with security_protocol SASL_SSL", where=where("sasl_mechanism"))
    if s.security_protocol != "SASL_SSL" and s.sasl_mechanism is not None:
        raise ConfigError(
            f"needs security_protocol SASL_SSL, got {s.security_protocol}", where=where("sasl_mechanism")
        )
    if s.iam and s.region is None:
        raise ConfigError(
            "is required to sign MSK IAM tokens (or set target.aws.region)", where=where("region")
        )
    if s.region is not None and not _REGION_RE.match(s.region):
        raise ConfigError(f"is not an AWS region, got {s.region!r}", where=where("region"))
    if s.ca_file is not None and not s.tls:
        raise ConfigError("is only used with SSL or SASL_SSL", where=where("ca_file"))
    if s.cluster_arn is not None:
        m = _CLUSTER_ARN_RE.match(s.cluster_arn)
        if not m:
            raise ConfigError(
                f"must be an MSK cluster ARN arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>, "
                f"got {s.cluster_arn!r}",
                where=where("cluster_arn"),
            )
        if s.region is not None and m.group(1) != s.region:
            raise ConfigError(
                f"is in {m.group(1)}, but kafka.region is {s.region}", where=where("cluster_arn")
            )


def cluster_parts(cluster_arn: str) -> tuple[str, str, str, str]:
    """``(region, account, cluster name, cluster uuid)`` of an MSK cluster ARN."""
    m = _CLUSTER_ARN_RE.match(cluster_arn)
    if not m:
        raise ConfigError(f"is not an MSK cluster ARN: {cluster_arn!r}", where="kafka.cluster_arn")
    return m.group(1), m.group(2), m.group(3), m.group(4)
