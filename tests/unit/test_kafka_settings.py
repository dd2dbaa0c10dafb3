"""The ``kafka:`` section (TLS, MSK IAM) and the aiokafka arguments every client of the gate is made with.

The IAM token is signed by AWS's real signer with fake credentials from the environment: signing is
offline (SigV4 over a URL), so the test checks the token is a presigned ``kafka-cluster:Connect`` URL for
the configured region without any network or mock.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from urllib.parse import parse_qs, urlparse

import pytest

from resgate.checks.topics import client_kwargs, msk_iam_token_provider
from resgate.config.schema import load_config_text
from resgate.contract.errors import ConfigError
from resgate.sections.kafka import KafkaSettings

CLUSTER = "arn:aws:kafka:eu-west-1:123456789012:cluster/trading/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-2"
BASE = """
gate: {name: g}
target:
  local:
    services: [{name: api, command: [x], expose: true}]
"""
ENV_NAMES = {
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "region": "KAFKA_REGION",
    "ca_file": "KAFKA_CA_FILE",
}


def _cfg(kafka: str, target_aws: str = "") -> KafkaSettings:
    text = BASE + target_aws + ("\nkafka:\n" + kafka if kafka else "")
    return load_config_text(text, "gate.yaml").kafka


def test_the_default_is_plaintext():
    k = _cfg("")
    assert k == KafkaSettings() and k.security_protocol == "PLAINTEXT" and k.broker_port == 9092


def test_every_field_of_the_kafka_section_is_read():
    k = _cfg(
        "  security_protocol: SASL_SSL\n  sasl_mechanism: AWS_MSK_IAM\n  region: eu-west-1\n"
        f"  ca_file: /etc/ca.pem\n  cluster_arn: {CLUSTER}\n"
    )
    assert (k.security_protocol, k.sasl_mechanism, k.region, k.ca_file, k.cluster_arn) == (
        "SASL_SSL",
        "AWS_MSK_IAM",
        "eu-west-1",
        "/etc/ca.pem",
        CLUSTER,
    )
    assert k.iam and k.tls and k.broker_port == 9098


def test_tls_uses_port_9094():
    assert _cfg("  security_protocol: SSL\n").broker_port == 9094


def test_iam_takes_its_region_from_target_aws():
    k = _cfg(
        "  security_protocol: SASL_SSL\n  sasl_mechanism: AWS_MSK_IAM\n",
        "  aws: {cluster: c, region: us-west-2}\n",
    )
    assert k.region == "us-west-2"


@pytest.mark.parametrize(
    ("kafka", "field", "message"),
    [
        ("  security_protocol: TLS\n", "kafka.security_protocol", "must be one of"),
        ("  security_protocol: SASL_SSL\n", "kafka.sasl_mechanism", "is required with"),
        (
            "  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM\n",
            "kafka.sasl_mechanism",
            "must be one of",
        ),
        ("  security_protocol: SSL\n  sasl_mechanism: AWS_MSK_IAM\n", "kafka.sasl_mechanism", "needs"),
        ("  security_protocol: SASL_SSL\n  sasl_mechanism: AWS_MSK_IAM\n", "kafka.region", "is required"),
        ("  security_protocol: SSL\n  region: Europe\n", "kafka.region", "is not an AWS region"),
        ("  ca_file: /etc/ca.pem\n", "kafka.ca_file", "only used with SSL"),
        (
            "  security_protocol: SSL\n  cluster_arn: arn:aws:kafka:x\n",
            "kafka.cluster_arn",
            "MSK cluster ARN",
        ),
        (
            f"  security_protocol: SSL\n  region: us-east-1\n  cluster_arn: {CLUSTER}\n",
            "kafka.cluster_arn",
            "is in eu-west-1",
        ),
        ("  security_protocol: [SSL]\n", "kafka.security_protocol", "non-empty string"),
        ("  protocol: SSL\n", "kafka.protocol", "unknown field"),
    ],
)
def test_a_bad_kafka_value_names_its_field_and_line(kafka, field, message):
    with pytest.raises(ConfigError) as e:
        _cfg(kafka)
    assert e.value.where is not None and e.value.where.startswith(field)
    assert "gate.yaml:" in e.value.where
    assert message in str(e.value)


def test_a_lambda_reads_the_settings_from_its_event_before_its_environment():
    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"}
    k = KafkaSettings.resolve({"region": "ap-south-1"}, env, ENV_NAMES, default_region="us-east-1")
    assert (k.security_protocol, k.sasl_mechanism, k.region) == ("SASL_SSL", "AWS_MSK_IAM", "ap-south-1")
    assert KafkaSettings.resolve(None, env, ENV_NAMES, default_region="us-east-1").region == "us-east-1"
    assert KafkaSettings.resolve(None, {}, ENV_NAMES) == KafkaSettings()


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError) as e:
        KafkaSettings.resolve(None, {"KAFKA_SECURITY_PROTOCOL": "TLS"}, ENV_NAMES)
    assert e.value.where == "KAFKA_SECURITY_PROTOCOL"
    with pytest.raises(ConfigError) as e:
        KafkaSettings.resolve({"security_protocol": "SASL_SSL"}, {}, ENV_NAMES)
    assert e.value.where == "event.kafka.sasl_mechanism"
    with pytest.raises(ConfigError) as e:
        KafkaSettings.resolve({"mechanism": "x"}, {}, ENV_NAMES)
    assert e.value.where == "event.kafka"


def test_settings_round_trip_through_the_environment_of_a_rebuild():
    k = KafkaSettings("SASL_SSL", "AWS_MSK_IAM", "eu-west-1")
    env = k.to_env(ENV_NAMES)
    assert env == {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
        "KAFKA_REGION": "eu-west-1",
    }
    assert KafkaSettings.resolve(None, env, ENV_NAMES) == k


def test_plaintext_clients_get_no_tls_and_no_sasl():
    assert client_kwargs(None) == {"security_protocol": "PLAINTEXT"}
    assert client_kwargs(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}


def test_tls_clients_verify_the_brokers_certificates_and_names():
    kw = client_kwargs(KafkaSettings("SSL"))
    assert kw["security_protocol"] == "SSL" and set(kw) == {"security_protocol", "ssl_context"}
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_iam_clients_authenticate_with_oauthbearer_tokens_from_the_msk_signer():
    from aiokafka.abc import AbstractTokenProvider

    kw = client_kwargs(KafkaSettings("SASL_SSL", "AWS_MSK_IAM", "eu-west-1"))
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(kw["ssl_context"], ssl.SSLContext)
    assert isinstance(kw["sasl_oauth_token_provider"], AbstractTokenProvider)


def test_the_iam_token_is_a_presigned_kafka_cluster_connect_url_for_the_region(monkeypatch):
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    provider = msk_iam_token_provider("eu-west-1")

    async def two_tokens() -> tuple[str, str]:
        return await provider.token(), await provider.token()

    token, again = asyncio.run(two_tokens())
    assert again == token  # reused until shortly before it expires
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parsed = urlparse(url)
    q = parse_qs(parsed.query)
    assert parsed.scheme == "https" and parsed.netloc == "kafka.eu-west-1.amazonaws.com"
    assert q["Action"] == ["kafka-cluster:Connect"]
    assert q["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert q["X-Amz-Credential"][0].startswith("AKIAFAKEFAKEFAKEFAKE/")
    assert q["X-Amz-Credential"][0].endswith("/eu-west-1/kafka-cluster/aws4_request")
    assert q["X-Amz-Expires"] == ["900"] and q["X-Amz-Signature"][0]


def test_without_credentials_signing_fails_with_a_gate_error(monkeypatch):
    from resgate.contract.errors import GateError

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = msk_iam_token_provider("eu-west-1")
    with pytest.raises(GateError, match="could not sign an MSK IAM token for eu-west-1"):
        asyncio.run(provider.token())
