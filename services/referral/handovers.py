"""Case handovers (decision 16), apart from I/O: whether a proposal, a request or an answer is
applied, and what it changes; or why it is refused. Pure (the clock and the new id are
arguments); the handlers load what the checks read and store what they decide.

    owner ─proposal─▶ proposed (answering: the receiver) ─accept─▶ accepted ─(intake)─▶ completed
    requester ─request─▶ proposed (answering: the owner)  └reject─▶ rejected          └▶ failed
                         └(respond_by passed)─▶ expired

One handover waits per case at a time (proposed or accepted). The checks run in the order the
decision record lists them, so a message with several faults is told the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.contracts import events as ev
from shared.contracts.events import HandoverError as E
from shared.contracts.events import HandoverState

# A handover still waiting: on an answer (proposed) or on intake moving the case (accepted).
PENDING = frozenset({HandoverState.PROPOSED, HandoverState.ACCEPTED})

# What each refusal says to its sender (never a value it sent).
REASONS = {
    E.INVALID_MESSAGE: "the message does not match the contract",
    E.UNKNOWN_CASE: "no case has this case_id",
    E.NOT_OWNER: "the case is owned by another agency",
    E.UNKNOWN_AGENCY: "the receiving agency is not registered",
    E.ALREADY_OWNER: "the agency already owns the case",
    E.CASE_NOT_OPEN: "the case is closed",
    E.CONSENT_NOT_COVERING: "the returnee's consent does not cover the new owner",
    E.ALREADY_PENDING: "the case already has a handover waiting (one at a time)",
    E.UNKNOWN_HANDOVER: "no handover of this case has this handover_id",
    E.NOT_ANSWERING_AGENCY: "the handover waits on another agency's answer",
    E.NOT_PENDING: "the handover no longer waits for an answer (state)",
    E.REFERENCE_MISSING: "accepting an offer needs the agency_case_ref you will keep it under",
}


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What the handover checks and the continuity proposals read of a case."""

    case_id: str
    owner_agency_id: str
    status: str  # open, closed or erased
    consent: ev.Consent
    return_area: str
    needs: tuple[ev.Need, ...] = ()


@dataclass(frozen=True, slots=True)
class AgencyFacts:
    agency_id: str
    type: ev.AgencyType
    registered: bool  # False once a tombstone deregistered it


@dataclass(frozen=True, slots=True)
class HandoverRow:
    handover_id: str
    case_id: str
    direction: ev.HandoverDirection
    owner_agency_id: str
    receiving_agency_id: str
    answering_agency_id: str
    reason: ev.HandoverReason
    respond_by: datetime
    state: HandoverState
    message_id: str
    receiving_case_ref: str | None = None
    consent: ev.Consent | None = None
    decline_reason: ev.HandoverDeclineReason | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class WaitingHandover:
    """A proposal or request that named a case referral had not read yet (an agency's
    responses topic and intake.cases.v1 are read independently): it waits for the case, then
    is decided as if it arrived then; or is refused after a while. ``payload``: the validated
    message as JSON."""

    message_id: str  # its ce_id
    case_id: str
    ce_type: str
    sender_agency_id: str
    payload: str
    correlation_id: str | None = None
    received_at: datetime | None = None  # set by the store


@dataclass(frozen=True, slots=True)
class Refused:
    """A handover message that changes nothing, and what its sender is told."""

    error: E
    reason: str
    errors: Sequence[ev.FieldError] = field(default_factory=tuple)
    state: HandoverState | None = None


def refused(
    error: E,
    reason: str | None = None,
    *,
    errors: Sequence[ev.FieldError] = (),
    state: HandoverState | None = None,
) -> Refused:
    return Refused(error, reason or REASONS[error], errors, state)


