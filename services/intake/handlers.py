"""Intake's Kafka handlers; each runs inside the consumer's transaction (shared.kafka.consumer)."""

from __future__ import annotations

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.db import DbConnection, outbox
from shared.kafka.inbound import InboundEvent
from shared.logging import get_logger

from .cases import record_submission, upsert_case
from .submissions import Rejection, read_submission

SOURCE = "urn:referralexchange:service:intake"

log = get_logger(__name__)


async def on_submission(event: InboundEvent, conn: DbConnection) -> None:
    result = read_submission(event)
    if isinstance(result, Rejection):
        await _reject(event, conn, result)
        return
    if not isinstance(result, ev.CaseSubmission):
        # Valid, but this intake does not apply it yet (the intake issue adds updates, consent
        # withdrawal, erasure and closure). Saying so beats accepting it and doing nothing.
        await _reject(
            event,
            conn,
            Rejection(
                event.event_id,
                event.sender_agency,
                event.topic,
                f"{type(result).__name__} is valid but not processed by this version of intake; "
                "nothing was changed",
                [],
            ),
        )
        return
    await _register(event, conn, result)


async def _register(event: InboundEvent, conn: DbConnection, result: ev.CaseSubmission) -> None:
    stored = await upsert_case(conn, result)
    await record_submission(
        conn,
        event.event_id,
        result.agency_id,
        stored.case_id,
        "registered" if stored.created else "updated",
    )
    case_event = ev.CaseRegistered(
        case_id=stored.case_id,
        submitting_agency_id=result.agency_id,
        profile=result.profile,
        needs=result.needs,
        consent=result.consent,
    )
    await outbox.enqueue(
        conn,
        [
            build_event(
                topic=topics.INTAKE_CASES,
                key=stored.case_id,
                type_=ev.CASE_REGISTERED if stored.created else ev.CASE_UPDATED,
                source=SOURCE,
                subject=stored.case_id,
                data=case_event,
                correlation_id=event.correlation_id,
                causation_id=event.event_id,
            )
        ],
    )
    log.info("case_stored", case_id=stored.case_id, created=stored.created, needs=len(result.needs))


async def _reject(event: InboundEvent, conn: DbConnection, rejection: Rejection) -> None:
    await record_submission(conn, rejection.submission_id, rejection.agency_id, None, "rejected")
    await outbox.enqueue(
        conn,
        [
            build_event(
                topic=topics.INTAKE_REJECTIONS,
                key=rejection.agency_id or "unknown",
                type_=ev.SUBMISSION_REJECTED,
                source=SOURCE,
                subject=rejection.submission_id,
                data=rejection.payload(),
                correlation_id=event.correlation_id,
                causation_id=event.event_id,
            )
        ],
    )
    log.info(
        "submission_rejected", reason=rejection.reason, fields=[e.field for e in rejection.errors]
    )
