import base64

import pytest
from pydantic import ValidationError

from services.intake.settings import IntakeSettings
from services.notification.settings import NotificationSettings
from services.referral.settings import ReferralSettings


@pytest.mark.parametrize(
    ("cls", "prefix"),
    [
        (IntakeSettings, "INTAKE_"),
        (ReferralSettings, "REFERRAL_"),
        (NotificationSettings, "NOTIFICATION_"),
    ],
)
def test_each_service_reads_only_its_prefix(
    cls: type[IntakeSettings], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for other in ("INTAKE_", "REFERRAL_", "NOTIFICATION_"):
        monkeypatch.setenv(f"{other}DATABASE_URL", f"postgresql://{other.lower()}x:p@h:1/d")
        monkeypatch.setenv(f"{other}HTTP_PORT", "1")
    monkeypatch.setenv(f"{prefix}HTTP_PORT", "9999")
    monkeypatch.setenv("INTAKE_MASTER_KEY", base64.b64encode(bytes(32)).decode())
    monkeypatch.setenv("INTAKE_DUPLICATE_KEY", base64.b64encode(bytes(range(32))).decode())
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", base64.b64encode(bytes(32)).decode())
    settings = cls()  # type: ignore[call-arg]
    assert settings.http_port == 9999
    assert settings.database_url.hosts()[0]["username"] == f"{prefix.lower()}x"


def test_database_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTAKE_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError):
        IntakeSettings()  # type: ignore[call-arg]


@pytest.mark.parametrize("bad", ["", "not base64!", base64.b64encode(bytes(16)).decode()])
def test_intake_keys_must_be_32_bytes_of_base64(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_DATABASE_URL", "postgresql://i:p@h:1/d")
    monkeypatch.setenv("INTAKE_MASTER_KEY", bad)
    monkeypatch.setenv("INTAKE_DUPLICATE_KEY", base64.b64encode(bytes(32)).decode())
    with pytest.raises(ValidationError) as info:
        IntakeSettings()  # type: ignore[call-arg]
    assert "master_key" in str(info.value)
    assert not bad or bad not in str(info.value)  # the secret is not echoed


def test_notification_secrets_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", "postgresql://n:p@h:1/d")
    monkeypatch.delenv("NOTIFICATION_SECRETS_KEY", raising=False)
    with pytest.raises(ValidationError) as info:
        NotificationSettings()  # type: ignore[call-arg]
    assert "secrets_key" in str(info.value)


@pytest.mark.parametrize("bad", ["", "not base64!", base64.b64encode(bytes(16)).decode()])
def test_notification_secrets_key_must_be_32_bytes_of_base64(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", "postgresql://n:p@h:1/d")
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", bad)
    with pytest.raises(ValidationError) as info:
        NotificationSettings()  # type: ignore[call-arg]
    assert "secrets_key" in str(info.value)
    assert not bad or bad not in str(info.value)  # the secret is not echoed


def test_notification_settings_repr_hides_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", "postgresql://n:p@h:1/d")
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", key)
    monkeypatch.setenv("NOTIFICATION_SMTP_PASSWORD", "smtp-hunter2")
    settings = NotificationSettings()  # type: ignore[call-arg]
    assert key not in repr(settings) and "smtp-hunter2" not in repr(settings)
    assert key not in str(settings) and "smtp-hunter2" not in str(settings)