def consent_gap(consent: ev.Consent, agency: AgencyFacts, now: datetime) -> str | None:
    """Why the consent does not let the case (and its personal data) go to ``agency``, or None:
    given, not expired, for referral, and its scope's agencies and agency types, where set,
    naming it. Intake checks again when it moves the case."""
    scope = consent.scope
    if not consent.given or scope is None:
        return "the returnee's consent is not given"
    if scope.expires_on is not None and scope.expires_on < now.date():
        return "the returnee's consent has expired"
    if ev.ConsentPurpose.REFERRAL not in scope.purposes:
        return "the returnee's consent does not include the purpose referral"
    if scope.agency_ids is not None and agency.agency_id not in scope.agency_ids:
        return "the returnee's consent names other agencies than the new owner"
    if scope.agency_types is not None and agency.type not in scope.agency_types:
        return "the returnee's consent names other agency types than the new owner's"
    return None


def _deadline(respond_by: datetime, now: datetime) -> Refused | None:
    """A deadline already passed would expire the handover at once: told as a bad field."""
    if respond_by > now:
        return None
    message = "must be in the future"
    return refused(
        E.INVALID_MESSAGE,
        "respond_by has already passed",
        errors=(ev.FieldError(field="respond_by", message=message),),
    )


def _not_open(case: CaseFacts) -> Refused | None:
    if case.status == "open":
        return None
    return refused(E.CASE_NOT_OPEN, f"the case is {case.status}")


def _pending(pending: HandoverRow | None) -> Refused | None:
    if pending is None:
        return None
    return refused(E.ALREADY_PENDING, state=pending.state)


def decide_proposal(
    proposal: ev.HandoverProposal,
    *,
    case: CaseFacts | None,
    receiver: AgencyFacts | None,
    pending: HandoverRow | None,
    now: datetime,
    handover_id: str,
    message_id: str,
    correlation_id: str | None = None,
) -> HandoverRow | Refused:
    """The owner offers its case to another registered agency: the new handover, waiting on
    the receiver's answer; or why not (checked in the decision record's order)."""
    if (late := _deadline(proposal.respond_by, now)) is not None:
        return late
    if case is None:
        return refused(E.UNKNOWN_CASE)
    if proposal.agency_id != case.owner_agency_id:
        return refused(E.NOT_OWNER)
    if (closed := _not_open(case)) is not None:
        return closed
    if receiver is None or not receiver.registered:
        return refused(E.UNKNOWN_AGENCY, _unknown(receiver, "the receiving agency"))
    if proposal.to_agency_id == case.owner_agency_id:
        return refused(E.ALREADY_OWNER, "the case cannot be handed over to its own owner")
    if (waiting := _pending(pending)) is not None:
        return waiting
    consent = proposal.consent or case.consent
    if (gap := consent_gap(consent, receiver, now)) is not None:
        return refused(E.CONSENT_NOT_COVERING, gap)
    return HandoverRow(
        handover_id=handover_id,
        case_id=case.case_id,
        direction=ev.HandoverDirection.OFFER,
        owner_agency_id=case.owner_agency_id,
        receiving_agency_id=receiver.agency_id,
        answering_agency_id=receiver.agency_id,
        reason=proposal.reason,
        respond_by=proposal.respond_by,
        state=HandoverState.PROPOSED,
        message_id=message_id,
        consent=proposal.consent,
        correlation_id=correlation_id,
    )


def decide_request(
    request: ev.HandoverRequest,
    *,
    case: CaseFacts | None,
    requester: AgencyFacts | None,
    pending: HandoverRow | None,
    now: datetime,
    handover_id: str,
    message_id: str,
    correlation_id: str | None = None,
) -> HandoverRow | Refused:
    """An agency asks the owner for a case: the new handover, waiting on the owner's answer
    (the requester's reference comes with the request); or why not."""
    if (late := _deadline(request.respond_by, now)) is not None:
        return late
    if case is None:
        return refused(E.UNKNOWN_CASE)
    if requester is None or not requester.registered:
        return refused(E.UNKNOWN_AGENCY, _unknown(requester, "the requesting agency"))
    if requester.agency_id == case.owner_agency_id:
        return refused(E.ALREADY_OWNER)
    if (closed := _not_open(case)) is not None:
        return closed
    if (waiting := _pending(pending)) is not None:
        return waiting
    if (gap := consent_gap(case.consent, requester, now)) is not None:
        return refused(E.CONSENT_NOT_COVERING, gap)
    return HandoverRow(
        handover_id=handover_id,
        case_id=case.case_id,
        direction=ev.HandoverDirection.REQUEST,
        owner_agency_id=case.owner_agency_id,
        receiving_agency_id=requester.agency_id,
        answering_agency_id=case.owner_agency_id,
        reason=request.reason,
        respond_by=request.respond_by,
        state=HandoverState.PROPOSED,
        message_id=message_id,
        receiving_case_ref=request.agency_case_ref,
        correlation_id=correlation_id,
    )


