"""Decision deadlines: due timer rows expire their referral and re-route the need. Driven by
the database, never by sleeps in memory, so a restart (or another instance) loses none."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from shared.contracts.events import REMINDER_DUE, ReferralReminderDue
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import ReasonCode
from shared.logging import get_logger

from . import routing
from .decisions import RoutingPolicy
from .handlers import ReferralUnit, announce
from .lifecycle import can_expire

log = get_logger(__name__)

# A unit in a transaction of its own (the runtime's ``unit()``).
Units = Callable[[], AbstractAsyncContextManager[ReferralUnit]]


async def expire_due(units: Units, policy: RoutingPolicy, limit: int = 100) -> int:
    """Expire what is due (skipping rows another instance holds); return how many."""
    async with units() as unit:
        due = await unit.stores.take_due_deadlines(limit)
        for referral_id in due:
            ref = await unit.stores.load_referral(referral_id)
            if ref is None or not can_expire(ref.status):
                continue
            out = await routing.transition(
                unit.stores, ref, S.EXPIRED, reason=ReasonCode.NO_RESPONSE
            )
            out += await routing.reroute(unit.stores, ref, policy)
            announce(unit, out, correlation_id=ref.correlation_id)
            log.info("referral_expired", referral_id=ref.referral_id, attempt=ref.attempt)
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
