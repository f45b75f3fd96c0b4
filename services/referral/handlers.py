"""Referral's Kafka handlers: directory, cases and agencies' answers. Each runs inside the
consumer's transaction; events go out through the outbox."""

from __future__ import annotations

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection, outbox
from shared.kafka.agency_input import Refusal, read_agency_message, refusal
from shared.kafka.inbound import InboundEvent, PermanentError
from shared.logging import get_logger

from . import directory, routing
from .lifecycle import REROUTED_FROM, answer
from .routing import Emitted, RoutingPolicy

SOURCE = "urn:referralexchange:service:referral"

log = get_logger(__name__)

LISTING_MODELS = {ev.SERVICE_LISTED: ev.ServiceListing}
RESPONSE_MODELS = {ev.RESPONSE_SUBMITTED: ev.ReferralResponse}
# What each refusal of a valid response says to its sender.
_RESPONSE_ERRORS = {
    ev.ResponseError.UNKNOWN_REFERRAL: "no referral has this referral_id",
    ev.ResponseError.NOT_RECIPIENT: "the referral was not sent to this agency",
    ev.ResponseError.TRANSITION_NOT_ALLOWED: "the action is not allowed in the referral's "
    "current state (current_state)",
    ev.ResponseError.INVALID_RESPONSE: "the response does not match the contract",
}


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
        Every message is answered on the provider's inbox (published, withdrawn or rejected
        with the reasons). A new or changed listing also gives unmatched needs it now fits
        their referral."""
        provider = event.sender_agency
        if provider is None:
            raise PermanentError("listing outside an agency's own listings topic")
        if event.is_tombstone():
            await self._withdraw(event, conn, provider)
            return
        listing = read_agency_message(event, LISTING_MODELS, key_field="service_id")
        if isinstance(listing, Refusal):
            await self._refuse_listing(event, conn, listing)
            return
        if not await directory.upsert_listing(conn, listing):
            await self._refuse_listing(
                event,
                conn,
                refusal(event, "service_id is already listed by another agency", "service_id"),
            )
            return
        log.info("listing_upserted", service_id=listing.service_id, status=listing.status.value)
        await self._answer_listing(
            event,
            conn,
            ev.LISTING_PUBLISHED,
            listing.service_id,
            ev.ListingPublicationStatus(listing.status.value),
        )
        if listing.status is ev.ListingStatus.ACTIVE:
            await self._retry_unmet(conn, event, listing)

    async def _withdraw(self, event: InboundEvent, conn: DbConnection, provider: str) -> None:
        try:
            service_id = event.tombstone_key()
        except PermanentError as exc:
            await self._refuse_listing(event, conn, refusal(event, str(exc), "(key)"))
            return
        withdrawn = await directory.withdraw_listing(conn, service_id, provider)
        log.info("listing_withdrawn", service_id=service_id, found=withdrawn)
        if not withdrawn:
            await self._refuse_listing(
                event,
                conn,
                refusal(event, "no listing of this agency has this service_id", "(key)"),
            )
            return
        await self._answer_listing(
            event, conn, ev.LISTING_WITHDRAWN, service_id, ev.ListingPublicationStatus.WITHDRAWN
        )

    async def _answer_listing(
        self,
        event: InboundEvent,
        conn: DbConnection,
        type_: str,
        service_id: str,
        status: ev.ListingPublicationStatus,
    ) -> None:
        if event.replayed:  # answered when the message first came
            return
        provider = event.sender_agency or "unknown"
        answer = ev.ListingPublished(
            submission_id=event.event_id, agency_id=provider, service_id=service_id, status=status
        )
        await emit(
            conn,
            [(type_, answer)],
            key=provider,
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
        )

    async def _refuse_listing(
        self, event: InboundEvent, conn: DbConnection, refused: Refusal
    ) -> None:
        fields = [e.field for e in refused.errors]
        log.info("listing_rejected", reason=refused.reason, fields=fields)
        if event.replayed:
            return
        await emit(
            conn,
            [(ev.LISTING_REJECTED, refused.as_rejection())],
            key=refused.agency_id or "unknown",
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
        )

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
            why: Refusal | None = None,
        ) -> None:
            refused = ev.ResponseRefused(
                response_id=event.event_id,
                agency_id=sender,
                referral_id=response.referral_id if response else None,
                action=response.action if response else None,
                error=error,
                current_state=ref.status if ref and ref.recipient_agency_id == sender else None,
                reason=why.reason if why else _RESPONSE_ERRORS[error],
                errors=why.errors if why else [],
            )
            await emit(
                conn,
                [(ev.RESPONSE_REFUSED, refused)],
                key=ref.case_id if ref else sender,
                correlation_id=event.correlation_id,
                causation_id=event.event_id,
            )
            log.info("response_refused", error=error.value, agency_id=sender)

        response = read_agency_message(event, RESPONSE_MODELS)
        if isinstance(response, Refusal):
            await refuse(ev.ResponseError.INVALID_RESPONSE, why=response)
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
        applied = ev.ResponseApplied(
            response_id=event.event_id,
            agency_id=sender,
            referral_id=ref.referral_id,
            case_id=ref.case_id,
            action=response.action,
            from_state=ref.status,
            to_state=target,
        )
        out.append((ev.RESPONSE_APPLIED, applied))
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
