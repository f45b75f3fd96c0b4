"""Notification settings. Besides the common ones, the SMTP relay and the key that seals the
webhook signing secrets at rest."""

import ipaddress
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.keys import decode_key
from shared.settings import ServiceSettings


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
    smtp_host: str = Field(
        default="127.0.0.1",
        description="SMTP relay for e-mail channels (production: a real relay, not loopback).",
    )
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = Field(default="referrals@referralexchange.invalid")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_start_tls: bool = False
    console_url: str | None = Field(
        default=None,
        description="The agency console's address (http://127.0.0.1:18005): each e-mail links to "
        "its referral's page there, or to the inbox. Unset: e-mails carry no link.",
    )
    webhook_disable_after_days: float = Field(
        default=5, gt=0, description="An endpoint failing this long is disabled."
    )
    webhook_interval_s: float = Field(
        default=0.5, gt=0, description="How often due webhook deliveries are sent."
    )

    def secrets_to_check(self) -> dict[str, tuple[str | None, bool]]:
        checked = super().secrets_to_check()
        checked["secrets_key"] = (self.secrets_key.get_secret_value(), True)
        if self.smtp_username:  # a relay that needs a login
            password = self.smtp_password.get_secret_value() if self.smtp_password else None
            checked["smtp_password"] = (password, False)
        return checked

    @model_validator(mode="after")
    def _no_private_targets_in_production(self) -> Self:
        # Private targets exist for tests; in production they would let an agency's webhook URL
        # reach internal services (SSRF).
        if self.environment == "production" and self.allow_private_webhook_targets:
            raise ValueError("production mode refuses allow_private_webhook_targets=true")
        return self

    @model_validator(mode="after")
    def _a_real_relay_in_production(self) -> Self:
        # The default (and localhost) is right for `make run`, whose mail sink listens beside
        # the service. In a container or on a server nothing listens there: every e-mail would
        # be retried until its channel gave up, and agencies would never hear of a referral.
        if self.environment == "production" and _loopback_or_unset(self.smtp_host):
            raise ValueError(
                f"production mode refuses smtp_host={self.smtp_host!r}: e-mail would go to the "
                "notification service's own host, where no relay listens; set "
                "NOTIFICATION_SMTP_HOST (and NOTIFICATION_SMTP_PORT) to the mail relay"
            )
        return self

    @field_validator("console_url")
    @classmethod
    def _console_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError("console_url must be an http(s) address such as http://host:8004")
        return value.rstrip("/")  # links append /referrals/<id>

    @field_validator("secrets_key")
    @classmethod
    def _valid_key(cls, value: SecretStr) -> SecretStr:
        decode_key(value)
        return value


def _loopback_or_unset(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the relay's
    return address.is_loopback or address.is_unspecified
