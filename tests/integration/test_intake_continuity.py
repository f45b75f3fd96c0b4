"""Continuity on intake's side (decision 16) on the real PostgreSQL, through intake's consumer
in batches as services/intake/app.py wires it: a handed-over case moves (its owner, its
reference, a former owner's writes refused), its whole personal data is sealed for the new
owner and logged, each reason a handover fails for leaves the case as it was, and a batch that
mixes a handover with the case's submissions applies them in order — the store's batch cache
and its deferred writes stay true across the move."""

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

from services.intake import crypto
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
IOM, MINISTRY, PROGRAMME, NGO = "iom-sn", "ministry-labour-sn", "dev-programme-sn", "ngo-sn"
REFERRAL_SOURCE = "urn:referralexchange:service:referral"


def _past(seconds: int = 5) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _personal() -> dict[str, Any]:
    return {
        "given_name": "Awa",
        "family_name": "Diop",
        "other_names": ["Ndeye"],
        "date_of_birth": "1990-05-01",
        "contacts": [{"kind": "phone", "value": "+221700000000"}],
        "documents": [
            {"kind": "passport", "number": uuid.uuid4().hex[:9], "issuing_country": "SN"}
        ],
        "preferred_language": "fr",
    }


class Intake(ServiceBatches):
    def __init__(self, pool: CountingPool, ministry_key: PrivateKey) -> None:
        self.ministry_key = ministry_key
        handlers = IntakeHandlers(
            IntakeKeys(master_key=b"m" * 32, duplicate_key=b"d" * 32, duplicate_key_id="k1")
        )
        typed = typed_handler(
            {
                ev.REFERRAL_REQUESTED: handlers.on_referral_requested,
                ev.HANDOVER_PROPOSED: handlers.on_handover_proposed,
                ev.HANDOVER_ACCEPTED: handlers.on_handover_accepted,
                ev.HANDOVER_ENDED: handlers.on_handover_ended,
            },
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

    # ----- what the agencies send -----

    def submitted(self, submission: ev.CaseSubmission) -> InboundEvent:
        return self.inbound(messages.submission_message(submission))

    def sent(self, agency: str, type_: str, data: Any) -> InboundEvent:
        """A message of ``agency`` on its submissions topic, keyed by its case reference."""
        return self.inbound(
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(agency),
                key=data.agency_case_ref,
                type_=type_,
                source=messages.agency_source(agency),
                data=data,
                agency_id=agency,
            )
        )

    def update(self, agency: str, ref: str, **blocks: Any) -> InboundEvent:
        update = ev.CaseUpdate.model_validate(
            {"agency_id": agency, "agency_case_ref": ref, **blocks}
        )
        return self.sent(agency, ev.CASE_UPDATE_SUBMITTED, update)

    def end(self, agency: str, ref: str) -> InboundEvent:
        end = ev.AssistanceEnd(
            agency_id=agency,
            agency_case_ref=ref,
            ended_at=_past(),
            reason=ev.AssistanceEndReason.PROGRAMME_ENDED,
        )
        return self.sent(agency, ev.ASSISTANCE_END_SUBMITTED, end)

    def withdrawn(self, agency: str, ref: str) -> InboundEvent:
        withdrawal = ev.ConsentWithdrawal(
            agency_id=agency, agency_case_ref=ref, withdrawn_at=_past()
        )
        return self.sent(agency, ev.CONSENT_WITHDRAWN, withdrawal)

    def closed(
        self,
        agency: str,
        ref: str,
        open_referrals: ev.OpenReferralsOnClosure = ev.OpenReferralsOnClosure.CANCEL,
    ) -> InboundEvent:
        closure = ev.CaseClosure(
            agency_id=agency,
            agency_case_ref=ref,
            closed_at=_past(),
            reason=ev.ClosureReason.COMPLETED,
            open_referrals=open_referrals,
        )
        return self.sent(agency, ev.CASE_CLOSURE_SUBMITTED, closure)

    def erased(self, agency: str, ref: str) -> InboundEvent:
        erasure = ev.ErasureRequest(
            agency_id=agency,
            agency_case_ref=ref,
            requested_at=_past(),
            basis="data_subject_request",
        )
        return self.sent(agency, ev.ERASURE_REQUESTED, erasure)

    # ----- what referral publishes -----

    def referral_event(self, type_: str, data: Any) -> InboundEvent:
        return self.inbound(
            build_event(
                topic=topics.REFERRAL_EVENTS,
                key=data.case_id,
                type_=type_,
                source=REFERRAL_SOURCE,
                subject=data.handover_id,
                data=data,
            )
        )

    def accepted(self, case_id: str, **overrides: Any) -> ev.HandoverAccepted:
        return ev.HandoverAccepted.model_validate(
            {
                "handover_id": str(uuid.uuid4()),
                "case_id": case_id,
                "owner_agency_id": IOM,
                "receiving_agency_id": MINISTRY,
                "receiving_case_ref": f.unique("MIN"),
                **overrides,
            }
        )

    # ----- what intake holds and published -----

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.pool.acquire() as conn:
            return list(await conn.fetch(query, *args))

    async def outbox(self, ce_type: str) -> list[dict[str, Any]]:
        rows = await self.fetch(
            "SELECT body FROM outbox WHERE headers->>'ce_type' = $1 ORDER BY id", ce_type
        )
        return [json.loads(r["body"]) for r in rows]

    async def case(self, case_id: str) -> asyncpg.Record:
        [row] = await self.fetch(
            """SELECT agency_id, agency_case_ref, status, consent_version, needs,
                      assistance_ended_at, assistance_end_reason
                 FROM cases WHERE case_id = $1""",
            uuid.UUID(case_id),
        )
        return row

    async def case_id(self, ref: str) -> str:
        [row] = await self.fetch("SELECT case_id FROM cases WHERE agency_case_ref = $1", ref)
        return str(row["case_id"])

    async def history(self, case_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        rows = await self.fetch(
            "SELECT action, agency_id, details FROM case_history WHERE case_id = $1 ORDER BY id",
            uuid.UUID(case_id),
        )
        return [(r["action"], r["agency_id"], json.loads(r["details"])) for r in rows]

    async def former_owners(self) -> list[tuple[str, str, str, str, str]]:
        rows = await self.fetch(
            """SELECT agency_id, agency_case_ref, case_id, to_agency_id, handover_id
                 FROM former_owners ORDER BY handed_over_at"""
        )
        return [
            (
                r["agency_id"],
                r["agency_case_ref"],
                str(r["case_id"]),
                r["to_agency_id"],
                r["handover_id"],
            )
            for r in rows
        ]

    async def handover_log(self, handover_id: str) -> list[asyncpg.Record]:
        return await self.fetch(
            """SELECT kind, referral_id, disclosure_id, case_id, recipient_agency_id, outcome,
                      reason, consent_version, recipient_key_sha256
                 FROM disclosure_log WHERE handover_id = $1""",
            handover_id,
        )

    def opened(self, sealed: dict[str, Any]) -> ev.PersonalData:
        box = SealedBox(self.ministry_key).decrypt(base64.b64decode(sealed["sealed_box"]))
        return ev.PersonalData.model_validate_json(box)

    async def register(self, **overrides: Any) -> tuple[ev.CaseSubmission, str]:
        submission = f.submission(IOM, personal=_personal(), **overrides)
        await self.apply([self.submitted(submission)])
        return submission, await self.case_id(submission.agency_case_ref)


def _agency(agency_id: str, type_: ev.AgencyType, key: PrivateKey | None) -> ev.AgencyRecord:
    public_key = base64.b64encode(bytes(key.public_key)).decode() if key is not None else None
    return ev.AgencyRecord(
        agency_id=agency_id, name=agency_id, type=type_, countries=["SN"], public_key=public_key
    )


@pytest.fixture
async def intake(scratch_pool: asyncpg.Pool) -> Intake:
    ministry_key = PrivateKey.generate()
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("intake", INTAKE_MIGRATIONS))
        store = IntakeStore(conn)
        await store.save_agency(_agency(IOM, ev.AgencyType.UN_AGENCY, PrivateKey.generate()))
        await store.save_agency(_agency(MINISTRY, ev.AgencyType.GOVERNMENT, ministry_key))
        await store.save_agency(_agency(PROGRAMME, ev.AgencyType.DEVELOPMENT_PROGRAMME, None))
        await store.save_agency(_agency(NGO, ev.AgencyType.NGO, PrivateKey.generate()))
    return Intake(CountingPool(scratch_pool), ministry_key)


