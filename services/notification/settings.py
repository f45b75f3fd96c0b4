"""Notification settings. Besides the common ones, the SMTP relay and the key that seals the
webhook signing secrets at rest."""

import base64
import binascii

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


def decode_key(value: SecretStr) -> bytes:
    """A 32-byte key given as standard base64 (``head -c 32 /dev/urandom | base64``)."""
    try:
        raw = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be standard base64") from None
    if len(raw) != 32:
        raise ValueError("must decode to exactly 32 bytes")
    return raw


class NotificationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATION_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    http_port: int = 8003
    secrets_key: SecretStr = Field(
        description="Key (base64, 32 bytes) sealing the webhook signing secrets at rest."
    )
    webhook_schedule_s: tuple[float, ...] = Field(
        default=(5, 300, 1800, 7200, 18000, 36000, 36000),
        description="Delay before each webhook retry (the first attempt is immediate).",
    )
    allow_private_webhook_targets: bool = Field(
        default=False, description="Allow loopback/private/link-local webhook URLs (tests)."
    )
    smtp_host: str = Field(default="127.0.0.1", description="SMTP relay for e-mail channels.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = Field(default="referrals@referralexchange.invalid")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_start_tls: bool = False
    webhook_disable_after_days: float = Field(
        default=5, gt=0, description="An endpoint failing this long is disabled."
    )
    webhook_interval_s: float = Field(
        default=0.5, gt=0, description="How often due webhook deliveries are sent."
    )

    @field_validator("secrets_key")
    @classmethod
    def _valid_key(cls, value: SecretStr) -> SecretStr:
        decode_key(value)
        return value
