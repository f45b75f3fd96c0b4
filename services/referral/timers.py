"""Deadlines: due timer rows expire their referral and re-route the need, or expire a handover
still unanswered (the owner keeps the case); a handover message that waited too long for its
case is answered; clusters of unmet needs are reported as structural gaps. Driven by the
database, never by sleeps in
memory, so a restart (or another instance) loses none."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from shared.contracts import topics
from shared.contracts.events import (
    REFERRAL_REQUESTED,
    REMINDER_DUE,
    STRUCTURAL_GAP_REPORTED,
    ReferralReminderDue,
)
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import ReasonCode
from shared.logging import get_logger

from . import consent as consent_rules
from . import handovers, metrics, routing, structural
from .decisions import RoutingPolicy
from .handlers import ReferralUnit, announce, decide_waiting
from .lifecycle import can_expire

log = get_logger(__name__)

# A unit in a transaction of its own (the runtime's ``unit()``).
Units = Callable[[], AbstractAsyncContextManager[ReferralUnit]]


async def expire_due(units: Units, policy: RoutingPolicy, limit: int = 100) -> int:
    """Expire what is due (skipping rows another instance holds); return how many."""
    expired = rerouted = 0
    async with units() as unit:
        due = await unit.stores.take_due_deadlines(limit)
        for referral_id in due:
            ref = await unit.stores.load_referral(referral_id)
            if ref is None or not can_expire(ref.status):
                continue
            out = await routing.transition(
                unit.stores, ref, S.EXPIRED, reason=ReasonCode.NO_RESPONSE
            )
            next_attempt = await routing.reroute(unit.stores, ref, policy)
            expired += 1
            rerouted += any(t == REFERRAL_REQUESTED for t, _ in next_attempt)
            announce(unit, out + next_attempt, correlation_id=ref.correlation_id)
            log.info("referral_expired", referral_id=ref.referral_id, attempt=ref.attempt)
    # Counted once committed (a unit that failed expired nothing).
    metrics.DEADLINES_MISSED.inc(expired)
    metrics.REROUTES.inc(rerouted)
    return len(due) + await remind_due(units, limit=limit)


async def remind_due(units: Units, limit: int = 100) -> int:
    """Remind recipients whose decision deadline is near (once per referral)."""
    async with units() as unit:
        due = await unit.stores.take_due_reminders(limit)
        for reminder_row in due:
            ref = await unit.stores.load_referral(reminder_row.referral_id)
            if ref is None or not can_expire(ref.status):
                continue
            reminder = ReferralReminderDue(
                referral_id=ref.referral_id,
                case_id=ref.case_id,
                need_id=ref.need_id,
                recipient_agency_id=ref.recipient_agency_id,
                respond_by=reminder_row.due_at,
                attempt=ref.attempt,
            )
            announce(unit, [(REMINDER_DUE, reminder)], correlation_id=ref.correlation_id)
    return len(due)


async def expire_due_handovers(units: Units, limit: int = 100) -> int:
    """Expire the handovers whose answer deadline passed unanswered; return how many timers
    were due (an answer that came first already ended the handover and dropped its timer)."""
    async with units() as unit:
        due = await unit.stores.take_due_handovers(limit)
        for handover_id in due:
            handover = await unit.stores.load_handover(handover_id)
            ended = handovers.expired(handover) if handover else None
            if ended is None:
                continue
            await unit.stores.update_handover(ended)
            announce(
                unit,
                [handovers.answered_event(ended, datetime.now(UTC))],
                correlation_id=ended.correlation_id,
            )
            log.info("handover_expired", handover_id=ended.handover_id, case_id=ended.case_id)
    return len(due)


async def answer_stale_waiting(units: Units, wait_s: float, limit: int = 100) -> int:
    """Decide the handover proposals and requests that waited longer than ``wait_s`` for their
    case, or whose case has come meanwhile: refused with unknown_case if it still did not come
    (so the sender always hears), as if they arrived now if it came (applied by another
    transaction, or instance, that could not see the message yet: decided at the next tick,
    not after the wait). Return how many."""
    async with units() as unit:
        stale = await unit.stores.take_stale_waiting(wait_s, limit)
        for waiting in stale:
            await decide_waiting(unit, waiting)
    return len(stale)


async def report_structural_gaps(
    units: Units, rule: structural.GapRule, now: datetime | None = None
) -> int:
    """Report the current period's clusters of unmet needs at the threshold, once each, to the
    government agencies covering their district (one event per agency, keyed by the report);
    return how many gaps were reported. Another instance that recorded one first wins: this
    one announces nothing for it."""
    period = structural.period_of(now or datetime.now(UTC), rule.period_days)
    previous_start = period[0] - (period[1] - period[0])
    async with units() as unit:
        clusters = await unit.stores.gap_clusters(rule, period, previous_start)
        if not clusters:
            return 0
        reports = structural.gap_reports(
            clusters,
            await unit.stores.government_coverage(),
            period,
            rule,
            new_id=lambda: str(uuid.uuid4()),
        )
        reported = 0
        for report in reports:
            if not await unit.stores.record_gap(report):
                continue
            reported += 1
            for event in report.events():
                unit.emit(
                    STRUCTURAL_GAP_REPORTED,
                    event,
                    topic=topics.REFERRAL_EVENTS,
                    key=report.report_id,
                    subject=report.report_id,
                )
            log.info(
                "structural_gap_reported",
                report_id=report.report_id,
                area=report.area,
                category=report.category,
                addressees=len(report.addressees),
            )
    return reported


async def expire_consents(units: Units, limit: int = 100) -> int:
    """The cases whose consent's ``expires_on`` has passed: their open referrals are cancelled
    as a withdrawal (their recipients told to erase), as any consent that no longer covers
    them. A new consent meanwhile moved or dropped the timer, so a due row is the expiry of the
    consent the case has: it is read as of that expiry (the row says it has come, as a
    referral's timer says its deadline has). Return how many were due."""
    async with units() as unit:
        due = await unit.stores.take_due_consent_expiries(limit)
        for case_id, due_at in due:
            case = await unit.stores.load_case_facts(case_id)
            if case is None:
                continue
            expiry = consent_rules.expiry_due(case.consent) or due_at
            as_of = max(datetime.now(UTC), due_at, expiry).date()
            out = await routing.cancel_uncovered(unit.stores, case_id, case.consent, as_of)
            announce(unit, out)
            log.info("consent_expired", case_id=case_id, cancelled=len(out))
    return len(due)
