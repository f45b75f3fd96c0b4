"""Referral's Kafka handlers: directory, cases and agencies' answers. Each runs inside the
consumer's transaction; events go out through the outbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.taxonomy import ReasonCode
from shared.kafka.agency_input import Refusal, refusal
from shared.kafka.agency_messages import (
    HANDOVER_MODELS,
    INSTRUCTION_MODELS,
    STRUCTURAL_MODELS,
    read_answer,
    read_listing,
)
from shared.kafka.inbound import InboundEvent, PermanentError
from shared.logging import get_logger
from shared.unit import Unit

from . import caseworker, continuity, control, handovers, metrics, routing, structural
from . import consent as consent_rules
from .continuity import support_continues
from .decisions import CommunityCase, ReferralRow, RoutingPolicy
from .handovers import HandoverRow, Refused, WaitingHandover
from .lifecycle import OPEN_STATES, REROUTED_FROM, answer
from .routing import Emitted
from .store import ReferralStore

SOURCE = "urn:referralexchange:service:referral"

log = get_logger(__name__)

ReferralUnit = Unit[ReferralStore]

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
        listing = read_listing(event)
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
        # A listing replayed at start-up changed nothing: its unmet needs were retried when it
        # first came (retrying again re-announced their gaps, one more need-unmatched each).
        if listing.status is ev.ListingStatus.ACTIVE and not event.replayed:
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
        """Route again the unmet needs the listing may serve. A need still unmet for the reason
        its referrer was already told (a consent that excludes the listing, say) is not
        announced again: each listing update would tell it once more."""
        store = unit.stores
        for case_id, need_id, told in await store.unmet_needs_fitting(listing):
            case = await store.load_case(case_id)
            need = next((n for n in case.needs if n.need_id == need_id), None) if case else None
            if case is None or need is None:
                continue
            routed = await routing.route_need(
                store, case, need, self._policy, correlation_id=unit.cause.correlation_id
            )
            announce(unit, [(t, e) for t, e in routed if not _same_gap(e, told)])

    # ----- directory.agencies.v1 -----

    async def on_agency(self, agency: ev.AgencyRecord, unit: ReferralUnit) -> None:
        await unit.stores.upsert_agency(agency)

    async def on_agency_removed(self, agency_id: str, unit: ReferralUnit) -> None:
        """A tombstone: the agency was deregistered (no handover goes to it any more)."""
        await unit.stores.deregister_agency(agency_id)

    # ----- intake.cases.v1 -----

    async def on_case(self, case: ev.CaseRegistered, unit: ReferralUnit) -> None:
        """A registered or updated case: its needs not yet routed are; a consent that no
        longer covers referral cancels what is open; the handover proposals and requests that
        waited for it are decided."""
        out: Emitted = []
        # A new case has no referral yet: only an update's consent can leave some uncovered.
        if unit.cause.ce_type != ev.CASE_REGISTERED:
            out += await routing.cancel_uncovered(
                unit.stores, case.case_id, case.consent, datetime.now(UTC).date()
            )
        await self._time_consent(unit, case.case_id, case.consent)
        out += await routing.route_case(
            unit.stores, case, self._policy, correlation_id=unit.cause.correlation_id
        )
        announce(unit, out)
        # Handover messages that came before the case (read on another topic) are decided now.
        for waiting in await unit.stores.take_waiting(case.case_id):
            await decide_waiting(unit, waiting)

    async def on_community_need(
        self, registered: ev.CommunityNeedRegistered, unit: ReferralUnit
    ) -> None:
        """A community need registered or updated (issue 18, decision 17): stored as a case of
        kind community and routed as a case's need is (the same chain, deadlines, re-routing
        and gap); an update routes nothing again."""
        case = CommunityCase.of(registered)
        announce(
            unit,
            await routing.route_case(
                unit.stores, case, self._policy, correlation_id=unit.cause.correlation_id
            ),
        )

    async def on_consent_changed(self, changed: ev.ConsentChanged, unit: ReferralUnit) -> None:
        """A new consent version: the open referrals it no longer covers (purpose, agencies,
        agency types, categories, expiry) are cancelled and their recipients told to erase;
        the covered ones go on; its expiry, if any, is the case's timer (decision 20)."""
        await unit.stores.update_consent(changed.case_id, changed.consent)
        announce(
            unit,
            await routing.cancel_uncovered(
                unit.stores, changed.case_id, changed.consent, datetime.now(UTC).date()
            ),
        )
        await self._time_consent(unit, changed.case_id, changed.consent)

    async def _time_consent(self, unit: ReferralUnit, case_id: str, consent: ev.Consent) -> None:
        """The case's consent-expiry timer follows the consent: set, moved or dropped (a new
        case without an expiry has none to drop)."""
        due = consent_rules.expiry_due(consent)
        if due is not None or unit.cause.ce_type != ev.CASE_REGISTERED:
            await unit.stores.set_consent_expiry(case_id, due)

    async def on_case_ended(self, ended: ev.CaseClosed | ev.CaseErased, unit: ReferralUnit) -> None:
        """Closed or erased: what is open is cancelled (an erasure as a consent withdrawal, so
        recipients erase what they received) — unless the owner closed it with its open
        referrals continued: each goes on, and its provider is told."""
        store = unit.stores
        if isinstance(ended, ev.CaseClosed) and (
            ended.open_referrals is ev.OpenReferralsOnClosure.CONTINUE
        ):
            case = await store.load_case_facts(ended.case_id)
            await store.close_case(ended.case_id)
            if case is not None:
                await self._support_continues(
                    unit, case.case_id, case.owner_agency_id, ev.ContinuationCause.CASE_CLOSED
                )
            return
        if not isinstance(ended, ev.CaseErased):
            await store.close_case(ended.case_id)
            announce(unit, await routing.cancel_open(store, ended.case_id, ReasonCode.OTHER))
            return
        announce(
            unit, await routing.cancel_open(store, ended.case_id, ReasonCode.CONSENT_WITHDRAWN)
        )
        # The pseudonymous profile goes too: only what the statistics purpose allows stays.
        stored = await store.case_profile_and_consent(ended.case_id)
        profile, consent = stored if stored else ({}, consent_rules.erased_consent(ended.erased_at))
        now = datetime.now(UTC)
        kept = consent_rules.statistics_profile(profile, consent, now.date())
        await store.erase_case(ended.case_id, kept, consent_rules.erased_consent(now))
        log.info("case_profile_erased", case_id=ended.case_id, statistics_kept=kept is not None)

    async def _support_continues(
        self,
        unit: ReferralUnit,
        case_id: str,
        owner_agency_id: str,
        cause: ev.ContinuationCause,
        assistance_end_reason: ev.AssistanceEndReason | None = None,
        refs: list[ReferralRow] | None = None,
    ) -> None:
        """Each provider with an open referral of the case: it goes on, under this owner."""
        if refs is None:
            refs = await unit.stores.open_referrals(case_id, list(OPEN_STATES))
        now = datetime.now(UTC)
        announce(
            unit,
            [
                (
                    ev.SUPPORT_CONTINUES,
                    support_continues(
                        ref,
                        owner_agency_id=owner_agency_id,
                        cause=cause,
                        now=now,
                        assistance_end_reason=assistance_end_reason,
                    ),
                )
                for ref in refs
            ],
        )

    async def on_assistance_ended(self, ended: ev.AssistanceEnded, unit: ReferralUnit) -> None:
        """The owner's own assistance ended; the case stays open under it. Each provider with
        an open referral hears that it goes on; if needs are still open, the owner is proposed
        the programmes that could take the case over."""
        store = unit.stores
        refs = await store.open_referrals(ended.case_id, list(OPEN_STATES))
        await store.record_assistance_end(ended, [r.referral_id for r in refs])
        await self._support_continues(
            unit,
            ended.case_id,
            ended.owner_agency_id,
            ev.ContinuationCause.ASSISTANCE_ENDED,
            ended.reason,
            refs,
        )
        case = await store.load_case_facts(ended.case_id)
        if case is None:
            return
        still_open = continuity.open_needs(
            case.needs, await store.last_referral_states(case.case_id)
        )
        if not still_open:
            return
        candidates = continuity.next_owners(
            owner_agency_id=ended.owner_agency_id,
            return_area=case.return_area,
            open_categories=[n.category for n in still_open],
            consent=case.consent,
            listings=await store.takeover_listings(case.return_area, ended.owner_agency_id),
            now=datetime.now(UTC),
        )
        proposed = ev.ContinuityProposed(
            case_id=case.case_id,
            owner_agency_id=ended.owner_agency_id,
            open_need_ids=[n.need_id for n in still_open],
            candidates=candidates,
        )
        announce(unit, [(ev.CONTINUITY_PROPOSED, proposed)])
        log.info("continuity_proposed", case_id=case.case_id, candidates=len(candidates))

    async def on_case_handed_over(self, handed: ev.CaseHandedOver, unit: ReferralUnit) -> None:
        """Intake moved the case: the new owner refers its new needs and hears the progress of
        the referrals in flight, whose providers are told who owns the case now."""
        await unit.stores.hand_over_case(handed)
        await self._support_continues(
            unit, handed.case_id, handed.to_agency_id, ev.ContinuationCause.CASE_HANDED_OVER
        )
        log.info("case_handed_over", case_id=handed.case_id, handover_id=handed.handover_id)

    async def on_handover_failed(self, failed: ev.HandoverFailed, unit: ReferralUnit) -> None:
        """Intake could not move the case (its event tells both parties why)."""
        await unit.stores.fail_handover(failed)
        log.info("handover_failed", case_id=failed.case_id, handover_id=failed.handover_id)

    # ----- agency.<id>.responses.v1 (raw: bad input is answered to the agency) -----

    async def on_response(self, event: InboundEvent, unit: ReferralUnit) -> None:
        """An agency's message on its responses topic: an answer to a referral, or one of its
        case handovers. Whatever cannot be applied changes nothing and is told back to it."""
        message = read_answer(event)
        if isinstance(message, Refusal):
            # Not parsed: the type it claims says which refusal its sender reads.
            claimed = event.attributes.type if event.attributes else None
            if claimed in HANDOVER_MODELS:
                self._refuse_handover(
                    event,
                    unit,
                    Refused(ev.HandoverError.INVALID_MESSAGE, message.reason, message.errors),
                )
            elif claimed in STRUCTURAL_MODELS:
                refuse_commitment(
                    unit,
                    event,
                    structural.refused(
                        ev.CommitmentError.INVALID_MESSAGE, message.reason, message.errors
                    ),
                )
            elif claimed in INSTRUCTION_MODELS:
                invalid = control.Refused(
                    ev.InstructionError.INVALID_INSTRUCTION, message.reason, tuple(message.errors)
                )
                caseworker.refuse(unit, invalid, self._origin(event, unit))
            else:
                self._refuse_response(event, unit, ev.ResponseError.INVALID_RESPONSE, why=message)
            return
        if isinstance(message, ev.ReferralResponse):
            await self._apply_response(event, message, unit)
        elif isinstance(message, ev.ReferrerInstruction):
            await caseworker.instruct(unit, message, self._origin(event, unit), self._policy)
        elif isinstance(message, ev.HandoverAnswer):
            await self._answer_handover(event, message, unit)
        elif isinstance(message, ev.StructuralCommitment):
            await commit(unit, event, message)
        else:
            assert isinstance(message, ev.HandoverProposal | ev.HandoverRequest)
            await self._open_handover(event, message, unit)

    @staticmethod
    def _origin(event: InboundEvent, unit: ReferralUnit) -> caseworker.Origin:
        sender = event.sender_agency or "unknown"
        return caseworker.Origin(event.event_id, sender, unit.cause.correlation_id)

    def _refuse_response(
        self,
        event: InboundEvent,
        unit: ReferralUnit,
        error: ev.ResponseError,
        response: ev.ReferralResponse | None = None,
        ref: ReferralRow | None = None,
        why: Refusal | None = None,
    ) -> None:
        sender = event.sender_agency or "unknown"
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

    async def _apply_response(
        self, event: InboundEvent, response: ev.ReferralResponse, unit: ReferralUnit
    ) -> None:
        """An agency's answer: applied if the agency is the recipient and the state allows it;
        otherwise nothing changes and the agency is told why."""
        sender = event.sender_agency or "unknown"
        store = unit.stores
        ref = await store.load_referral(response.referral_id)
        if ref is None:
            self._refuse_response(event, unit, ev.ResponseError.UNKNOWN_REFERRAL, response)
            return
        if ref.recipient_agency_id != sender:
            self._refuse_response(event, unit, ev.ResponseError.NOT_RECIPIENT, response, ref)
            return
        target = answer(ref.status, response.action)
        if target is None:
            self._refuse_response(
                event, unit, ev.ResponseError.TRANSITION_NOT_ALLOWED, response, ref
            )
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
            next_attempt = await routing.reroute(store, ref, self._policy)
            # Counted when applied: a batch whose transaction fails and is applied again
            # counts it again (rare; the alerts read rates).
            metrics.REROUTES.inc(any(t == ev.REFERRAL_REQUESTED for t, _ in next_attempt))
            out += next_attempt
        # The referral's own conversation, not the answer's: a case's events share one.
        announce(unit, out, correlation_id=ref.correlation_id)
        log.info("referral_answered", referral_id=ref.referral_id, to_state=target.value)

    # ----- handovers, on the same topics (handovers.py decides) -----

    async def _open_handover(
        self,
        event: InboundEvent,
        message: ev.HandoverProposal | ev.HandoverRequest,
        unit: ReferralUnit,
    ) -> None:
        """A proposal by the owner or a request by another agency: the handover and its
        deadline are recorded and announced, or the sender is told why not; one naming a case
        referral has not read yet waits for it (nothing answered yet)."""
        await open_handover(unit, message, Origin.of(event, unit), may_wait=True)

    async def _answer_handover(
        self, event: InboundEvent, message: ev.HandoverAnswer, unit: ReferralUnit
    ) -> None:
        """The answering agency accepts (intake then moves the case) or rejects."""
        store = unit.stores
        handover = await store.load_handover(message.handover_id)
        decided = handovers.decide_answer(message, handover)
        if isinstance(decided, Refused):
            known = handover is not None and handover.case_id == message.case_id
            if not known:
                known = await store.load_case_facts(message.case_id) is not None
            self._refuse_handover(event, unit, decided, message, known_case=known)
            return
        await store.update_handover(decided)
        announce(
            unit,
            [handovers.answered_event(decided, datetime.now(UTC))],
            correlation_id=decided.correlation_id,
        )
        log.info("handover_answered", handover_id=decided.handover_id, state=decided.state.value)

    def _refuse_handover(
        self,
        event: InboundEvent,
        unit: ReferralUnit,
        refused: Refused,
        message: ev.HandoverProposal | ev.HandoverRequest | ev.HandoverAnswer | None = None,
        *,
        known_case: bool = False,
    ) -> None:
        refuse_handover(unit, refused, Origin.of(event, unit), message, known_case=known_case)


