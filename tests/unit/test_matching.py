from services.referral.matching import Candidate, best_match, covering_depth
from shared.contracts import events as ev
from tests import factories as f

NEED = ev.Need.model_validate({"need_id": "n1", "category": "psychosocial.counselling"})
PROFILE = ev.Profile.model_validate(f.profile(languages=["wo"]))


def cand(
    service_id: str,
    coverage: tuple[str, ...],
    capacity: ev.CapacityStatus = ev.CapacityStatus.HAS_CAPACITY,
    languages: tuple[str, ...] = ("fr",),
) -> Candidate:
    return Candidate(service_id, "agency-x", coverage, languages, capacity)


def test_covering_depth_is_the_most_specific_containing_code() -> None:
    assert covering_depth("SN0101", ("SN", "SN01")) == 4
    assert covering_depth("SN0101", ("SN02",)) == 0
    assert covering_depth("SN0101", ("ML",)) == 0


def test_district_beats_region_beats_national() -> None:
    national, region, district = cand("a", ("SN",)), cand("b", ("SN01",)), cand("c", ("SN0101",))
    match = best_match(NEED, PROFILE, [national, region, district])
    assert match is not None and match.candidate.service_id == "c"
    match = best_match(NEED, PROFILE, [national, region])
    assert match is not None and match.candidate.service_id == "b"


def test_capacity_before_waitlist_and_none_excluded() -> None:
    waitlist = cand("a", ("SN01",), ev.CapacityStatus.WAITLIST)
    full = cand("b", ("SN01",), ev.CapacityStatus.NO_CAPACITY)
    open_ = cand("c", ("SN01",))
    match = best_match(NEED, PROFILE, [waitlist, full, open_])
    assert match is not None and match.candidate.service_id == "c"
    assert best_match(NEED, PROFILE, [full]) is None


def test_uncovered_area_is_not_a_match() -> None:
    assert best_match(NEED, PROFILE, [cand("a", ("SN02",))]) is None


def test_tie_break_is_deterministic_by_service_id() -> None:
    one, two = cand("svc-b", ("SN01",)), cand("svc-a", ("SN01",))
    for order in ([one, two], [two, one]):
        match = best_match(NEED, PROFILE, order)
        assert match is not None and match.candidate.service_id == "svc-a"


def test_explanation_names_criteria_and_components() -> None:
    match = best_match(NEED, PROFILE, [cand("a", ("SN", "SN01"), languages=("wo",))])
    assert match is not None
    assert "coverage:SN01" in match.explanation.matched
    assert match.explanation.components["language_overlap"] == 1.0
    assert 0 < match.explanation.score <= 1
