"""Intake's Kafka handlers; each runs inside the consumer's transaction (shared.kafka.consumer).

Only pseudonymous data leaves in clear: case events carry the profile, needs and consent; the
personal data is stored encrypted and leaves only sealed for one recipient (disclosures.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.db import DbConnection, outbox
from shared.kafka.agency_input import Refusal, refusal
from shared.kafka.inbound import InboundEvent
from shared.logging import get_logger

from . import cases, identity
from .cases import CaseRow
from .consent import after_withdrawal
from .disclosures import decide_disclosure
from .submissions import read_submission

SOURCE = "urn:referralexchange:service:intake"

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeKeys:
    master_key: bytes  # wraps the per-case data keys
    duplicate_key: bytes  # HMAC key of the identity hashes
    duplicate_key_id: str


class IntakeHandlers:
    def __init__(self, keys: IntakeKeys) -> None:
        self._keys = keys

    # ----- agency.<id>.submissions.v1 -----

    async def on_submission(self, event: InboundEvent, conn: DbConnection) -> None:
        result = read_submission(event)
        if isinstance(result, Refusal):
            await _reject(event, conn, result)
            return
        if isinstance(result, ev.CaseSubmission):
            await self._submit_case(event, conn, result)
            return
        row = await cases.find_case(conn, result.agency_id, result.agency_case_ref)
        if row is None or row.status == "erased":
            await _reject(
                event,
                conn,
                refusal(event, "no case with this agency_case_ref", "agency_case_ref"),
            )
            return
        if isinstance(result, ev.CaseUpdate):
            await self._update_case(event, conn, row, result)
        elif isinstance(result, ev.ConsentWithdrawal):
            await self._withdraw_consent(event, conn, row, result)
        elif isinstance(result, ev.ErasureRequest):
            await self._erase(event, conn, row)
        else:
            await self._close(event, conn, row, result)

    async def _submit_case(
        self, event: InboundEvent, conn: DbConnection, submission: ev.CaseSubmission
    ) -> None:
        row = await cases.find_case(conn, submission.agency_id, submission.agency_case_ref)
        if row is not None and row.status != "open":
            await _reject(
                event,
                conn,
                refusal(
                    event,
                    f"the case is {row.status}; submit it under a new agency_case_ref",
                    "agency_case_ref",
                ),
            )
            return
        if row is None:
            row = await cases.create_case(conn, submission, self._keys.master_key)
            await cases.add_consent_record(
                conn, row, "given" if row.consent.given else "refused", event.event_id
            )
            await self._registered(event, conn, row, submission.personal, ev.CASE_REGISTERED)
            return
        update = ev.CaseUpdate(
            agency_id=submission.agency_id,
            agency_case_ref=submission.agency_case_ref,
            personal=submission.personal,
            profile=submission.profile,
            needs=submission.needs,
            consent=submission.consent,
        )
        await self._update_case(event, conn, row, update)

    async def _update_case(
        self, event: InboundEvent, conn: DbConnection, row: CaseRow, update: ev.CaseUpdate
    ) -> None:
        before = row
        row = await cases.update_case(
            conn, row, profile=update.profile, needs=update.needs, consent=update.consent
        )
        personal = update.personal
        if personal is not None:
            await cases.replace_personal(conn, row.case_id, self._keys.master_key, personal)
        else:
            personal = await cases.read_personal(conn, row.case_id, self._keys.master_key)
        out: list[tuple[str, BaseModel]] = []
        if row.consent_version != before.consent_version:
            await cases.add_consent_record(conn, row, "changed", event.event_id)
            out.append(
                (ev.CONSENT_CHANGED, ev.ConsentChanged(case_id=row.case_id, consent=row.consent))
            )
        await self._registered(event, conn, row, personal, ev.CASE_UPDATED, out)

    async def _registered(
        self,
        event: InboundEvent,
        conn: DbConnection,
        row: CaseRow,
        personal: ev.PersonalData,
        type_: str,
        also: list[tuple[str, BaseModel]] | None = None,
    ) -> None:
        hashes = identity.identity_hashes(self._keys.duplicate_key, personal)
        duplicates = await cases.record_identity(conn, row, self._keys.duplicate_key_id, hashes)
        action = "registered" if type_ == ev.CASE_REGISTERED else "updated"
        await cases.add_history(
            conn,
            row.case_id,
            action,
            event.event_id,
            row.agency_id,
            {
                "needs": [n.need_id for n in row.needs],
                "consent_version": row.consent_version,
                "possible_duplicate_of": duplicates,
            },
        )
        await cases.record_submission(conn, event.event_id, row.agency_id, row.case_id, action)
        outcome = (
            ev.SubmissionOutcome.REGISTERED
            if type_ == ev.CASE_REGISTERED
            else ev.SubmissionOutcome.UPDATED
        )
        await self._emit(
            conn,
            event,
            row.case_id,
            [
                (type_, row.pseudonymous(duplicates)),
                *(also or []),
                _accepted(event, row, outcome),
            ],
        )
        log.info(
            "case_stored",
            case_id=row.case_id,
            action=action,
            needs=len(row.needs),
            possible_duplicates=len(duplicates),
        )

    async def _withdraw_consent(
        self, event: InboundEvent, conn: DbConnection, row: CaseRow, w: ev.ConsentWithdrawal
    ) -> None:
        row = await cases.update_case(conn, row, consent=after_withdrawal(row.consent, w))
        await cases.add_consent_record(conn, row, "withdrawn", event.event_id)
        await cases.add_history(
            conn,
            row.case_id,
            "consent_withdrawn",
            event.event_id,
            row.agency_id,
            {"consent_version": row.consent_version},
        )
        await cases.record_submission(
            conn, event.event_id, row.agency_id, row.case_id, "consent_withdrawn"
        )
        await self._emit(
            conn,
            event,
            row.case_id,
            [
                (ev.CONSENT_CHANGED, ev.ConsentChanged(case_id=row.case_id, consent=row.consent)),
                _accepted(event, row, ev.SubmissionOutcome.CONSENT_WITHDRAWN),
            ],
        )
        log.info("consent_withdrawn", case_id=row.case_id, still_given=row.consent.given)

    async def _erase(self, event: InboundEvent, conn: DbConnection, row: CaseRow) -> None:
        await cases.erase(conn, row.case_id)
        await cases.add_history(conn, row.case_id, "erased", event.event_id, row.agency_id)
        await cases.record_submission(conn, event.event_id, row.agency_id, row.case_id, "erased")
        erased = ev.CaseErased(
            case_id=row.case_id,
            erased_at=datetime.now(UTC),
            submitting_agency_id=row.agency_id,
            agency_case_ref=row.agency_case_ref,
        )
        await self._emit(
            conn,
            event,
            row.case_id,
            [(ev.CASE_ERASED, erased), _accepted(event, row, ev.SubmissionOutcome.ERASED)],
        )
        log.info("case_erased", case_id=row.case_id)

    async def _close(
        self, event: InboundEvent, conn: DbConnection, row: CaseRow, closure: ev.CaseClosure
    ) -> None:
        await cases.set_status(conn, row.case_id, "closed", closure.reason.value)
        await cases.add_history(
            conn,
            row.case_id,
            "closed",
            event.event_id,
            row.agency_id,
            {"reason": closure.reason.value},
        )
        await cases.record_submission(conn, event.event_id, row.agency_id, row.case_id, "closed")
        closed = ev.CaseClosed(
            case_id=row.case_id, reason=closure.reason, closed_at=closure.closed_at
        )
        await self._emit(
            conn,
            event,
            row.case_id,
            [(ev.CASE_CLOSED, closed), _accepted(event, row, ev.SubmissionOutcome.CLOSED)],
        )
        log.info("case_closed", case_id=row.case_id, reason=closure.reason.value)

    # ----- referral.events.v1: disclosures -----

    async def on_referral_event(self, event: InboundEvent, conn: DbConnection) -> None:
        if event.require_attributes().type != ev.REFERRAL_REQUESTED:
            return
        referral = event.data_as(ev.ReferralRequested)
        decision = await decide_disclosure(conn, referral, event.event_id, self._keys.master_key)
        if decision is None:
            return  # decided before: a redelivery
        type_, payload = decision
        await outbox.enqueue(
            conn,
            [
                build_event(
                    topic=topics.INTAKE_DISCLOSURES,
                    key=referral.case_id,
                    type_=type_,
                    source=SOURCE,
                    subject=referral.referral_id,
                    data=payload,
                    correlation_id=event.correlation_id,
                    causation_id=event.event_id,
                )
            ],
        )

    # ----- directory.agencies.v1 -----

    async def on_agency(self, event: InboundEvent, conn: DbConnection) -> None:
        if event.is_tombstone():
            await conn.execute("DELETE FROM agencies WHERE agency_id = $1", event.key_text)
            return
        agency = event.data_as(ev.AgencyRecord)
        await conn.execute(
            """INSERT INTO agencies (agency_id, type, public_key) VALUES ($1, $2, $3)
               ON CONFLICT (agency_id) DO UPDATE SET type = EXCLUDED.type,
                 public_key = EXCLUDED.public_key, updated_at = now()""",
            agency.agency_id,
            agency.type.value,
            agency.public_key,
        )

    async def _emit(
        self,
        conn: DbConnection,
        cause: InboundEvent,
        case_id: str,
        events: list[tuple[str, BaseModel]],
    ) -> None:
        await outbox.enqueue(
            conn,
            [
                build_event(
                    topic=topics.INTAKE_CASES,
                    key=case_id,
                    type_=type_,
                    source=SOURCE,
                    subject=case_id,
                    data=data,
                    correlation_id=cause.correlation_id,
                    causation_id=cause.event_id,
                )
                for type_, data in events
            ],
        )


def _accepted(
    event: InboundEvent, row: CaseRow, outcome: ev.SubmissionOutcome
) -> tuple[str, BaseModel]:
    """The answer to an applied submission, for the agency that sent it (notification routes
    it to its inbox): it ties the agency's own reference to the case id."""
    return (
        ev.SUBMISSION_ACCEPTED,
        ev.SubmissionAccepted(
            submission_id=event.event_id,
            agency_id=row.agency_id,
            agency_case_ref=row.agency_case_ref,
            case_id=row.case_id,
            outcome=outcome,
        ),
    )


async def _reject(event: InboundEvent, conn: DbConnection, rejection: Refusal) -> None:
    await cases.record_submission(conn, rejection.message_id, rejection.agency_id, None, "rejected")
    await outbox.enqueue(
        conn,
        [
            build_event(
                topic=topics.INTAKE_REJECTIONS,
                key=rejection.agency_id or "unknown",
                type_=ev.SUBMISSION_REJECTED,
                source=SOURCE,
                subject=rejection.message_id,
                data=rejection.as_rejection(),
                correlation_id=event.correlation_id,
                causation_id=event.event_id,
            )
        ],
    )
    log.info(
        "submission_rejected", reason=rejection.reason, fields=[e.field for e in rejection.errors]
    )
