"""Intake settings. Besides the common ones, the two secrets only intake holds."""

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.keys import decode_key
from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="INTAKE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    http_port: int = 8001
    master_key: SecretStr = Field(
        description="Key-encryption key (base64, 32 bytes): wraps every case's data key."
    )
    duplicate_key: SecretStr = Field(
        description="HMAC key (base64, 32 bytes) of the cross-agency duplicate hashes."
    )
    duplicate_key_id: str = Field(
        default="k1",
        pattern=r"^[a-z0-9-]{1,20}$",
        description="Name of duplicate_key; change it together with the key to rotate.",
    )

    def secrets_to_check(self) -> dict[str, tuple[str | None, bool]]:
        return {
            **super().secrets_to_check(),
            "master_key": (self.master_key.get_secret_value(), True),
            "duplicate_key": (self.duplicate_key.get_secret_value(), True),
        }

    @field_validator("master_key", "duplicate_key")
    @classmethod
    def _valid_key(cls, value: SecretStr) -> SecretStr:
        decode_key(value)
        return value
