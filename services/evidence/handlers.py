"""Evidence's handlers: each event of intake.cases.v1 and referral.events.v1 the read model
counts, recorded through the store. Short orchestration: what a case keeps and whether it
counts is profiles.py's. Nothing is emitted: the aggregates are published by a periodic job
(publishing.py) from what these rows hold.

Events are dated by their ce_time (``unit.cause.time``): a period is when a thing happened,
not when evidence read it (a rebuilt read model gives the same months)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts.events import ReferralState
from shared.unit import TypedHandler, Unit

from .facts import AssessmentFact, NeedFact
from .profiles import case_facts, community_facts, counts, kept_on_erasure
from .store import EvidenceStore

SOURCE = "urn:org:referralexchange:evidence"

EvidenceUnit = Unit[EvidenceStore]

# States that are the recipient's answer to a referral (the clock of time to answer stops at
# the first); expiry, cancellation and errors are not answers.
ANSWER_STATES = frozenset(
    {
        ReferralState.RECEIVED,
        ReferralState.ACCEPTED,
        ReferralState.REJECTED,
        ReferralState.IN_PROGRESS,
        ReferralState.ON_HOLD,
        ReferralState.COMPLETED,
        ReferralState.FAILED,
    }
)
ACCEPTED_STATES = frozenset(
    {ReferralState.ACCEPTED, ReferralState.IN_PROGRESS, ReferralState.COMPLETED}
)


def occurred(unit: EvidenceUnit) -> datetime:
    return unit.cause.time or datetime.now(UTC)


# ----- intake.cases.v1 -----


async def on_case(case: ev.CaseRegistered, unit: EvidenceUnit) -> None:
    at = occurred(unit)
    needs = [
        NeedFact(case.case_id, n.need_id, n.category, n.dimension.value, n.level.value)
        for n in case.needs
    ]
    await unit.stores.save_case(case_facts(case, at.date()), at)
    await unit.stores.replace_needs(case.case_id, needs)


async def on_community_need(need: ev.CommunityNeedRegistered, unit: EvidenceUnit) -> None:
    n = need.need
    fact = NeedFact(need.case_id, n.need_id, n.category, n.dimension.value, n.level.value)
    await unit.stores.save_case(community_facts(need), occurred(unit))
    await unit.stores.replace_needs(need.case_id, [fact])


async def on_consent_changed(change: ev.ConsentChanged, unit: EvidenceUnit) -> None:
    await unit.stores.set_statistics(change.case_id, counts(change.consent, occurred(unit).date()))


async def on_case_closed(closed: ev.CaseClosed, unit: EvidenceUnit) -> None:
    await unit.stores.end_case(closed.case_id, "closed")


async def on_case_erased(erased: ev.CaseErased, unit: EvidenceUnit) -> None:
    store = unit.stores
    kept = kept_on_erasure(await store.case(erased.case_id))
    if kept is None:
        await store.forget_case(erased.case_id)
        return
    await store.save_case(kept, occurred(unit))
    await store.end_case(erased.case_id, "erased")


async def on_case_handed_over(handover: ev.CaseHandedOver, unit: EvidenceUnit) -> None:
    await unit.stores.set_owner(handover.case_id, handover.to_agency_id)
    await unit.stores.record_handover(
        handover.handover_id, handover.case_id, "completed", handover.handed_over_at
    )


async def on_handover_failed(failed: ev.HandoverFailed, unit: EvidenceUnit) -> None:
    await unit.stores.record_handover(failed.handover_id, failed.case_id, "failed", occurred(unit))


async def on_assessment(recorded: ev.AssessmentRecorded, unit: EvidenceUnit) -> None:
    s = recorded.scores
    await unit.stores.record_assessment(
        AssessmentFact(
            recorded.case_id,
            recorded.wave,
            recorded.assessed_on,
            s.economic,
            s.social,
            s.psychosocial,
            s.composite,
        )
    )


async def on_follow_up(notice: ev.FollowUpNotice, unit: EvidenceUnit) -> None:
    await unit.stores.record_follow_up(
        notice.case_id, notice.wave, notice.due_on, notice.stage.value
    )


# ----- referral.events.v1 -----


async def on_referral_requested(referral: ev.ReferralRequested, unit: EvidenceUnit) -> None:
    await unit.stores.record_referral(
        referral.referral_id,
        referral.case_id,
        referral.need_id,
        referral.category,
        referral.recipient_agency_id,
        occurred(unit),
    )


async def on_referral_transitioned(change: ev.ReferralTransitioned, unit: EvidenceUnit) -> None:
    await unit.stores.record_transition(
        change.referral_id,
        change.to_state.value,
        answered_at=change.occurred_at if change.to_state in ANSWER_STATES else None,
        accepted=change.to_state in ACCEPTED_STATES,
    )


async def on_need_unmatched(unmet: ev.NeedUnmatched, unit: EvidenceUnit) -> None:
    await unit.stores.record_unmet(
        unmet.case_id, unmet.need_id, unmet.category, unmet.reason.value, occurred(unit)
    )


async def on_handover_proposed(proposed: ev.HandoverProposed, unit: EvidenceUnit) -> None:
    await unit.stores.record_handover(
        proposed.handover_id, proposed.case_id, "proposed", occurred(unit)
    )


async def on_handover_accepted(accepted: ev.HandoverAccepted, unit: EvidenceUnit) -> None:
    await unit.stores.record_handover(
        accepted.handover_id, accepted.case_id, "accepted", occurred(unit)
    )


async def on_handover_ended(ended: ev.HandoverEnded, unit: EvidenceUnit) -> None:
    await unit.stores.record_handover(
        ended.handover_id, ended.case_id, ended.state.value, ended.occurred_at
    )


#: What the read model counts: CloudEvents type → handler.
HANDLERS: dict[str, TypedHandler[EvidenceStore]] = {
    ev.CASE_REGISTERED: on_case,
    ev.CASE_UPDATED: on_case,
    ev.CONSENT_CHANGED: on_consent_changed,
    ev.CASE_CLOSED: on_case_closed,
    ev.CASE_ERASED: on_case_erased,
    ev.CASE_HANDED_OVER: on_case_handed_over,
    ev.HANDOVER_FAILED: on_handover_failed,
    ev.COMMUNITY_NEED_REGISTERED: on_community_need,
    ev.ASSESSMENT_RECORDED: on_assessment,
    ev.FOLLOW_UP_DUE: on_follow_up,
    ev.FOLLOW_UP_MISSED: on_follow_up,
    ev.REFERRAL_REQUESTED: on_referral_requested,
    ev.REFERRAL_TRANSITIONED: on_referral_transitioned,
    ev.NEED_UNMATCHED: on_need_unmatched,
    ev.HANDOVER_PROPOSED: on_handover_proposed,
    ev.HANDOVER_ACCEPTED: on_handover_accepted,
    ev.HANDOVER_ENDED: on_handover_ended,
}

#: Types of the consumed topics deliberately left alone: answers to agencies, reminders,
#: listings and directory events, routing control, structural gaps (referral's own report),
#: ends of assistance and continuity, possible duplicates and follow-up reminders (a reminder
#: is no outcome: due, missed and assessments are).
IGNORED = frozenset(
    {
        ev.SUBMISSION_ACCEPTED,
        ev.POSSIBLE_DUPLICATE_FOUND,
        ev.ASSISTANCE_ENDED,
        ev.FOLLOW_UP_REMINDER,
        ev.RESPONSE_REFUSED,
        ev.REMINDER_DUE,
        ev.RESPONSE_APPLIED,
        ev.LISTING_PUBLISHED,
        ev.LISTING_WITHDRAWN,
        ev.LISTING_REJECTED,
        ev.HANDOVER_REFUSED,
        ev.SUPPORT_CONTINUES,
        ev.CONTINUITY_PROPOSED,
        ev.STRUCTURAL_GAP_REPORTED,
        ev.STRUCTURAL_COMMITMENT_APPLIED,
        ev.STRUCTURAL_COMMITMENT_REFUSED,
        ev.ALTERNATIVES_LISTED,
        ev.INSTRUCTION_APPLIED,
        ev.INSTRUCTION_REFUSED,
    }
)
