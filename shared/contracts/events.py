"""Payload models (pydantic v2) of every v1 topic, and the CloudEvents type of each.

Rules every model follows:
- ``schema_version`` is "1" for the whole v1 line; inside a major version only optional fields
  may be added (guarded by tests/unit/test_contract_compat.py against docs/schemas/).
- unknown fields are refused (``extra="forbid"``): a typo is an error, not silently dropped data;
- closed vocabularies come from the taxonomy (shared/contracts/taxonomy/v1.json), field formats
  from shared/contracts/types.py.
- Personal data exists only in :class:`PersonalData` (and the sealed :class:`DisclosedContact`),
  which only ``agency.<id>.submissions.v1`` carries in clear. The models of ``intake.cases.v1`` and
  ``referral.events.v1`` have no field that can hold a name, a contact, a document or free text.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from .envelope import event_type
from .json_schema import FILLED_FROM, JsonDict, restate, restating
from .taxonomy import (
    TAXONOMY,
    BeneficiaryType,
    CategoryCode,
    Dimension,
    Level,
    ReasonCode,
    ReturnType,
    Urgency,
    Vulnerability,
)
from .types import (
    EMAIL_PATTERN,
    MAX_CATEGORIES_PER_SERVICE,
    MAX_COVERAGE_AREAS,
    MAX_LANGUAGES,
    MAX_LIST_ITEMS,
    MAX_NEEDS,
    MAX_VULNERABILITIES,
    PHONE_PATTERN,
    AgencyId,
    AreaCode,
    BirthYear,
    CountryCode,
    Email,
    Identifier,
    LanguageCode,
    LongText,
    Name,
    PastDate,
    PastDatetime,
    Phone,
    ShortText,
    country_of,
)


class Part(BaseModel):
    """Base of every model: immutable, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Contract(Part):
    """Base of every top-level payload: it also says which schema version it follows."""

    schema_version: Literal["1"] = "1"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class AgeBand(StrEnum):
    A0_4 = "0-4"
    A5_11 = "5-11"
    A12_17 = "12-17"
    A18_24 = "18-24"
    A25_34 = "25-34"
    A35_49 = "35-49"
    A50_64 = "50-64"
    A65_PLUS = "65+"

    @classmethod
    def of_birth_year(cls, birth_year: int, today: date) -> AgeBand:
        """The band of someone born in ``birth_year``, as of ``today`` (what referral and
        evidence keep of an erased case, and evidence of any case, instead of the year)."""
        age = today.year - birth_year
        return next((band for top, band in _BAND_TOPS if age <= top), cls.A65_PLUS)


# Upper age of each band but the last.
_BAND_TOPS = (
    (4, AgeBand.A0_4),
    (11, AgeBand.A5_11),
    (17, AgeBand.A12_17),
    (24, AgeBand.A18_24),
    (34, AgeBand.A25_34),
    (49, AgeBand.A35_49),
    (64, AgeBand.A50_64),
)


class AgencyType(StrEnum):
    UN_AGENCY = "un_agency"
    GOVERNMENT = "government"
    NGO = "ngo"
    DEVELOPMENT_PROGRAMME = "development_programme"
    PRIVATE = "private"


