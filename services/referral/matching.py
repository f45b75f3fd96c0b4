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
from shared.contracts.taxonomy import BeneficiaryType

_CAPACITY_SCORE = {ev.CapacityStatus.HAS_CAPACITY: 1.0, ev.CapacityStatus.WAITLIST: 0.5}
WEIGHTS = {
    "coverage_precision": 0.35,
    "capacity": 0.25,
    "language_overlap": 0.15,
    "answer_rate": 0.10,
    "speed": 0.10,
    "vulnerability_specialisation": 0.05,
}
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


@dataclass(frozen=True, slots=True)
class Match:
    candidate: Candidate
    explanation: ev.MatchExplanation


def covering_depth(area: str, coverage: tuple[str, ...]) -> int:
    """Length of the most specific coverage code that contains the area (0: not covered)."""
    return max((len(code) for code in coverage if area.startswith(code)), default=0)


def age_range(profile: ev.Profile, today: datetime | None = None) -> tuple[int, int]:
    if profile.birth_year is not None:
        age = (today or datetime.now(UTC)).year - profile.birth_year
        return age - 1, age
    assert profile.age_band is not None  # the contract requires one of the two
    return _AGE_BANDS[profile.age_band.value]


def eligible(c: Candidate, profile: ev.Profile) -> bool:
    e = c.eligibility
    low, high = age_range(profile)
    if e.minimum_age is not None and high < e.minimum_age:
        return False
    if e.maximum_age is not None and low > e.maximum_age:
        return False
    if e.sexes is not None and profile.sex not in e.sexes:
        return False
    return BeneficiaryType.RETURNEE in e.beneficiary_types


def consent_covers(c: Candidate, consent: ev.Consent, category: str) -> bool:
    scope = consent.scope
    if not consent.covers(ev.ConsentPurpose.REFERRAL) or scope is None:
        return False
    if scope.expires_on is not None and scope.expires_on < datetime.now(UTC).date():
        return False
    if scope.agency_ids is not None and c.agency_id not in scope.agency_ids:
        return False
    if scope.agency_types is not None and c.agency_type not in scope.agency_types:
        return False
    return scope.categories is None or category in scope.categories


def score(c: Candidate, profile: ev.Profile) -> tuple[float, dict[str, float]]:
    depth = covering_depth(profile.return_area, c.coverage_areas)
    components = {
        "coverage_precision": round(depth / max(len(profile.return_area), 1), 4),
        "capacity": _CAPACITY_SCORE.get(c.capacity, 0.0),
        "language_overlap": float(bool(set(profile.languages) & set(c.languages))),
        "answer_rate": round(
            c.answer_rate if c.answer_rate is not None else UNKNOWN_ANSWER_RATE, 4
        ),
        # 1 for an answer within the hour, 0.5 at a day, towards 0 for slow providers
        "speed": round(
            UNKNOWN_ANSWER_RATE
            if c.median_hours_to_decide is None
            else 1 / (1 + c.median_hours_to_decide / 24),
            4,
        ),
        "vulnerability_specialisation": float(
            bool(set(profile.vulnerabilities) & set(c.eligibility.vulnerability_specialisations))
        ),
    }
    return round(sum(WEIGHTS[k] * v for k, v in components.items()), 4), components


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
    pool = [
        c
        for c in candidates
        if c.service_id not in exclude_services
        and c.status is ev.ListingStatus.ACTIVE
        and need.category in c.categories
    ]
    in_area = [c for c in pool if covering_depth(profile.return_area, c.coverage_areas)]
    fitting = [c for c in in_area if eligible(c, profile)]
    open_ = [c for c in fitting if c.capacity in _CAPACITY_SCORE]
    allowed = [c for c in open_ if consent_covers(c, consent, need.category)]
    if not allowed:
        if open_:
            return UnmatchedReason.CONSENT_SCOPE
        if fitting:
            return UnmatchedReason.NO_CAPACITY
        return UnmatchedReason.NOT_ELIGIBLE if in_area else UnmatchedReason.NO_LISTING
    scored = sorted(
        ((score(c, profile), c) for c in allowed),
        key=lambda item: (-item[0][0], item[1].service_id),
    )
    return [
        Match(c, _explain(need, profile, c, total, components)) for (total, components), c in scored
    ]


def _explain(
    need: ev.Need, profile: ev.Profile, c: Candidate, total: float, components: dict[str, float]
) -> ev.MatchExplanation:
    covering = max((a for a in c.coverage_areas if profile.return_area.startswith(a)), key=len)
    matched = [
        f"category:{need.category}",
        "status:active",
        f"coverage:{covering}",
        "eligibility:age,sex,returnee",
        f"capacity:{c.capacity.value}",
        "consent:agency,type,category",
    ]
    return ev.MatchExplanation(matched=matched, score=total, components=components)
