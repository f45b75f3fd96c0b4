"""The read model's facts as plain data: what the store loads and the aggregation counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class CaseFact:
    """A case as the aggregates see it: no birth year, nationality or free text."""

    case_id: str
    owner_agency_id: str
    level: str
    area: str
    sex: str | None
    age_band: str | None
    vulnerabilities: tuple[str, ...]
    statistics: bool = True  # the consent lets it count (only such cases are loaded to count)


@dataclass(frozen=True, slots=True)
class NeedFact:
    case_id: str
    need_id: str
    category: str
    dimension: str
    level: str


@dataclass(frozen=True, slots=True)
class ReferralFact:
    referral_id: str
    case_id: str
    need_id: str
    category: str
    provider_id: str
    requested_at: datetime
    answered_at: datetime | None
    state: str
    accepted: bool


@dataclass(frozen=True, slots=True)
class UnmetFact:
    case_id: str
    need_id: str
    category: str
    reason: str
    unmatched_at: datetime


@dataclass(frozen=True, slots=True)
class HandoverFact:
    handover_id: str
    case_id: str
    state: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AssessmentFact:
    case_id: str
    wave: str
    assessed_on: date
    economic: float | None
    social: float | None
    psychosocial: float | None
    composite: float | None


@dataclass(frozen=True, slots=True)
class FollowUpFact:
    case_id: str
    wave: str
    due_on: date
    stage: str


@dataclass(frozen=True, slots=True)
class Facts:
    cases: tuple[CaseFact, ...] = ()
    needs: tuple[NeedFact, ...] = ()
    referrals: tuple[ReferralFact, ...] = ()
    unmet: tuple[UnmetFact, ...] = ()
    handovers: tuple[HandoverFact, ...] = ()
    assessments: tuple[AssessmentFact, ...] = ()
    follow_ups: tuple[FollowUpFact, ...] = ()