@dataclass(frozen=True, slots=True)
class Origin:
    """Which handover message, from whom, in which conversation: what its answer names, is
    keyed by and continues (also when it is decided after waiting for its case)."""

    message_id: str
    sender: str
    correlation_id: str | None

    @classmethod
    def of(cls, event: InboundEvent, unit: ReferralUnit) -> Origin:
        return cls(event.event_id, event.sender_agency or "unknown", unit.cause.correlation_id)

    @classmethod
    def waited(cls, waiting: WaitingHandover) -> Origin:
        return cls(waiting.message_id, waiting.sender_agency_id, waiting.correlation_id)


async def open_handover(
    unit: ReferralUnit,
    message: ev.HandoverProposal | ev.HandoverRequest,
    origin: Origin,
    *,
    may_wait: bool,
) -> None:
    """Decide a proposal or request and record, announce or refuse it. ``may_wait``: as it
    arrives, one naming a case referral does not know waits for the case instead of being
    refused (its case-registered may not be read yet); without, it is decided for good (the
    case came, or it waited long enough: an unknown case is refused as it would have been)."""
    store = unit.stores
    case = await store.load_case_facts(message.case_id, lock=True)
    pending = await store.pending_handover(message.case_id) if case else None
    now, handover_id = datetime.now(UTC), str(uuid.uuid4())
    decided: HandoverRow | Refused
    if case is None and not may_wait:
        decided = handovers.refused(ev.HandoverError.UNKNOWN_CASE)
    elif isinstance(message, ev.HandoverProposal):
        decided = handovers.decide_proposal(
            message,
            case=case,
            receiver=await store.load_agency(message.to_agency_id),
            pending=pending,
            now=now,
            handover_id=handover_id,
            message_id=origin.message_id,
            correlation_id=origin.correlation_id,
        )
    else:
        decided = handovers.decide_request(
            message,
            case=case,
            requester=await store.load_agency(message.agency_id),
            pending=pending,
            now=now,
            handover_id=handover_id,
            message_id=origin.message_id,
            correlation_id=origin.correlation_id,
        )
    if isinstance(decided, Refused):
        if may_wait and decided.error is ev.HandoverError.UNKNOWN_CASE:
            await _wait_for_case(unit, message, origin)
            return
        refuse_handover(unit, decided, origin, message, known_case=case is not None)
        return
    await store.record_handover(decided)
    announce(
        unit,
        [(ev.HANDOVER_PROPOSED, handovers.proposed_event(decided))],
        correlation_id=origin.correlation_id,
    )
    log.info(
        "handover_proposed",
        handover_id=decided.handover_id,
        case_id=decided.case_id,
        direction=decided.direction.value,
    )