def _unique(values: list[Any], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")


# ----- rules of model validators, restated for the published JSON Schemas -----
# (ops/contract_docs.py publishes model_json_schema(); tests/unit/test_schemas.py checks that an
# independent validator and the models agree on every example.)

# The keyword a list field that must not repeat gets in its schema.
UNIQUE: JsonDict = restating({"uniqueItems": True})


def _when(field: str, value: Any, then: JsonDict) -> JsonDict:
    """``if field == value then ...`` (a field left out does not match)."""
    return {"if": {"required": [field], "properties": {field: {"const": value}}}, "then": then}


def _all_of(*rules: JsonDict) -> Any:
    def extra(schema: JsonDict) -> None:
        restate(schema, {"allOf": [*schema.get("allOf", ()), *rules]})

    return extra


# =====================================================================================
# agency.<id>.submissions.v1 — written by the agency
# =====================================================================================


class ContactKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"
    OTHER = "other"


_CONTACT_FORMATS: dict[ContactKind, TypeAdapter[str]] = {
    ContactKind.PHONE: TypeAdapter(Phone),
    ContactKind.EMAIL: TypeAdapter(Email),
}


class Contact(Part):
    model_config = ConfigDict(
        json_schema_extra=_all_of(
            _when("kind", "phone", {"properties": {"value": {"pattern": PHONE_PATTERN}}}),
            _when("kind", "email", {"properties": {"value": {"pattern": EMAIL_PATTERN}}}),
        )
    )

    kind: ContactKind
    value: ShortText
    preferred: bool = False

    @model_validator(mode="after")
    def _format_per_kind(self) -> Self:
        checker = _CONTACT_FORMATS.get(self.kind)
        if checker is not None:
            try:
                checker.validate_python(self.value)
            except ValidationError:
                raise ValueError(f"value is not a valid {self.kind.value}") from None
        return self


class DocumentKind(StrEnum):
    PASSPORT = "passport"
    NATIONAL_ID = "national_id"
    TRAVEL_DOCUMENT = "travel_document"
    BIRTH_CERTIFICATE = "birth_certificate"
    OTHER = "other"


class IdentityDocument(Part):
    kind: DocumentKind
    number: Identifier
    issuing_country: CountryCode
    expires_on: date | None = None


class PersonalData(Part):
    """Identifying data. Stays in intake (encrypted at rest); never on a pseudonymous topic."""

    given_name: Name
    family_name: Name
    other_names: list[Name] = Field(default_factory=list, max_length=5)
    date_of_birth: PastDate | None = None
    contacts: list[Contact] = Field(default_factory=list, max_length=10)
    documents: list[IdentityDocument] = Field(default_factory=list, max_length=10)
    preferred_language: LanguageCode | None = None


# A SHA-256 fingerprint of a raw X25519 public key, lower-case hex (as the disclosures name
# their recipient's key).
KeySha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# Room for the largest PersonalData there is (every list at its limit, every text at its
# longest), sealed and in base64, well inside the submissions topic's 256 KiB.
MAX_SEALED_PERSONAL_CHARS = 200_000


class SealedPersonal(Part):
    """The ``personal`` block sealed for intake (issue 22, decision 32), so that the broker's
    disk never holds it in clear: a libsodium sealed box (``crypto_box_seal``, X25519) of
    PersonalData's JSON, for intake's submission key that ``key_sha256`` names (the keys are
    published on ``intake.keys.v1``). Only intake can open it; it opens it before
    anything else and answers a box it cannot open, or whose content is not a valid
    PersonalData, with a rejection (``error``: sealed_key_unknown, sealed_box_unopenable,
    sealed_personal_invalid)."""

    sealed_box: Annotated[
        str, Field(max_length=MAX_SEALED_PERSONAL_CHARS, pattern=r"^[A-Za-z0-9+/]+={0,2}$")
    ]
    key_sha256: KeySha256


def _clear_or_sealed(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A ``personal`` block is validated as the one form it is (a sealed one names its
    ``sealed_box``), so that a bad block's errors name its own fields (``personal.given_name``)
    and not both forms' (pydantic's union would report each alternative, under its name)."""
    if isinstance(value, PersonalData | SealedPersonal):
        return value
    if isinstance(value, dict) and "sealed_box" in value:
        return SealedPersonal.model_validate(value)
    return PersonalData.model_validate(value)


#: ``personal`` as a submission carries it: in clear, or sealed for intake (issue 22).
PersonalBlock = Annotated[PersonalData | SealedPersonal, WrapValidator(_clear_or_sealed)]


class Profile(Part):
    """Pseudonymous profile: all that matching may see. Birth year or age band, not a birth date."""

    model_config = ConfigDict(
        json_schema_extra=_all_of(
            {
                "anyOf": [
                    {"required": [f], "properties": {f: {"not": {"type": "null"}}}}
                    for f in ("birth_year", "age_band")
                ]
            }
        )
    )

    sex: Sex
    birth_year: BirthYear | None = None
    age_band: AgeBand | None = None
    nationality: CountryCode
    return_country: CountryCode
    return_date: PastDate
    return_type: ReturnType
    return_area: AreaCode
    languages: list[LanguageCode] = Field(
        default_factory=list, max_length=MAX_LANGUAGES, json_schema_extra=UNIQUE
    )
    vulnerabilities: list[Vulnerability] = Field(
        default_factory=list, max_length=MAX_VULNERABILITIES, json_schema_extra=UNIQUE
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.birth_year is None and self.age_band is None:
            raise ValueError("give birth_year or age_band")
        if country_of(self.return_area) != self.return_country:
            raise ValueError("return_area must lie in return_country")
        _unique(self.languages, "languages")
        _unique(self.vulnerabilities, "vulnerabilities")
        return self


# ``dimension`` may be given only as its category's (a category code starts with its dimension:
# ``social.housing``).
_NEED_RULES = _all_of(
    *(
        _when("dimension", d.value, {"properties": {"category": {"pattern": f"^{d.value}[.]"}}})
        for d in Dimension
    )
)


def _dimension_from_category(data: Any) -> Any:
    """A body without ``dimension`` gets its category's (the rule of _NEED_RULES)."""
    if isinstance(data, dict) and "dimension" not in data:
        category = data.get("category")
        if isinstance(category, str) and TAXONOMY.is_category(category):
            return {**data, "dimension": TAXONOMY.dimension_of(category)}
    return data


def _check_dimension(category: str, dimension: Dimension) -> None:
    if TAXONOMY.dimension_of(category) != dimension:
        raise ValueError("dimension does not match the category's dimension")


class Need(Part):
    """One need. ``dimension`` may be omitted: it follows from the category (and is always
    present on the events the services write)."""

    model_config = ConfigDict(json_schema_extra=_NEED_RULES)

    need_id: Identifier
    category: CategoryCode
    # Senders may leave it out (the exporter publishes it so for the types agencies send).
    dimension: Annotated[Dimension, Field(json_schema_extra={FILLED_FROM: "category"})]
    level: Level = Level.INDIVIDUAL
    urgency: Urgency = Urgency.NORMAL
    # Caseworker control (issue 18): the need is not routed on arrival; its referrer is sent
    # the ranked alternatives and chooses (referrer-instruction-submitted).
    hold_for_referrer: bool = False

    @model_validator(mode="before")
    @classmethod
    def _dimension_from_category(cls, data: Any) -> Any:
        return _dimension_from_category(data)

    @model_validator(mode="after")
    def _dimension_matches(self) -> Self:
        _check_dimension(self.category, self.dimension)
        return self


class ConsentPurpose(StrEnum):
    REFERRAL = "referral"  # share with service providers to refer the returnee
    FOLLOW_UP = "follow_up"  # providers may report back on the outcome
    STATISTICS = "statistics"  # anonymised use in evidence on pathways and gaps


class ConsentScope(Part):
    """What the returnee agreed to. A list left out means "no restriction on this criterion"."""

    purposes: list[ConsentPurpose] = Field(min_length=1, max_length=len(ConsentPurpose))
    agency_ids: list[AgencyId] | None = Field(default=None, max_length=MAX_LIST_ITEMS)
    agency_types: list[AgencyType] | None = Field(default=None, max_length=len(AgencyType))
    categories: list[CategoryCode] | None = Field(default=None, max_length=MAX_LIST_ITEMS)
    expires_on: date | None = None


class Consent(Part):
    model_config = ConfigDict(
        json_schema_extra=_all_of(
            {
                "if": {"properties": {"given": {"const": True}}},
                "then": {"required": ["scope"], "properties": {"scope": {"type": "object"}}},
                "else": {"properties": {"scope": {"type": "null"}}},
            }
        )
    )

    given: bool
    scope: ConsentScope | None = None
    recorded_at: PastDatetime
    method: Literal["written", "verbal", "digital"]

    @model_validator(mode="after")
    def _scope_iff_given(self) -> Self:
        if self.given and self.scope is None:
            raise ValueError("a given consent needs its scope")
        if not self.given and self.scope is not None:
            raise ValueError("a refused consent has no scope")
        return self

    def covers(self, purpose: ConsentPurpose) -> bool:
        return self.given and self.scope is not None and purpose in self.scope.purposes


class CaseSubmission(Contract):
    """A new case, or the whole case again (same agency + agency_case_ref updates it)."""

    agency_id: AgencyId
    agency_case_ref: Identifier
    personal: PersonalBlock
    profile: Profile
    needs: list[Need] = Field(min_length=1, max_length=MAX_NEEDS)
    consent: Consent

    @model_validator(mode="after")
    def _unique_needs(self) -> Self:
        _unique([n.need_id for n in self.needs], "need_id")
        return self


class CaseUpdate(Contract):
    """A partial update of an existing case: only the blocks given are replaced."""

    model_config = ConfigDict(
        json_schema_extra=_all_of(
            {
                "anyOf": [
                    {"required": [f], "properties": {f: {"not": {"type": "null"}}}}
                    for f in ("personal", "profile", "needs", "consent")
                ]
            }
        )
    )

    agency_id: AgencyId
    agency_case_ref: Identifier
    personal: PersonalBlock | None = None
    profile: Profile | None = None
    needs: list[Need] | None = Field(default=None, min_length=1, max_length=MAX_NEEDS)
    consent: Consent | None = None

    @model_validator(mode="after")
    def _something_to_update(self) -> Self:
        if not (self.personal or self.profile or self.needs or self.consent):
            raise ValueError("give at least one of personal, profile, needs, consent")
        if self.needs:
            _unique([n.need_id for n in self.needs], "need_id")
        return self


class ConsentWithdrawal(Contract):
    agency_id: AgencyId
    agency_case_ref: Identifier
    withdrawn_at: PastDatetime
    purposes: list[ConsentPurpose] | None = None  # None: everything


class ErasureRequest(Contract):
    agency_id: AgencyId
    agency_case_ref: Identifier
    requested_at: PastDatetime
    basis: Literal["data_subject_request", "retention_expired", "entered_in_error"]


class ClosureReason(StrEnum):
    COMPLETED = "completed"
    RETURNEE_DECLINED = "returnee_declined"
    RELOCATED = "relocated"
    LOST_CONTACT = "lost_contact"
    DECEASED = "deceased"
    OTHER = "other"


class OpenReferralsOnClosure(StrEnum):
    """What closing a case does to its referrals still open with providers."""

    CANCEL = "cancel"  # each is cancelled; its provider hears it (the default)
    CONTINUE = "continue"  # each goes on; its provider hears the case is closed by its owner


class CaseClosure(Contract):
    agency_id: AgencyId
    agency_case_ref: Identifier
    closed_at: PastDatetime
    reason: ClosureReason
    open_referrals: OpenReferralsOnClosure = OpenReferralsOnClosure.CANCEL


class AssistanceEndReason(StrEnum):
    COMPLETED = "completed"  # the programme's assistance plan is done
    BUDGET_ENDED = "budget_ended"
    PROGRAMME_ENDED = "programme_ended"
    RETURNEE_MOVED = "returnee_moved"
    CONTACT_LOST = "contact_lost"


class AssistanceEnd(Contract):
    """The owner ends *its own* assistance: the case stays open, referrals with other providers
    go on, and their providers are told (a closure is a separate act)."""

    agency_id: AgencyId
    agency_case_ref: Identifier
    ended_at: PastDatetime
    reason: AssistanceEndReason


CASE_SUBMITTED = event_type("intake", "case-submitted")
CASE_UPDATE_SUBMITTED = event_type("intake", "case-update-submitted")
CONSENT_WITHDRAWN = event_type("intake", "consent-withdrawn")
ERASURE_REQUESTED = event_type("intake", "erasure-requested")
CASE_CLOSURE_SUBMITTED = event_type("intake", "case-closure-submitted")
ASSISTANCE_END_SUBMITTED = event_type("intake", "assistance-end-submitted")


# ----- issue 18 community needs and levels -----

#: Fields of a case submission that hold personal data: a community need carrying one is refused
#: field by field (it describes a community, never a person).
PERSONAL_FIELDS = (
    "personal",
    "profile",
    "given_name",
    "family_name",
    "other_names",
    "date_of_birth",
    "birth_year",
    "contacts",
    "documents",
    "preferred_language",
    "consent",
)


class CommunityNeedSubmission(Contract):
    """A need of a community (a village, a neighbourhood) an agency reports: who is affected is
    counted, never named. Submitting the same ``agency_case_ref`` again updates it; a
    case-closure-submitted or erasure-requested with that reference closes or erases it.
    ``description`` is free text: intake keeps it encrypted and seals it to the recipient only."""

    model_config = ConfigDict(json_schema_extra=_NEED_RULES)

    agency_id: AgencyId
    agency_case_ref: Identifier
    area: AreaCode
    category: CategoryCode
    dimension: Annotated[Dimension, Field(json_schema_extra={FILLED_FROM: "category"})]
    urgency: Urgency = Urgency.NORMAL
    people_affected: int = Field(ge=1, le=10_000_000)
    returnee_share: float = Field(ge=0, le=1)
    description: LongText = ""

    @model_validator(mode="before")
    @classmethod
    def _dimension_from_category(cls, data: Any) -> Any:
        return _dimension_from_category(data)

    @model_validator(mode="after")
    def _dimension_matches(self) -> Self:
        _check_dimension(self.category, self.dimension)
        return self


COMMUNITY_NEED_SUBMITTED = event_type("intake", "community-need-submitted")
# ----- issue 18 consent follow-through -----


class ErasureConfirmation(Contract):
    """A recipient of a disclosure confirms it erased what it received for one referral (after
    a referral-cancelled with ``erase_received_data``, or of its own accord). Sent on the
    recipient's own submissions topic, keyed by ``referral_id`` (it has no agency_case_ref of
    the case: the owner's reference is the owner's)."""

    agency_id: AgencyId
    referral_id: Identifier
    erased_at: PastDatetime


ERASURE_CONFIRMATION_SUBMITTED = event_type("intake", "erasure-confirmation-submitted")


# ----- issue 19 follow-ups and outcomes -----

#: Answers of one assessment at most: one per indicator of the largest indicator set.
MAX_ANSWERS = 40


class AssessmentAnswer(Part):
    """One indicator's answer: an option code of the indicator's scale in the indicator set
    (shared/contracts/outcomes/, e.g. rss-v1.json). No free text."""

    indicator: Identifier
    answer: Identifier


class AssessmentSubmission(Contract):
    """The owner's follow-up assessment of a case (modelled on IOM's Reintegration
    Sustainability Survey): which wave of the follow-up plan it answers, when it was taken,
    and one option code per indicator. Sent on the owner's own submissions topic, keyed by
    ``case_id``; a second assessment of the same case and wave replaces the first (a
    correction). Refused unless the case is the sender's, open, and its consent includes
    ``follow_up``."""

    agency_id: AgencyId
    case_id: Identifier
    wave: Identifier  # a wave of the owner's follow-up plan: baseline, month_3, month_6, ...
    assessed_on: PastDate
    indicator_set: Identifier = "rss-v1"
    answers: list[AssessmentAnswer] = Field(min_length=1, max_length=MAX_ANSWERS)

    @model_validator(mode="after")
    def _one_answer_per_indicator(self) -> Self:
        _unique([a.indicator for a in self.answers], "answers[].indicator")
        return self


ASSESSMENT_SUBMITTED = event_type("intake", "assessment-submitted")


# =====================================================================================
# agency.<id>.listings.v1 — written by the provider agency (compacted; Open Referral HSDS names)
# =====================================================================================


class ListingStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    TEMPORARILY_CLOSED = "temporarily_closed"


class CapacityStatus(StrEnum):
    HAS_CAPACITY = "has_capacity"
    WAITLIST = "waitlist"
    NO_CAPACITY = "no_capacity"


class Capacity(Part):
    model_config = ConfigDict(
        json_schema_extra=_all_of(
            _when("status", "no_capacity", {"properties": {"open_slots": {"enum": [0, None]}}})
        )
    )

    status: CapacityStatus = CapacityStatus.HAS_CAPACITY
    open_slots: int | None = Field(default=None, ge=0, le=100_000)

    @model_validator(mode="after")
    def _slots_fit_status(self) -> Self:
        if self.status is CapacityStatus.NO_CAPACITY and self.open_slots:
            raise ValueError("no_capacity cannot have open slots")
        return self


class Eligibility(Part):
    minimum_age: int | None = Field(default=None, ge=0, le=120)  # HSDS minimum_age
    maximum_age: int | None = Field(default=None, ge=0, le=120)  # HSDS maximum_age
    sexes: list[Sex] | None = Field(default=None, max_length=len(Sex))  # None: any
    beneficiary_types: list[BeneficiaryType] = Field(
        default_factory=lambda: [BeneficiaryType.RETURNEE], min_length=1
    )
    vulnerability_specialisations: list[Vulnerability] = Field(
        default_factory=list, max_length=MAX_VULNERABILITIES
    )
    eligibility_description: LongText | None = None  # HSDS eligibility_description

    @model_validator(mode="after")
    def _age_range(self) -> Self:
        low, high = self.minimum_age, self.maximum_age
        if low is not None and high is not None and low > high:
            raise ValueError("minimum_age is above maximum_age")
        return self


class ServiceListing(Contract):
    """One service of a provider, aligned with Open Referral HSDS field names where they exist."""

    service_id: Identifier
    agency_id: AgencyId  # the organisation (HSDS organization_id)
    name: ShortText
    alternate_name: ShortText | None = None
    description: LongText | None = None
    url: Annotated[str, Field(pattern=r"^https://\S{1,500}$")] | None = None
    email: Email | None = None  # the service's public contact, never a person's
    status: ListingStatus = ListingStatus.ACTIVE
    categories: list[CategoryCode] = Field(
        min_length=1, max_length=MAX_CATEGORIES_PER_SERVICE, json_schema_extra=UNIQUE
    )
    service_areas: list[AreaCode] = Field(
        min_length=1, max_length=MAX_COVERAGE_AREAS, json_schema_extra=UNIQUE
    )
    languages: list[LanguageCode] = Field(default_factory=list, max_length=MAX_LANGUAGES)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    capacity: Capacity = Field(default_factory=Capacity)
    acceptance_sla_hours: int | None = Field(default=None, ge=1, le=24 * 90)
    fees: Literal["free", "subsidised", "fee_based"] = "free"
    fees_description: ShortText | None = None  # HSDS fees_description
    assured_date: PastDate  # HSDS: when the listing was last verified
    # The programme takes cases over for the long run (follow-up, a government service): it is
    # proposed as a next owner when another programme's assistance ends with needs open.
    takes_over_cases: bool = False
    # issue 18: the levels the service works at (IOM's integrated approach); with
    # eligibility.beneficiary_types it says whom it serves: an individual need goes only to a
    # listing of level individual serving returnees, a community need only to one of level
    # community serving community members.
    levels: list[Level] = Field(
        default_factory=lambda: [Level.INDIVIDUAL],
        min_length=1,
        max_length=len(Level),
        json_schema_extra=UNIQUE,
    )

    @model_validator(mode="after")
    def _no_repeats(self) -> Self:
        _unique(self.categories, "categories")
        _unique(self.service_areas, "service_areas")
        _unique(self.levels, "levels")
        return self


SERVICE_LISTED = event_type("directory", "service-listed")


# =====================================================================================
# directory.agencies.v1 — written by operator tooling (compacted)
# =====================================================================================


# 32 bytes in standard base64: 43 characters and one "=" of padding.
_PUBLIC_KEY_PATTERN = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"


def _x25519_public_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public_key must be standard base64") from None
    if len(raw) != 32:
        raise ValueError("public_key must be a 32-byte X25519 key (44 base64 characters)")
    return value


class AgencyRecord(Contract):
    agency_id: AgencyId
    name: ShortText
    type: AgencyType
    countries: list[CountryCode] = Field(min_length=1, max_length=MAX_LIST_ITEMS)
    # For sealed disclosures (libsodium sealed box, X25519); without it no personal data is sent.
    public_key: (
        Annotated[
            str,
            Field(max_length=60, json_schema_extra=restating({"pattern": _PUBLIC_KEY_PATTERN})),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _key(self) -> Self:
        if self.public_key is not None:
            _x25519_public_key(self.public_key)
        return self


AGENCY_REGISTERED = event_type("directory", "agency-registered")


# =====================================================================================
# agency.<id>.responses.v1 — written by the recipient agency
# =====================================================================================


class ReferralState(StrEnum):
    REQUESTED = "requested"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ENTERED_IN_ERROR = "entered_in_error"


class ResponseAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ACCEPT = "accept"
    REJECT = "reject"
    START = "start"
    HOLD = "hold"
    RESUME = "resume"
    COMPLETE = "complete"
    FAIL = "fail"


# The state each answer leads to; which answers a state allows is the referral service's rule.
ACTION_TARGET: dict[ResponseAction, ReferralState] = {
    ResponseAction.ACKNOWLEDGE: ReferralState.RECEIVED,
    ResponseAction.ACCEPT: ReferralState.ACCEPTED,
    ResponseAction.REJECT: ReferralState.REJECTED,
    ResponseAction.START: ReferralState.IN_PROGRESS,
    ResponseAction.HOLD: ReferralState.ON_HOLD,
    ResponseAction.RESUME: ReferralState.IN_PROGRESS,
    ResponseAction.COMPLETE: ReferralState.COMPLETED,
    ResponseAction.FAIL: ReferralState.FAILED,
}


class Outcome(StrEnum):
    ACHIEVED = "achieved"
    PARTIALLY_ACHIEVED = "partially_achieved"
    NOT_ACHIEVED = "not_achieved"


_NEEDS_REASON = (ReferralState.REJECTED, ReferralState.ON_HOLD, ReferralState.FAILED)


def _response_rules() -> list[JsonDict]:
    """Per action: which reason codes apply (required for reject, hold and fail), and an
    outcome with complete only."""
    rules: list[JsonDict] = []
    for action, target in ACTION_TARGET.items():
        reasons: list[Any] = [r.value for r in TAXONOMY.reasons_for(target.value)]
        complete = action is ResponseAction.COMPLETE
        then: JsonDict = {
            "properties": {
                "reason_code": {"enum": reasons if target in _NEEDS_REASON else [*reasons, None]},
                "outcome": {"not": {"type": "null"}} if complete else {"type": "null"},
            },
            "required": [
                *(["reason_code"] if target in _NEEDS_REASON else []),
                *(["outcome"] if complete else []),
            ],
        }
        rules.append(_when("action", action.value, then))
    return rules


class ReferralResponse(Contract):
    """An answer to a referral. ``note`` is for the audit trail of the referral service and must
    not contain personal data; it is not forwarded on referral.events.v1."""

    model_config = ConfigDict(json_schema_extra=_all_of(*_response_rules()))

    referral_id: Identifier
    agency_id: AgencyId
    action: ResponseAction
    reason_code: ReasonCode | None = None
    outcome: Outcome | None = None
    note: LongText | None = None
    responded_at: PastDatetime

    @model_validator(mode="after")
    def _reason_and_outcome(self) -> Self:
        target = ACTION_TARGET[self.action]
        needs_reason = target in _NEEDS_REASON
        if needs_reason and self.reason_code is None:
            raise ValueError(f"{self.action.value} needs a reason_code")
        if self.reason_code is not None and not TAXONOMY.reason_applies(
            self.reason_code, target.value
        ):
            raise ValueError(
                f"reason_code {self.reason_code.value} does not apply to {self.action.value}"
            )
        if (self.action is ResponseAction.COMPLETE) != (self.outcome is not None):
            raise ValueError("an outcome is given with complete, and only with complete")
        return self


RESPONSE_SUBMITTED = event_type("referral", "response-submitted")


class HandoverReason(StrEnum):
    PROGRAMME_ENDED = "programme_ended"  # the proposer's programme or budget ends
    LONG_TERM_SUPPORT = "long_term_support"  # needs outlast short-term assistance
    GOVERNMENT_SERVICE = "government_service"  # an institution of the country takes over
    RETURNEE_MOVED = "returnee_moved"
    OTHER = "other"


class HandoverProposal(Contract):
    """The owner offers its case to another registered agency, on the owner's responses topic.
    ``consent``: a new consent record covering the new owner, if the current one does not."""

    case_id: Identifier
    agency_id: AgencyId  # the owner, who sends it
    to_agency_id: AgencyId
    reason: HandoverReason
    respond_by: AwareDatetime
    consent: Consent | None = None


class HandoverRequest(Contract):
    """An agency asks the owner for a case, on the requester's responses topic;
    ``agency_case_ref``: the reference it will keep the case under if the owner approves."""

    case_id: Identifier
    agency_id: AgencyId  # the requester, who sends it
    agency_case_ref: Identifier
    reason: HandoverReason
    respond_by: AwareDatetime


class HandoverAction(StrEnum):
    ACCEPT = "accept"  # an offer accepted by the receiver, or a request approved by the owner
    REJECT = "reject"


class HandoverDeclineReason(StrEnum):
    NO_CAPACITY = "no_capacity"
    NOT_IN_MANDATE = "not_in_mandate"
    AREA_NOT_COVERED = "area_not_covered"
    OWNER_CONTINUES = "owner_continues"  # the owner keeps the case (a request refused)
    OTHER = "other"


def _handover_answer_rules(schema: JsonDict) -> None:
    _all_of(_when("action", "reject", {"required": ["reason"]}))(schema)
    # Published after the first version (as a keyword of its own, so the guard sees a rule the
    # service already enforced, not a change): no reason with accept.
    restate(schema, _when("action", "accept", {"properties": {"reason": {"type": "null"}}}))


class HandoverAnswer(Contract):
    """The answer of the agency a handover waits on (the receiver of an offer, the owner asked
    by a request), on its responses topic. Accepting an offer names the ``agency_case_ref`` the
    new owner will use; rejecting gives a reason."""

    model_config = ConfigDict(json_schema_extra=_handover_answer_rules)

    handover_id: Identifier
    case_id: Identifier
    agency_id: AgencyId  # the answering agency
    action: HandoverAction
    agency_case_ref: Identifier | None = None
    reason: HandoverDeclineReason | None = None

    @model_validator(mode="after")
    def _reason(self) -> Self:
        if self.action is HandoverAction.REJECT and self.reason is None:
            raise ValueError("reject needs a reason")
        if self.action is HandoverAction.ACCEPT and self.reason is not None:
            raise ValueError("a reason is given with reject only")
        return self


HANDOVER_PROPOSAL_SUBMITTED = event_type("referral", "handover-proposal-submitted")
HANDOVER_REQUEST_SUBMITTED = event_type("referral", "handover-request-submitted")
HANDOVER_ANSWER_SUBMITTED = event_type("referral", "handover-answer-submitted")


# ----- issue 18 structural gaps -----


class CommitmentKind(StrEnum):
    PLANNED_LISTING = "planned_listing"  # a service will be listed to close the gap
    NOT_PLANNED = "not_planned"


class NotPlannedReason(StrEnum):
    NO_BUDGET = "no_budget"
    NOT_IN_MANDATE = "not_in_mandate"  # another institution is responsible
    OTHER_PRIORITIES = "other_priorities"
    COVERED_ELSEWHERE = "covered_elsewhere"  # served nearby, or by a programme not listed
    OTHER = "other"


class PlannedListing(Part):
    """A listing the agency plans to publish by ``planned_by`` (``service_id``: the id it will
    have, if known; a service of another agency is refused)."""

    kind: Literal["planned_listing"]
    service_id: Identifier | None = None
    planned_by: date


class NotPlanned(Part):
    """Nothing is planned, and why. ``note`` stays in referral's database (never on a topic);
    like every note, it must hold no personal data."""

    kind: Literal["not_planned"]
    reason: NotPlannedReason
    note: LongText | None = None


class StructuralCommitment(Contract):
    """A government agency's answer to a structural-gap report addressed to it, on its
    responses topic (key: the report_id). A later commitment to the same report replaces the
    earlier one (decision 18)."""

    report_id: Identifier
    agency_id: AgencyId  # the government agency the report was addressed to
    commitment: Annotated[PlannedListing | NotPlanned, Field(discriminator="kind")]


STRUCTURAL_COMMITMENT_SUBMITTED = event_type("referral", "structural-commitment-submitted")
# ----- issue 18 caseworker control -----


class InstructionAction(StrEnum):
    LIST_ALTERNATIVES = "list_alternatives"  # the ranked alternatives of a need (top k)
    CHOOSE = "choose"  # pin a service for a need with no open referral (held, unmet, ended)
    EXCLUDE = "exclude"  # services or agencies never to be tried for the need
    REVOKE = "revoke"  # the requester's cancel of an open referral
    REDIRECT = "redirect"  # cancel an open referral and refer the need to another service


MAX_ALTERNATIVES = 10
# Which fields each action needs (the others it leaves out).
_INSTRUCTION_NEEDS: dict[InstructionAction, tuple[str, ...]] = {
    InstructionAction.LIST_ALTERNATIVES: ("need_id",),
    InstructionAction.CHOOSE: ("need_id", "service_id"),
    InstructionAction.EXCLUDE: ("need_id",),
    InstructionAction.REVOKE: ("referral_id",),
    InstructionAction.REDIRECT: ("referral_id", "service_id"),
}
_INSTRUCTION_OPTIONAL = ("need_id", "referral_id", "service_id", "reason_code")
_CANCEL_REASONS = [r.value for r in TAXONOMY.reasons_for(ReferralState.CANCELLED.value)]


def _instruction_rules() -> list[JsonDict]:
    """Per action: the fields it needs (not null) and those it leaves out (null); exclusions
    only with exclude (at least one), a reason code (one that applies to a cancel) only with
    revoke and redirect."""
    rules: list[JsonDict] = []
    for action, needed in _INSTRUCTION_NEEDS.items():
        cancels = action in (InstructionAction.REVOKE, InstructionAction.REDIRECT)
        props: JsonDict = {
            f: {"not": {"type": "null"}} if f in needed else {"type": "null"}
            for f in _INSTRUCTION_OPTIONAL
            if f != "reason_code"
        }
        props["reason_code"] = {"enum": [*_CANCEL_REASONS, None]} if cancels else {"type": "null"}
        then: JsonDict = {"properties": props, "required": list(needed)}
        if action is InstructionAction.EXCLUDE:
            then["anyOf"] = [
                {
                    "required": ["exclude_service_ids"],
                    "properties": {"exclude_service_ids": {"minItems": 1}},
                },
                {
                    "required": ["exclude_agency_ids"],
                    "properties": {"exclude_agency_ids": {"minItems": 1}},
                },
            ]
        else:
            then["properties"] |= {
                "exclude_service_ids": {"maxItems": 0},
                "exclude_agency_ids": {"maxItems": 0},
            }
        rules.append(_when("action", action.value, then))
    return rules


class ReferrerInstruction(Contract):
    """The referring agency (the case's owner) steers the routing of its case's needs, on its
    own responses topic, key = the ``case_id``. One type with an ``action`` (decision 19): the
    answers, refusals and checks are shared by all five."""

    model_config = ConfigDict(json_schema_extra=_all_of(*_instruction_rules()))

    case_id: Identifier
    agency_id: AgencyId  # the sender: the case's owner
    action: InstructionAction
    need_id: Identifier | None = None
    referral_id: Identifier | None = None
    service_id: Identifier | None = None
    exclude_service_ids: list[Identifier] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    exclude_agency_ids: list[AgencyId] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    k: int = Field(default=5, ge=1, le=MAX_ALTERNATIVES)  # list_alternatives: how many
    reason_code: ReasonCode | None = None  # revoke, redirect: why (default other)

    @model_validator(mode="after")
    def _fields_of_the_action(self) -> Self:
        needed = _INSTRUCTION_NEEDS[self.action]
        for name in _INSTRUCTION_OPTIONAL:
            given = getattr(self, name) is not None
            if name in needed and not given:
                raise ValueError(f"{self.action.value} needs {name}")
            if name not in needed and name != "reason_code" and given:
                raise ValueError(f"{name} is not given with {self.action.value}")
        excludes = bool(self.exclude_service_ids or self.exclude_agency_ids)
        if self.action is InstructionAction.EXCLUDE and not excludes:
            raise ValueError("exclude needs exclude_service_ids or exclude_agency_ids")
        if self.action is not InstructionAction.EXCLUDE and excludes:
            raise ValueError("exclusions are given with exclude only")
        if self.reason_code is not None:
            if self.action not in (InstructionAction.REVOKE, InstructionAction.REDIRECT):
                raise ValueError("reason_code is given with revoke and redirect only")
            if not TAXONOMY.reason_applies(self.reason_code, ReferralState.CANCELLED.value):
                raise ValueError(f"reason_code {self.reason_code.value} does not apply to a cancel")
        return self


REFERRER_INSTRUCTION_SUBMITTED = event_type("referral", "referrer-instruction-submitted")


# =====================================================================================
# intake.cases.v1 — written by intake; pseudonymous only
# =====================================================================================


class CaseRegistered(Contract):
    """The pseudonymous case: no names, contacts, documents or free text can go here."""

    case_id: Identifier
    submitting_agency_id: AgencyId
    profile: Profile
    needs: list[Need] = Field(min_length=1, max_length=MAX_NEEDS)
    consent: Consent
    possible_duplicate_of: list[Identifier] = Field(default_factory=list, max_length=10)


class ConsentChanged(Contract):
    case_id: Identifier
    consent: Consent


class CaseClosed(Contract):
    case_id: Identifier
    reason: ClosureReason
    closed_at: PastDatetime
    open_referrals: OpenReferralsOnClosure = OpenReferralsOnClosure.CANCEL


class AssistanceEnded(Contract):
    """The owner ended its own assistance; the case stays open under it."""

    case_id: Identifier
    owner_agency_id: AgencyId
    reason: AssistanceEndReason
    ended_at: PastDatetime


class CaseHandedOver(Contract):
    """Ownership moved: from now on only ``to_agency_id`` writes the case, under
    ``to_agency_case_ref`` on its own submissions topic."""

    handover_id: Identifier
    case_id: Identifier
    from_agency_id: AgencyId
    to_agency_id: AgencyId
    to_agency_case_ref: Identifier
    handed_over_at: datetime


class HandoverFailureReason(StrEnum):
    """Why an accepted handover could not move the case (the owner keeps it)."""

    NO_CONSENT = "no_consent"  # consent refused or withdrawn
    PURPOSE_NOT_COVERED = "purpose_not_covered"  # consent does not include referral
    CONSENT_EXPIRED = "consent_expired"
    AGENCY_NOT_COVERED = "agency_not_covered"  # the consent names other agencies
    AGENCY_TYPE_NOT_COVERED = "agency_type_not_covered"
    UNKNOWN_AGENCY = "unknown_agency"
    NO_PUBLIC_KEY = "no_public_key"  # the new owner cannot receive the personal data
    CASE_NOT_OPEN = "case_not_open"  # closed or erased meanwhile
    OWNER_CHANGED = "owner_changed"  # the case changed hands meanwhile
    REFERENCE_TAKEN = "reference_taken"  # the new owner already uses that agency_case_ref
    UNKNOWN_CASE = "unknown_case"


class HandoverFailed(Contract):
    handover_id: Identifier
    case_id: Identifier
    from_agency_id: AgencyId
    to_agency_id: AgencyId
    reason: HandoverFailureReason


class CaseErased(Contract):
    case_id: Identifier
    erased_at: PastDatetime
    # Who asked, so that the erasure can be confirmed to them under their own reference.
    submitting_agency_id: AgencyId | None = None
    agency_case_ref: Identifier | None = None


class SubmissionOutcome(StrEnum):
    REGISTERED = "registered"  # a new case: agency_case_ref now names case_id
    UPDATED = "updated"  # a resubmission or an update of the case
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CLOSED = "closed"
    ERASED = "erased"  # erasure-confirmed follows in the same inbox


class SubmissionAccepted(Contract):
    """A submission intake applied, told back to the agency that sent it: every submission is
    answered by this or by a submission-rejected with the same ``submission_id``."""

    submission_id: Annotated[str, Field(max_length=300)]  # the ce_id of the submission
    agency_id: AgencyId
    agency_case_ref: Identifier
    case_id: Identifier
    outcome: SubmissionOutcome


CASE_REGISTERED = event_type("intake", "case-registered")
# Same payload as CaseRegistered: the case as it stands after an agency resubmitted or updated it.
CASE_UPDATED = event_type("intake", "case-updated")
CONSENT_CHANGED = event_type("intake", "consent-changed")
CASE_CLOSED = event_type("intake", "case-closed")
CASE_ERASED = event_type("intake", "case-erased")
SUBMISSION_ACCEPTED = event_type("intake", "submission-accepted")
ASSISTANCE_ENDED = event_type("intake", "assistance-ended")
CASE_HANDED_OVER = event_type("intake", "case-handed-over")
HANDOVER_FAILED = event_type("intake", "handover-failed")


# ----- issue 18 community needs and levels -----


class CommunityNeedRegistered(Contract):
    """A community need as referral routes it (registered, or again after an update): its one
    ``need`` has level community; no description (free text stays in intake)."""

    case_id: Identifier
    submitting_agency_id: AgencyId
    area: AreaCode
    need: Need
    people_affected: int = Field(ge=1, le=10_000_000)
    returnee_share: float = Field(ge=0, le=1)


COMMUNITY_NEED_REGISTERED = event_type("intake", "community-need-registered")
# ----- issue 18 consent follow-through -----


class PossibleDuplicateFound(Contract):
    """A case registered or updated shares an identity hash with a case of another agency:
    probably one person. Published only where both cases' consent allows sharing with the other
    owner (intake records it otherwise); ids only, never what matched."""

    case_id: Identifier  # the case registered or updated
    owner_agency_id: AgencyId
    duplicate_case_id: Identifier  # the other agency's case
    duplicate_owner_agency_id: AgencyId
    found_at: datetime


POSSIBLE_DUPLICATE_FOUND = event_type("intake", "possible-duplicate-found")


# ----- issue 19 follow-ups and outcomes -----

Score = Annotated[float, Field(ge=0, le=1)]


class OutcomeScores(Part):
    """Scores between 0 and 1 (1: the most sustainable), computed by intake from the answers
    with the indicator set's scales and weights (shared/contracts/outcomes/). A dimension with
    no scored answer has none; the composite needs all three."""

    economic: Score | None = None
    social: Score | None = None
    psychosocial: Score | None = None
    composite: Score | None = None


class AssessmentRecorded(Contract):
    """A follow-up assessment intake accepted: its scores, never its answers' wording or any
    personal data. Replaces an earlier one of the same case and wave."""

    case_id: Identifier
    owner_agency_id: AgencyId
    wave: Identifier
    assessed_on: date
    indicator_set: Identifier
    scores: OutcomeScores
    indicators_answered: int = Field(ge=0, le=MAX_ANSWERS)
    # The ce_id of the assessment-submitted message it answers (the owner's inbox shows it).
    submission_id: Annotated[str, Field(max_length=300)] | None = None


class FollowUpStage(StrEnum):
    REMINDER = "reminder"  # the date is near
    DUE = "due"  # the date has come
    MISSED = "missed"  # no assessment by the date and its grace period


class FollowUpNotice(Contract):
    """A wave of a case's follow-up plan that needs its owner: soon due, due, or missed. Only
    for a case whose consent includes ``follow_up``."""

    case_id: Identifier
    owner_agency_id: AgencyId
    wave: Identifier
    due_on: date
    stage: FollowUpStage


ASSESSMENT_RECORDED = event_type("intake", "assessment-recorded")
FOLLOW_UP_REMINDER = event_type("intake", "follow-up-reminder")
FOLLOW_UP_DUE = event_type("intake", "follow-up-due")
FOLLOW_UP_MISSED = event_type("intake", "follow-up-missed")


# =====================================================================================
# intake.rejections.v1 — written by intake
# =====================================================================================


class FieldError(Part):
    field: Annotated[str, Field(max_length=300)]  # dotted path, e.g. "profile.return_area"
    message: Annotated[str, Field(max_length=500)]


class SubmissionError(StrEnum):
    """A rejection's code, where its sender can act on one (issue 22: the ``personal`` block;
    the other rejections say why in ``reason`` and ``errors`` only)."""

    # intake requires the personal block sealed (INTAKE_REQUIRE_SEALED_PERSONAL): send it
    # sealed for the current key of intake.keys.v1
    PERSONAL_NOT_SEALED = "personal_not_sealed"
    # key_sha256 names no key intake accepts (retired, or never intake's): seal it again for
    # the current key
    SEALED_KEY_UNKNOWN = "sealed_key_unknown"
    # the box does not open with the key it names (damaged, or sealed for another key)
    SEALED_BOX_UNOPENABLE = "sealed_box_unopenable"
    # the box opened, but what it holds is not a valid PersonalData (errors per field, under
    # ``personal.``)
    SEALED_PERSONAL_INVALID = "sealed_personal_invalid"


class SubmissionRejected(Contract):
    submission_id: Annotated[str, Field(max_length=300)]  # the ce_id of the refused message
    agency_id: AgencyId | None = None
    topic: Annotated[str, Field(max_length=300)] | None = None
    reason: Annotated[str, Field(max_length=500)]
    errors: list[FieldError] = Field(default_factory=list, max_length=200)
    error: SubmissionError | None = None  # a code, where the rejection has one (issue 22)


SUBMISSION_REJECTED = event_type("intake", "submission-rejected")


# =====================================================================================
# intake.keys.v1 — written by intake (compacted), read by every agency
# =====================================================================================


class SubmissionKeyStatus(StrEnum):
    CURRENT = "current"  # seal for this one
    PREVIOUS = "previous"  # still opened (a rotation is under way); seal for the current one
    RETIRED = "retired"  # no longer opened: a box sealed for it is rejected


class SubmissionKey(Contract):
    """One of intake's X25519 submission keys (issue 22, decision 32): an agency seals a
    submission's ``personal`` block for the ``current`` one and names it by ``key_sha256``."""

    key_sha256: KeySha256  # SHA-256 of the raw 32-byte public key, hex
    public_key: Annotated[
        str, Field(max_length=60, json_schema_extra=restating({"pattern": _PUBLIC_KEY_PATTERN}))
    ]
    status: SubmissionKeyStatus
    published_at: AwareDatetime

    @model_validator(mode="after")
    def _key(self) -> Self:
        _x25519_public_key(self.public_key)
        return self


SUBMISSION_KEY_PUBLISHED = event_type("intake", "submission-key-published")


# =====================================================================================
# intake.disclosures.v1 — written by intake
# =====================================================================================


class DisclosedContact(Contract):
    """What a sealed disclosure holds once opened: the minimum to contact the returnee."""

    given_name: Name
    family_name: Name
    contacts: list[Contact] = Field(default_factory=list, max_length=10)
    preferred_language: LanguageCode | None = None


class DisclosureSealed(Contract):
    disclosure_id: Identifier
    referral_id: Identifier
    case_id: Identifier
    recipient_agency_id: AgencyId
    # libsodium sealed box of DisclosedContact's JSON for the recipient's X25519 public key.
    sealed_box: Annotated[str, Field(max_length=16_384, pattern=r"^[A-Za-z0-9+/]+=*$")]
    recipient_key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    consent_recorded_at: PastDatetime
    # issue 18: what the sealed box holds once opened: a DisclosedContact (a returnee's), or a
    # CommunityNeedBrief (a community need's; no consent applies, consent_recorded_at is then
    # when the need was last submitted).
    content: Literal["contact", "community_need"] = "contact"


# ----- issue 18 community needs and levels -----


class CommunityNeedBrief(Contract):
    """What a sealed disclosure of a community need holds once opened: its description and
    counts, for the provider the need was referred to."""

    case_id: Identifier
    agency_case_ref: Identifier
    area: AreaCode
    category: CategoryCode
    people_affected: int = Field(ge=1, le=10_000_000)
    returnee_share: float = Field(ge=0, le=1)
    description: LongText = ""


class DisclosureRefusalReason(StrEnum):
    NO_CONSENT = "no_consent"  # consent refused or withdrawn
    PURPOSE_NOT_COVERED = "purpose_not_covered"  # consent does not include referral
    CONSENT_EXPIRED = "consent_expired"
    AGENCY_NOT_COVERED = "agency_not_covered"
    AGENCY_TYPE_NOT_COVERED = "agency_type_not_covered"
    CATEGORY_NOT_COVERED = "category_not_covered"
    UNKNOWN_AGENCY = "unknown_agency"  # not (yet) in directory.agencies.v1
    NO_PUBLIC_KEY = "no_public_key"  # the agency cannot receive sealed data
    CASE_NOT_OPEN = "case_not_open"  # closed or erased
    UNKNOWN_CASE = "unknown_case"


class DisclosureRefused(Contract):
    """No personal data was sent for this referral, and why."""

    disclosure_id: Identifier
    referral_id: Identifier
    case_id: Identifier
    recipient_agency_id: AgencyId
    reason: DisclosureRefusalReason


class CaseDataSealed(Contract):
    """The whole personal data of a case handed over (PersonalData's JSON), sealed for the new
    owner's key: it now keeps the case and may need every field. Logged in the disclosure log."""

    disclosure_id: Identifier
    handover_id: Identifier
    case_id: Identifier
    recipient_agency_id: AgencyId
    # libsodium sealed box of PersonalData's JSON for the recipient's X25519 public key.
    sealed_box: Annotated[str, Field(max_length=65_536, pattern=r"^[A-Za-z0-9+/]+=*$")]
    recipient_key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    consent_recorded_at: PastDatetime


DISCLOSURE_SEALED = event_type("intake", "disclosure-sealed")
DISCLOSURE_REFUSED = event_type("intake", "disclosure-refused")
CASE_DATA_SEALED = event_type("intake", "case-data-sealed")


# ----- issue 18 consent follow-through -----


class DisclosureErased(Contract):
    """A recipient confirmed it erased what a referral's disclosure gave it; recorded in the
    disclosure log. The case's owner hears it, and so does the recipient (its answer)."""

    disclosure_id: Identifier
    referral_id: Identifier
    case_id: Identifier
    recipient_agency_id: AgencyId
    owner_agency_id: AgencyId  # the case's owner when the confirmation came
    erased_at: PastDatetime
    submission_id: Annotated[str, Field(max_length=300)]  # the ce_id of the confirmation


DISCLOSURE_ERASED = event_type("intake", "disclosure-erased")


# =====================================================================================
# referral.events.v1 — written by referral; pseudonymous only, no free text
# =====================================================================================


class MatchExplanation(Part):
    matched: list[Annotated[str, Field(max_length=120)]] = Field(max_length=50)
    score: float = Field(ge=0, le=1)
    components: dict[Annotated[str, Field(max_length=60)], float]


class ReferralRequested(Contract):
    referral_id: Identifier
    case_id: Identifier
    need_id: Identifier
    category: CategoryCode
    urgency: Urgency
    referring_agency_id: AgencyId
    recipient_agency_id: AgencyId
    service_id: Identifier
    attempt: int = Field(default=1, ge=1, le=100)
    previous_referral_id: Identifier | None = None
    respond_by: datetime | None = None
    explanation: MatchExplanation


class CancelledBy(StrEnum):
    REQUESTER = "requester"  # the referring agency revoked or redirected the referral


class ReferralTransitioned(Contract):
    referral_id: Identifier
    case_id: Identifier
    need_id: Identifier
    from_state: ReferralState
    to_state: ReferralState
    reason_code: ReasonCode | None = None
    outcome: Outcome | None = None
    attempt: int = Field(ge=1, le=100)
    referring_agency_id: AgencyId
    recipient_agency_id: AgencyId
    occurred_at: datetime
    # Who owns the case now and hears the referral's progress, when not the referring agency
    # (the case was handed over since the referral was made).
    case_owner_agency_id: AgencyId | None = None
    # A cancel asked by the referring agency (revoke, redirect: issue 18); absent when the
    # service cancelled (consent, closure, erasure).
    cancelled_by: CancelledBy | None = None


class UnmatchedReason(StrEnum):
    NO_LISTING = "no_listing"  # no active listing of the category covers the area
    NO_CAPACITY = "no_capacity"
    NOT_ELIGIBLE = "not_eligible"
    CONSENT_SCOPE = "consent_scope"  # consent covers no candidate
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"


class NeedUnmatched(Contract):
    case_id: Identifier
    need_id: Identifier
    category: CategoryCode
    referring_agency_id: AgencyId
    reason: UnmatchedReason
    attempts: int = Field(default=0, ge=0, le=100)


class ResponseError(StrEnum):
    UNKNOWN_REFERRAL = "unknown_referral"
    NOT_RECIPIENT = "not_recipient"
    TRANSITION_NOT_ALLOWED = "transition_not_allowed"
    INVALID_RESPONSE = "invalid_response"


class ResponseRefused(Contract):
    """An answer that changed nothing, told back to the agency that sent it."""

    response_id: Annotated[str, Field(max_length=300)]  # the ce_id of the refused response
    agency_id: AgencyId
    referral_id: Identifier | None = None
    action: ResponseAction | None = None
    error: ResponseError
    current_state: ReferralState | None = None
    # What was wrong, as for a refused submission (never the values sent).
    reason: Annotated[str, Field(max_length=500)] | None = None
    errors: list[FieldError] = Field(default_factory=list, max_length=200)


class ResponseApplied(Contract):
    """An answer that changed its referral, told back to the agency that sent it."""

    response_id: Annotated[str, Field(max_length=300)]  # the ce_id of the applied response
    agency_id: AgencyId
    referral_id: Identifier
    case_id: Identifier
    action: ResponseAction
    from_state: ReferralState
    to_state: ReferralState


class ListingPublicationStatus(StrEnum):
    """Where a provider's listing stands after a message of its own listings topic."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    TEMPORARILY_CLOSED = "temporarily_closed"
    WITHDRAWN = "withdrawn"  # a tombstone removed it from the directory


class ListingPublished(Contract):
    """A provider's listing message was applied to the directory (published, changed or, for a
    tombstone, withdrawn), told back to the provider."""

    # The ce_id of the listing message; a tombstone has none: ``<topic>/<partition>/<offset>``.
    submission_id: Annotated[str, Field(max_length=300)]
    agency_id: AgencyId
    service_id: Identifier
    status: ListingPublicationStatus


class ReferralReminderDue(Contract):
    """The recipient has not decided yet and its deadline is near."""

    referral_id: Identifier
    case_id: Identifier
    need_id: Identifier
    recipient_agency_id: AgencyId
    respond_by: datetime
    attempt: int = Field(ge=1, le=100)


class HandoverDirection(StrEnum):
    OFFER = "offer"  # the owner proposed it; the receiver answers
    REQUEST = "request"  # the receiver asked; the owner answers


class HandoverState(StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"  # intake then moves the case (case-handed-over or handover-failed)
    REJECTED = "rejected"
    EXPIRED = "expired"  # unanswered by respond_by: the owner keeps the case
    COMPLETED = "completed"  # the case moved
    FAILED = "failed"  # accepted, but intake could not move it (handover-failed says why)


class HandoverProposed(Contract):
    """A handover waits on ``answering_agency_id``'s answer until ``respond_by``."""

    handover_id: Identifier
    case_id: Identifier
    direction: HandoverDirection
    owner_agency_id: AgencyId
    receiving_agency_id: AgencyId
    answering_agency_id: AgencyId
    reason: HandoverReason
    respond_by: datetime
    message_id: Annotated[str, Field(max_length=300)]  # the ce_id of the proposal or request


class HandoverAccepted(Contract):
    """The answer that moves the case: intake moves it, with its personal data under consent.
    ``consent``: the new consent record the offer carried, applied first."""

    handover_id: Identifier
    case_id: Identifier
    owner_agency_id: AgencyId
    receiving_agency_id: AgencyId
    receiving_case_ref: Identifier
    consent: Consent | None = None


class HandoverEnded(Contract):
    """A handover that did not move the case: rejected (with the reason) or expired."""

    handover_id: Identifier
    case_id: Identifier
    owner_agency_id: AgencyId
    receiving_agency_id: AgencyId
    state: HandoverState
    reason: HandoverDeclineReason | None = None
    occurred_at: datetime


class HandoverError(StrEnum):
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_CASE = "unknown_case"
    NOT_OWNER = "not_owner"  # a proposal or an approval from an agency that does not own it
    UNKNOWN_AGENCY = "unknown_agency"  # unknown or deregistered
    ALREADY_OWNER = "already_owner"
    CASE_NOT_OPEN = "case_not_open"  # closed or erased
    CONSENT_NOT_COVERING = "consent_not_covering"
    ALREADY_PENDING = "already_pending"  # the case has a handover waiting for an answer
    UNKNOWN_HANDOVER = "unknown_handover"
    NOT_ANSWERING_AGENCY = "not_answering_agency"
    NOT_PENDING = "not_pending"  # answered, expired or ended already
    REFERENCE_MISSING = "reference_missing"  # an offer accepted without agency_case_ref


class HandoverRefused(Contract):
    """A handover message that changed nothing, told back to its sender."""

    message_id: Annotated[str, Field(max_length=300)]  # the ce_id of the refused message
    agency_id: AgencyId
    case_id: Identifier | None = None
    handover_id: Identifier | None = None
    error: HandoverError
    state: HandoverState | None = None  # the handover's, for an answer that came too late
    reason: Annotated[str, Field(max_length=500)]
    errors: list[FieldError] = Field(default_factory=list, max_length=200)


class ContinuationCause(StrEnum):
    ASSISTANCE_ENDED = "assistance_ended"
    CASE_HANDED_OVER = "case_handed_over"
    CASE_CLOSED = "case_closed"  # closed with open_referrals=continue


class SupportContinues(Contract):
    """To a provider with an open referral: the referring side changed, the referral goes on,
    and ``owner_agency_id`` is who now owns the case (and hears the referral's progress)."""

    referral_id: Identifier
    case_id: Identifier
    need_id: Identifier
    recipient_agency_id: AgencyId
    owner_agency_id: AgencyId
    cause: ContinuationCause
    assistance_end_reason: AssistanceEndReason | None = None
    occurred_at: datetime


class ContinuityCandidate(Part):
    agency_id: AgencyId
    agency_type: AgencyType | None = None
    service_id: Identifier
    explanation: MatchExplanation


class ContinuityProposed(Contract):
    """To the owner whose assistance ended with needs still open: the programmes that declare
    they take cases over and fit the case, best first; the owner may propose a handover."""

    case_id: Identifier
    owner_agency_id: AgencyId
    open_need_ids: list[Identifier] = Field(min_length=1, max_length=MAX_NEEDS)
    candidates: list[ContinuityCandidate] = Field(max_length=10)


# ----- issue 18 caseworker control -----


class Alternative(Part):
    """One acceptable provider for a need, in rank order, with matching's explanation."""

    rank: int = Field(ge=1, le=MAX_ALTERNATIVES)
    service_id: Identifier
    agency_id: AgencyId
    agency_type: AgencyType | None = None
    explanation: MatchExplanation
    tried: bool = False  # already referred in this need's chain


class AlternativesListed(Contract):
    """To the case's owner: the ranked alternatives of a need (on its instruction, or on
    arrival of a need held for it), its exclusions left out. None: ``unmatched_reason`` says
    why."""

    case_id: Identifier
    need_id: Identifier
    referring_agency_id: AgencyId
    instruction_id: Annotated[str, Field(max_length=300)] | None = None  # the ce_id; None: held
    held: bool  # the need waits for the owner's choice
    alternatives: list[Alternative] = Field(max_length=MAX_ALTERNATIVES)
    unmatched_reason: UnmatchedReason | None = None
    excluded_service_ids: list[Identifier] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    excluded_agency_ids: list[AgencyId] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)


class InstructionApplied(Contract):
    """A referrer instruction that changed what it asked, told back to its sender."""

    instruction_id: Annotated[str, Field(max_length=300)]  # the ce_id of the instruction
    agency_id: AgencyId
    case_id: Identifier
    action: InstructionAction
    need_id: Identifier
    # choose, redirect: the new referral; revoke: the referral cancelled
    referral_id: Identifier | None = None
    previous_referral_id: Identifier | None = None  # redirect: the referral cancelled
    service_id: Identifier | None = None  # choose, redirect: the service referred to
    excluded_service_ids: list[Identifier] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    excluded_agency_ids: list[AgencyId] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)


