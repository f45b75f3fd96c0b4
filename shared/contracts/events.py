"""Payload models (pydantic v2) of the v1 topics, and the CloudEvents type of each.

Within a major version only optional fields may be added (tests/unit/test_contract_compat.py).
This is the walking-skeleton subset; the contracts issue completes the catalogue.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .envelope import event_type
from .topics import AGENCY_ID_PATTERN

AgencyId = Annotated[str, StringConstraints(pattern=f"^{AGENCY_ID_PATTERN}$")]
# Hierarchical administrative code in the humanitarian P-code style: country ISO2 + digits,
# each level extending its parent (e.g. "SN" ⊃ "SN01" ⊃ "SN0103").
AreaCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[0-9]{0,12}$")]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{1,63}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]


class Contract(BaseModel):
    """Base of every payload: unknown fields are refused so typos surface as errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["1"] = "1"


# ---------- shared value types ----------


class Urgency(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    NORMAL = "normal"


class Dimension(StrEnum):
    ECONOMIC = "economic"
    SOCIAL = "social"
    PSYCHOSOCIAL = "psychosocial"


class Need(Contract):
    need_id: ShortText
    category: Category
    dimension: Dimension
    urgency: Urgency = Urgency.NORMAL


class Profile(Contract):
    """Pseudonymous profile: what matching may see."""

    sex: Literal["female", "male", "other", "unknown"]
    age_band: Literal["0-17", "18-24", "25-34", "35-49", "50-64", "65+"]
    return_area: AreaCode
    languages: list[Language] = Field(default_factory=list, max_length=10)
    vulnerabilities: list[Category] = Field(default_factory=list, max_length=20)


class PersonalData(Contract):
    """Identifying data: stays in intake, never on a pseudonymous topic."""

    given_name: ShortText
    family_name: ShortText
    date_of_birth: date | None = None
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    email: Annotated[str, StringConstraints(max_length=200)] | None = None


class Consent(Contract):
    given: bool
    purposes: list[Category] = Field(default_factory=lambda: ["referral"])


# ---------- intake.submissions.v1 (agencies) ----------


class CaseSubmission(Contract):
    agency_id: AgencyId
    agency_case_ref: ShortText
    personal: PersonalData
    profile: Profile
    needs: list[Need] = Field(min_length=1, max_length=20)
    consent: Consent


CASE_SUBMITTED = event_type("intake", "case-submitted")


# ---------- intake.cases.v1 (intake) ----------


class CaseRegistered(Contract):
    case_id: ShortText
    submitting_agency_id: AgencyId
    profile: Profile
    needs: list[Need]
    consent: Consent


CASE_REGISTERED = event_type("intake", "case-registered")
# Same payload as CaseRegistered: the case as it stands after an agency resubmitted it.
CASE_UPDATED = event_type("intake", "case-updated")


# ---------- intake.rejections.v1 (intake) ----------


class FieldError(Contract):
    field: str
    message: str


class SubmissionRejected(Contract):
    submission_id: str
    agency_id: str | None = None
    reason: str
    errors: list[FieldError] = Field(default_factory=list)


SUBMISSION_REJECTED = event_type("intake", "submission-rejected")


# ---------- directory.services.v1 (provider agencies; compacted) ----------


class ListingStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    TEMPORARILY_CLOSED = "temporarily_closed"


class Capacity(StrEnum):
    HAS_CAPACITY = "has_capacity"
    WAITLIST = "waitlist"
    NO_CAPACITY = "no_capacity"


class ServiceListing(Contract):
    service_id: ShortText
    agency_id: AgencyId
    name: ShortText
    status: ListingStatus = ListingStatus.ACTIVE
    categories: list[Category] = Field(min_length=1, max_length=20)
    coverage_areas: list[AreaCode] = Field(min_length=1, max_length=200)
    languages: list[Language] = Field(default_factory=list)
    capacity: Capacity = Capacity.HAS_CAPACITY


SERVICE_LISTED = event_type("directory", "service-listed")


# ---------- directory.agencies.v1 (operators; compacted) ----------


class AgencyType(StrEnum):
    UN_AGENCY = "un_agency"
    GOVERNMENT = "government"
    NGO = "ngo"
    DEVELOPMENT_PROGRAMME = "development_programme"
    PRIVATE = "private"


class AgencyRecord(Contract):
    agency_id: AgencyId
    name: ShortText
    type: AgencyType
    countries: list[Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]] = Field(min_length=1)
    public_key: str | None = Field(default=None, max_length=200)


AGENCY_REGISTERED = event_type("directory", "agency-registered")


# ---------- referral.events.v1 (referral) ----------


class MatchExplanation(Contract):
    matched: list[str]
    score: float
    components: dict[str, float]


class ReferralRequested(Contract):
    referral_id: ShortText
    case_id: ShortText
    need_id: ShortText
    category: Category
    urgency: Urgency
    referring_agency_id: AgencyId
    recipient_agency_id: AgencyId
    service_id: ShortText
    explanation: MatchExplanation


REFERRAL_REQUESTED = event_type("referral", "referral-requested")


class NeedUnmatched(Contract):
    case_id: ShortText
    need_id: ShortText
    category: Category
    referring_agency_id: AgencyId
    reason: str


NEED_UNMATCHED = event_type("referral", "need-unmatched")


# ---------- agency.<id>.inbox.v1 (notification) ----------


class InboxReferralReceived(Contract):
    """Told to the recipient agency: a referral for one of its services awaits an answer."""

    referral_id: ShortText
    case_id: ShortText
    need_id: ShortText
    category: Category
    urgency: Urgency
    service_id: ShortText
    referring_agency_id: AgencyId


INBOX_REFERRAL_RECEIVED = event_type("notification", "referral-received")


# Every CloudEvents type of the v1 topics and its payload model (docs and the compat guard use it).
PAYLOADS: dict[str, type[Contract]] = {
    CASE_SUBMITTED: CaseSubmission,
    CASE_REGISTERED: CaseRegistered,
    CASE_UPDATED: CaseRegistered,
    SUBMISSION_REJECTED: SubmissionRejected,
    SERVICE_LISTED: ServiceListing,
    AGENCY_REGISTERED: AgencyRecord,
    REFERRAL_REQUESTED: ReferralRequested,
    NEED_UNMATCHED: NeedUnmatched,
    INBOX_REFERRAL_RECEIVED: InboxReferralReceived,
}
