"""Who hears what: the fan-out table from each upstream event type to the inbox notices it causes.

One row per notice: the upstream type, the inbox type, the agency that receives it, the inbox
key (also the notice's ``ce_subject``: what the event is about, docs/integrators.md §7), the
notice's payload, and when it applies. Pure: no I/O, no clock; the handler only carries out what
:func:`notices` returns, and unit tests read the table directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.taxonomy import ReasonCode


@dataclass(frozen=True, slots=True)
class Notice:
    """One inbox event to write: to ``agency_id``'s inbox, keyed (and subject) ``subject``."""

    agency_id: str
    inbox_type: str
    subject: str
    data: ev.Contract


_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    upstream: str  # the CloudEvents type consumed
    inbox_type: str  # the inbox type written
    recipient: Callable[[Any], str | None]  # None: nobody to tell (e.g. a rejection of no agency)
    # The notice's key and ce_subject, from the upstream payload's fields: "{referral_id}".
    # docs/integrators.md §7 lists the same per inbox type (a unit test compares the two).
    subject: str
    view: Callable[[Any], ev.Contract] = lambda p: p  # the notice's payload (default: as is)
    when: Callable[[Any], bool] = lambda _: True

    def subject_of(self, payload: Any) -> str:
        return _FIELD.sub(lambda m: str(getattr(payload, m.group(1))), self.subject)


def _received(r: ev.ReferralRequested) -> ev.InboxReferralReceived:
    return ev.InboxReferralReceived(
        referral_id=r.referral_id,
        case_id=r.case_id,
        need_id=r.need_id,
        category=r.category,
        urgency=r.urgency,
        service_id=r.service_id,
        referring_agency_id=r.referring_agency_id,
        respond_by=r.respond_by,
        respond_on_topic=topics.AGENCY_RESPONSES.name(r.recipient_agency_id),
    )


def _rerouted(r: ev.ReferralRequested) -> ev.InboxReferralRerouted:
    assert r.previous_referral_id is not None  # guarded by the route's ``when``
    return ev.InboxReferralRerouted(
        referral_id=r.referral_id,
        previous_referral_id=r.previous_referral_id,
        case_id=r.case_id,
        need_id=r.need_id,
        recipient_agency_id=r.recipient_agency_id,
        attempt=r.attempt,
    )


def _status(c: ev.ReferralTransitioned) -> ev.InboxStatusChanged:
    return ev.InboxStatusChanged(
        referral_id=c.referral_id,
        case_id=c.case_id,
        need_id=c.need_id,
        from_state=c.from_state,
        to_state=c.to_state,
        reason_code=c.reason_code,
        outcome=c.outcome,
        recipient_agency_id=c.recipient_agency_id,
    )


def _cancelled(c: ev.ReferralTransitioned) -> ev.InboxReferralCancelled:
    assert c.reason_code is not None  # guarded by the route's ``when``
    return ev.InboxReferralCancelled(
        referral_id=c.referral_id,
        case_id=c.case_id,
        reason_code=c.reason_code,
        # Consent withdrawn, or the referrer revoked or redirected it: the recipient must also
        # erase what it was sent.
        erase_received_data=c.reason_code is ReasonCode.CONSENT_WITHDRAWN
        or c.cancelled_by is ev.CancelledBy.REQUESTER,
        cancelled_by=c.cancelled_by,
    )


def _handover_proposed(p: ev.HandoverProposed) -> ev.InboxHandoverProposed:
    return ev.InboxHandoverProposed(
        handover_id=p.handover_id,
        case_id=p.case_id,
        direction=p.direction,
        owner_agency_id=p.owner_agency_id,
        receiving_agency_id=p.receiving_agency_id,
        answering_agency_id=p.answering_agency_id,
        reason=p.reason,
        respond_by=p.respond_by,
        # Both parties see where the answer is awaited: only the answering agency can write it.
        respond_on_topic=topics.AGENCY_RESPONSES.name(p.answering_agency_id),
    )


def _other_party(p: ev.HandoverProposed) -> str:
    """The party the handover does not wait on: the owner of an offer, the requester."""
    if p.direction is ev.HandoverDirection.OFFER:
        return p.owner_agency_id
    return p.receiving_agency_id