class InstructionError(StrEnum):
    INVALID_INSTRUCTION = "invalid_instruction"
    UNKNOWN_CASE = "unknown_case"
    NOT_REFERRING_AGENCY = "not_referring_agency"  # the sender does not own the case
    CASE_NOT_OPEN = "case_not_open"  # closed or erased
    UNKNOWN_NEED = "unknown_need"
    UNKNOWN_REFERRAL = "unknown_referral"  # or not a referral of this case
    UNKNOWN_SERVICE = "unknown_service"
    REFERRAL_ENDED = "referral_ended"  # completed, failed, rejected, expired, cancelled
    NEED_HAS_OPEN_REFERRAL = "need_has_open_referral"  # choose: revoke or redirect it first
    SERVICE_EXCLUDED = "service_excluded"  # the service or its agency is excluded for the need
    NOT_ACCEPTABLE = "not_acceptable"  # matching's filters refuse it (unmatched_reason)
    SAME_SERVICE = "same_service"  # redirect to the service the referral is with
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # the need's chain is at its longest


class InstructionRefused(Contract):
    """A referrer instruction that changed nothing, told back to its sender."""

    instruction_id: Annotated[str, Field(max_length=300)]  # the ce_id of the instruction
    agency_id: AgencyId
    case_id: Identifier | None = None
    action: InstructionAction | None = None
    need_id: Identifier | None = None
    referral_id: Identifier | None = None
    service_id: Identifier | None = None
    error: InstructionError
    current_state: ReferralState | None = None  # the referral's (or the need's open one's)
    unmatched_reason: UnmatchedReason | None = None  # not_acceptable: the filter that refused
    reason: Annotated[str, Field(max_length=500)]
    errors: list[FieldError] = Field(default_factory=list, max_length=200)