async def _wait_for_case(
    unit: ReferralUnit, message: ev.HandoverProposal | ev.HandoverRequest, origin: Origin
) -> None:
    ce_type = (
        ev.HANDOVER_PROPOSAL_SUBMITTED
        if isinstance(message, ev.HandoverProposal)
        else ev.HANDOVER_REQUEST_SUBMITTED
    )
    waiting = WaitingHandover(
        message_id=origin.message_id,
        case_id=message.case_id,
        ce_type=ce_type,
        sender_agency_id=origin.sender,
        payload=message.model_dump_json(),
        correlation_id=origin.correlation_id,
    )
    parked = await unit.stores.park_handover(waiting)
    log.info("handover_waits_for_case", case_id=message.case_id, first=parked)


async def decide_waiting(unit: ReferralUnit, waiting: WaitingHandover) -> None:
    """A message that waited for its case, decided as if it arrived now (no more waiting)."""
    model = HANDOVER_MODELS[waiting.ce_type]
    message = model.model_validate_json(waiting.payload)
    assert isinstance(message, ev.HandoverProposal | ev.HandoverRequest)
    await open_handover(unit, message, Origin.waited(waiting), may_wait=False)


def refuse_handover(
    unit: ReferralUnit,
    refused: Refused,
    origin: Origin,
    message: ev.HandoverProposal | ev.HandoverRequest | ev.HandoverAnswer | None = None,
    *,
    known_case: bool = False,
) -> None:
    """Told to the sender, keyed by the case when the message names a known one (its
    handover's events stay in order), else by the sender; nothing changed."""
    case_id = message.case_id if message else None
    answer = ev.HandoverRefused(
        message_id=origin.message_id,
        agency_id=origin.sender,
        case_id=case_id,
        handover_id=message.handover_id if isinstance(message, ev.HandoverAnswer) else None,
        error=refused.error,
        state=refused.state,
        reason=refused.reason,
        errors=list(refused.errors),
    )
    key = case_id if case_id and known_case else origin.sender
    announce(unit, [(ev.HANDOVER_REFUSED, answer)], key=key, correlation_id=origin.correlation_id)
    log.info("handover_refused", error=refused.error.value, agency_id=origin.sender)


