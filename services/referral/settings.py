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
    structural_district_digits: int = Field(
        default=4,
        ge=0,
        le=8,
        description="Structural gaps: digits of the return area after the country that make a "
        "district (0 the country; 4 by default).",
    )
    structural_period_days: int = Field(
        default=30,
        ge=1,
        le=366,
        description="Structural gaps: the length of a period, fixed windows counted from "
        "1970-01-01 UTC; a district and category is reported at most once per period.",
    )
    structural_threshold: int = Field(
        default=3,
        ge=1,
        description="Structural gaps: unmet needs of one category in one district within one "
        "period that make a gap.",
    )
    structural_interval_s: float = Field(
        default=60.0, gt=0, description="How often clusters of unmet needs are counted."
    )
