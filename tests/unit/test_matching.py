"""Matching: the ranking rules, and properties that hold for any directory (hypothesis)."""

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.referral.directory import containing_codes
from services.referral.matching import (
    WEIGHTS,
    Candidate,
    Match,
    age_range,
    covering_depth,
    eligible,
    rank,
)
from services.referral.matching import best as best_match
from shared.contracts import events as ev
from shared.contracts.taxonomy import BeneficiaryType
from tests import factories as f

NEED = ev.Need.model_validate({"need_id": "n1", "category": "psychosocial.counselling"})
PROFILE = ev.Profile.model_validate(f.profile(languages=["wo"], age_band="25-34"))
CONSENT = ev.Consent.model_validate(f.consent())
S, C = ev.ListingStatus, ev.CapacityStatus


def cand(
    service_id: str,
    coverage: tuple[str, ...],
    capacity: ev.CapacityStatus = C.HAS_CAPACITY,
    languages: tuple[str, ...] = ("fr",),
    **kw: Any,
) -> Candidate:
    args: dict[str, Any] = {
        "agency_id": "agency-x",
        "agency_type": ev.AgencyType.NGO,
        "status": S.ACTIVE,
        "categories": ("psychosocial.counselling",),
        "eligibility": ev.Eligibility(),
    }
    return Candidate(
        service_id=service_id,
        coverage_areas=coverage,
        languages=languages,
        capacity=capacity,
        **{**args, **kw},
    )


def best(candidates: list[Candidate], consent: ev.Consent = CONSENT) -> str | ev.UnmatchedReason:
    result = rank(NEED, PROFILE, consent, candidates)
    return result if isinstance(result, ev.UnmatchedReason) else result[0].candidate.service_id


def test_covering_depth_is_the_most_specific_containing_code() -> None:
    assert covering_depth("SN0101", ("SN", "SN01")) == 4
    assert covering_depth("SN0101", ("SN02",)) == 0


def test_district_beats_region_beats_national() -> None:
    national, region, district = cand("a", ("SN",)), cand("b", ("SN01",)), cand("c", ("SN0101",))
    assert best([national, region, district]) == "c"
    assert best([national, region]) == "b"


def test_capacity_before_waitlist_and_none_excluded() -> None:
    assert best([cand("a", ("SN01",), C.WAITLIST), cand("c", ("SN01",))]) == "c"
    assert best([cand("b", ("SN01",), C.NO_CAPACITY)]) is ev.UnmatchedReason.NO_CAPACITY


def test_the_reason_names_the_furthest_filter_passed() -> None:
    assert best([cand("a", ("SN02",))]) is ev.UnmatchedReason.NO_LISTING
    adults_over_40 = ev.Eligibility(minimum_age=40)
    assert (
        best([cand("a", ("SN01",), eligibility=adults_over_40)]) is ev.UnmatchedReason.NOT_ELIGIBLE
    )
    only_gov = ev.Consent.model_validate(
        f.consent(scope={"purposes": ["referral"], "agency_types": ["government"]})
    )
    assert best([cand("a", ("SN01",))], only_gov) is ev.UnmatchedReason.CONSENT_SCOPE
    assert best([cand("a", ("SN01",), status=S.INACTIVE)]) is ev.UnmatchedReason.NO_LISTING


def test_answer_rate_and_language_count() -> None:
    reliable = cand("z", ("SN01",), answer_rate=1.0)
    unreliable = cand("a", ("SN01",), answer_rate=0.0)
    assert best([unreliable, reliable]) == "z"
    assert best([cand("a", ("SN01",)), cand("b", ("SN01",), languages=("wo",))]) == "b"


def test_explanation_names_criteria_and_components() -> None:
    result = rank(NEED, PROFILE, CONSENT, [cand("a", ("SN", "SN01"), languages=("wo",))])
    assert isinstance(result, list)
    explanation = result[0].explanation
    assert "coverage:SN01" in explanation.matched
    assert explanation.components["language_overlap"] == 1.0
    assert 0 < explanation.score <= 1