ALTERNATIVES_LISTED = event_type("referral", "alternatives-listed")
INSTRUCTION_APPLIED = event_type("referral", "instruction-applied")
INSTRUCTION_REFUSED = event_type("referral", "instruction-refused")

HANDOVER_PROPOSED = event_type("referral", "handover-proposed")
HANDOVER_ACCEPTED = event_type("referral", "handover-accepted")
HANDOVER_ENDED = event_type("referral", "handover-ended")
HANDOVER_REFUSED = event_type("referral", "handover-refused")
SUPPORT_CONTINUES = event_type("referral", "support-continues")
CONTINUITY_PROPOSED = event_type("referral", "continuity-proposed")

LISTING_PUBLISHED = event_type("referral", "listing-published")
LISTING_WITHDRAWN = event_type("referral", "listing-withdrawn")
# Same payload as SubmissionRejected: every refused message of an agency has one shape.
LISTING_REJECTED = event_type("referral", "listing-rejected")
RESPONSE_APPLIED = event_type("referral", "response-applied")
REFERRAL_REQUESTED = event_type("referral", "referral-requested")
REMINDER_DUE = event_type("referral", "reminder-due")
REFERRAL_TRANSITIONED = event_type("referral", "referral-transitioned")
NEED_UNMATCHED = event_type("referral", "need-unmatched")
RESPONSE_REFUSED = event_type("referral", "response-refused")


