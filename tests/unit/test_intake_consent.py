"""Consent that follows through, intake's side (decision 20), on the in-memory store of
test_intake_handlers: a recipient's erasure confirmation (recorded, heard by the owner,
answered; every refusal changes nothing), and likely duplicates told to both owners only where
both consents allow it (consent.duplicate_not_told), recorded otherwise and told once."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.intake.consent import duplicate_not_told
from services.intake.disclosures import Recipient
from services.intake.store import DisclosureEntry
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.kafka.inbound import InboundEvent
from tests import factories as f
from tests.unit.test_intake_handlers import (
    AGENCY,
    OTHER_AGENCY,
    PROVIDER,
    FakeIntakeStore,
    _body,
    _person,
    _register,
    _sent,
    _submit,
    _submitted,
    _update,
)

TODAY = date(2026, 11, 20)
NGO, GOV = ev.AgencyType.NGO, ev.AgencyType.GOVERNMENT


def _consent(**scope: Any) -> ev.Consent:
    return ev.Consent.model_validate(f.consent(scope={"purposes": ["referral"], **scope}))


REFUSED = ev.Consent.model_validate(f.consent(given=False, scope=None))


@pytest.mark.parametrize(
    ("mine", "theirs", "why"),
    [
        (_consent(), _consent(), None),
        (_consent(agency_ids=["caritas-sn"]), _consent(agency_types=["un_agency"]), None),
        (_consent(agency_ids=["someone-else"]), _consent(), "case:agency_not_covered"),
        (_consent(), _consent(agency_types=["government"]), "duplicate:agency_type_not_covered"),
        (_consent(purposes=["statistics"]), _consent(), "case:purpose_not_covered"),
        (_consent(), _consent(expires_on="2026-11-19"), "duplicate:consent_expired"),
        (REFUSED, _consent(), "case:no_consent"),
    ],
)
def test_both_owners_are_told_only_when_each_consent_covers_the_other_owner(
    mine: ev.Consent, theirs: ev.Consent, why: str | None
) -> None:
    owner = ("iom-sn", ev.AgencyType.UN_AGENCY)
    other = ("caritas-sn", NGO)
    assert duplicate_not_told(mine, owner, theirs, other, TODAY) == why


def test_an_owner_of_unknown_type_is_not_told() -> None:
    got = duplicate_not_told(_consent(), ("iom-sn", None), _consent(), ("caritas-sn", NGO), TODAY)
    assert got == "duplicate:unknown_agency"


# ----- likely duplicates on the fake store -----


def _store() -> FakeIntakeStore:
    store = FakeIntakeStore()
    store.agencies[AGENCY] = Recipient(ev.AgencyType.UN_AGENCY, None)
    store.agencies[OTHER_AGENCY] = Recipient(NGO, None)
    return store


def _duplicates(unit: Any) -> list[dict[str, Any]]:
    return [
        _body(unit, i)
        for i, e in enumerate(unit.emitted)
        if e.headers["ce_type"] == ev.POSSIBLE_DUPLICATE_FOUND
    ]


async def test_a_likely_duplicate_is_told_to_both_owners_about_their_own_cases() -> None:
    store = _store()
    first = await _register(store, personal=_person())
    theirs = f.submission(OTHER_AGENCY, personal=_person(documents=[]))
    unit = await _submit(store, _submitted(theirs))
    second = store.case(theirs.agency_case_ref, OTHER_AGENCY)
    told = _duplicates(unit)
    assert [(d["case_id"], d["owner_agency_id"], d["duplicate_case_id"]) for d in told] == [
        (second.case_id, OTHER_AGENCY, first.case_id),
        (first.case_id, AGENCY, second.case_id),
    ]
    keys = [k for _, t, k in _sent(unit) if t == ev.POSSIBLE_DUPLICATE_FOUND]
    assert keys == [second.case_id, first.case_id], "each keyed by its owner's case"
    assert all(e.topic == topics.INTAKE_CASES for e in unit.emitted[:3])
    # an update that finds the same pair again tells nobody twice
    again = await _submit(store, _update(first.agency_case_ref, needs=f.needs("social.housing")))
    assert _duplicates(again) == []


async def test_a_likely_duplicate_is_only_recorded_when_one_consent_does_not_allow_it() -> None:
    store = _store()
    narrow = f.consent(scope={"purposes": ["referral"], "agency_types": ["government"]})
    first = await _register(store, personal=_person(), consent=narrow)
    theirs = f.submission(OTHER_AGENCY, personal=_person(documents=[]))
    unit = await _submit(store, _submitted(theirs))
    assert _duplicates(unit) == []
    second = store.case(theirs.agency_case_ref, OTHER_AGENCY)
    pair = (min(first.case_id, second.case_id), max(first.case_id, second.case_id))
    assert store.duplicates == {pair: "duplicate:agency_type_not_covered"}
    # the first owner's returnee consents more widely: the pair is told now, once
    wider = await _submit(store, _update(first.agency_case_ref, consent=f.consent()))
    assert [d["case_id"] for d in _duplicates(wider)] == [first.case_id, second.case_id]
    assert store.duplicates == {pair: None}


# ----- erasure confirmations -----

REFERRAL = str(uuid.uuid4())


def _disclosed(store: FakeIntakeStore, case_id: str, outcome: str = "disclosed") -> str:
    disclosure_id = str(uuid.uuid4())
    store.disclosures[REFERRAL] = DisclosureEntry(
        disclosure_id, REFERRAL, case_id, PROVIDER, outcome, None, 1, None, "ev-1"
    )
    return disclosure_id


def _confirmation(
    referral_id: str = REFERRAL,
    *,
    agency: str = PROVIDER,
    erased_at: datetime | None = None,
    key: str | None = None,
) -> InboundEvent:
    confirmation = ev.ErasureConfirmation(
        agency_id=agency,
        referral_id=referral_id,
        erased_at=erased_at or datetime.now(UTC) - timedelta(minutes=1),
    )
    return InboundEvent.from_record(
        f.record_of(
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(agency),
                key=key or referral_id,
                type_=ev.ERASURE_CONFIRMATION_SUBMITTED,
                source=messages.agency_source(agency),
                data=confirmation,
                agency_id=agency,
            )
        )
    )


async def test_a_confirmed_erasure_is_logged_heard_by_the_owner_and_answered() -> None:
    store = _store()
    case = await _register(store)
    disclosure_id = _disclosed(store, case.case_id)
    event = _confirmation()
    unit = await _submit(store, event)
    assert _sent(unit) == [(topics.INTAKE_DISCLOSURES, ev.DISCLOSURE_ERASED, case.case_id)]
    body = _body(unit, 0)
    assert body["owner_agency_id"] == AGENCY and body["recipient_agency_id"] == PROVIDER
    assert (body["referral_id"], body["submission_id"]) == (REFERRAL, event.event_id)
    assert store.erasures[disclosure_id][1] == event.event_id
    assert store.history[-1][1] == "disclosure_erased"
    assert store.submissions[event.event_id] == (PROVIDER, case.case_id, "erasure_confirmed")


async def _refused(store: FakeIntakeStore, event: InboundEvent) -> dict[str, Any]:
    before = (copy.deepcopy(store.erasures), list(store.history), dict(store.cases))
    unit = await _submit(store, event)
    assert [t for _, t, _ in _sent(unit)] == [ev.SUBMISSION_REJECTED]
    assert (store.erasures, store.history, store.cases) == before, "nothing else changed"
    return _body(unit, 0)


async def test_a_confirmation_for_a_referral_never_disclosed_to_the_sender_is_refused() -> None:
    store = _store()
    case = await _register(store)
    unknown = await _refused(store, _confirmation(str(uuid.uuid4())))
    assert unknown["reason"] == "no personal data of this referral was disclosed to this agency"
    assert [e["field"] for e in unknown["errors"]] == ["referral_id"]
    _disclosed(store, case.case_id)
    # another provider's referral: the same answer (nothing is told of other agencies)
    other = await _refused(store, _confirmation(agency="ngo-other"))
    assert other["reason"] == unknown["reason"]
    _disclosed(store, case.case_id, outcome="refused")  # nothing was sent: nothing to erase
    assert (await _refused(store, _confirmation()))["reason"] == unknown["reason"]


async def test_a_second_confirmation_or_one_under_a_wrong_key_is_refused() -> None:
    store = _store()
    case = await _register(store)
    _disclosed(store, case.case_id)
    wrong_key = await _refused(store, _confirmation(key=case.agency_case_ref))
    assert [e["field"] for e in wrong_key["errors"]] == ["(key)"]
    await _submit(store, _confirmation())
    twice = await _refused(store, _confirmation())
    assert "already confirmed" in twice["reason"]
