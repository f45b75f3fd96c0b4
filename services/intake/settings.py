"""Intake settings. Besides the common ones, the secrets only intake holds."""

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.keys import decode_key
from shared.settings import ServiceSettings

from .follow_ups import Programme, parse_plan
from .sealing import SubmissionKeys


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

    # ----- personal data off the broker (issue 22, decision 32) -----
    submission_key: SecretStr | None = Field(
        default=None,
        description="X25519 private key (base64, 32 bytes: head -c 32 /dev/urandom | base64) "
        "for which agencies seal a submission's personal block; its public key is published "
        "on intake.keys.v1. Unset: no sealed block can be opened.",
    )
    submission_previous_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated previous submission keys, still opened during a rotation "
        "(published as 'previous'); a key taken out of here is published as 'retired'.",
    )
    require_sealed_personal: bool = Field(
        default=False,
        description="Refuse a submission whose personal block is in clear (rejection "
        "personal_not_sealed): then no personal data reaches the broker's disk readable. "
        "Needs submission_key.",
    )
    trim_submissions: bool = Field(
        default=True,
        description="Delete each agency submissions partition's records up to what intake's "
        "group has applied and committed, so they stay on the broker minutes, not the "
        "topic's 30 days.",
    )
    trim_interval_s: float = Field(
        default=60.0, gt=0, description="How often the submissions partitions are trimmed."
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
        checked = {
            **super().secrets_to_check(),
            "master_key": (self.master_key.get_secret_value(), True),
            "duplicate_key": (self.duplicate_key.get_secret_value(), True),
        }
        # Optional: checked in production only when given (a sealed block needs none of the
        # others' strength rules, but a placeholder key would be everybody's).
        if self.submission_key is not None:
            checked["submission_key"] = (self.submission_key.get_secret_value(), True)
        for n, key in enumerate(self._previous_submission_keys()):
            checked[f"submission_previous_keys[{n}]"] = (key.get_secret_value(), True)
        return checked

    @field_validator("master_key", "duplicate_key", "submission_key")
    @classmethod
    def _valid_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_key(value)
        return value

    def _previous_submission_keys(self) -> list[SecretStr]:
        given = self.submission_previous_keys
        text = given.get_secret_value() if given is not None else ""
        return [SecretStr(part.strip()) for part in text.split(",") if part.strip()]

    @model_validator(mode="after")
    def _sealing_is_possible(self) -> Self:
        for n, key in enumerate(self._previous_submission_keys()):
            try:
                decode_key(key)
            except ValueError as exc:
                raise ValueError(f"submission_previous_keys[{n}] {exc}") from None
        if self.submission_key is None and self._previous_submission_keys():
            raise ValueError("submission_previous_keys needs a current submission_key")
        if self.require_sealed_personal and self.submission_key is None:
            raise ValueError(
                "require_sealed_personal needs submission_key: agencies could not seal at all"
            )
        return self

    def submission_keys(self) -> SubmissionKeys:
        """The key pairs that open the sealed personal blocks (none without submission_key)."""
        if self.submission_key is None:
            return SubmissionKeys()
        return SubmissionKeys.of(
            decode_key(self.submission_key),
            [decode_key(k) for k in self._previous_submission_keys()],
        )
