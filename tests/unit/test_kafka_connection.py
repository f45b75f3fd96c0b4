"""KafkaConnection: every client factory gets TLS from one value, with the broker's certificate
and host name verified (decision 31). The real broker's refusals are in
tests/integration/test_kafka_tls.py."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from shared.kafka.connection import KafkaConnection


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    # Any PEM certificate loads as a trust anchor; no broker is involved here.
    key, crt = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=test",
        ],
        check=True,
        capture_output=True,
    )
    return str(crt)


def test_with_a_ca_every_client_speaks_tls_and_checks_the_host_name(ca_file: str) -> None:
    kafka = KafkaConnection("k1:9093,k2:9093", "agency.x", "a-long-password-123", ca_file)
    assert kafka.tls

    kwargs = kafka.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.get_ca_certs(), "the CA file is the trust anchor"

    security = kafka.faststream_security()
    assert security is not None and security.use_ssl
    assert security.ssl_context is not None and security.ssl_context.check_hostname

    config = kafka.librdkafka_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["ssl.ca.location"] == ca_file
    assert config["ssl.endpoint.identification.algorithm"] == "https"


def test_another_principal_keeps_the_tls_settings(ca_file: str) -> None:
    """The gateway and the tests derive agency connections with as_user: none may lose TLS."""
    base = KafkaConnection("k:9093", ca_file=ca_file)
    assert base.client_kwargs()["security_protocol"] == "SSL"
    member = base.as_user("agency.x.cw-1", "a-long-password-123")
    assert member.ca_file == ca_file
    assert member.client_kwargs()["security_protocol"] == "SASL_SSL"


def test_without_a_ca_the_connection_is_plaintext_and_says_so() -> None:
    kafka = KafkaConnection("k:9092", "agency.x", "a-long-password-123")
    assert not kafka.tls
    assert kafka.client_kwargs()["security_protocol"] == "SASL_PLAINTEXT"
    assert "ssl_context" not in kafka.client_kwargs()
    assert kafka.librdkafka_config()["security.protocol"] == "SASL_PLAINTEXT"


def test_a_missing_ca_file_is_named_at_once(tmp_path: Path) -> None:
    kafka = KafkaConnection("k:9093", ca_file=str(tmp_path / "absent.crt"))
    with pytest.raises(ValueError, match=r"cannot read the Kafka CA file .*absent\.crt"):
        kafka.client_kwargs()


def test_the_ca_file_comes_from_the_environment(
    ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_KAFKA_BOOTSTRAP_SERVERS", "k:9093")
    monkeypatch.setenv("X_KAFKA_CA_FILE", ca_file)
    assert KafkaConnection.from_env("X_KAFKA_").ca_file == ca_file
    monkeypatch.setenv("X_KAFKA_CA_FILE", "")
    assert not KafkaConnection.from_env("X_KAFKA_").tls
