"""Matching: the ranking rules, and properties that hold for any directory (hypothesis)."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.referral.matching import Candidate, covering_depth, eligible, rank
from shared.contracts import events as ev
from tests import factories as f

NEED = ev.Need.model_validate({"need_id": "n1", "category": "psychosocial.counselling"})
PROFILE = ev.Profile.model_validate(f.profile(languages=["wo"], age_band="25-34"))
CONSENT = ev.Consent.model_validate(f.consent())
S, C = ev.ListingStatus, ev.CapacityStatus


def cand(
    service_id: str,
    coverage: tuple[str, ...],
    capacity: C = C.HAS_CAPACITY,
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