# ----- issue 18 structural gaps -----


class GapTrend(StrEnum):
    """The period's unmet needs against the period before."""

    NEW = "new"  # none the period before
    RISING = "rising"
    STABLE = "stable"
    FALLING = "falling"


class ReasonCount(Part):
    reason: UnmatchedReason
    count: int = Field(ge=1)


class StructuralGapReported(Contract):
    """Unmet needs of one category clustered in one district within one period: told to a
    government agency whose coverage includes the district (one event per agency, the same
    ``report_id``). Counts only: no case, need or person."""

    report_id: Identifier
    addressed_agency_id: AgencyId
    area: AreaCode  # the district: the return areas cut to the configured digits
    category: CategoryCode
    dimension: Dimension
    period_start: date  # included
    period_end: date  # excluded: periods are fixed windows of the configured days
    unmet_needs: int = Field(ge=1)
    reasons: list[ReasonCount] = Field(min_length=1, max_length=len(UnmatchedReason))
    previous_period_unmet_needs: int = Field(ge=0)
    trend: GapTrend


class CommitmentError(StrEnum):
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_REPORT = "unknown_report"
    NOT_ADDRESSED = "not_addressed"  # the report was not addressed to the sender
    SERVICE_OF_OTHER_AGENCY = "service_of_other_agency"  # planned service_id listed by another


