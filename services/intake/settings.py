"""Intake settings. Besides the common ones, the two secrets only intake holds."""

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.keys import decode_key
from shared.settings import ServiceSettings

from .follow_ups import Programme, parse_plan


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

    # Follow-up plans (issue 19, decision 21): waves in days after a case's registration.
    follow_up_plan: str = Field(
        default="baseline:0,month_3:90,month_6:180,month_12:365",
        description="The default follow-up plan: name:days after registration, comma-separated.",
    )
    follow_up_plans: dict[str, str] = Field(
        default_factory=dict,
        description='Owners\' own plans, JSON: {"ngo-x": "baseline:0,month_6:180"}.',
    )
    follow_up_reminder_days: int = Field(default=7, ge=0, le=365)
    follow_up_grace_days: int = Field(default=30, ge=0, le=365)
    follow_up_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("follow_up_plan")
    @classmethod
    def _valid_plan(cls, value: str) -> str:
        parse_plan(value)
        return value

    @field_validator("follow_up_plans")
    @classmethod
    def _valid_plans(cls, value: dict[str, str]) -> dict[str, str]:
        for plan in value.values():
            parse_plan(plan)
        return value

    def programme(self) -> Programme:
        return Programme(
            default=parse_plan(self.follow_up_plan),
            by_agency={a: parse_plan(p) for a, p in self.follow_up_plans.items()},
            reminder_days=self.follow_up_reminder_days,
            grace_days=self.follow_up_grace_days,
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