def test_eligibility_by_sex_age_and_beneficiary_type() -> None:
    assert eligible(cand("a", ("SN",)), PROFILE)
    assert not eligible(cand("a", ("SN",), eligibility=ev.Eligibility(sexes=["male"])), PROFILE)
    assert not eligible(cand("a", ("SN",), eligibility=ev.Eligibility(maximum_age=17)), PROFILE)
    community_only = ev.Eligibility(beneficiary_types=["community_member"])
    assert not eligible(cand("a", ("SN",), eligibility=community_only), PROFILE)


# ----- properties over arbitrary directories -----

AREAS = ["SN", "SN01", "SN0101", "SN0102", "SN02", "ML", "ML01"]
candidates = st.builds(
    cand,
    service_id=st.text(alphabet="abcdef", min_size=1, max_size=4),
    coverage=st.lists(st.sampled_from(AREAS), min_size=1, max_size=3, unique=True).map(tuple),
    capacity=st.sampled_from(list(C)),
    languages=st.lists(st.sampled_from(["fr", "wo", "en"]), max_size=2, unique=True).map(tuple),
    status=st.sampled_from(list(S)),
    agency_type=st.sampled_from(list(ev.AgencyType)),
    categories=st.sampled_from([("psychosocial.counselling",), ("social.housing",)]),
    eligibility=st.builds(
        ev.Eligibility,
        minimum_age=st.sampled_from([None, 18, 40]),
        sexes=st.sampled_from([None, ["female"], ["male"]]),
    ),
    answer_rate=st.sampled_from([None, 0.0, 0.5, 1.0]),
)
consents = st.sampled_from(
    [
        CONSENT,
        ev.Consent.model_validate(
            f.consent(scope={"purposes": ["referral"], "agency_types": ["ngo", "government"]})
        ),
        ev.Consent.model_validate(f.consent(given=False, scope=None)),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(candidates, max_size=8), consents)
def test_matching_returns_only_acceptable_listings_deterministically(
    directory: list[Candidate], consent: ev.Consent
) -> None:
    result = rank(NEED, PROFILE, consent, directory)
    again = rank(NEED, PROFILE, consent, list(reversed(directory)))
    if isinstance(result, ev.UnmatchedReason):
        assert again == result
        return
    assert isinstance(again, list)
    assert [m.candidate for m in result] == [m.candidate for m in again] or len(
        {m.candidate.service_id for m in result}
    ) < len(result)  # identical ids may swap
    scores = [m.explanation.score for m in result]
    assert scores == sorted(scores, reverse=True)
    for m in result:
        c = m.candidate
        assert c.status is S.ACTIVE
        assert NEED.category in c.categories
        assert covering_depth(PROFILE.return_area, c.coverage_areas) > 0
        assert c.capacity is not C.NO_CAPACITY
        assert eligible(c, PROFILE)
        assert consent.given and consent.scope is not None
        types = consent.scope.agency_types
        assert types is None or c.agency_type in types


def test_held_slots_reduce_the_capacity_seen() -> None:
    from services.referral.directory import effective_capacity

    two = ev.Capacity(status=C.HAS_CAPACITY, open_slots=2)
    assert effective_capacity(two, 1) is C.HAS_CAPACITY
    assert effective_capacity(two, 2) is C.NO_CAPACITY
    assert effective_capacity(ev.Capacity(status=C.WAITLIST), 50) is C.WAITLIST


def test_faster_providers_rank_higher_all_else_equal() -> None:
    fast = cand("z", ("SN01",), median_hours_to_decide=1.0)
    slow = cand("a", ("SN01",), median_hours_to_decide=24 * 10)
    assert best([slow, fast]) == "z"


# ----- the optimised ranking chooses exactly as the straightforward one -----


def reference_rank(
    need: ev.Need,
    profile: ev.Profile,
    consent: ev.Consent,
    candidates: list[Candidate],
    *,
    exclude_services: frozenset[str] = frozenset(),
) -> list[Match] | ev.UnmatchedReason:
    """Matching as first written: one list per filter, every candidate scored and explained.
    ``rank`` and ``best`` must give the same answers to the last bit."""

    def depth(c: Candidate) -> int:
        return max((len(a) for a in c.coverage_areas if area.startswith(a)), default=0)

    def fits(c: Candidate) -> bool:
        e, (low, high) = c.eligibility, age_range(profile)
        return (
            (e.minimum_age is None or high >= e.minimum_age)
            and (e.maximum_age is None or low <= e.maximum_age)
            and (e.sexes is None or profile.sex in e.sexes)
            and BeneficiaryType.RETURNEE in e.beneficiary_types
            and need.level in c.levels
        )

    def consented(c: Candidate) -> bool:
        scope = consent.scope
        return (
            consent.covers(ev.ConsentPurpose.REFERRAL)
            and scope is not None
            and (scope.expires_on is None or scope.expires_on >= datetime.now(UTC).date())
            and (scope.agency_ids is None or c.agency_id in scope.agency_ids)
            and (scope.agency_types is None or c.agency_type in scope.agency_types)
            and (scope.categories is None or need.category in scope.categories)
        )

    def scored(c: Candidate) -> tuple[float, dict[str, float]]:
        rate, hours = c.answer_rate, c.median_hours_to_decide
        specialisations = c.eligibility.vulnerability_specialisations
        components = {
            "coverage_precision": round(depth(c) / max(len(area), 1), 4),
            "capacity": {C.HAS_CAPACITY: 1.0, C.WAITLIST: 0.5}.get(c.capacity, 0.0),
            "language_overlap": float(bool(set(profile.languages) & set(c.languages))),
            "answer_rate": round(rate if rate is not None else 0.5, 4),
            "speed": round(0.5 if hours is None else 1 / (1 + hours / 24), 4),
            "vulnerability_specialisation": float(
                bool(set(profile.vulnerabilities) & set(specialisations))
            ),
        }
        return round(sum(WEIGHTS[k] * v for k, v in components.items()), 4), components

    area = profile.return_area
    pool = [
        c
        for c in candidates
        if c.service_id not in exclude_services
        and c.status is S.ACTIVE
        and need.category in c.categories
    ]
    in_area = [c for c in pool if depth(c)]
    fitting = [c for c in in_area if fits(c)]
    open_ = [c for c in fitting if c.capacity in (C.HAS_CAPACITY, C.WAITLIST)]
    allowed = [c for c in open_ if consented(c)]
    if not allowed:
        if open_:
            return ev.UnmatchedReason.CONSENT_SCOPE
        if fitting:
            return ev.UnmatchedReason.NO_CAPACITY
        return ev.UnmatchedReason.NOT_ELIGIBLE if in_area else ev.UnmatchedReason.NO_LISTING
    ranked = sorted(((scored(c), c) for c in allowed), key=lambda i: (-i[0][0], i[1].service_id))
    out = []
    for (total, components), c in ranked:
        covering = max((a for a in c.coverage_areas if area.startswith(a)), key=len)
        matched = [
            f"category:{need.category}",
            "status:active",
            f"coverage:{covering}",
            "eligibility:age,sex,returnee",
            f"capacity:{c.capacity.value}",
            f"level:{need.level.value}",
            "consent:agency,type,category",
        ]
        explanation = ev.MatchExplanation(matched=matched, score=total, components=components)
        out.append(Match(c, explanation))
    return out


def assert_same_choice(
    need: ev.Need,
    profile: ev.Profile,
    consent: ev.Consent,
    directory: list[Candidate],
    exclude: frozenset[str] = frozenset(),
) -> None:
    expected = reference_rank(need, profile, consent, directory, exclude_services=exclude)
    assert rank(need, profile, consent, directory, exclude_services=exclude) == expected
    chosen = best_match(need, profile, consent, directory, exclude_services=exclude)
    assert chosen == (expected[0] if isinstance(expected, list) else expected)


def a_profile(
    area: str, sex: ev.Sex, age: ev.AgeBand | int, langs: list[str], vulns: list[str]
) -> ev.Profile:
    ages = {"birth_year": age, "age_band": None} if isinstance(age, int) else {"age_band": age}
    return ev.Profile.model_validate(
        f.profile(
            return_area=area,
            return_country=area[:2],
            sex=sex,
            languages=langs,
            vulnerabilities=vulns,
            **ages,
        )
    )


profiles = st.builds(
    a_profile,
    area=st.sampled_from(["SN0101", "SN01", "SN", "SN010199", "SN0202", "ML01"]),
    sex=st.sampled_from(list(ev.Sex)),
    age=st.one_of(st.sampled_from(list(ev.AgeBand)), st.integers(1930, 2025)),
    langs=st.lists(st.sampled_from(["fr", "wo", "en"]), max_size=2, unique=True),
    vulns=st.lists(st.sampled_from(["disability", "elderly"]), max_size=2, unique=True),
)
wide_candidates = st.builds(
    cand,
    service_id=st.text(alphabet="abcdef", min_size=1, max_size=3),
    coverage=st.lists(st.sampled_from(AREAS), min_size=1, max_size=3, unique=True).map(tuple),
    capacity=st.sampled_from(list(C)),
    languages=st.lists(st.sampled_from(["fr", "wo", "en"]), max_size=2, unique=True).map(tuple),
    status=st.sampled_from(list(S)),
    agency_id=st.sampled_from(["agency-x", "agency-y", "agency-z"]),
    agency_type=st.sampled_from([None, *ev.AgencyType]),
    categories=st.sampled_from([("psychosocial.counselling",), ("social.housing",)]),
    eligibility=st.builds(
        lambda ages, **kw: ev.Eligibility(minimum_age=ages[0], maximum_age=ages[1], **kw),
        ages=st.sampled_from([(None, None), (18, None), (40, None), (None, 17), (5, 64)]),
        sexes=st.sampled_from([None, ["female"], ["male", "other"]]),
        beneficiary_types=st.sampled_from([["returnee"], ["community_member"]]),
        vulnerability_specialisations=st.sampled_from([[], ["disability"], ["elderly"]]),
    ),
    answer_rate=st.one_of(st.none(), st.floats(0, 1)),
    median_hours_to_decide=st.one_of(st.none(), st.floats(0, 24 * 90)),
)
scoped_consents = st.builds(
    lambda ids, types, categories, expires: ev.Consent.model_validate(
        f.consent(
            scope={
                "purposes": ["referral"],
                "agency_ids": ids,
                "agency_types": types,
                "categories": categories,
                "expires_on": expires,
            }
        )
    ),
    ids=st.sampled_from([None, ["agency-x"], ["agency-y", "agency-z"]]),
    types=st.sampled_from([None, ["ngo"], ["government", "un_agency"]]),
    categories=st.sampled_from([None, ["psychosocial.counselling"], ["social.housing"]]),
    expires=st.sampled_from([None, "2020-01-01", "2099-12-31"]),
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(wide_candidates, max_size=12),
    profiles,
    st.one_of(consents, scoped_consents),
    st.frozensets(st.text(alphabet="abcdef", min_size=1, max_size=3), max_size=3),
)
def test_rank_and_best_choose_exactly_as_the_reference(
    directory: list[Candidate], profile: ev.Profile, consent: ev.Consent, exclude: frozenset[str]
) -> None:
    assert_same_choice(NEED, profile, consent, directory, exclude)


@given(st.text(alphabet="SN012", max_size=8), st.text(alphabet="SN012", max_size=8))
def test_containing_codes_are_exactly_the_codes_that_contain_the_area(area: str, code: str) -> None:
    assert (code in containing_codes(area)) == area.startswith(code)
