"""Community needs and listing levels (issue 18, decision 17) in milliseconds: matching by
level and beneficiary type (pure), referral routing a community need on the fake store of
test_referral_handlers, intake's submissions, refusals, closure, erasure and disclosure on the
fake store of test_intake_handlers. The same rules on the real broker: tests/e2e/test_community.py;
on the real PostgreSQL: tests/integration/test_community_store.py."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from nacl.public import SealedBox

from services.intake.community import NEED_ID
from services.referral.decisions import CommunityCase
from services.referral.handlers import SOURCE as REFERRAL_SOURCE
from services.referral.handlers import ReferralHandlers
from services.referral.matching import Candidate, best, best_community, rank_community
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.contracts.messages import agency_source
from shared.contracts.taxonomy import BeneficiaryType, Dimension, Level
from shared.kafka.agency_input import Refusal
from shared.kafka.agency_messages import NO_PERSONAL_DATA, read_submission
from shared.kafka.inbound import InboundEvent
from shared.unit import Cause, Unit
from tests import factories as f
from tests.unit.test_intake_handlers import (
    AGENCY,
    FakeIntakeStore,
    _closure,
    _erasure,
    _provider,
    _refer,
    _referral,
    _register,
    _submit,
    _update,
)
from tests.unit.test_referral_handlers import POLICY, FakeStore, _response

AREA = "SN0101"
TRAINING = "economic.vocational_training"
COMMUNITY = frozenset({Level.COMMUNITY})
BOTH = frozenset({Level.COMMUNITY, Level.INDIVIDUAL})


def _candidate(
    n: int,
    levels: frozenset[Level] = frozenset({Level.INDIVIDUAL}),
    beneficiaries: tuple[BeneficiaryType, ...] = (BeneficiaryType.RETURNEE,),
    **eligibility: Any,
) -> Candidate:
    return Candidate(
        service_id=f"svc-{n}",
        agency_id=f"ngo-{n}",
        agency_type=ev.AgencyType.NGO,
        status=ev.ListingStatus.ACTIVE,
        categories=(TRAINING,),
        coverage_areas=(AREA,),
        languages=("fr",),
        capacity=ev.CapacityStatus.HAS_CAPACITY,
        eligibility=ev.Eligibility(beneficiary_types=list(beneficiaries), **eligibility),
        levels=levels,
    )


def _need(level: Level = Level.COMMUNITY, need_id: str = NEED_ID) -> ev.Need:
    return ev.Need.model_validate({"need_id": need_id, "category": TRAINING, "level": level})


COMMUNITY_PROGRAMME = _candidate(
    1, COMMUNITY, (BeneficiaryType.COMMUNITY_MEMBER,), minimum_age=18, sexes=[ev.Sex.FEMALE]
)
INDIVIDUAL_ONLY = _candidate(2)


# ----- matching -----


def test_a_community_need_goes_only_to_a_community_level_listing_for_community_members() -> None:
    # an individual-only listing of the category and area is never a candidate
    assert best_community(_need(), AREA, [INDIVIDUAL_ONLY]) is ev.UnmatchedReason.NOT_ELIGIBLE
    # level community but for returnees only: not for a community either
    returnees = _candidate(3, COMMUNITY)
    assert best_community(_need(), AREA, [returnees]) is ev.UnmatchedReason.NOT_ELIGIBLE
    # the community programme fits whatever its age and sex rules (nobody's are known)
    chosen = best_community(_need(), AREA, [INDIVIDUAL_ONLY, returnees, COMMUNITY_PROGRAMME])
    assert not isinstance(chosen, ev.UnmatchedReason)
    assert chosen.candidate.service_id == "svc-1"
    assert "level:community" in chosen.explanation.matched
    assert "consent:none_applies" in chosen.explanation.matched
    # outside its area, or excluded: the usual reasons
    assert best_community(_need(), "SN0202", [COMMUNITY_PROGRAMME]) is (
        ev.UnmatchedReason.NO_LISTING
    )
    assert best_community(
        _need(), AREA, [COMMUNITY_PROGRAMME], exclude_services=frozenset({"svc-1"})
    ) is (ev.UnmatchedReason.NO_LISTING)


def test_rank_community_orders_as_best_community_chooses() -> None:
    full = _candidate(4, BOTH, (BeneficiaryType.COMMUNITY_MEMBER, BeneficiaryType.RETURNEE))
    ranked = rank_community(_need(), AREA, [COMMUNITY_PROGRAMME, full, INDIVIDUAL_ONLY])
    assert isinstance(ranked, list)
    assert {m.candidate.service_id for m in ranked} == {"svc-1", "svc-4"}
    chosen = best_community(_need(), AREA, [COMMUNITY_PROGRAMME, full, INDIVIDUAL_ONLY])
    assert not isinstance(chosen, ev.UnmatchedReason)
    assert ranked[0] == chosen


def test_a_returnees_need_needs_its_level_and_returnees_among_the_beneficiaries() -> None:
    profile = ev.Profile.model_validate(f.profile(return_area=AREA))
    consent = ev.Consent.model_validate(f.consent())
    individual = _need(Level.INDIVIDUAL, "n1")
    # a community-only programme does not take a returnee's individual need
    community_only = _candidate(5, COMMUNITY, (BeneficiaryType.RETURNEE,))
    assert best(individual, profile, consent, [community_only]) is (ev.UnmatchedReason.NOT_ELIGIBLE)
    # a listing for community members only does not take it either
    members_only = _candidate(6, beneficiaries=(BeneficiaryType.COMMUNITY_MEMBER,))
    assert best(individual, profile, consent, [members_only]) is ev.UnmatchedReason.NOT_ELIGIBLE
    chosen = best(individual, profile, consent, [community_only, members_only, INDIVIDUAL_ONLY])
    assert not isinstance(chosen, ev.UnmatchedReason)
    assert chosen.candidate.service_id == "svc-2"
    assert "level:individual" in chosen.explanation.matched
    # a returnee's need stated at community level goes to a listing of that level
    at_community = _need(Level.COMMUNITY, "n2")
    chosen = best(at_community, profile, consent, [INDIVIDUAL_ONLY, community_only])
    assert not isinstance(chosen, ev.UnmatchedReason)
    assert chosen.candidate.service_id == "svc-5"


# ----- referral: a community need routed as a case's need -----


def _registered(**overrides: Any) -> ev.CommunityNeedRegistered:
    return ev.CommunityNeedRegistered(
        case_id=str(uuid.uuid4()),
        submitting_agency_id=AGENCY,
        area=AREA,
        need=_need(),
        people_affected=40,
        returnee_share=0.25,
        **overrides,
    )


def _referral_unit(store: FakeStore) -> Unit[Any]:
    cause = Cause("conv-1", "cause-1", ev.COMMUNITY_NEED_REGISTERED)
    return Unit(None, store, REFERRAL_SOURCE, cause)  # type: ignore[arg-type]


async def test_referral_refers_a_community_need_reroutes_it_and_records_its_gap() -> None:
    second = _candidate(7, BOTH, (BeneficiaryType.COMMUNITY_MEMBER,))
    store = FakeStore([INDIVIDUAL_ONLY, COMMUNITY_PROGRAMME, second])
    registered = _registered()
    unit = _referral_unit(store)
    await ReferralHandlers(POLICY).on_community_need(registered, unit)
    [(type_, key)] = [(e.headers["ce_type"], e.key) for e in unit.emitted]
    assert (type_, key) == (ev.REFERRAL_REQUESTED, registered.case_id)
    first = json.loads(unit.emitted[0].body)
    assert first["service_id"] in {"svc-1", "svc-7"}
    assert (first["need_id"], first["referring_agency_id"]) == (NEED_ID, AGENCY)
    assert isinstance(store.cases[registered.case_id], CommunityCase)
    # an update of the need routes nothing again
    again = _referral_unit(store)
    await ReferralHandlers(POLICY).on_community_need(registered, again)
    assert again.emitted == []
    # a rejection re-routes to the other community programme, never to the individual one
    [ref] = store.referrals.values()
    event = _response(ref, ref.recipient_agency_id, "reject", reason_code="at_capacity")
    unit = Unit(None, store, REFERRAL_SOURCE, Cause.of(event))  # type: ignore[arg-type]
    await ReferralHandlers(POLICY).on_response(event, unit)
    rerouted = json.loads(unit.emitted[-1].body)
    assert unit.emitted[-1].headers["ce_type"] == ev.REFERRAL_REQUESTED
    assert rerouted["service_id"] == ({"svc-1", "svc-7"} - {first["service_id"]}).pop()
    assert rerouted["attempt"] == 2
    # without a community programme the need is recorded unmet, as a case's
    alone = FakeStore([INDIVIDUAL_ONLY])
    unmet = _registered()
    unit = _referral_unit(alone)
    await ReferralHandlers(POLICY).on_community_need(unmet, unit)
    assert [e.headers["ce_type"] for e in unit.emitted] == [ev.NEED_UNMATCHED]
    assert json.loads(unit.emitted[0].body)["reason"] == "not_eligible"
    assert alone.unmet[(unmet.case_id, NEED_ID)] is ev.UnmatchedReason.NOT_ELIGIBLE


# ----- intake -----

DESCRIPTION = "The quarter's young people need a training centre (ask Awa at the mairie)"


def _body(ref: str, **overrides: Any) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "agency_id": AGENCY,
        "agency_case_ref": ref,
        "area": AREA,
        "category": TRAINING,
        "people_affected": 40,
        "returnee_share": 0.25,
        "description": DESCRIPTION,
        **overrides,
    }


def _community_message(body: dict[str, Any], agency: str = AGENCY) -> InboundEvent:
    sent = build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(agency),
        key=body["agency_case_ref"],
        type_=ev.COMMUNITY_NEED_SUBMITTED,
        source=agency_source(agency),
        data=ev.SubmissionRejected(submission_id="x", reason="x"),  # replaced below
        agency_id=agency,
    )
    raw = OutgoingEvent(sent.topic, sent.key, sent.headers, json.dumps(body).encode())
    return InboundEvent.from_record(f.record_of(raw))


def _types(unit: Unit[Any]) -> list[str]:
    return [e.headers["ce_type"] for e in unit.emitted]


def _data(unit: Unit[Any], type_: str) -> dict[str, Any]:
    [found] = [json.loads(e.body) for e in unit.emitted if e.headers["ce_type"] == type_]
    data: dict[str, Any] = found
    return data


async def test_intake_registers_a_community_need_without_its_description_and_updates_it() -> None:
    store = FakeIntakeStore()
    unit = await _submit(store, _community_message(_body("COM-1")))
    assert _types(unit) == [ev.COMMUNITY_NEED_REGISTERED, ev.SUBMISSION_ACCEPTED]
    assert {e.topic for e in unit.emitted} == {topics.INTAKE_CASES}
    registered = _data(unit, ev.COMMUNITY_NEED_REGISTERED)
    need_id = registered["case_id"]
    assert {e.key for e in unit.emitted} == {need_id}
    assert registered["need"] == {
        "need_id": NEED_ID,
        "category": TRAINING,
        "dimension": "economic",
        "level": "community",
        "urgency": "normal",
        "hold_for_referrer": False,
    }
    assert (registered["area"], registered["people_affected"]) == (AREA, 40)
    assert b"Awa" not in b"".join(e.body for e in unit.emitted)  # the description stays in
    assert store.descriptions[need_id] == DESCRIPTION
    accepted = _data(unit, ev.SUBMISSION_ACCEPTED)
    assert (accepted["outcome"], accepted["case_id"]) == ("registered", need_id)

    again = await _submit(store, _community_message(_body("COM-1", people_affected=55)))
    assert _data(again, ev.SUBMISSION_ACCEPTED)["outcome"] == "updated"
    assert _data(again, ev.COMMUNITY_NEED_REGISTERED)["case_id"] == need_id
    assert store.community[need_id].people_affected == 55
    assert len(store.community) == 1


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        pytest.param(
            {"given_name": "Awa", "family_name": "Diop", "date_of_birth": "1990-05-01"},
            {"given_name", "family_name", "date_of_birth"},
            id="names-and-birth-date",
        ),
        pytest.param(
            {"profile": f.profile(), "contacts": [], "documents": []},
            {"profile", "contacts", "documents"},
            id="profile-contacts-documents",
        ),
    ],
)
async def test_a_community_need_with_personal_fields_is_refused_field_by_field(
    overrides: dict[str, Any], fields: set[str]
) -> None:
    store = FakeIntakeStore()
    unit = await _submit(store, _community_message(_body("COM-P", **overrides)))
    assert _types(unit) == [ev.SUBMISSION_REJECTED]
    rejected = _data(unit, ev.SUBMISSION_REJECTED)
    assert rejected["reason"].startswith("a community need holds no personal data")
    said = {e["field"]: e["message"] for e in rejected["errors"]}
    assert {k for k, v in said.items() if v == NO_PERSONAL_DATA} == fields
    assert store.community == {} and store.submissions  # recorded as rejected, nothing stored


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"area": "ZZ01"}, "area", id="unknown-area"),
        pytest.param({"area": "Dakar"}, "area", id="malformed-area"),
        pytest.param({"category": "economic.nothing"}, "category", id="unknown-category"),
        pytest.param({"people_affected": 0}, "people_affected", id="nobody"),
        pytest.param({"people_affected": -3}, "people_affected", id="negative"),
        pytest.param({"returnee_share": 1.5}, "returnee_share", id="share-above-one"),
    ],
)
async def test_a_community_need_with_a_bad_field_is_refused_with_that_field(
    overrides: dict[str, Any], field: str
) -> None:
    store = FakeIntakeStore()
    unit = await _submit(store, _community_message(_body("COM-B", **overrides)))
    assert _types(unit) == [ev.SUBMISSION_REJECTED]
    fields = {e["field"] for e in _data(unit, ev.SUBMISSION_REJECTED)["errors"]}
    assert field in fields
    assert NO_PERSONAL_DATA not in json.dumps(_data(unit, ev.SUBMISSION_REJECTED))
    assert store.community == {}


def test_the_personal_data_rewording_leaves_other_refusals_alone() -> None:
    refused = read_submission(_community_message(_body("COM-X", urgency="whenever")))
    assert isinstance(refused, Refusal)
    assert refused.reason == "body does not match the CommunityNeedSubmission contract"


async def test_a_community_need_under_a_cases_reference_is_refused() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    unit = await _submit(store, _community_message(_body(row.agency_case_ref)))
    assert _types(unit) == [ev.SUBMISSION_REJECTED]
    assert "reference of its own" in _data(unit, ev.SUBMISSION_REJECTED)["reason"]
    assert store.community == {}


async def test_a_community_need_is_closed_and_erased_by_its_reference() -> None:
    store = FakeIntakeStore()
    unit = await _submit(store, _community_message(_body("COM-C")))
    need_id = _data(unit, ev.COMMUNITY_NEED_REGISTERED)["case_id"]
    # a case update naming it changes nothing
    refused = await _submit(
        store, _update("COM-C", needs=[{"need_id": "n1", "category": TRAINING}])
    )
    assert _types(refused) == [ev.SUBMISSION_REJECTED]
    assert "community need" in _data(refused, ev.SUBMISSION_REJECTED)["reason"]

    closed = await _submit(store, _closure("COM-C"))
    assert _types(closed) == [ev.CASE_CLOSED, ev.SUBMISSION_ACCEPTED]
    assert _data(closed, ev.CASE_CLOSED)["case_id"] == need_id
    assert _data(closed, ev.SUBMISSION_ACCEPTED)["outcome"] == "closed"
    assert store.community[need_id].status == "closed"
    twice = await _submit(store, _closure("COM-C"))
    assert _types(twice) == [ev.SUBMISSION_REJECTED]
    resubmitted = await _submit(store, _community_message(_body("COM-C")))
    assert _types(resubmitted) == [ev.SUBMISSION_REJECTED]

    erased = await _submit(store, _erasure("COM-C"))
    assert _types(erased) == [ev.CASE_ERASED, ev.SUBMISSION_ACCEPTED]
    assert _data(erased, ev.CASE_ERASED)["agency_case_ref"] == "COM-C"
    assert store.descriptions[need_id] is None
    # erased: the reference names nothing any more
    gone = await _submit(store, _erasure("COM-C"))
    assert _types(gone) == [ev.SUBMISSION_REJECTED]


async def test_a_referred_community_need_is_sealed_to_the_provider_without_consent() -> None:
    store = FakeIntakeStore()
    unit = await _submit(store, _community_message(_body("COM-D")))
    need_id = _data(unit, ev.COMMUNITY_NEED_REGISTERED)["case_id"]
    key = await _provider(store, ev.AgencyType.DEVELOPMENT_PROGRAMME)
    referral = _referral(need_id, need_id=NEED_ID, category=TRAINING)
    sent = await _refer(store, referral)
    assert _types(sent) == [ev.DISCLOSURE_SEALED]
    assert sent.emitted[0].topic == topics.INTAKE_DISCLOSURES
    sealed = _data(sent, ev.DISCLOSURE_SEALED)
    assert sealed["content"] == "community_need"
    brief = json.loads(SealedBox(key).decrypt(base64.b64decode(sealed["sealed_box"])))
    assert brief["description"] == DESCRIPTION
    assert (brief["agency_case_ref"], brief["people_affected"]) == ("COM-D", 40)
    entry = store.disclosures[referral.referral_id]
    assert (entry.kind, entry.outcome, entry.case_id) == ("community_need", "disclosed", need_id)
    assert entry.consent_version is None


async def test_a_community_need_is_not_sealed_without_a_key_or_once_closed() -> None:
    store = FakeIntakeStore()
    unit = await _submit(store, _community_message(_body("COM-K")))
    need_id = _data(unit, ev.COMMUNITY_NEED_REGISTERED)["case_id"]
    await _provider(store, with_key=False)
    referral = _referral(need_id, need_id=NEED_ID, category=TRAINING)
    refused = await _refer(store, referral)
    assert _types(refused) == [ev.DISCLOSURE_REFUSED]
    assert _data(refused, ev.DISCLOSURE_REFUSED)["reason"] == "no_public_key"
    assert store.disclosures[referral.referral_id].outcome == "refused"

    await _provider(store, agency_id="other-provider")
    await _submit(store, _closure("COM-K"))
    later = _referral(need_id, recipient_agency_id="other-provider", category=TRAINING)
    closed = await _refer(store, later)
    assert _data(closed, ev.DISCLOSURE_REFUSED)["reason"] == "case_not_open"


def test_the_contract_fills_the_dimension_and_checks_it() -> None:
    need = ev.CommunityNeedSubmission.model_validate(_body("COM-V"))
    assert need.dimension is Dimension.ECONOMIC
    with pytest.raises(ValueError, match="dimension"):
        ev.CommunityNeedSubmission.model_validate(_body("COM-V", dimension="social"))
    listing = f.listing("ngo-1")
    assert listing.levels == [Level.INDIVIDUAL]
    with pytest.raises(ValueError, match="levels"):
        f.listing("ngo-1", levels=["community", "community"])