class StructuralCommitmentApplied(Contract):
    """A commitment recorded, told back to its sender (without its note)."""

    message_id: Annotated[str, Field(max_length=300)]  # the ce_id of the commitment
    report_id: Identifier
    agency_id: AgencyId
    area: AreaCode
    category: CategoryCode
    kind: CommitmentKind
    service_id: Identifier | None = None
    planned_by: date | None = None
    not_planned_reason: NotPlannedReason | None = None
    replaced: CommitmentKind | None = None  # the kind of the earlier commitment it replaced


class StructuralCommitmentRefused(Contract):
    """A commitment that changed nothing, told back to its sender."""

    message_id: Annotated[str, Field(max_length=300)]
    agency_id: AgencyId
    report_id: Identifier | None = None
    error: CommitmentError
    reason: Annotated[str, Field(max_length=500)]
    errors: list[FieldError] = Field(default_factory=list, max_length=200)


STRUCTURAL_GAP_REPORTED = event_type("referral", "structural-gap-reported")
STRUCTURAL_COMMITMENT_APPLIED = event_type("referral", "structural-commitment-applied")
STRUCTURAL_COMMITMENT_REFUSED = event_type("referral", "structural-commitment-refused")


# =====================================================================================
# notification.deliveries.v1 — written by notification
# =====================================================================================


