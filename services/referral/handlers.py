"""Referral's Kafka handlers: directory, cases and agencies' answers. Each runs inside the
consumer's transaction; events go out through the outbox."""

from __future__ import annotations

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection, outbox
from shared.kafka.inbound import InboundEvent, PermanentError
from shared.logging import get_logger

from . import directory, routing
from .lifecycle import REROUTED_FROM, answer
from .routing import Emitted, RoutingPolicy

SOURCE = "urn:referralexchange:service:referral"

log = get_logger(__name__)


async def emit(
    conn: DbConnection,
    events: Emitted,
    *,
    key: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> None:
    """Publish on referral.events.v1, keyed by case so a case's events stay in order."""
    await outbox.enqueue(
        conn,
        [
            build_event(
                topic=topics.REFERRAL_EVENTS,
                key=key or str(getattr(data, "case_id", None) or "unknown"),
                type_=type_,
                source=SOURCE,
                subject=str(getattr(data, "referral_id", None) or getattr(data, "case_id", "")),
                data=data,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
            for type_, data in events
        ],
    )


class ReferralHandlers:
    def __init__(self, policy: RoutingPolicy) -> None:
        self._policy = policy

    # ----- agency.<id>.listings.v1 -----

    async def on_listing(self, event: InboundEvent, conn: DbConnection) -> None:
        """A provider's own listings topic: it can list, change and withdraw only its services.
        A new or changed listing also gives unmatched needs it now fits their referral."""
        provider = event.sender_agency
        if provider is None:
            raise PermanentError("listing outside an agency's own listings topic")
        if event.is_tombstone():
            service_id = event.tombstone_key()
            withdrawn = await directory.withdraw_listing(conn, service_id, provider)
            log.info("listing_withdrawn", service_id=service_id, found=withdrawn)
            return
        listing = event.data_as(ev.ServiceListing)
        if listing.agency_id != provider:
            raise PermanentError("listing agency_id is not the agency of the topic it came on")
        if not await directory.upsert_listing(conn, listing):
            raise PermanentError("service_id is already listed by another agency")
        log.info("listing_upserted", service_id=listing.service_id, status=listing.status.value)
        if listing.status is ev.ListingStatus.ACTIVE:
            await self._retry_unmet(conn, event, listing)

    async def _retry_unmet(
        self, conn: DbConnection, event: InboundEvent, listing: ev.ServiceListing
    ) -> None:
        rows = await conn.fetch(
            """SELECT case_id, need_id FROM unmet_needs
               WHERE category = ANY($1::text[]) AND reason <> 'attempts_exhausted'
                 AND EXISTS (SELECT 1 FROM unnest($2::text[]) a WHERE starts_with(area, a))
               ORDER BY since FOR UPDATE SKIP LOCKED""",
            listing.categories,
            listing.service_areas,
        )
        for row in rows:
            case = await routing.load_case(conn, row["case_id"])
            need = (
                next((n for n in case.needs if n.need_id == row["need_id"]), None) if case else None
            )
            if case is None or need is None:
                continue
            out = await routing.route_need(
                conn, case, need, self._policy, correlation_id=event.correlation_id
            )
            await emit(
                conn,
                out,
                key=case.case_id,
                correlation_id=event.correlation_id,
                causation_id=event.event_id,
            )

    # ----- directory.agencies.v1 -----

    async def on_agency(self, event: InboundEvent, conn: DbConnection) -> None:
        if event.is_tombstone():
            return
        await directory.upsert_agency(conn, event.data_as(ev.AgencyRecord))

    # ----- intake.cases.v1 -----

    async def on_case(self, event: InboundEvent, conn: DbConnection) -> None:
        type_ = event.require_attributes().type
        out: Emitted = []
        if type_ in (ev.CASE_REGISTERED, ev.CASE_UPDATED):
            case = event.data_as(ev.CaseRegistered)
            await routing.save_case(conn, case)
            if not case.consent.covers(ev.ConsentPurpose.REFERRAL):
                out += await routing.cancel_open(conn, case.case_id, ReasonCode.CONSENT_WITHDRAWN)
            for need in case.needs:
                if not await routing.need_is_handled(conn, case.case_id, need.need_id):
                    out += await routing.route_need(
                        conn, case, need, self._policy, correlation_id=event.correlation_id
                    )
        elif type_ == ev.CONSENT_CHANGED:
            changed = event.data_as(ev.ConsentChanged)
            await conn.execute(
                "UPDATE cases SET consent = $2::jsonb, updated_at = now() WHERE case_id = $1",
                changed.case_id,
                changed.consent.model_dump_json(),
            )
            if not changed.consent.covers(ev.ConsentPurpose.REFERRAL):
                out += await routing.cancel_open(
                    conn, changed.case_id, ReasonCode.CONSENT_WITHDRAWN
                )
        elif type_ in (ev.CASE_CLOSED, ev.CASE_ERASED):
            ended: ev.CaseClosed | ev.CaseErased = (
                event.data_as(ev.CaseClosed)
                if type_ == ev.CASE_CLOSED
                else event.data_as(ev.CaseErased)
            )
            case_id = ended.case_id
            await conn.execute("UPDATE cases SET status = 'closed' WHERE case_id = $1", case_id)
            reason = ReasonCode.CONSENT_WITHDRAWN if type_ == ev.CASE_ERASED else ReasonCode.OTHER
            out += await routing.cancel_open(conn, case_id, reason)
        await emit(conn, out, correlation_id=event.correlation_id, causation_id=event.event_id)

    # ----- agency.<id>.responses.v1 -----

    async def on_response(self, event: InboundEvent, conn: DbConnection) -> None:
        """An agency's answer: applied if the agency is the recipient and the state allows it;
        otherwise nothing changes and the agency is told why."""
        sender = event.sender_agency or "unknown"

        async def refuse(
            error: ev.ResponseError,
            response: ev.ReferralResponse | None = None,
            ref: routing.ReferralRow | None = None,
        ) -> None:
            refused = ev.ResponseRefused(
                response_id=event.event_id,
                agency_id=sender,
                referral_id=response.referral_id if response else None,
                action=response.action if response else None,
                error=error,
                current_state=ref.status if ref and ref.recipient_agency_id == sender else None,
            )
            await emit(
                conn,
                [(ev.RESPONSE_REFUSED, refused)],
                key=ref.case_id if ref else sender,
                correlation_id=event.correlation_id,
                causation_id=event.event_id,
            )
            log.info("response_refused", error=error.value, agency_id=sender)

        try:
            response = event.data_as(ev.ReferralResponse)
        except PermanentError:
            await refuse(ev.ResponseError.INVALID_RESPONSE)
            return
        if response.agency_id != sender:
            await refuse(ev.ResponseError.INVALID_RESPONSE, response)
            return
        ref = await routing.load_referral(conn, response.referral_id)
        if ref is None:
            await refuse(ev.ResponseError.UNKNOWN_REFERRAL, response)
            return
        if ref.recipient_agency_id != sender:
            await refuse(ev.ResponseError.NOT_RECIPIENT, response, ref)
            return
        target = answer(ref.status, response.action)
        if target is None:
            await refuse(ev.ResponseError.TRANSITION_NOT_ALLOWED, response, ref)
            return
        out = await routing.transition(
            conn, ref, target, reason=response.reason_code, outcome=response.outcome
        )
        if target in REROUTED_FROM:
            out += await routing.reroute(conn, ref, self._policy)
        await emit(
            conn,
            out,
            key=ref.case_id,
            correlation_id=ref.correlation_id,
            causation_id=event.event_id,
        )
        log.info("referral_answered", referral_id=ref.referral_id, to_state=target.value)
