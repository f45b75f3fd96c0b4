"""Referral's Kafka handlers: directory, cases and agencies' answers. Each runs inside the
consumer's transaction; events go out through the outbox."""

from __future__ import annotations

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.taxonomy import ReasonCode
from shared.kafka.agency_input import Refusal, read_agency_message, refusal
from shared.kafka.inbound import InboundEvent, PermanentError
from shared.logging import get_logger
from shared.unit import Unit

from . import routing
from .decisions import ReferralRow, RoutingPolicy
from .lifecycle import REROUTED_FROM, answer
from .routing import Emitted
from .store import ReferralStore

SOURCE = "urn:referralexchange:service:referral"

log = get_logger(__name__)

ReferralUnit = Unit[ReferralStore]

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


def announce(
    unit: ReferralUnit,
    events: Emitted,
    *,
    key: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """Emit on referral.events.v1: keyed by case (the catalogue's key) so a case's events stay
    in order; ``key`` only for the answers the catalogue keys otherwise (listing answers by the
    provider, a refused response about no known referral by its sender)."""
    for type_, data in events:
        subject = getattr(data, "referral_id", None) or getattr(data, "case_id", "")
        unit.emit(
            type_,
            data,
            topic=topics.REFERRAL_EVENTS,
            key=key,
            subject=str(subject),
            correlation_id=correlation_id,
        )


class ReferralHandlers:
    def __init__(self, policy: RoutingPolicy) -> None:
        self._policy = policy

    # ----- agency.<id>.listings.v1 (raw: bad input is answered to the provider) -----

    async def on_listing(self, event: InboundEvent, unit: ReferralUnit) -> None:
        """A provider's own listings topic: it can list, change and withdraw only its services.
        Every message is answered on the provider's inbox (published, withdrawn or rejected
        with the reasons). A new or changed listing also gives unmatched needs it now fits
        their referral."""
        provider = event.sender_agency
        if provider is None:
            raise PermanentError("listing outside an agency's own listings topic")
        if event.is_tombstone():
            await self._withdraw(event, unit, provider)
            return
        listing = read_agency_message(event, LISTING_MODELS, key_field="service_id")
        if isinstance(listing, Refusal):
            self._refuse_listing(event, unit, listing)
            return
        if not await unit.stores.upsert_listing(listing):
            self._refuse_listing(
                event,
                unit,
                refusal(event, "service_id is already listed by another agency", "service_id"),
            )
            return
        log.info("listing_upserted", service_id=listing.service_id, status=listing.status.value)
        self._answer_listing(
            event,
            unit,
            ev.LISTING_PUBLISHED,
            listing.service_id,
            ev.ListingPublicationStatus(listing.status.value),
        )
        if listing.status is ev.ListingStatus.ACTIVE:
            await self._retry_unmet(unit, listing)

    async def _withdraw(self, event: InboundEvent, unit: ReferralUnit, provider: str) -> None:
        try:
            service_id = event.tombstone_key()
        except PermanentError as exc:
            self._refuse_listing(event, unit, refusal(event, str(exc), "(key)"))
            return
        withdrawn = await unit.stores.withdraw_listing(service_id, provider)
        log.info("listing_withdrawn", service_id=service_id, found=withdrawn)
        if not withdrawn:
            self._refuse_listing(
                event,
                unit,
                refusal(event, "no listing of this agency has this service_id", "(key)"),
            )
            return
        self._answer_listing(
            event, unit, ev.LISTING_WITHDRAWN, service_id, ev.ListingPublicationStatus.WITHDRAWN
        )

    def _answer_listing(
        self,
        event: InboundEvent,
        unit: ReferralUnit,
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
        announce(unit, [(type_, answer)], key=provider)

    def _refuse_listing(self, event: InboundEvent, unit: ReferralUnit, refused: Refusal) -> None:
        fields = [e.field for e in refused.errors]
        log.info("listing_rejected", reason=refused.reason, fields=fields)
        if event.replayed:
            return
        announce(
            unit,
            [(ev.LISTING_REJECTED, refused.as_rejection())],
            key=refused.agency_id or "unknown",
        )

    async def _retry_unmet(self, unit: ReferralUnit, listing: ev.ServiceListing) -> None:
        store = unit.stores
        for case_id, need_id in await store.unmet_needs_fitting(listing):
            case = await store.load_case(case_id)
            need = next((n for n in case.needs if n.need_id == need_id), None) if case else None
            if case is None or need is None:
                continue
            announce(
                unit,
                await routing.route_need(
                    store, case, need, self._policy, correlation_id=unit.cause.correlation_id
                ),
            )

    # ----- directory.agencies.v1 -----

    async def on_agency(self, agency: ev.AgencyRecord, unit: ReferralUnit) -> None:
        await unit.stores.upsert_agency(agency)

    # ----- intake.cases.v1 -----

    async def on_case(self, case: ev.CaseRegistered, unit: ReferralUnit) -> None:
        """A registered or updated case: its needs not yet routed are; a consent that no
        longer covers referral cancels what is open."""
        out: Emitted = []
        if not case.consent.covers(ev.ConsentPurpose.REFERRAL):
            out += await routing.cancel_open(
                unit.stores, case.case_id, ReasonCode.CONSENT_WITHDRAWN
            )
        out += await routing.route_case(
            unit.stores, case, self._policy, correlation_id=unit.cause.correlation_id
        )
        announce(unit, out)

    async def on_consent_changed(self, changed: ev.ConsentChanged, unit: ReferralUnit) -> None:
        await unit.stores.update_consent(changed.case_id, changed.consent)
        if not changed.consent.covers(ev.ConsentPurpose.REFERRAL):
            announce(
                unit,
                await routing.cancel_open(
                    unit.stores, changed.case_id, ReasonCode.CONSENT_WITHDRAWN
                ),
            )

    async def on_case_ended(self, ended: ev.CaseClosed | ev.CaseErased, unit: ReferralUnit) -> None:
        """Closed or erased: what is open is cancelled (an erasure as a consent withdrawal, so
        recipients erase what they received)."""
        await unit.stores.close_case(ended.case_id)
        erased = isinstance(ended, ev.CaseErased)
        reason = ReasonCode.CONSENT_WITHDRAWN if erased else ReasonCode.OTHER
        announce(unit, await routing.cancel_open(unit.stores, ended.case_id, reason))

    # ----- agency.<id>.responses.v1 (raw: bad input is answered to the agency) -----

    async def on_response(self, event: InboundEvent, unit: ReferralUnit) -> None:
        """An agency's answer: applied if the agency is the recipient and the state allows it;
        otherwise nothing changes and the agency is told why."""
        sender = event.sender_agency or "unknown"

        def refuse(
            error: ev.ResponseError,
            response: ev.ReferralResponse | None = None,
            ref: ReferralRow | None = None,
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
            announce(unit, [(ev.RESPONSE_REFUSED, refused)], key=ref.case_id if ref else sender)
            log.info("response_refused", error=error.value, agency_id=sender)

        response = read_agency_message(event, RESPONSE_MODELS)
        if isinstance(response, Refusal):
            refuse(ev.ResponseError.INVALID_RESPONSE, why=response)
            return
        store = unit.stores
        ref = await store.load_referral(response.referral_id)
        if ref is None:
            refuse(ev.ResponseError.UNKNOWN_REFERRAL, response)
            return
        if ref.recipient_agency_id != sender:
            refuse(ev.ResponseError.NOT_RECIPIENT, response, ref)
            return
        target = answer(ref.status, response.action)
        if target is None:
            refuse(ev.ResponseError.TRANSITION_NOT_ALLOWED, response, ref)
            return
        out = await routing.transition(
            store, ref, target, reason=response.reason_code, outcome=response.outcome
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
            out += await routing.reroute(store, ref, self._policy)
        # The referral's own conversation, not the answer's: a case's events share one.
        announce(unit, out, correlation_id=ref.correlation_id)
        log.info("referral_answered", referral_id=ref.referral_id, to_state=target.value)
