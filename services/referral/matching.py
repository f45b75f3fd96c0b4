"""Matching one need to the best listing: filters, then a transparent score. Pure functions
over candidates the database prefiltered by category; pseudonymous data only.

A listing is a candidate when it is active, of the need's category, covers the return area
(hierarchical codes), its eligibility fits (age, sex, returnees), it has capacity (waitlist
counts; none is excluded) and the case's consent covers its agency, agency type and category.
Ranking (weights below) favours the most precise coverage (district > region > national), then
capacity, language overlap, the provider's record of answering, and a vulnerability
specialisation; the service id breaks ties, so the result is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts.events import UnmatchedReason
from shared.contracts.taxonomy import BeneficiaryType, Level

_CAPACITY_SCORE = {ev.CapacityStatus.HAS_CAPACITY: 1.0, ev.CapacityStatus.WAITLIST: 0.5}
WEIGHTS = {
    "coverage_precision": 0.35,
    "capacity": 0.25,
    "language_overlap": 0.15,
    "answer_rate": 0.10,
    "speed": 0.10,
    "vulnerability_specialisation": 0.05,
}
# The score's components in the order it sums them, and their weights in that order.
_COMPONENTS = (
    "coverage_precision",
    "capacity",
    "language_overlap",
    "answer_rate",
    "speed",
    "vulnerability_specialisation",
)
_WEIGHTS = tuple(WEIGHTS[k] for k in _COMPONENTS)
UNKNOWN_ANSWER_RATE = 0.5  # a provider with no history is neither favoured nor penalised
_AGE_BANDS = {
    "0-4": (0, 4),
    "5-11": (5, 11),
    "12-17": (12, 17),
    "18-24": (18, 24),
    "25-34": (25, 34),
    "35-49": (35, 49),
    "50-64": (50, 64),
    "65+": (65, 120),
}


@dataclass(frozen=True, slots=True)
class Candidate:
    service_id: str
    agency_id: str
    agency_type: ev.AgencyType | None
    status: ev.ListingStatus
    categories: tuple[str, ...]
    coverage_areas: tuple[str, ...]
    languages: tuple[str, ...]
    capacity: ev.CapacityStatus
    eligibility: ev.Eligibility
    answer_rate: float | None = None
    sla_hours: int | None = None
    median_hours_to_decide: float | None = None
    # The levels the service works at (ServiceListing.levels).
    levels: frozenset[Level] = frozenset({Level.INDIVIDUAL})


@dataclass(frozen=True, slots=True)
class Match:
    candidate: Candidate
    explanation: ev.MatchExplanation


def covering_depth(area: str, coverage: tuple[str, ...]) -> int:
    """Length of the most specific coverage code that contains the area (0: not covered)."""
    depth = 0
    for code in coverage:  # a plain loop: this runs for every candidate of every need
        if len(code) > depth and area.startswith(code):
            depth = len(code)
    return depth


def age_range(profile: ev.Profile, today: datetime | None = None) -> tuple[int, int]:
    if profile.birth_year is not None:
        age = (today or datetime.now(UTC)).year - profile.birth_year
        return age - 1, age
    assert profile.age_band is not None  # the contract requires one of the two
    return _AGE_BANDS[profile.age_band.value]


@dataclass(frozen=True, slots=True)
class _Returnee:
    """What the filters and the score read of a profile, worked out once per ranking rather
    than once per candidate (a need has up to a few hundred candidates)."""

    area: str
    ages: tuple[int, int] | None  # None: a community (no age or sex filter)
    sex: ev.Sex | None
    languages: frozenset[str]
    vulnerabilities: frozenset[str]
    # Who is served: the need's level, and the beneficiary type a listing must serve.
    level: Level = Level.INDIVIDUAL
    beneficiary: BeneficiaryType = BeneficiaryType.RETURNEE

    @classmethod
    def of(cls, profile: ev.Profile, now: datetime, level: Level = Level.INDIVIDUAL) -> _Returnee:
        return cls(
            area=profile.return_area,
            ages=age_range(profile, now),
            sex=profile.sex,
            languages=frozenset(profile.languages),
            vulnerabilities=frozenset(profile.vulnerabilities),
            level=level,
        )

    @classmethod
    def community(cls, area: str) -> _Returnee:
        """A community of ``area``: served by listings of level community for community
        members; no age, sex, language or vulnerability of anyone is known."""
        return cls(
            area=area,
            ages=None,
            sex=None,
            languages=frozenset(),
            vulnerabilities=frozenset(),
            level=Level.COMMUNITY,
            beneficiary=BeneficiaryType.COMMUNITY_MEMBER,
        )


@dataclass(frozen=True, slots=True)
class _Allowed:
    """What a consent allows for one need's category, worked out once per ranking: whether
    it allows referring at all (purpose, scope, expiry, category), and to which agencies."""

    referral: bool
    agency_ids: frozenset[str] | None
    agency_types: frozenset[ev.AgencyType] | None

    @classmethod
    def of(cls, consent: ev.Consent, category: str, now: datetime) -> _Allowed:
        scope = consent.scope
        if not consent.covers(ev.ConsentPurpose.REFERRAL) or scope is None:
            return cls(referral=False, agency_ids=None, agency_types=None)
        return cls(
            referral=(scope.expires_on is None or scope.expires_on >= now.date())
            and (scope.categories is None or category in scope.categories),
            agency_ids=frozenset(scope.agency_ids) if scope.agency_ids is not None else None,
            agency_types=(
                frozenset(scope.agency_types) if scope.agency_types is not None else None
            ),
        )


def eligible(c: Candidate, profile: ev.Profile, level: Level = Level.INDIVIDUAL) -> bool:
    return _eligible(c, _Returnee.of(profile, datetime.now(UTC), level))


def _eligible(c: Candidate, returnee: _Returnee) -> bool:
    """The listing works at the need's level and serves its beneficiaries; for a person, its
    age and sex fit too (a community has neither)."""
    e = c.eligibility
    if returnee.level not in c.levels or returnee.beneficiary not in e.beneficiary_types:
        return False
    if returnee.ages is None:
        return True
    low, high = returnee.ages
    if e.minimum_age is not None and high < e.minimum_age:
        return False
    if e.maximum_age is not None and low > e.maximum_age:
        return False
    return e.sexes is None or returnee.sex in e.sexes


def consent_covers(c: Candidate, consent: ev.Consent, category: str) -> bool:
    return _consent_covers(c, _Allowed.of(consent, category, datetime.now(UTC)))


def _consent_covers(c: Candidate, allowed: _Allowed) -> bool:
    if not allowed.referral:
        return False
    if allowed.agency_ids is not None and c.agency_id not in allowed.agency_ids:
        return False
    return allowed.agency_types is None or c.agency_type in allowed.agency_types


def score(c: Candidate, profile: ev.Profile) -> tuple[float, dict[str, float]]:
    depth = covering_depth(profile.return_area, c.coverage_areas)
    values = _components(c, _Returnee.of(profile, datetime.now(UTC)), depth)
    return _total(values), dict(zip(_COMPONENTS, values, strict=True))


_Values = tuple[float, float, float, float, float, float]


def _components(c: Candidate, returnee: _Returnee, depth: int) -> _Values:
    """The score's components, in the order of ``_COMPONENTS`` (a tuple: the named dict is
    built only for the explanations published)."""
    rate, hours = c.answer_rate, c.median_hours_to_decide
    return (
        round(depth / max(len(returnee.area), 1), 4),
        _CAPACITY_SCORE.get(c.capacity, 0.0),
        float(not returnee.languages.isdisjoint(c.languages)),
        round(rate if rate is not None else UNKNOWN_ANSWER_RATE, 4),
        # 1 for an answer within the hour, 0.5 at a day, towards 0 for slow providers
        round(UNKNOWN_ANSWER_RATE if hours is None else 1 / (1 + hours / 24), 4),
        float(not returnee.vulnerabilities.isdisjoint(c.eligibility.vulnerability_specialisations)),
    )


def _total(v: _Values) -> float:
    """sum(WEIGHTS[k] * value for each component k) as first written: the same products summed
    in the same order, so the same total to the last bit, without a generator."""
    w = _WEIGHTS
    return round(
        sum((w[0] * v[0], w[1] * v[1], w[2] * v[2], w[3] * v[3], w[4] * v[4], w[5] * v[5])), 4
    )


# an acceptable candidate: its total score, itself, its score's components
_Scored = tuple[float, Candidate, _Values]


def rank(
    need: ev.Need,
    profile: ev.Profile,
    consent: ev.Consent,
    candidates: list[Candidate],
    *,
    exclude_services: frozenset[str] = frozenset(),
) -> list[Match] | UnmatchedReason:
    """Every acceptable candidate, best first; or the reason there is none (the furthest filter
    any candidate got past names the gap: area, eligibility, capacity or consent)."""
    now = datetime.now(UTC)
    served = _Returnee.of(profile, now, need.level)
    allowed = _Allowed.of(consent, need.category, now)
    return _rank(need, served, allowed, candidates, exclude_services)


def best(
    need: ev.Need,
    profile: ev.Profile,
    consent: ev.Consent,
    candidates: list[Candidate],
    *,
    exclude_services: frozenset[str] = frozenset(),
) -> Match | UnmatchedReason:
    """``rank(...)[0]`` (or the same reason), explaining only the chosen candidate: what
    routing needs, without an explanation model per acceptable candidate."""
    now = datetime.now(UTC)
    served = _Returnee.of(profile, now, need.level)
    allowed = _Allowed.of(consent, need.category, now)
    return _best(need, served, allowed, candidates, exclude_services)


# ----- issue 18: community needs (no person, so no consent, age or sex applies) -----

# A community need is referred by the agency that reported it; no consent restricts where.
_ANYWHERE = _Allowed(referral=True, agency_ids=None, agency_types=None)


def rank_community(
    need: ev.Need,
    area: str,
    candidates: list[Candidate],
    *,
    exclude_services: frozenset[str] = frozenset(),
) -> list[Match] | UnmatchedReason:
    """:func:`rank` for a need of the community of ``area``: listings of level community that
    serve community members, scored as for a person (coverage, capacity, record)."""
    return _rank(need, _Returnee.community(area), _ANYWHERE, candidates, exclude_services)


def best_community(
    need: ev.Need,
    area: str,
    candidates: list[Candidate],
    *,
    exclude_services: frozenset[str] = frozenset(),
) -> Match | UnmatchedReason:
    """``rank_community(...)[0]`` (or the same reason)."""
    return _best(need, _Returnee.community(area), _ANYWHERE, candidates, exclude_services)


def _rank(
    need: ev.Need,
    served: _Returnee,
    allowed: _Allowed,
    candidates: list[Candidate],
    exclude_services: frozenset[str],
) -> list[Match] | UnmatchedReason:
    scored = _acceptable(need.category, served, allowed, candidates, exclude_services)
    if not isinstance(scored, list):
        return scored
    scored.sort(key=_best_first)
    return [_match(need, served, s) for s in scored]


def _best(
    need: ev.Need,
    served: _Returnee,
    allowed: _Allowed,
    candidates: list[Candidate],
    exclude_services: frozenset[str],
) -> Match | UnmatchedReason:
    scored = _acceptable(need.category, served, allowed, candidates, exclude_services)
    if not isinstance(scored, list):
        return scored
    return _match(need, served, min(scored, key=_best_first))  # the first of equals, as sort


def _best_first(s: _Scored) -> tuple[float, str]:
    return -s[0], s[1].service_id


def _match(need: ev.Need, served: _Returnee, s: _Scored) -> Match:
    total, c, values = s
    components = dict(zip(_COMPONENTS, values, strict=True))
    community = served.beneficiary is BeneficiaryType.COMMUNITY_MEMBER
    return Match(c, _explain(need, served.area, c, total, components, community=community))


def _acceptable(
    category: str,
    returnee: _Returnee,
    allowed: _Allowed,
    candidates: list[Candidate],
    exclude_services: frozenset[str],
) -> list[_Scored] | UnmatchedReason:
    """The candidates that pass every filter, scored, in the order given; or the reason."""
    passed = _NONE  # the furthest filter any candidate passed
    scored: list[_Scored] = []
    for c in candidates:
        if (
            c.service_id in exclude_services
            or c.status is not ev.ListingStatus.ACTIVE
            or category not in c.categories
        ):
            continue
        depth = covering_depth(returnee.area, c.coverage_areas)
        if not depth:
            continue
        passed = max(passed, _AREA)
        if not _eligible(c, returnee):
            continue
        passed = max(passed, _ELIGIBILITY)
        if c.capacity not in _CAPACITY_SCORE:
            continue
        passed = _CAPACITY
        if _consent_covers(c, allowed):
            values = _components(c, returnee, depth)
            scored.append((_total(values), c, values))
    return scored or _GAP[passed]


# The filters in order (plain ints: compared for every candidate); the furthest one any
# candidate passed names the gap when none is left.
_NONE, _AREA, _ELIGIBILITY, _CAPACITY = range(4)
_GAP = {
    _NONE: UnmatchedReason.NO_LISTING,
    _AREA: UnmatchedReason.NOT_ELIGIBLE,
    _ELIGIBILITY: UnmatchedReason.NO_CAPACITY,
    _CAPACITY: UnmatchedReason.CONSENT_SCOPE,
}


def _explain(
    need: ev.Need,
    area: str,
    c: Candidate,
    total: float,
    components: dict[str, float],
    *,
    community: bool = False,
) -> ev.MatchExplanation:
    covering = max((a for a in c.coverage_areas if area.startswith(a)), key=len)
    matched = [
        f"category:{need.category}",
        "status:active",
        f"coverage:{covering}",
        "eligibility:level,community_member" if community else "eligibility:age,sex,returnee",
        f"capacity:{c.capacity.value}",
        f"level:{need.level.value}",
        "consent:none_applies" if community else "consent:agency,type,category",
    ]
    return ev.MatchExplanation(matched=matched, score=total, components=components)