def _unknown(agency: AgencyFacts | None, who: str) -> str:
    return f"{who} is not registered" if agency is None else f"{who} was deregistered"


def decide_answer(answer: ev.HandoverAnswer, handover: HandoverRow | None) -> HandoverRow | Refused:
    """The answering agency accepts or rejects: the handover as it stands after the answer
    (accepted with the new owner's reference, or rejected with the reason); or why not."""
    if handover is None or handover.case_id != answer.case_id:
        return refused(E.UNKNOWN_HANDOVER)
    if answer.agency_id != handover.answering_agency_id:
        return refused(E.NOT_ANSWERING_AGENCY)
    if handover.state is not HandoverState.PROPOSED:
        return refused(
            E.NOT_PENDING,
            f"the handover is {handover.state.value}: it no longer waits for an answer",
            state=handover.state,
        )
    if answer.action is ev.HandoverAction.REJECT:
        return replace(handover, state=HandoverState.REJECTED, decline_reason=answer.reason)
    # An offer's new owner names its reference when it accepts; a request named it already
    # (an owner approving a request gives none: whatever it sends is not the receiver's).
    reference = (
        answer.agency_case_ref
        if handover.direction is ev.HandoverDirection.OFFER
        else handover.receiving_case_ref
    )
    if reference is None:
        return refused(
            E.REFERENCE_MISSING,
            errors=(ev.FieldError(field="agency_case_ref", message="required to accept"),),
        )
    return replace(handover, state=HandoverState.ACCEPTED, receiving_case_ref=reference)


def expired(handover: HandoverRow) -> HandoverRow | None:
    """A handover at its deadline: expired if still unanswered (the owner keeps the case)."""
    if handover.state is not HandoverState.PROPOSED:
        return None
    return replace(handover, state=HandoverState.EXPIRED)


# ----- the events that tell what happened -----


def proposed_event(h: HandoverRow) -> ev.HandoverProposed:
    return ev.HandoverProposed(
        handover_id=h.handover_id,
        case_id=h.case_id,
        direction=h.direction,
        owner_agency_id=h.owner_agency_id,
        receiving_agency_id=h.receiving_agency_id,
        answering_agency_id=h.answering_agency_id,
        reason=h.reason,
        respond_by=h.respond_by,
        message_id=h.message_id,
    )


def answered_event(h: HandoverRow, now: datetime) -> tuple[str, ev.Contract]:
    """What an applied answer (or an expiry) announces: the acceptance intake acts on, or the
    end of a handover that moved nothing."""
    if h.state is HandoverState.ACCEPTED:
        assert h.receiving_case_ref is not None  # decide_answer requires it
        return ev.HANDOVER_ACCEPTED, ev.HandoverAccepted(
            handover_id=h.handover_id,
            case_id=h.case_id,
            owner_agency_id=h.owner_agency_id,
            receiving_agency_id=h.receiving_agency_id,
            receiving_case_ref=h.receiving_case_ref,
            consent=h.consent,
        )
    return ev.HANDOVER_ENDED, ev.HandoverEnded(
        handover_id=h.handover_id,
        case_id=h.case_id,
        owner_agency_id=h.owner_agency_id,
        receiving_agency_id=h.receiving_agency_id,
        state=h.state,
        reason=h.decline_reason,
        occurred_at=now,
    )
