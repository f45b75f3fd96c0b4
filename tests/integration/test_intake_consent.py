"""Intake's side of consent that follows through (decision 20) on the real PostgreSQL, through
intake's consumer in batches as services/intake/app.py wires it: a recipient's erasure
confirmation read in the same batch as the disclosure it confirms (the deferred log settled
first), its refusals changing nothing, and likely duplicates recorded once per pair, told to
both owners only where both consents allow it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from nacl.public import PrivateKey

from services.intake.store import IntakeStore
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.db.migrations import discover, migrate
from shared.kafka.inbound import InboundEvent
from tests import factories as f
from tests.integration.counting import CountingPool
from tests.integration.test_intake_continuity import (
    INTAKE_MIGRATIONS,
    IOM,
    MINISTRY,
    NGO,
    REFERRAL_SOURCE,
    Intake,
    _agency,
    _personal,
)


@pytest.fixture
async def intake(scratch_pool: asyncpg.Pool) -> Intake:
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("intake", INTAKE_MIGRATIONS))
        store = IntakeStore(conn)
        await store.save_agency(_agency(IOM, ev.AgencyType.UN_AGENCY, PrivateKey.generate()))
        await store.save_agency(_agency(MINISTRY, ev.AgencyType.GOVERNMENT, None))
        await store.save_agency(_agency(NGO, ev.AgencyType.NGO, PrivateKey.generate()))
    return Intake(CountingPool(scratch_pool), PrivateKey.generate())


def _referred(intake: Intake, case_id: str) -> tuple[InboundEvent, str]:
    referral = ev.ReferralRequested(
        referral_id=str(uuid.uuid4()),
        case_id=case_id,
        need_id="n1",
        category="psychosocial.counselling",
        urgency="normal",
        referring_agency_id=IOM,
        recipient_agency_id=NGO,
        service_id="svc-1",
        explanation=ev.MatchExplanation(matched=[], score=0.5, components={}),
    )
    event = build_event(
        topic=topics.REFERRAL_EVENTS,
        key=case_id,
        type_=ev.REFERRAL_REQUESTED,
        source=REFERRAL_SOURCE,
        subject=referral.referral_id,
        data=referral,
    )
    return intake.inbound(event), referral.referral_id


def _confirmed(intake: Intake, agency: str, referral_id: str) -> InboundEvent:
    confirmation = ev.ErasureConfirmation(
        agency_id=agency,
        referral_id=referral_id,
        erased_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    return intake.inbound(
        build_event(
            topic=topics.AGENCY_SUBMISSIONS.name(agency),
            key=referral_id,
            type_=ev.ERASURE_CONFIRMATION_SUBMITTED,
            source=messages.agency_source(agency),
            data=confirmation,
            agency_id=agency,
        )
    )


async def _log(intake: Intake, referral_id: str) -> asyncpg.Record:
    [row] = await intake.fetch(
        "SELECT outcome, erased_at, erasure_submission_id FROM disclosure_log"
        " WHERE referral_id = $1",
        referral_id,
    )
    return row


async def test_a_confirmation_in_the_batch_of_its_disclosure_is_recorded_once(
    intake: Intake,
) -> None:
    _, case_id = await intake.register()
    referred, referral_id = _referred(intake, case_id)
    confirmed = _confirmed(intake, NGO, referral_id)
    await intake.apply([referred, confirmed])  # one batch: the log is written, then read
    row = await _log(intake, referral_id)
    assert (row["outcome"], row["erasure_submission_id"]) == ("disclosed", confirmed.event_id)
    [erased] = await intake.outbox(ev.DISCLOSURE_ERASED)
    assert (erased["owner_agency_id"], erased["recipient_agency_id"]) == (IOM, NGO)
    assert (erased["case_id"], erased["submission_id"]) == (case_id, confirmed.event_id)
    assert ("disclosure_erased", NGO) in [(a, g) for a, g, _ in await intake.history(case_id)]
    [answer] = await intake.fetch(
        "SELECT outcome FROM submissions WHERE submission_id = $1", confirmed.event_id
    )
    assert answer["outcome"] == "erasure_confirmed"

    # again, and by an agency it was never disclosed to: refused, nothing changed
    again, stranger = (
        _confirmed(intake, NGO, referral_id),
        _confirmed(intake, MINISTRY, referral_id),
    )
    await intake.apply([again, stranger])
    assert await _log(intake, referral_id) == row
    refusals = await intake.outbox(ev.SUBMISSION_REJECTED)
    assert [(r["submission_id"], r["errors"][0]["field"]) for r in refusals] == [
        (again.event_id, "referral_id"),
        (stranger.event_id, "referral_id"),
    ]
    assert len(await intake.outbox(ev.DISCLOSURE_ERASED)) == 1


def _duplicate(agency: str, personal: dict[str, Any], **overrides: Any) -> ev.CaseSubmission:
    return f.submission(agency, personal={**personal, "documents": []}, **overrides)


async def test_likely_duplicates_are_recorded_once_per_pair_and_told_where_consent_allows(
    intake: Intake,
) -> None:
    person = _personal()
    iom = _duplicate(IOM, person)
    ngo = _duplicate(NGO, person)
    narrow = f.consent(scope={"purposes": ["referral"], "agency_types": ["government"]})
    ministry = _duplicate(MINISTRY, person, consent=narrow)
    # the first two in one batch (the identity check against the batch's own cases)
    await intake.apply([intake.submitted(iom), intake.submitted(ngo)])
    iom_case = await intake.case_id(iom.agency_case_ref)
    ngo_case = await intake.case_id(ngo.agency_case_ref)
    told = await intake.outbox(ev.POSSIBLE_DUPLICATE_FOUND)
    assert sorted((t["case_id"], t["duplicate_case_id"]) for t in told) == sorted(
        [(iom_case, ngo_case), (ngo_case, iom_case)]
    )
    # the ministry's case: its consent names government agencies only, so only recorded
    await intake.apply([intake.submitted(ministry)])
    ministry_case = await intake.case_id(ministry.agency_case_ref)
    assert len(await intake.outbox(ev.POSSIBLE_DUPLICATE_FOUND)) == 2
    rows = await intake.fetch(
        "SELECT case_id, other_case_id, told, not_told_why FROM possible_duplicates"
    )
    pairs = {frozenset((str(r[0]), str(r[1]))): (r[2], r[3]) for r in rows}
    assert pairs == {
        frozenset((iom_case, ngo_case)): (True, None),
        frozenset((iom_case, ministry_case)): (False, "case:agency_type_not_covered"),
        frozenset((ngo_case, ministry_case)): (False, "case:agency_type_not_covered"),
    }
    # an update of the first case finds both again: the told pair is not told twice
    await intake.apply([intake.update(IOM, iom.agency_case_ref, needs=f.needs("social.housing"))])
    assert len(await intake.outbox(ev.POSSIBLE_DUPLICATE_FOUND)) == 2
    # the ministry's returnee consents widely: its two pairs are told now
    await intake.apply([intake.update(MINISTRY, ministry.agency_case_ref, consent=f.consent())])
    told = await intake.outbox(ev.POSSIBLE_DUPLICATE_FOUND)
    assert len(told) == 6
    assert {t["owner_agency_id"] for t in told[2:]} == {MINISTRY, IOM, NGO}