def _erased(e: ev.CaseErased) -> ev.InboxErasureConfirmed:
    return ev.InboxErasureConfirmed(
        case_id=e.case_id, agency_case_ref=e.agency_case_ref, erased_at=e.erased_at
    )


def _gap_reported(g: ev.StructuralGapReported) -> ev.InboxStructuralGapReported:
    return ev.InboxStructuralGapReported(
        **g.model_dump(exclude={"schema_version"}),
        # Where the government agency answers with a commitment (only it can write there).
        respond_on_topic=topics.AGENCY_RESPONSES.name(g.addressed_agency_id),
    )


def _duplicate(p: ev.PossibleDuplicateFound) -> ev.InboxPossibleDuplicate:
    return ev.InboxPossibleDuplicate(
        case_id=p.case_id,
        duplicate_case_id=p.duplicate_case_id,
        duplicate_owner_agency_id=p.duplicate_owner_agency_id,
        found_at=p.found_at,
    )


# In the order the notices of one upstream event are written.
FANOUT: tuple[Route, ...] = (
    Route(
        ev.REFERRAL_REQUESTED,
        ev.INBOX_REFERRAL_REROUTED,
        recipient=lambda r: r.referring_agency_id,
        subject="{referral_id}",
        view=_rerouted,
        when=lambda r: r.previous_referral_id is not None,
    ),
    Route(
        ev.REFERRAL_REQUESTED,
        ev.INBOX_REFERRAL_RECEIVED,
        recipient=lambda r: r.recipient_agency_id,
        subject="{referral_id}",
        view=_received,
    ),
    Route(
        ev.REFERRAL_TRANSITIONED,
        ev.INBOX_STATUS_CHANGED,
        # The case's current owner: after a handover, the new owner follows referrals in flight.
        recipient=lambda c: c.case_owner_agency_id or c.referring_agency_id,
        subject="{referral_id}",
        view=_status,
    ),
    Route(
        ev.REFERRAL_TRANSITIONED,
        ev.INBOX_REFERRAL_CANCELLED,
        recipient=lambda c: c.recipient_agency_id,
        subject="{referral_id}",
        view=_cancelled,
        when=lambda c: c.to_state is ev.ReferralState.CANCELLED and c.reason_code is not None,
    ),
    Route(
        ev.NEED_UNMATCHED,
        ev.INBOX_NEED_UNMATCHED,
        recipient=lambda u: u.referring_agency_id,
        subject="{case_id}:{need_id}",
    ),
    Route(
        ev.REMINDER_DUE,
        ev.INBOX_REFERRAL_REMINDER,
        recipient=lambda r: r.recipient_agency_id,
        subject="{referral_id}",
    ),
    Route(
        ev.RESPONSE_REFUSED,
        ev.INBOX_RESPONSE_REFUSED,
        recipient=lambda r: r.agency_id,
        subject="{response_id}",
    ),
    Route(
        ev.RESPONSE_APPLIED,
        ev.INBOX_RESPONSE_APPLIED,
        recipient=lambda a: a.agency_id,
        subject="{referral_id}",
    ),
    Route(
        ev.LISTING_PUBLISHED,
        ev.INBOX_LISTING_PUBLISHED,
        recipient=lambda a: a.agency_id,
        subject="{service_id}",
    ),
    Route(
        ev.LISTING_WITHDRAWN,
        ev.INBOX_LISTING_WITHDRAWN,
        recipient=lambda a: a.agency_id,
        subject="{service_id}",
    ),
    Route(
        ev.LISTING_REJECTED,
        ev.INBOX_LISTING_REJECTED,
        recipient=lambda r: r.agency_id,
        subject="{submission_id}",
    ),
    Route(
        ev.SUBMISSION_ACCEPTED,
        ev.INBOX_SUBMISSION_ACCEPTED,
        recipient=lambda a: a.agency_id,
        subject="{submission_id}",
    ),
    Route(
        ev.CASE_ERASED,
        ev.INBOX_ERASURE_CONFIRMED,
        recipient=lambda e: e.submitting_agency_id,
        subject="{case_id}",
        view=_erased,
    ),
    Route(
        ev.SUBMISSION_REJECTED,
        ev.INBOX_SUBMISSION_REJECTED,
        recipient=lambda r: r.agency_id,
        subject="{submission_id}",
    ),
    Route(
        ev.DISCLOSURE_SEALED,
        ev.INBOX_DISCLOSURE_RECEIVED,
        recipient=lambda s: s.recipient_agency_id,
        subject="{referral_id}",
    ),
    # Continuity (decision 16). A handover's notices are keyed by handover_id, so each party
    # reads its steps in order; the move itself by case_id (it changes who writes the case).
    Route(
        ev.HANDOVER_PROPOSED,
        ev.INBOX_HANDOVER_PROPOSED,
        recipient=lambda p: p.answering_agency_id,
        subject="{handover_id}",
        view=_handover_proposed,
    ),
    Route(
        ev.HANDOVER_PROPOSED,
        ev.INBOX_HANDOVER_PROPOSED,
        recipient=_other_party,
        subject="{handover_id}",
        view=_handover_proposed,
    ),
    Route(
        ev.HANDOVER_ENDED,
        ev.INBOX_HANDOVER_ENDED,
        recipient=lambda e: e.owner_agency_id,
        subject="{handover_id}",
    ),
    Route(
        ev.HANDOVER_ENDED,
        ev.INBOX_HANDOVER_ENDED,
        recipient=lambda e: e.receiving_agency_id,
        subject="{handover_id}",
    ),
    Route(
        ev.HANDOVER_REFUSED,
        ev.INBOX_HANDOVER_REFUSED,
        recipient=lambda r: r.agency_id,
        subject="{message_id}",
    ),
    Route(
        ev.CASE_HANDED_OVER,
        ev.INBOX_CASE_HANDED_OVER,
        recipient=lambda h: h.from_agency_id,
        subject="{case_id}",
    ),
    Route(
        ev.CASE_HANDED_OVER,
        ev.INBOX_CASE_HANDED_OVER,
        recipient=lambda h: h.to_agency_id,
        subject="{case_id}",
    ),
    Route(
        ev.HANDOVER_FAILED,
        ev.INBOX_HANDOVER_FAILED,
        recipient=lambda h: h.from_agency_id,
        subject="{handover_id}",
    ),
    Route(
        ev.HANDOVER_FAILED,
        ev.INBOX_HANDOVER_FAILED,
        recipient=lambda h: h.to_agency_id,
        subject="{handover_id}",
    ),
    Route(
        ev.CASE_DATA_SEALED,
        ev.INBOX_CASE_DATA_RECEIVED,
        recipient=lambda s: s.recipient_agency_id,
        subject="{handover_id}",
    ),
    Route(
        ev.SUPPORT_CONTINUES,
        ev.INBOX_SUPPORT_CONTINUES,
        recipient=lambda s: s.recipient_agency_id,
        subject="{referral_id}",
    ),
    Route(
        ev.CONTINUITY_PROPOSED,
        ev.INBOX_CONTINUITY_PROPOSED,
        recipient=lambda c: c.owner_agency_id,
        subject="{case_id}",
    ),
    # Structural gaps (decision 18): a report and the answers to its commitments by report_id.
    Route(
        ev.STRUCTURAL_GAP_REPORTED,
        ev.INBOX_STRUCTURAL_GAP_REPORTED,
        recipient=lambda g: g.addressed_agency_id,
        subject="{report_id}",
        view=_gap_reported,
    ),
    Route(
        ev.STRUCTURAL_COMMITMENT_APPLIED,
        ev.INBOX_STRUCTURAL_COMMITMENT_APPLIED,
        recipient=lambda a: a.agency_id,
        subject="{report_id}",
    ),
    Route(
        ev.STRUCTURAL_COMMITMENT_REFUSED,
        ev.INBOX_STRUCTURAL_COMMITMENT_REFUSED,
        recipient=lambda r: r.agency_id,
        subject="{message_id}",
    ),
    # ----- issue 18 caseworker control: the referrer's instructions answered -----
    Route(
        ev.ALTERNATIVES_LISTED,
        ev.INBOX_ALTERNATIVES_LISTED,
        recipient=lambda a: a.referring_agency_id,
        subject="{case_id}:{need_id}",
    ),
    Route(
        ev.INSTRUCTION_APPLIED,
        ev.INBOX_INSTRUCTION_APPLIED,
        recipient=lambda a: a.agency_id,
        subject="{instruction_id}",
    ),
    Route(
        ev.INSTRUCTION_REFUSED,
        ev.INBOX_INSTRUCTION_REFUSED,
        recipient=lambda r: r.agency_id,
        subject="{instruction_id}",
    ),
    # ----- issue 18 consent follow-through -----
    # A likely duplicate: intake publishes it once per owner (only where both consents allow),
    # each about that owner's own case and keyed by it.
    Route(
        ev.POSSIBLE_DUPLICATE_FOUND,
        ev.INBOX_POSSIBLE_DUPLICATE,
        recipient=lambda p: p.owner_agency_id,
        subject="{case_id}",
        view=_duplicate,
    ),
    # A recipient's erasure confirmation: the case's owner hears it by referral, the recipient
    # its answer by the message it sent.
    Route(
        ev.DISCLOSURE_ERASED,
        ev.INBOX_DISCLOSURE_ERASED,
        recipient=lambda e: e.owner_agency_id,
        subject="{referral_id}",
    ),
    Route(
        ev.DISCLOSURE_ERASED,
        ev.INBOX_ERASURE_CONFIRMATION_RECORDED,
        recipient=lambda e: e.recipient_agency_id,
        subject="{submission_id}",
    ),
    # ----- issue 19 follow-ups and assessments: the case's owner hears each -----
    Route(
        ev.FOLLOW_UP_REMINDER,
        ev.INBOX_FOLLOW_UP_REMINDER,
        recipient=lambda n: n.owner_agency_id,
        subject="{case_id}:{wave}",
    ),
    Route(
        ev.FOLLOW_UP_DUE,
        ev.INBOX_FOLLOW_UP_DUE,
        recipient=lambda n: n.owner_agency_id,
        subject="{case_id}:{wave}",
    ),
    Route(
        ev.FOLLOW_UP_MISSED,
        ev.INBOX_FOLLOW_UP_MISSED,
        recipient=lambda n: n.owner_agency_id,
        subject="{case_id}:{wave}",
    ),
    Route(
        ev.ASSESSMENT_RECORDED,
        ev.INBOX_ASSESSMENT_RECORDED,
        recipient=lambda a: a.owner_agency_id,
        subject="{case_id}:{wave}",
    ),
)