class DeliveryError(StrEnum):
    """Why a delivery attempt failed: a closed list, never an exception's message (which may
    quote an address, a host name or a secret)."""

    TARGET_NOT_ALLOWED = "target_not_allowed"  # not http(s), or a loopback/private/... address
    DNS_FAILED = "dns_failed"  # the webhook's host name does not resolve
    NO_SIGNING_SECRET = "no_signing_secret"  # none opens with the current key: never unsigned
    CONNECTION_FAILED = "connection_failed"  # refused, unreachable, reset or closed early
    TIMEOUT = "timeout"  # no complete answer in time
    TLS_ERROR = "tls_error"  # TLS handshake or certificate verification failed
    PROTOCOL_ERROR = "protocol_error"  # invalid HTTP; an SMTP relay's error greeting or lack
    HTTP_ERROR = "http_error"  # an HTTP status other than 2xx (see http_status)
    SMTP_REJECTED = "smtp_rejected"  # the relay refused the sender, recipients or message
    SMTP_AUTH_FAILED = "smtp_auth_failed"  # the relay refused the notification's login
    ENDPOINT_DISABLED = "endpoint_disabled"  # not attempted: the endpoint was disabled before
    REQUEST_FAILED = "request_failed"  # any other failure


class DeliveryAttempted(Contract):
    delivery_id: Identifier
    agency_id: AgencyId
    channel: Literal["webhook", "email", "kafka_inbox"]
    event_id: Annotated[str, Field(max_length=300)]
    attempt: int = Field(ge=1, le=100)
    status: Literal["delivered", "failed", "exhausted", "endpoint_disabled"]
    http_status: int | None = Field(default=None, ge=100, le=599)
    next_attempt_at: datetime | None = None
    latency_ms: int | None = Field(default=None, ge=0)
    error: DeliveryError | None = None  # why a failed, exhausted or disabling attempt failed


DELIVERY_ATTEMPTED = event_type("notification", "delivery-attempted")


# =====================================================================================
# agency.<id>.inbox.v1 — written by notification, read by that agency only
# =====================================================================================


class InboxReferralReceived(Contract):
    """To the recipient agency: a referral to one of its services awaits an answer."""

    referral_id: Identifier
    case_id: Identifier
    need_id: Identifier
    category: CategoryCode
    urgency: Urgency
    service_id: Identifier
    referring_agency_id: AgencyId
    respond_by: datetime | None = None
    respond_on_topic: Annotated[str, Field(max_length=300)] | None = None


class InboxStatusChanged(Contract):
    """To the referring agency: a referral it made changed state."""

    referral_id: Identifier
    case_id: Identifier
    need_id: Identifier
    from_state: ReferralState
    to_state: ReferralState
    reason_code: ReasonCode | None = None
    outcome: Outcome | None = None
    recipient_agency_id: AgencyId


class InboxReferralCancelled(Contract):
    """To the recipient agency: stop; with ``erase_received_data`` erase what you received."""

    referral_id: Identifier
    case_id: Identifier
    reason_code: ReasonCode
    erase_received_data: bool
    # The referring agency revoked or redirected it (issue 18); absent: the service cancelled.
    cancelled_by: CancelledBy | None = None


INBOX_REFERRAL_RECEIVED = event_type("notification", "referral-received")
INBOX_STATUS_CHANGED = event_type("notification", "referral-status-changed")
INBOX_NEED_UNMATCHED = event_type("notification", "need-unmatched")
INBOX_SUBMISSION_REJECTED = event_type("notification", "submission-rejected")
INBOX_DISCLOSURE_RECEIVED = event_type("notification", "disclosure-received")
INBOX_REFERRAL_CANCELLED = event_type("notification", "referral-cancelled")


class InboxErasureConfirmed(Contract):
    """To the agency that asked: the case's personal data can no longer be decrypted anywhere."""

    case_id: Identifier
    agency_case_ref: Identifier | None = None
    erased_at: PastDatetime


INBOX_ERASURE_CONFIRMED = event_type("notification", "erasure-confirmed")


class InboxReferralRerouted(Contract):
    """To the referring agency: after a rejection or expiry, the need went to another provider."""

    referral_id: Identifier
    previous_referral_id: Identifier
    case_id: Identifier
    need_id: Identifier
    recipient_agency_id: AgencyId
    attempt: int = Field(ge=2, le=100)


INBOX_REFERRAL_REROUTED = event_type("notification", "referral-rerouted")
INBOX_RESPONSE_REFUSED = event_type("notification", "response-refused")
INBOX_REFERRAL_REMINDER = event_type("notification", "referral-reminder")
INBOX_SUBMISSION_ACCEPTED = event_type("notification", "submission-accepted")
INBOX_LISTING_PUBLISHED = event_type("notification", "listing-published")
INBOX_LISTING_WITHDRAWN = event_type("notification", "listing-withdrawn")
INBOX_LISTING_REJECTED = event_type("notification", "listing-rejected")
INBOX_RESPONSE_APPLIED = event_type("notification", "response-applied")


class InboxHandoverProposed(Contract):
    """To both parties of a handover: it waits on ``answering_agency_id``, which answers on
    ``respond_on_topic`` (handover-answer-submitted) by ``respond_by``."""

    handover_id: Identifier
    case_id: Identifier
    direction: HandoverDirection
    owner_agency_id: AgencyId
    receiving_agency_id: AgencyId
    answering_agency_id: AgencyId
    reason: HandoverReason
    respond_by: datetime
    respond_on_topic: Annotated[str, Field(max_length=300)]


INBOX_HANDOVER_PROPOSED = event_type("notification", "handover-proposed")
INBOX_HANDOVER_ENDED = event_type("notification", "handover-ended")
INBOX_HANDOVER_REFUSED = event_type("notification", "handover-refused")
INBOX_CASE_HANDED_OVER = event_type("notification", "case-handed-over")
INBOX_HANDOVER_FAILED = event_type("notification", "handover-failed")
INBOX_CASE_DATA_RECEIVED = event_type("notification", "case-data-received")
INBOX_SUPPORT_CONTINUES = event_type("notification", "support-continues")
INBOX_CONTINUITY_PROPOSED = event_type("notification", "continuity-proposed")
# ----- issue 18 caseworker control -----
INBOX_ALTERNATIVES_LISTED = event_type("notification", "alternatives-listed")
INBOX_INSTRUCTION_APPLIED = event_type("notification", "instruction-applied")
INBOX_INSTRUCTION_REFUSED = event_type("notification", "instruction-refused")


# ----- issue 18 structural gaps -----


class InboxStructuralGapReported(StructuralGapReported):
    """To the government agency: the gap, and where to answer it with a commitment."""

    respond_on_topic: Annotated[str, Field(max_length=300)]


INBOX_STRUCTURAL_GAP_REPORTED = event_type("notification", "structural-gap-reported")
INBOX_STRUCTURAL_COMMITMENT_APPLIED = event_type("notification", "structural-commitment-applied")
INBOX_STRUCTURAL_COMMITMENT_REFUSED = event_type("notification", "structural-commitment-refused")


# ----- issue 18 consent follow-through -----


class InboxPossibleDuplicate(Contract):
    """To each owner: its case ``case_id`` is probably the same person as
    ``duplicate_case_id`` of ``duplicate_owner_agency_id`` (both consents allow telling)."""

    case_id: Identifier
    duplicate_case_id: Identifier
    duplicate_owner_agency_id: AgencyId
    found_at: datetime