# ----- the move -----


async def test_an_accepted_handover_moves_the_case_and_seals_it_for_the_new_owner(
    intake: Intake,
) -> None:
    submission, case_id = await intake.register()
    old_ref = submission.agency_case_ref
    await intake.apply([intake.end(IOM, old_ref)])
    assert (await intake.case(case_id))["assistance_end_reason"] == "programme_ended"
    accepted = intake.accepted(case_id)

    await intake.apply([intake.referral_event(ev.HANDOVER_ACCEPTED, accepted)])

    # the case is the ministry's, under its reference, its assistance running
    row = await intake.case(case_id)
    assert (row["agency_id"], row["agency_case_ref"], row["status"]) == (
        MINISTRY,
        accepted.receiving_case_ref,
        "open",
    )
    assert (row["assistance_ended_at"], row["assistance_end_reason"]) == (None, None)
    assert await intake.former_owners() == [(IOM, old_ref, case_id, MINISTRY, accepted.handover_id)]
    [handed] = await intake.outbox(ev.CASE_HANDED_OVER)
    assert (handed["case_id"], handed["from_agency_id"], handed["to_agency_id"]) == (
        case_id,
        IOM,
        MINISTRY,
    )
    assert handed["to_agency_case_ref"] == accepted.receiving_case_ref
    # the whole personal data, opened with the ministry's private key only
    [sealed] = await intake.outbox(ev.CASE_DATA_SEALED)
    assert (sealed["handover_id"], sealed["case_id"], sealed["recipient_agency_id"]) == (
        accepted.handover_id,
        case_id,
        MINISTRY,
    )
    assert intake.opened(sealed) == submission.personal
    key_sha256 = crypto.key_fingerprint(
        base64.b64encode(bytes(intake.ministry_key.public_key)).decode()
    )
    assert sealed["recipient_key_sha256"] == key_sha256
    [logged] = await intake.handover_log(accepted.handover_id)
    assert {**dict(logged), "case_id": str(logged["case_id"])} == {
        "kind": "handover",
        "referral_id": None,
        "disclosure_id": sealed["disclosure_id"],
        "case_id": case_id,
        "recipient_agency_id": MINISTRY,
        "outcome": "disclosed",
        "reason": None,
        "consent_version": 1,
        "recipient_key_sha256": key_sha256,
    }
    assert [(a, g) for a, g, _ in await intake.history(case_id)] == [
        ("registered", IOM),
        ("assistance_ended", IOM),
        ("handed_over", MINISTRY),
    ]
    assert (await intake.history(case_id))[-1][2] == {
        "from": IOM,
        "to": MINISTRY,
        "handover_id": accepted.handover_id,
        "consent_version": 1,
    }

    # the former owner is told; the new owner writes, under its own reference
    await intake.apply(
        [
            intake.update(IOM, old_ref, needs=f.needs("social.housing")),
            intake.submitted(f.submission(IOM, agency_case_ref=old_ref)),
            intake.update(
                MINISTRY,
                accepted.receiving_case_ref,
                needs=[
                    {"need_id": "n1", "category": "psychosocial.counselling"},
                    {"need_id": "n2", "category": "economic.job_placement"},
                ],
            ),
        ]
    )
    rejected = await intake.outbox(ev.SUBMISSION_REJECTED)
    assert [(r["agency_id"], r["reason"]) for r in rejected] == [
        (IOM, f"the case was handed over to {MINISTRY}; its new owner writes it")
    ] * 2
    assert len(await intake.fetch("SELECT 1 FROM cases")) == 1, "no new case under the old ref"
    [updated] = await intake.outbox(ev.CASE_UPDATED)
    assert (updated["case_id"], updated["submitting_agency_id"]) == (case_id, MINISTRY)
    assert [n["need_id"] for n in updated["needs"]] == ["n1", "n2"]
    assert [n["category"] for n in json.loads((await intake.case(case_id))["needs"])] == [
        "psychosocial.counselling",
        "economic.job_placement",
    ]


