"""Secrets as files (compose's /run/secrets): the services' settings and the operator CLI read
them, and an environment variable still wins."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from services.gateway.settings import GatewaySettings
from services.intake.settings import IntakeSettings
from shared.secret_files import environ_or_file


@pytest.fixture(autouse=True)
def _no_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("INTAKE_", "GATEWAY_")):
            monkeypatch.delenv(key)


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write(directory: Path, **files: str) -> None:
    for name, value in files.items():
        (directory / name).write_text(value + "\n")  # the newline an editor or echo adds


def test_settings_read_each_secret_from_its_file(tmp_path: Path) -> None:
    password, db_password, master = secrets.token_urlsafe(24), secrets.token_urlsafe(24), key()
    tls = "sslmode=verify-full&sslrootcert=/etc/refex/tls/ca.crt"  # production needs it
    write(
        tmp_path,
        intake_kafka_password=password,
        intake_database_url=f"postgresql://intake:{db_password}@postgres:5432/intake?{tls}",
        intake_master_key=master,
        intake_duplicate_key=key(),
    )
    settings = IntakeSettings(
        _secrets_dir=tmp_path,  # type: ignore[call-arg]
        environment="production",
        kafka_username="intake",
        kafka_ca_file="/etc/refex/tls/ca.crt",
    )
    assert settings.kafka.password == password
    assert settings.database_dsn == f"postgresql://intake:{db_password}@postgres:5432/intake?{tls}"
    assert settings.master_key.get_secret_value() == master


def test_an_environment_variable_wins_over_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, gateway_session_key="from-the-file-" + secrets.token_urlsafe(24))
    monkeypatch.setenv("GATEWAY_SESSION_KEY", "from-the-environment")
    settings = GatewaySettings(_secrets_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.session_key.get_secret_value() == "from-the-environment"


def test_the_operator_cli_reads_its_password_from_the_environment_or_a_file(
    tmp_path: Path,
) -> None:
    write(tmp_path, refex_kafka_password="file-pw")
    assert environ_or_file("REFEX_KAFKA_PASSWORD", {}, tmp_path) == "file-pw"
    env = {"REFEX_KAFKA_PASSWORD": "env-pw"}
    assert environ_or_file("REFEX_KAFKA_PASSWORD", env, tmp_path) == "env-pw"
    assert environ_or_file("INTAKE_KAFKA_PASSWORD", {}, tmp_path) is None
    assert environ_or_file("REFEX_KAFKA_PASSWORD", {}, tmp_path / "absent") is None
