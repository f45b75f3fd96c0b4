"""Referral's Kafka handlers: directory materialisation and matching of case needs."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.db import DbConnection, outbox
from shared.kafka.inbound import InboundEvent, PermanentError
from shared.logging import get_logger

from . import directory
from .matching import best_match

SOURCE = "urn:referralexchange:service:referral"

log = get_logger(__name__)


async def on_listing(event: InboundEvent, conn: DbConnection) -> None:
    """A provider's own listings topic: it can list, change and withdraw only its services."""
    provider = event.sender_agency
    if provider is None:
        raise PermanentError("listing outside an agency's own listings topic")
    if event.is_tombstone():
        withdrawn = await directory.withdraw_listing(conn, event.key_text or "", provider)
        log.info("listing_withdrawn", service_id=event.key_text, found=withdrawn)
        return
    listing = event.data_as(ev.ServiceListing)
    if listing.agency_id != provider:
        raise PermanentError("listing agency_id is not the agency of the topic it came on")
    if not await directory.upsert_listing(conn, listing):
        raise PermanentError("service_id is already listed by another agency")
    log.info("listing_upserted", service_id=listing.service_id, status=listing.status.value)


async def on_agency(event: InboundEvent, conn: DbConnection) -> None:
    if event.is_tombstone():
        return
    await directory.upsert_agency(conn, event.data_as(ev.AgencyRecord))


async def on_case(event: InboundEvent, conn: DbConnection) -> None:
    attributes = event.require_attributes()
    if attributes.type not in (ev.CASE_REGISTERED, ev.CASE_UPDATED):
        log.info("case_event_ignored", ce_type=attributes.type)
        return
    case = event.data_as(ev.CaseRegistered)
    out: list[OutgoingEvent] = []
    for need in case.needs:
        decision = await _refer_need(conn, case, need)
        if decision is not None:
            type_, data = decision
            out.append(
                build_event(
                    topic=topics.REFERRAL_EVENTS,
                    key=case.case_id,
                    type_=type_,
                    source=SOURCE,
                    subject=case.case_id,
                    data=data,
                    correlation_id=event.correlation_id,
                    causation_id=event.event_id,
                )
            )
    await outbox.enqueue(conn, out)


async def _refer_need(
    conn: DbConnection, case: ev.CaseRegistered, need: ev.Need
) -> tuple[str, BaseModel] | None:
    """Open the referral chain of one need, unless one exists already (redelivery, update)."""
    exists = await conn.fetchval(
        "SELECT 1 FROM referrals WHERE case_id = $1 AND need_id = $2", case.case_id, need.need_id
    )
    if exists:
        return None
    referral_id = uuid.uuid4()
    match = None
    unmatched = ev.UnmatchedReason.CONSENT_SCOPE  # no referral at all without consent to refer
    if case.consent.covers(ev.ConsentPurpose.REFERRAL):
        candidates = await directory.candidates_for(conn, need.category, case.profile.return_area)
        match = best_match(need, case.profile, candidates)
        unmatched = ev.UnmatchedReason.NO_LISTING
    if match is None:
        await conn.execute(
            """INSERT INTO referrals (referral_id, case_id, need_id, category,
                                      referring_agency_id, status)
               VALUES ($1, $2, $3, $4, $5, 'unmatched')""",
            referral_id,
            case.case_id,
            need.need_id,
            need.category,
            case.submitting_agency_id,
        )
        log.info(
            "need_unmatched", case_id=case.case_id, need_id=need.need_id, reason=unmatched.value
        )
        return ev.NEED_UNMATCHED, ev.NeedUnmatched(
            case_id=case.case_id,
            need_id=need.need_id,
            category=need.category,
            referring_agency_id=case.submitting_agency_id,
            reason=unmatched,
        )
    await conn.execute(
        """INSERT INTO referrals (referral_id, case_id, need_id, category, referring_agency_id,
                                  recipient_agency_id, service_id, status, explanation)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', $8::jsonb)""",
        referral_id,
        case.case_id,
        need.need_id,
        need.category,
        case.submitting_agency_id,
        match.candidate.agency_id,
        match.candidate.service_id,
        match.explanation.model_dump_json(),
    )
    log.info(
        "referral_requested",
        case_id=case.case_id,
        referral_id=str(referral_id),
        service_id=match.candidate.service_id,
    )
    return ev.REFERRAL_REQUESTED, ev.ReferralRequested(
        referral_id=str(referral_id),
        case_id=case.case_id,
        need_id=need.need_id,
        category=need.category,
        urgency=need.urgency,
        referring_agency_id=case.submitting_agency_id,
        recipient_agency_id=match.candidate.agency_id,
        service_id=match.candidate.service_id,
        explanation=match.explanation,
    )