INBOX_POSSIBLE_DUPLICATE = event_type("notification", "possible-duplicate")
INBOX_DISCLOSURE_ERASED = event_type("notification", "disclosure-erased")
INBOX_ERASURE_CONFIRMATION_RECORDED = event_type("notification", "erasure-confirmation-recorded")
# issue 19 follow-ups and outcomes
INBOX_FOLLOW_UP_REMINDER = event_type("notification", "follow-up-reminder")
INBOX_FOLLOW_UP_DUE = event_type("notification", "follow-up-due")
INBOX_FOLLOW_UP_MISSED = event_type("notification", "follow-up-missed")
INBOX_ASSESSMENT_RECORDED = event_type("notification", "assessment-recorded")


# =====================================================================================
# operators.audit.v1 — written by operator tooling (refex), read by operators only
# =====================================================================================


class AuditOutcome(StrEnum):
    STARTED = "started"  # written before the change: no audit record, no change
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OperatorCommandAudited(Contract):
    """Who ran which operator command on what, when, and how it ended. Never a secret, never
    personal data: targets are agency ids, channel ids, key ids, referral ids."""

    audit_id: Identifier  # the same for a command's started and final records
    command: Annotated[str, Field(pattern=r"^[a-z]+ [a-z-]+$", max_length=80)]
    target_kind: Annotated[str, Field(pattern=r"^[a-z_]+$", max_length=40)]
    target_id: Annotated[str, Field(max_length=200)] | None = None
    outcome: AuditOutcome
    operator: Annotated[str, Field(min_length=1, max_length=100)]
    os_user: Annotated[str, Field(max_length=100)]
    host: Annotated[str, Field(max_length=255)]
    kafka_principal: Annotated[str, Field(max_length=255)] | None = None
    error: Annotated[str, Field(max_length=200)] | None = None  # an error type, no message
    at: datetime


OPERATOR_COMMAND_AUDITED = event_type("operators", "command-audited")


# =====================================================================================
# evidence.aggregates.v1 — written by evidence; aggregates only, never a case or a person
# =====================================================================================
# ----- issue 19 evidence -----

#: Rows of one published table at most (one event per table and period).
MAX_AGGREGATE_ROWS = 2000


class AggregateRow(Part):
    """One cell row: its key values and figures. A figure is null where the cell counted fewer
    than ``k`` distinct cases, or could be derived from published totals (complementary
    suppression); ``cases`` (the distinct cases behind the row) is absent then."""

    key: list[Annotated[str, Field(max_length=200)]] = Field(max_length=10)
    values: list[float | None] = Field(max_length=20)
    cases: int | None = Field(default=None, ge=0)


class EvidenceAggregatesPublished(Contract):
    """One table of the evidence read model for one period (``all``: every period together),
    as the dashboard and the CSV export show it. Published again only when its figures
    change; the latest event of a table and period replaces the earlier ones."""

    table: Identifier
    period: Identifier  # a calendar month, e.g. "2026-12" (UTC), or "all"
    keys: list[Identifier] = Field(max_length=10)
    figures: list[Identifier] = Field(max_length=20)
    rows: list[AggregateRow] = Field(max_length=MAX_AGGREGATE_ROWS)
    k: int = Field(ge=1)
    generated_at: datetime


EVIDENCE_AGGREGATES_PUBLISHED = event_type("evidence", "aggregates-published")


# Every CloudEvents type of the v1 topics and its payload model (topics, docs and tests use it).
PAYLOADS: dict[str, type[Contract]] = {
    CASE_SUBMITTED: CaseSubmission,
    CASE_UPDATE_SUBMITTED: CaseUpdate,
    CONSENT_WITHDRAWN: ConsentWithdrawal,
    ERASURE_REQUESTED: ErasureRequest,
    CASE_CLOSURE_SUBMITTED: CaseClosure,
    ASSISTANCE_END_SUBMITTED: AssistanceEnd,
    SERVICE_LISTED: ServiceListing,
    AGENCY_REGISTERED: AgencyRecord,
    RESPONSE_SUBMITTED: ReferralResponse,
    HANDOVER_PROPOSAL_SUBMITTED: HandoverProposal,
    HANDOVER_REQUEST_SUBMITTED: HandoverRequest,
    HANDOVER_ANSWER_SUBMITTED: HandoverAnswer,
    CASE_REGISTERED: CaseRegistered,
    CASE_UPDATED: CaseRegistered,
    CONSENT_CHANGED: ConsentChanged,
    CASE_CLOSED: CaseClosed,
    CASE_ERASED: CaseErased,
    SUBMISSION_ACCEPTED: SubmissionAccepted,
    ASSISTANCE_ENDED: AssistanceEnded,
    CASE_HANDED_OVER: CaseHandedOver,
    HANDOVER_FAILED: HandoverFailed,
    SUBMISSION_REJECTED: SubmissionRejected,
    SUBMISSION_KEY_PUBLISHED: SubmissionKey,
    DISCLOSURE_SEALED: DisclosureSealed,
    DISCLOSURE_REFUSED: DisclosureRefused,
    CASE_DATA_SEALED: CaseDataSealed,
    REFERRAL_REQUESTED: ReferralRequested,
    REFERRAL_TRANSITIONED: ReferralTransitioned,
    NEED_UNMATCHED: NeedUnmatched,
    RESPONSE_REFUSED: ResponseRefused,
    RESPONSE_APPLIED: ResponseApplied,
    LISTING_PUBLISHED: ListingPublished,
    LISTING_WITHDRAWN: ListingPublished,
    LISTING_REJECTED: SubmissionRejected,
    REMINDER_DUE: ReferralReminderDue,
    HANDOVER_PROPOSED: HandoverProposed,
    HANDOVER_ACCEPTED: HandoverAccepted,
    HANDOVER_ENDED: HandoverEnded,
    HANDOVER_REFUSED: HandoverRefused,
    SUPPORT_CONTINUES: SupportContinues,
    CONTINUITY_PROPOSED: ContinuityProposed,
    DELIVERY_ATTEMPTED: DeliveryAttempted,
    INBOX_REFERRAL_RECEIVED: InboxReferralReceived,
    INBOX_STATUS_CHANGED: InboxStatusChanged,
    INBOX_NEED_UNMATCHED: NeedUnmatched,
    INBOX_SUBMISSION_REJECTED: SubmissionRejected,
    INBOX_DISCLOSURE_RECEIVED: DisclosureSealed,
    INBOX_REFERRAL_CANCELLED: InboxReferralCancelled,
    INBOX_ERASURE_CONFIRMED: InboxErasureConfirmed,
    INBOX_RESPONSE_REFUSED: ResponseRefused,
    INBOX_REFERRAL_REMINDER: ReferralReminderDue,
    INBOX_REFERRAL_REROUTED: InboxReferralRerouted,
    INBOX_SUBMISSION_ACCEPTED: SubmissionAccepted,
    INBOX_LISTING_PUBLISHED: ListingPublished,
    INBOX_LISTING_WITHDRAWN: ListingPublished,
    INBOX_LISTING_REJECTED: SubmissionRejected,
    INBOX_RESPONSE_APPLIED: ResponseApplied,
    INBOX_HANDOVER_PROPOSED: InboxHandoverProposed,
    INBOX_HANDOVER_ENDED: HandoverEnded,
    INBOX_HANDOVER_REFUSED: HandoverRefused,
    INBOX_CASE_HANDED_OVER: CaseHandedOver,
    INBOX_HANDOVER_FAILED: HandoverFailed,
    INBOX_CASE_DATA_RECEIVED: CaseDataSealed,
    INBOX_SUPPORT_CONTINUES: SupportContinues,
    INBOX_CONTINUITY_PROPOSED: ContinuityProposed,
    OPERATOR_COMMAND_AUDITED: OperatorCommandAudited,
    # issue 18 community needs and levels
    COMMUNITY_NEED_SUBMITTED: CommunityNeedSubmission,
    COMMUNITY_NEED_REGISTERED: CommunityNeedRegistered,
    # issue 18 structural gaps
    STRUCTURAL_COMMITMENT_SUBMITTED: StructuralCommitment,
    STRUCTURAL_GAP_REPORTED: StructuralGapReported,
    STRUCTURAL_COMMITMENT_APPLIED: StructuralCommitmentApplied,
    STRUCTURAL_COMMITMENT_REFUSED: StructuralCommitmentRefused,
    INBOX_STRUCTURAL_GAP_REPORTED: InboxStructuralGapReported,
    INBOX_STRUCTURAL_COMMITMENT_APPLIED: StructuralCommitmentApplied,
    INBOX_STRUCTURAL_COMMITMENT_REFUSED: StructuralCommitmentRefused,
    # issue 18 caseworker control
    REFERRER_INSTRUCTION_SUBMITTED: ReferrerInstruction,
    ALTERNATIVES_LISTED: AlternativesListed,
    INSTRUCTION_APPLIED: InstructionApplied,
    INSTRUCTION_REFUSED: InstructionRefused,
    INBOX_ALTERNATIVES_LISTED: AlternativesListed,
    INBOX_INSTRUCTION_APPLIED: InstructionApplied,
    INBOX_INSTRUCTION_REFUSED: InstructionRefused,
    # issue 18 consent follow-through
    ERASURE_CONFIRMATION_SUBMITTED: ErasureConfirmation,
    POSSIBLE_DUPLICATE_FOUND: PossibleDuplicateFound,
    DISCLOSURE_ERASED: DisclosureErased,
    INBOX_POSSIBLE_DUPLICATE: InboxPossibleDuplicate,
    INBOX_DISCLOSURE_ERASED: DisclosureErased,
    INBOX_ERASURE_CONFIRMATION_RECORDED: DisclosureErased,
    # issue 19 follow-ups and outcomes
    ASSESSMENT_SUBMITTED: AssessmentSubmission,
    ASSESSMENT_RECORDED: AssessmentRecorded,
    FOLLOW_UP_REMINDER: FollowUpNotice,
    FOLLOW_UP_DUE: FollowUpNotice,
    FOLLOW_UP_MISSED: FollowUpNotice,
    INBOX_FOLLOW_UP_REMINDER: FollowUpNotice,
    INBOX_FOLLOW_UP_DUE: FollowUpNotice,
    INBOX_FOLLOW_UP_MISSED: FollowUpNotice,
    INBOX_ASSESSMENT_RECORDED: AssessmentRecorded,
    # issue 19 evidence
    EVIDENCE_AGGREGATES_PUBLISHED: EvidenceAggregatesPublished,
}
