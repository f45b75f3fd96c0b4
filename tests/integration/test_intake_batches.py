"""Intake's handlers in consumer batches on the real PostgreSQL, as services/intake/app.py wires
them: what a batch reads is loaded once per table (the round trips of a batch do not grow with
its disclosures), and an event sees what an earlier event of the same batch wrote — the same
case submitted twice, personal data replaced, consent withdrawn — before a disclosure is
decided."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nacl.public import PrivateKey, SealedBox

from services.intake.handlers import SOURCE, IntakeHandlers, IntakeKeys
from services.intake.store import IntakeStore
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.db.migrations import discover, migrate
from shared.kafka.inbound import InboundEvent
from shared.unit import raw_handler, typed_handler
from tests import factories as f
from tests.integration.counting import CountingPool, ServiceBatches

INTAKE_MIGRATIONS = Path(__file__).resolve().parents[2] / "services/intake/migrations"
AGENCY = "iom-sn"


class Intake(ServiceBatches):
    def __init__(self, pool: CountingPool, recipient_key: PrivateKey) -> None:
        self.recipient_key = recipient_key
        handlers = IntakeHandlers(
            IntakeKeys(master_key=b"m" * 32, duplicate_key=b"d" * 32, duplicate_key_id="k1")
        )
        typed = typed_handler(
            {ev.REFERRAL_REQUESTED: handlers.on_referral_requested},
            IntakeStore,
            SOURCE,
            preload={ev.REFERRAL_REQUESTED: IntakeStore.preload_disclosures},
        )
        submissions = raw_handler(
            handlers.on_submission, IntakeStore, SOURCE, preload=handlers.preload_submissions
        )
        super().__init__(
            pool,
            "intake",
            {topics.REFERRAL_EVENTS: typed, topics.AGENCY_SUBMISSIONS: submissions},
        )

    def submitted(self, submission: ev.CaseSubmission) -> InboundEvent:
        return self.inbound(messages.submission_message(submission))

    def sent(self, type_: str, data: ev.Contract, ref: str, agency: str = AGENCY) -> InboundEvent:
        """A message of ``agency`` on its submissions topic, about its case ``ref``."""
        return self.inbound(
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(agency),
                key=ref,
                type_=type_,
                source=messages.agency_source(agency),
                data=data,
                agency_id=agency,
            )
        )

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.pool.acquire() as conn:
            return list(await conn.fetch(query, *args))

    def withdrawn(self, ref: str) -> InboundEvent:
        withdrawal = ev.ConsentWithdrawal(
            agency_id=AGENCY,
            agency_case_ref=ref,
            withdrawn_at=datetime.now(UTC) - timedelta(seconds=1),
        )
        return self.inbound(
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(AGENCY),
                key=ref,
                type_=ev.CONSENT_WITHDRAWN,
                source=messages.agency_source(AGENCY),
                data=withdrawal,
                agency_id=AGENCY,
            )
        )

    def referred(self, case_id: str, referral_id: str | None = None) -> InboundEvent:
        referral = ev.ReferralRequested(
            referral_id=referral_id or str(uuid.uuid4()),
            case_id=case_id,
            need_id="n1",
            category="psychosocial.counselling",
            urgency="normal",
            referring_agency_id=AGENCY,
            recipient_agency_id="provider-1",
            service_id="svc-1",
            explanation=ev.MatchExplanation(matched=[], score=0.5, components={}),
        )
        return self.inbound(
            build_event(
                topic=topics.REFERRAL_EVENTS,
                key=case_id,
                type_=ev.REFERRAL_REQUESTED,
                source="urn:referralexchange:service:referral",
                subject=referral.referral_id,
                data=referral,
            )
        )

    async def outbox(self, ce_type: str) -> list[dict[str, Any]]:
        async with self.pool.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT body FROM outbox WHERE headers->>'ce_type' = $1 ORDER BY id", ce_type
            )
        return [json.loads(r["body"]) for r in rows]

    async def case_id(self, ref: str) -> str:
        async with self.pool.pool.acquire() as conn:
            found = await conn.fetchval("SELECT case_id FROM cases WHERE agency_case_ref = $1", ref)
        return str(found)

    def opened(self, sealed: dict[str, Any]) -> dict[str, Any]:
        box = SealedBox(self.recipient_key).decrypt(base64.b64decode(sealed["sealed_box"]))
        opened: dict[str, Any] = json.loads(box)
        return opened


@pytest.fixture
async def intake(scratch_pool: asyncpg.Pool) -> Intake:
    recipient_key = PrivateKey.generate()
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("intake", INTAKE_MIGRATIONS))
        await IntakeStore(conn).save_agency(
            ev.AgencyRecord.model_validate(
                {
                    **f.agency("provider-1").model_dump(mode="json"),
                    "public_key": base64.b64encode(bytes(recipient_key.public_key)).decode(),
                }
            )
        )
    return Intake(CountingPool(scratch_pool), recipient_key)


async def test_a_case_submitted_twice_in_one_batch_is_registered_then_updated(
    intake: Intake,
) -> None:
    first = f.submission(AGENCY)
    again = first.model_copy(
        update={"consent": ev.Consent.model_validate(f.consent(recorded_at="2026-11-02T10:00:00Z"))}
    )
    await intake.apply([intake.submitted(first), intake.submitted(again)])
    accepted = await intake.outbox(ev.SUBMISSION_ACCEPTED)
    assert [a["outcome"] for a in accepted] == ["registered", "updated"]
    assert accepted[0]["case_id"] == accepted[1]["case_id"]
    [registered] = await intake.outbox(ev.CASE_REGISTERED)
    [updated] = await intake.outbox(ev.CASE_UPDATED)
    assert registered["case_id"] == updated["case_id"]
    [changed] = await intake.outbox(ev.CONSENT_CHANGED)  # the second consent is newer
    assert changed["case_id"] == registered["case_id"]


async def test_a_disclosure_sees_what_the_batch_changed_before_it(intake: Intake) -> None:
    kept, withdrawn = f.submission(AGENCY), f.submission(AGENCY)
    await intake.apply([intake.submitted(kept), intake.submitted(withdrawn)])
    kept_id, withdrawn_id = (
        await intake.case_id(kept.agency_case_ref),
        await intake.case_id(withdrawn.agency_case_ref),
    )
    renamed = kept.model_copy(
        update={"personal": kept.personal.model_copy(update={"given_name": "Renamed"})}
    )
    await intake.apply(
        [
            intake.submitted(renamed),  # new personal data, then a referral on the case
            intake.referred(kept_id),
            intake.withdrawn(withdrawn.agency_case_ref),  # consent gone, then a referral
            intake.referred(withdrawn_id),
        ]
    )
    [sealed] = await intake.outbox(ev.DISCLOSURE_SEALED)
    assert sealed["case_id"] == kept_id
    assert intake.opened(sealed)["given_name"] == "Renamed"
    [refused] = await intake.outbox(ev.DISCLOSURE_REFUSED)
    assert (refused["case_id"], refused["reason"]) == (withdrawn_id, "no_consent")


async def test_the_round_trips_of_a_batch_do_not_grow_with_its_disclosures(
    intake: Intake,
) -> None:
    submissions = [f.submission(AGENCY) for _ in range(2)]
    await intake.apply([intake.submitted(s) for s in submissions])
    case_ids = [await intake.case_id(s.agency_case_ref) for s in submissions]
    few = await intake.apply([intake.referred(c) for c in case_ids])
    many = await intake.apply([intake.referred(c) for c in case_ids * 6])
    assert len(await intake.outbox(ev.DISCLOSURE_SEALED)) == 14
    assert few == many, f"{few} statements for 2 disclosures, {many} for 12"
    # the inbox claim, one load, the outbox, the disclosure log and the case history
    assert many <= 5


def _document(number: str) -> dict[str, Any]:
    return {
        "given_name": "Awa",
        "family_name": "Diop",
        "documents": [{"kind": "passport", "number": number, "issuing_country": "SN"}],
        "contacts": [{"kind": "phone", "value": "+221700000000"}],
    }


async def test_the_round_trips_of_a_batch_do_not_grow_with_its_cases(intake: Intake) -> None:
    """New cases, with their keys, identity hashes and logs, and then updates of them: one
    statement per table for the batch, however many cases it holds."""
    few = [f.submission(AGENCY, personal=_document(uuid.uuid4().hex[:9])) for _ in range(2)]
    many = [f.submission(AGENCY, personal=_document(uuid.uuid4().hex[:9])) for _ in range(12)]
    created = [await intake.apply([intake.submitted(s) for s in batch]) for batch in (few, many)]
    assert created[0] == created[1], f"{created[0]} statements for 2 new cases, {created[1]} for 12"

    def update(s: ev.CaseSubmission) -> InboundEvent:
        changed = ev.CaseUpdate(
            agency_id=AGENCY,
            agency_case_ref=s.agency_case_ref,
            personal=ev.PersonalData.model_validate(_document(uuid.uuid4().hex[:9])),
            needs=[ev.Need(need_id="n1", category="economic.job_placement")],
        )
        return intake.sent(ev.CASE_UPDATE_SUBMITTED, changed, s.agency_case_ref)

    updated = [await intake.apply([update(s) for s in batch]) for batch in (few, many)]
    assert updated[0] == updated[1], f"{updated[0]} statements for 2 updates, {updated[1]} for 12"
    accepted = await intake.outbox(ev.SUBMISSION_ACCEPTED)
    assert [a["outcome"] for a in accepted] == ["registered"] * 14 + ["updated"] * 14
    # what the flush wrote is what the events said: every case, its key, its hashes replaced
    rows = await intake.fetch(
        """SELECT c.agency_case_ref, c.needs->0->>'category' AS category,
                  c.personal_sealed IS NOT NULL AS sealed, k.wrapped_key IS NOT NULL AS keyed,
                  (SELECT count(*) FROM identity_hashes h WHERE h.case_id = c.case_id) AS hashes
             FROM cases c JOIN case_keys k USING (case_id)"""
    )
    assert sorted((r["agency_case_ref"], r["category"]) for r in rows) == sorted(
        (s.agency_case_ref, "economic.job_placement") for s in few + many
    )
    assert all(r["sealed"] and r["keyed"] and r["hashes"] == 1 for r in rows)
    history = await intake.fetch("SELECT action FROM case_history ORDER BY id")
    assert [h["action"] for h in history] == ["registered"] * 14 + ["updated"] * 14


async def test_cases_of_two_agencies_in_one_batch_are_linked_as_possible_duplicates(
    intake: Intake,
) -> None:
    """The duplicate check of a new case sees the cases created before it in its batch, as it
    sees the stored ones; and a case whose identity changed in the batch no longer matches."""
    number = uuid.uuid4().hex[:9]
    stored = f.submission("ngo-a", personal=_document(number))
    await intake.apply([intake.submitted(stored)])
    first, second = (f.submission(a, personal=_document(number)) for a in ("ngo-b", "ngo-c"))
    same_agency = f.submission("ngo-b", personal=_document(number))
    await intake.apply([intake.submitted(s) for s in (first, second, same_agency)])
    by_ref = {await intake.case_id(s.agency_case_ref): s for s in (stored, first, second)}
    ids = {s.agency_case_ref: c for c, s in by_ref.items()}
    events = await intake.outbox(ev.CASE_REGISTERED)
    duplicates = {e["case_id"]: e["possible_duplicate_of"] for e in events}
    assert duplicates[ids[stored.agency_case_ref]] == []
    assert duplicates[ids[first.agency_case_ref]] == [ids[stored.agency_case_ref]]
    assert duplicates[ids[second.agency_case_ref]] == sorted(
        [ids[stored.agency_case_ref], ids[first.agency_case_ref]]
    )
    # another case of ngo-b is no duplicate of ngo-b's own, only of the other agencies'
    own = await intake.case_id(same_agency.agency_case_ref)
    assert duplicates[own] == sorted([ids[stored.agency_case_ref], ids[second.agency_case_ref]])
    links = await intake.fetch("SELECT case_id, other_case_id FROM duplicate_links")
    linked = {(str(r["case_id"]), str(r["other_case_id"])) for r in links}
    assert (ids[first.agency_case_ref], ids[stored.agency_case_ref]) in linked
    assert (ids[stored.agency_case_ref], ids[first.agency_case_ref]) in linked
    assert len(linked) == 2 * 5  # stored-first, stored-second, first-second, own-stored, own-second

    # ngo-b's first case gets another document in a batch; a new case with the old one then
    # matches only the cases that still hold it
    moved = ev.CaseUpdate(
        agency_id="ngo-b",
        agency_case_ref=first.agency_case_ref,
        personal=ev.PersonalData.model_validate(_document(uuid.uuid4().hex[:9])),
    )
    late = f.submission("ngo-d", personal=_document(number))
    await intake.apply(
        [
            intake.sent(ev.CASE_UPDATE_SUBMITTED, moved, first.agency_case_ref, "ngo-b"),
            intake.submitted(late),
        ]
    )
    events = await intake.outbox(ev.CASE_REGISTERED)
    late_id = await intake.case_id(late.agency_case_ref)
    [late_event] = [e for e in events if e["case_id"] == late_id]
    assert late_event["possible_duplicate_of"] == sorted(
        [ids[stored.agency_case_ref], ids[second.agency_case_ref], own]
    )


async def test_a_case_created_then_closed_or_erased_in_one_batch_is_stored_so(
    intake: Intake,
) -> None:
    closed, erased = (f.submission(AGENCY, personal=_document(uuid.uuid4().hex[:9])) for _ in "ab")
    closure = ev.CaseClosure(
        agency_id=AGENCY,
        agency_case_ref=closed.agency_case_ref,
        reason=ev.ClosureReason.COMPLETED,
        closed_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    erasure = ev.ErasureRequest(
        agency_id=AGENCY,
        agency_case_ref=erased.agency_case_ref,
        requested_at=datetime.now(UTC) - timedelta(seconds=1),
        basis="data_subject_request",
    )
    await intake.apply(
        [
            intake.submitted(closed),
            intake.submitted(erased),
            intake.sent(ev.CASE_CLOSURE_SUBMITTED, closure, closed.agency_case_ref),
            intake.sent(ev.ERASURE_REQUESTED, erasure, erased.agency_case_ref),
            intake.withdrawn(closed.agency_case_ref),  # still applies to a closed case
        ]
    )
    rows = {
        r["agency_case_ref"]: r
        for r in await intake.fetch(
            """SELECT c.agency_case_ref, c.status, c.closed_reason, c.consent_version,
                      c.personal_sealed IS NULL AS shredded, k.wrapped_key IS NULL AS key_gone,
                      (SELECT count(*) FROM identity_hashes h WHERE h.case_id = c.case_id) AS n
                 FROM cases c JOIN case_keys k USING (case_id)"""
        )
    }
    kept = rows[closed.agency_case_ref]
    assert (kept["status"], kept["closed_reason"], kept["consent_version"]) == (
        "closed",
        "completed",
        2,
    )
    assert (kept["shredded"], kept["key_gone"], kept["n"]) == (False, False, 1)
    gone = rows[erased.agency_case_ref]
    assert (gone["status"], gone["shredded"], gone["key_gone"], gone["n"]) == (
        "erased",
        True,
        True,
        0,
    )
    accepted = await intake.outbox(ev.SUBMISSION_ACCEPTED)
    assert [a["outcome"] for a in accepted] == [
        "registered",
        "registered",
        "closed",
        "erased",
        "consent_withdrawn",
    ]


async def test_a_redelivered_or_repeated_referral_is_decided_once(intake: Intake) -> None:
    submission = f.submission(AGENCY)
    await intake.apply([intake.submitted(submission)])
    case_id = await intake.case_id(submission.agency_case_ref)
    referral_id = str(uuid.uuid4())
    referral = intake.referred(case_id, referral_id)
    # the same event twice, and another event about the same referral, in one batch
    await intake.apply([referral, referral, intake.referred(case_id, referral_id)])
    await intake.apply([intake.referred(case_id, referral_id)])  # and again in a later one
    assert len(await intake.outbox(ev.DISCLOSURE_SEALED)) == 1
