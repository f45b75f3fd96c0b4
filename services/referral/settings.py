from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReferralSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="REFERRAL_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    http_port: int = 8002
    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Referrals tried per need before it is unmatched."
    )
    sla_seconds_override: float | None = Field(
        default=None,
        gt=0,
        description="Tests only: every decision deadline this many seconds after the request "
        "(normally from the listing's acceptance_sla_hours, else the urgency).",
    )
    reminder_at_fraction: float = Field(
        default=0.75,
        gt=0,
        lt=1,
        description="When, as a share of the time to the deadline, the recipient is reminded.",
    )
    timer_interval_s: float = Field(
        default=1.0, gt=0, description="How often deadlines (referrals, handovers) are checked."
    )
    handover_case_wait_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a handover proposal or request naming a case not yet read from "
        "intake.cases.v1 waits for it before it is refused with unknown_case.",
    )