# ----- structural gaps: a government agency's commitment (structural.py decides) -----


async def commit(unit: ReferralUnit, event: InboundEvent, message: ev.StructuralCommitment) -> None:
    """Recorded (replacing the agency's earlier commitment to the report) and told back to it;
    or refused with the reason, nothing changed."""
    store = unit.stores
    gap = await store.load_gap(message.report_id)
    planned = message.commitment
    service_id = planned.service_id if isinstance(planned, ev.PlannedListing) else None
    decided = structural.decide_commitment(
        message,
        gap=gap,
        previous=await store.load_commitment(gap.report_id, message.agency_id) if gap else None,
        service_owner=await store.listing_owner(service_id) if service_id else None,
        today=datetime.now(UTC).date(),
        message_id=event.event_id,
    )
    if isinstance(decided, structural.CommitmentRefused):
        refuse_commitment(unit, event, decided, message, gap)
        return
    row, applied = decided
    await store.save_commitment(row)
    unit.emit(
        ev.STRUCTURAL_COMMITMENT_APPLIED,
        applied,
        topic=topics.REFERRAL_EVENTS,
        key=row.report_id,
        subject=row.report_id,
    )
    log.info("structural_commitment", report_id=row.report_id, kind=row.kind.value)


def refuse_commitment(
    unit: ReferralUnit,
    event: InboundEvent,
    refused: structural.CommitmentRefused,
    message: ev.StructuralCommitment | None = None,
    gap: structural.GapFacts | None = None,
) -> None:
    """Told to the sender (naming the report of a valid message), keyed by the report when it
    exists (its events stay in order), else by the sender."""
    sender = event.sender_agency or "unknown"
    answer = ev.StructuralCommitmentRefused(
        message_id=event.event_id,
        agency_id=sender,
        report_id=gap.report_id if gap else message.report_id if message else None,
        error=refused.error,
        reason=refused.reason,
        errors=list(refused.errors),
    )
    unit.emit(
        ev.STRUCTURAL_COMMITMENT_REFUSED,
        answer,
        topic=topics.REFERRAL_EVENTS,
        key=gap.report_id if gap else sender,
        subject=event.event_id,
    )
    log.info("structural_commitment_refused", error=refused.error.value, agency_id=sender)


def _same_gap(event: ev.Contract, told: ev.UnmatchedReason) -> bool:
    """The need is still unmet for the reason its referrer was told."""
    return isinstance(event, ev.NeedUnmatched) and event.reason is told
