"""Production mode refuses missing, placeholder and weak secrets; development accepts them."""

from __future__ import annotations

import base64
import os
import secrets

import pytest

from services.intake.settings import IntakeSettings
from services.notification.settings import NotificationSettings
from shared.secret_policy import weakness
from shared.settings import service_environment

ZERO_KEY = base64.b64encode(bytes(32)).decode()
# Production needs TLS to both (decision 31); the CA file is only named here, never opened.
CA_FILE = "/etc/refex/tls/ca.crt"
VERIFY_FULL = f"sslmode=verify-full&sslrootcert={CA_FILE}"


@pytest.fixture(autouse=True)
def _no_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the values given here count, not those of a sourced .local/env."""
    for key in list(os.environ):
        if key.startswith(("INTAKE_", "NOTIFICATION_")):
            monkeypatch.delenv(key)


def strong() -> str:
    return secrets.token_urlsafe(24)


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def intake(**overrides: str) -> dict[str, str]:
    values = {
        "environment": "production",
        "kafka_username": "intake",
        "kafka_password": strong(),
        "kafka_ca_file": CA_FILE,
        "database_url": f"postgresql://intake:{strong()}@db:5432/intake?{VERIFY_FULL}",
        "master_key": key(),
        "duplicate_key": key(),
    }
    return values | overrides


def test_production_accepts_real_secrets() -> None:
    assert IntakeSettings(**intake()).environment == "production"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("kafka_password", "change-me-kafka-intake", "placeholder"),
        ("kafka_password", "", "missing"),
        ("kafka_password", "short-pw", "shorter than 16"),
        ("kafka_password", "a" * 30, "trivially guessable"),
        ("master_key", ZERO_KEY, "placeholder key"),
        ("duplicate_key", ZERO_KEY, "placeholder key"),
        (
            "database_url",
            f"postgresql://intake:change-me-intake@db:5432/intake?{VERIFY_FULL}",
            "placeholder",
        ),
        ("database_url", f"postgresql://intake@db:5432/intake?{VERIFY_FULL}", "missing"),
    ],
)
def test_production_refuses_weak_secrets_without_echoing_them(
    field: str, value: str, reason: str
) -> None:
    with pytest.raises(ValueError) as refused:
        IntakeSettings(**intake(**{field: value}))  # type: ignore[arg-type]
    message = str(refused.value)
    assert "production mode refuses to start" in message and reason in message
    if len(value) > 8:
        assert value not in message


def test_production_needs_kafka_authentication() -> None:
    values = intake()
    del values["kafka_username"]
    with pytest.raises(ValueError, match="kafka_username is missing"):
        IntakeSettings(**values)  # type: ignore[arg-type]


def test_development_accepts_placeholders() -> None:
    settings = IntakeSettings(  # type: ignore[arg-type]
        **intake(environment="development", master_key=ZERO_KEY, kafka_password="x")
    )
    assert settings.environment == "development"


def test_notification_refuses_private_webhook_targets_in_production() -> None:
    values = {
        "environment": "production",
        "kafka_username": "notification",
        "kafka_password": strong(),
        "kafka_ca_file": CA_FILE,
        "database_url": f"postgresql://notification:{strong()}@db:5432/notification?{VERIFY_FULL}",
        "secrets_key": key(),
        "smtp_host": "smtp.example.org",
        "allow_private_webhook_targets": "true",
    }
    with pytest.raises(ValueError, match="allow_private_webhook_targets"):
        NotificationSettings(**values)  # type: ignore[arg-type]


def test_a_logged_in_smtp_relay_needs_a_real_password_in_production() -> None:
    values = {
        "environment": "production",
        "kafka_username": "notification",
        "kafka_password": strong(),
        "kafka_ca_file": CA_FILE,
        "database_url": f"postgresql://notification:{strong()}@db:5432/notification?{VERIFY_FULL}",
        "secrets_key": key(),
        "smtp_host": "smtp.example.org",
        "smtp_username": "relay",
        "smtp_password": "password",
    }
    with pytest.raises(ValueError, match="smtp_password is a placeholder"):
        NotificationSettings(**values)  # type: ignore[arg-type]


def notification(**overrides: str) -> dict[str, str]:
    values = {
        "environment": "production",
        "kafka_username": "notification",
        "kafka_password": strong(),
        "kafka_ca_file": CA_FILE,
        "database_url": f"postgresql://notification:{strong()}@db:5432/notification?{VERIFY_FULL}",
        "secrets_key": key(),
    }
    return values | overrides


@pytest.mark.parametrize(
    "host", [None, "", "127.0.0.1", "localhost", "::1", "127.0.1.1", "0.0.0.0"]
)
def test_production_refuses_an_smtp_relay_that_is_the_service_itself(host: str | None) -> None:
    """Unset (the default 127.0.0.1) or loopback: in a container nothing listens there."""
    values = notification() if host is None else notification(smtp_host=host)
    with pytest.raises(ValueError, match="production mode refuses smtp_host=") as refused:
        NotificationSettings(**values)  # type: ignore[arg-type]
    assert "set NOTIFICATION_SMTP_HOST" in str(refused.value)


@pytest.mark.parametrize("host", ["smtp.example.org", "relay", "10.0.0.25"])
def test_production_accepts_a_real_smtp_relay(host: str) -> None:
    settings = NotificationSettings(**notification(smtp_host=host))  # type: ignore[arg-type]
    assert settings.smtp_host == host


def test_development_keeps_the_local_mail_sink() -> None:
    values = notification(environment="development")
    assert NotificationSettings(**values).smtp_host == "127.0.0.1"  # type: ignore[arg-type]


def test_weakness_accepts_generated_values() -> None:
    assert weakness(strong()) is None
    assert weakness(key(), is_key=True) is None


def test_a_service_process_gets_neither_other_services_nor_operator_secrets() -> None:
    environ = {
        "PATH": "/bin",
        "INTAKE_KAFKA_PASSWORD": "i",
        "REFERRAL_KAFKA_PASSWORD": "r",
        "NOTIFICATION_DATABASE_URL": "n",
        "REFEX_KAFKA_PASSWORD": "admin",
        "REFEX_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
    }
    assert service_environment("referral", environ) == {
        "PATH": "/bin",
        "REFERRAL_KAFKA_PASSWORD": "r",
        "REFEX_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
    }


def test_production_refuses_kafka_without_tls() -> None:
    values = intake()
    del values["kafka_ca_file"]
    with pytest.raises(ValueError, match="kafka_ca_file is missing"):
        IntakeSettings(**values)  # type: ignore[arg-type]
    development = IntakeSettings(**(values | {"environment": "development"}))  # type: ignore[arg-type]
    assert not development.kafka.tls, "development may use a plaintext broker"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?sslmode=disable",
        "?sslmode=prefer",
        "?sslmode=require",
        "?sslmode=verify-ca",
        "?sslmode=verify-full&sslmode=require",
    ],
)
def test_production_refuses_a_database_url_weaker_than_verify_full(query: str) -> None:
    """asyncpg's default is `prefer` (any certificate, plaintext if the server offers no TLS);
    require and verify-ca do not check that the certificate is the host's."""
    url = f"postgresql://intake:{strong()}@db:5432/intake{query}"
    with pytest.raises(ValueError, match="it needs sslmode=verify-full") as refused:
        IntakeSettings(**intake(database_url=url))  # type: ignore[arg-type]
    assert url.split("@")[0].split(":")[-1] not in str(refused.value), "the password stays out"


def test_the_gateway_refuses_kafka_without_tls_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.gateway.settings import GatewaySettings

    for name in [k for k in os.environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)  # a sourced .local/env names the local CA

    values = {"environment": "production", "session_key": key(), "kafka_ca_file": CA_FILE}
    assert GatewaySettings(**values).kafka.ca_file == CA_FILE  # type: ignore[arg-type]
    del values["kafka_ca_file"]
    with pytest.raises(ValueError, match="kafka_ca_file is missing"):
        GatewaySettings(**values)  # type: ignore[arg-type]
