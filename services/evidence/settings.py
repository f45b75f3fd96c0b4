from pydantic import Field
from pydantic_settings import SettingsConfigDict

from .web.config import DashboardSettings


class EvidenceSettings(DashboardSettings):
    model_config = SettingsConfigDict(
        env_prefix="EVIDENCE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    http_port: int = 8004
    k: int = Field(
        default=5,
        ge=2,
        le=100,
        description="Smallest number of distinct cases a published cell may count; smaller "
        "cells (and the cells that would give them away by subtraction) are suppressed.",
    )
    publish_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="How often the aggregates are computed and those whose figures changed "
        "published on evidence.aggregates.v1.",
    )