_BY_UPSTREAM: dict[str, tuple[Route, ...]] = {}
for _route in FANOUT:
    _BY_UPSTREAM[_route.upstream] = (*_BY_UPSTREAM.get(_route.upstream, ()), _route)

# Every upstream type notification consumes and tells nobody about (said, so that a type missing
# from the table is a decision, not an oversight: tests check the two cover every payload).
SILENT: frozenset[str] = frozenset(
    {
        ev.CASE_REGISTERED,
        ev.CASE_UPDATED,
        ev.CONSENT_CHANGED,
        ev.CASE_CLOSED,
        ev.DISCLOSURE_REFUSED,  # concerns no agency's inbox: the referrer hears the referral
        # The owner hears its end of assistance as submission-accepted (outcome updated), and
        # each provider with an open referral support-continues.
        ev.ASSISTANCE_ENDED,
        # An accepted handover is for intake to carry out: the parties hear how it ended,
        # case-handed-over or handover-failed.
        ev.HANDOVER_ACCEPTED,
        # issue 18: the reporting agency hears its community need as submission-accepted, and
        # its referrals as for a case.
        ev.COMMUNITY_NEED_REGISTERED,
    }
)

UPSTREAM_TYPES: frozenset[str] = frozenset(_BY_UPSTREAM)


def notices(ce_type: str, payload: ev.Contract) -> list[Notice]:
    """The inbox notices one upstream event causes, in the order they are written."""
    out = []
    for route in _BY_UPSTREAM.get(ce_type, ()):
        if not route.when(payload):
            continue
        agency_id = route.recipient(payload)
        if agency_id is None:
            continue
        out.append(
            Notice(agency_id, route.inbox_type, route.subject_of(payload), route.view(payload))
        )
    return out