async def test_a_newer_consent_the_handover_carries_is_a_new_version_before_the_move(
    intake: Intake,
) -> None:
    _, case_id = await intake.register(
        consent=f.consent(scope={"purposes": ["referral"], "agency_types": ["ngo"]})
    )
    carried = ev.Consent.model_validate(
        f.consent(
            scope={"purposes": ["referral"], "agency_types": ["government"]},
            recorded_at=_past().isoformat(),
        )
    )
    accepted = intake.accepted(case_id, consent=carried.model_dump(mode="json"))

    await intake.apply([intake.referral_event(ev.HANDOVER_ACCEPTED, accepted)])

    row = await intake.case(case_id)
    assert (row["agency_id"], row["consent_version"]) == (MINISTRY, 2)
    consents = await intake.fetch(
        "SELECT version, kind, consent FROM consent_records WHERE case_id = $1 ORDER BY version",
        uuid.UUID(case_id),
    )
    assert [(c["version"], c["kind"]) for c in consents] == [(1, "given"), (2, "changed")]
    assert ev.Consent.model_validate_json(consents[1]["consent"]) == carried
    [changed] = await intake.outbox(ev.CONSENT_CHANGED)
    assert ev.Consent.model_validate(changed["consent"]) == carried
    [logged] = await intake.handover_log(accepted.handover_id)
    assert (logged["outcome"], logged["consent_version"]) == ("disclosed", 2)


# ----- the failures: the case stays as it was -----


async def _closed(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    await intake.apply([intake.closed(IOM, sub.agency_case_ref)])
    return {}


async def _erased(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    await intake.apply([intake.erased(IOM, sub.agency_case_ref)])
    return {}


async def _withdrawn(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    await intake.apply([intake.withdrawn(IOM, sub.agency_case_ref)])
    return {}


async def _unknown_case(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    return {"case_id": str(uuid.uuid4())}


async def _not_the_owner(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    return {"owner_agency_id": NGO}


async def _unregistered(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    return {"receiving_agency_id": "not-registered"}


async def _deregistered(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    async with intake.pool.pool.acquire() as conn:
        await IntakeStore(conn).remove_agency(MINISTRY)
    return {}


async def _keyless(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    return {"receiving_agency_id": PROGRAMME}


async def _taken(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    theirs = f.submission(MINISTRY)
    await intake.apply([intake.submitted(theirs)])
    return {"receiving_case_ref": theirs.agency_case_ref}


async def _once_taken(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    # the ministry's reference named a case of its own, which it handed on to the NGO
    theirs = f.submission(MINISTRY)
    await intake.apply([intake.submitted(theirs)])
    other = await intake.case_id(theirs.agency_case_ref)
    moved = intake.accepted(
        other, owner_agency_id=MINISTRY, receiving_agency_id=NGO, receiving_case_ref="NGO-1"
    )
    await intake.apply([intake.referral_event(ev.HANDOVER_ACCEPTED, moved)])
    assert (await intake.case(other))["agency_id"] == NGO
    return {"receiving_case_ref": theirs.agency_case_ref}


async def _past_consent(intake: Intake, sub: ev.CaseSubmission, case_id: str) -> dict[str, Any]:
    # carried, but older than the withdrawal recorded since: the withdrawal stands
    await intake.apply([intake.withdrawn(IOM, sub.agency_case_ref)])
    return {"consent": f.consent(recorded_at="2026-11-01T10:00:00Z")}


@pytest.mark.parametrize(
    ("consent", "setup", "reason"),
    [
        (None, _unknown_case, "unknown_case"),
        (None, _closed, "case_not_open"),
        (None, _erased, "case_not_open"),
        (None, _not_the_owner, "owner_changed"),
        (None, _unregistered, "unknown_agency"),
        (None, _deregistered, "unknown_agency"),
        (None, _keyless, "no_public_key"),
        (None, _taken, "reference_taken"),
        (None, _once_taken, "reference_taken"),
        (None, _withdrawn, "no_consent"),
        (None, _past_consent, "no_consent"),
        ({"given": False, "scope": None}, None, "no_consent"),
        ({"scope": {"purposes": ["follow_up"]}}, None, "purpose_not_covered"),
        (
            {"scope": {"purposes": ["referral"], "expires_on": "2026-11-30"}},
            None,
            "consent_expired",
        ),
        ({"scope": {"purposes": ["referral"], "agency_ids": [NGO]}}, None, "agency_not_covered"),
        (
            {"scope": {"purposes": ["referral"], "agency_types": ["ngo"]}},
            None,
            "agency_type_not_covered",
        ),
    ],
    ids=[
        "unknown-case",
        "closed",
        "erased",
        "not-the-owner",
        "unregistered",
        "deregistered",
        "no-public-key",
        "reference-taken",
        "reference-of-a-case-handed-on",
        "consent-withdrawn",
        "carried-consent-older-than-the-withdrawal",
        "consent-refused",
        "purpose-not-covered",
        "consent-expired",
        "agency-not-covered",
        "agency-type-not-covered",
    ],
)
async def test_a_handover_that_fails_leaves_the_case_as_it_was(
    intake: Intake, consent: dict[str, Any] | None, setup: Any, reason: str
) -> None:
    submission, case_id = await intake.register(
        **({"consent": f.consent(**consent)} if consent else {})
    )
    overrides = await setup(intake, submission, case_id) if setup is not None else {}
    accepted = intake.accepted(overrides.pop("case_id", case_id), **overrides)
    before = await intake.case(case_id)
    formers = await intake.former_owners()
    history = await intake.history(case_id)

    await intake.apply([intake.referral_event(ev.HANDOVER_ACCEPTED, accepted)])

    [failed] = await intake.outbox(ev.HANDOVER_FAILED)
    assert failed == {
        "schema_version": "1",
        "handover_id": accepted.handover_id,
        "case_id": accepted.case_id,
        "from_agency_id": accepted.owner_agency_id,
        "to_agency_id": accepted.receiving_agency_id,
        "reason": reason,
    }
    assert await intake.case(case_id) == before, "nothing moved"
    assert await intake.former_owners() == formers
    handed = [h for h in await intake.outbox(ev.CASE_HANDED_OVER) if h["case_id"] == case_id]
    sealed = [s for s in await intake.outbox(ev.CASE_DATA_SEALED) if s["case_id"] == case_id]
    assert handed == [] and sealed == []
    if reason == "unknown_case":
        assert await intake.history(case_id) == history
        assert await intake.handover_log(accepted.handover_id) == []
        return
    assert await intake.history(case_id) == [
        *history,
        (
            "handover_failed",
            accepted.receiving_agency_id,
            {"handover_id": accepted.handover_id, "reason": reason},
        ),
    ]
    [logged] = await intake.handover_log(accepted.handover_id)
    assert (logged["kind"], logged["outcome"], logged["reason"]) == ("handover", "refused", reason)
    assert logged["consent_version"] == before["consent_version"]


async def test_a_handover_is_decided_once_however_often_it_comes(intake: Intake) -> None:
    _, case_id = await intake.register()
    accepted = intake.accepted(case_id)
    event = intake.referral_event(ev.HANDOVER_ACCEPTED, accepted)
    # the same event twice, and another event of the same acceptance, in one batch; then again
    await intake.apply([event, event, intake.referral_event(ev.HANDOVER_ACCEPTED, accepted)])
    await intake.apply([intake.referral_event(ev.HANDOVER_ACCEPTED, accepted)])
    assert len(await intake.outbox(ev.CASE_HANDED_OVER)) == 1
    assert len(await intake.outbox(ev.CASE_DATA_SEALED)) == 1
    assert await intake.outbox(ev.HANDOVER_FAILED) == []
    assert len(await intake.handover_log(accepted.handover_id)) == 1
    assert len(await intake.former_owners()) == 1


# ----- handovers and submissions in one batch -----


async def test_a_case_updated_then_handed_over_in_one_batch_moves_as_updated(
    intake: Intake,
) -> None:
    """The update is deferred to the batch's end; the move settles it first, so the sealed data
    is the new personal data and the row keeps both the update and the new owner."""
    submission, case_id = await intake.register()
    renamed = ev.PersonalData.model_validate({**_personal(), "family_name": "Ndiaye"})
    accepted = intake.accepted(case_id)

    await intake.apply(
        [
            intake.update(
                IOM,
                submission.agency_case_ref,
                personal=renamed.model_dump(mode="json"),
                needs=f.needs("social.housing"),
            ),
            intake.end(IOM, submission.agency_case_ref),
            intake.referral_event(ev.HANDOVER_ACCEPTED, accepted),
        ]
    )

    row = await intake.case(case_id)
    assert (row["agency_id"], row["agency_case_ref"]) == (MINISTRY, accepted.receiving_case_ref)
    assert [n["category"] for n in json.loads(row["needs"])] == ["social.housing"]
    assert row["assistance_ended_at"] is None, "cleared by the move that came after"
    [sealed] = await intake.outbox(ev.CASE_DATA_SEALED)
    assert intake.opened(sealed) == renamed
    [updated] = await intake.outbox(ev.CASE_UPDATED)
    assert updated["submitting_agency_id"] == IOM, "updated while it was still IOM's"
    assert [a for a, _, _ in await intake.history(case_id)] == [
        "registered",
        "updated",
        "assistance_ended",
        "handed_over",
    ]


async def test_a_handover_then_the_new_owners_writes_in_one_batch(intake: Intake) -> None:
    """The move changes the keys the batch cache finds cases by: the new owner's reference,
    preloaded as naming nothing, names the case after it, and the old one a former owner."""
    submission, case_id = await intake.register()
    old_ref = submission.agency_case_ref
    accepted = intake.accepted(case_id)
    new_ref = accepted.receiving_case_ref

    await intake.apply(
        [
            intake.update(IOM, old_ref, needs=f.needs("economic.job_placement")),  # before
            intake.referral_event(ev.HANDOVER_ACCEPTED, accepted),
            intake.update(MINISTRY, new_ref, needs=f.needs("social.housing")),
            intake.update(IOM, old_ref, needs=f.needs("social.civil_documentation")),  # after
            intake.end(MINISTRY, new_ref),
            intake.closed(MINISTRY, new_ref, ev.OpenReferralsOnClosure.CONTINUE),
        ]
    )

    updated = await intake.outbox(ev.CASE_UPDATED)
    assert [(u["submitting_agency_id"], u["needs"][0]["category"]) for u in updated] == [
        (IOM, "economic.job_placement"),
        (MINISTRY, "social.housing"),
    ]
    [rejected] = await intake.outbox(ev.SUBMISSION_REJECTED)
    assert (rejected["agency_id"], rejected["reason"]) == (
        IOM,
        f"the case was handed over to {MINISTRY}; its new owner writes it",
    )
    [ended] = await intake.outbox(ev.ASSISTANCE_ENDED)
    assert (ended["case_id"], ended["owner_agency_id"]) == (case_id, MINISTRY)
    [closed] = await intake.outbox(ev.CASE_CLOSED)
    assert (closed["case_id"], closed["open_referrals"]) == (case_id, "continue")
    row = await intake.case(case_id)
    assert (row["agency_id"], row["agency_case_ref"], row["status"]) == (
        MINISTRY,
        new_ref,
        "closed",
    )
    assert [n["category"] for n in json.loads(row["needs"])] == ["social.housing"]
    assert row["assistance_end_reason"] == "programme_ended"
    accepted_answers = await intake.outbox(ev.SUBMISSION_ACCEPTED)
    assert [(a["agency_id"], a["agency_case_ref"], a["outcome"]) for a in accepted_answers] == [
        (IOM, old_ref, "registered"),
        (IOM, old_ref, "updated"),
        (MINISTRY, new_ref, "updated"),
        (MINISTRY, new_ref, "updated"),  # the end of its assistance
        (MINISTRY, new_ref, "closed"),
    ]
    history = await intake.history(case_id)
    assert [(a, g) for a, g, _ in history] == [
        ("registered", IOM),
        ("updated", IOM),
        ("handed_over", MINISTRY),
        ("updated", MINISTRY),
        ("assistance_ended", MINISTRY),
        ("closed", MINISTRY),
    ]


async def test_a_new_case_of_another_agency_in_the_batch_after_a_move_sees_the_new_owner(
    intake: Intake,
) -> None:
    """The duplicate check compares owners: after the move the case is the ministry's, so a
    new ministry case of the same person is not its duplicate, an NGO's is."""
    submission, case_id = await intake.register()
    accepted = intake.accepted(case_id)
    same_person = submission.personal.model_dump(mode="json")
    ministry_case = f.submission(MINISTRY, personal=same_person)
    ngo_case = f.submission(NGO, personal=same_person)

    await intake.apply(
        [
            intake.referral_event(ev.HANDOVER_ACCEPTED, accepted),
            intake.submitted(ministry_case),
            intake.submitted(ngo_case),
        ]
    )

    registered = {r["submitting_agency_id"]: r for r in await intake.outbox(ev.CASE_REGISTERED)}
    ministry_id = registered[MINISTRY]["case_id"]
    assert registered[MINISTRY]["possible_duplicate_of"] == []
    assert registered[NGO]["possible_duplicate_of"] == sorted([case_id, ministry_id])


# ----- the other steps of a handover, and the end of assistance -----


async def test_the_steps_of_a_handover_are_in_the_case_history(intake: Intake) -> None:
    _, case_id = await intake.register()
    offer, request = str(uuid.uuid4()), str(uuid.uuid4())

    def proposed(handover_id: str, direction: ev.HandoverDirection) -> InboundEvent:
        return intake.referral_event(
            ev.HANDOVER_PROPOSED,
            ev.HandoverProposed(
                handover_id=handover_id,
                case_id=case_id,
                direction=direction,
                owner_agency_id=IOM,
                receiving_agency_id=MINISTRY,
                answering_agency_id=MINISTRY if direction == "offer" else IOM,
                reason=ev.HandoverReason.LONG_TERM_SUPPORT,
                respond_by=datetime.now(UTC) + timedelta(days=3),
                message_id=f"message-{handover_id}",
            ),
        )

    def ended(handover_id: str, state: ev.HandoverState) -> InboundEvent:
        return intake.referral_event(
            ev.HANDOVER_ENDED,
            ev.HandoverEnded(
                handover_id=handover_id,
                case_id=case_id,
                owner_agency_id=IOM,
                receiving_agency_id=MINISTRY,
                state=state,
                reason=ev.HandoverDeclineReason.NOT_IN_MANDATE
                if state is ev.HandoverState.REJECTED
                else None,
                occurred_at=datetime.now(UTC),
            ),
        )

    unknown = ev.HandoverEnded(
        handover_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        owner_agency_id=IOM,
        receiving_agency_id=MINISTRY,
        state=ev.HandoverState.EXPIRED,
        occurred_at=datetime.now(UTC),
    )
    await intake.apply(
        [
            proposed(offer, ev.HandoverDirection.OFFER),
            ended(offer, ev.HandoverState.REJECTED),
            proposed(request, ev.HandoverDirection.REQUEST),
            ended(request, ev.HandoverState.EXPIRED),
            intake.referral_event(ev.HANDOVER_ENDED, unknown),
        ]
    )

    assert (await intake.history(case_id))[1:] == [
        (
            "handover_proposed",
            MINISTRY,
            {"handover_id": offer, "direction": "offer", "to": MINISTRY},
        ),
        ("handover_rejected", MINISTRY, {"handover_id": offer, "reason": "not_in_mandate"}),
        (
            "handover_proposed",
            MINISTRY,
            {"handover_id": request, "direction": "request", "to": MINISTRY},
        ),
        ("handover_expired", MINISTRY, {"handover_id": request}),
    ]
    assert (await intake.case(case_id))["agency_id"] == IOM, "the owner keeps the case"
    assert len(await intake.fetch("SELECT 1 FROM case_history")) == 5, "none for an unknown case"


async def test_the_end_of_assistance_is_recorded_once(intake: Intake) -> None:
    submission, case_id = await intake.register()
    ref = submission.agency_case_ref

    await intake.apply([intake.end(IOM, ref), intake.end(IOM, ref)])

    [ended] = await intake.outbox(ev.ASSISTANCE_ENDED)
    assert (ended["case_id"], ended["owner_agency_id"], ended["reason"]) == (
        case_id,
        IOM,
        "programme_ended",
    )
    row = await intake.case(case_id)
    assert (row["status"], row["assistance_end_reason"]) == ("open", "programme_ended")
    assert row["assistance_ended_at"] == datetime.fromisoformat(ended["ended_at"])
    [rejected] = await intake.outbox(ev.SUBMISSION_REJECTED)
    assert rejected["reason"] == "the owner's assistance has already ended"
    outcomes = await intake.fetch("SELECT outcome FROM submissions")
    assert sorted(o["outcome"] for o in outcomes) == ["assistance_ended", "registered", "rejected"]
