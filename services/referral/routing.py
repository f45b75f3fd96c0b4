"""Opening, re-routing and closing the referral chain of one need; cancelling a case's open
referrals. Each is: read through the store, decide (decisions.py, pure), record through the
store, and return the events to announce (the caller's unit emits them)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from shared.contracts import events as ev
from shared.contracts.events import MAX_ALTERNATIVES
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import ReasonCode

from . import consent as consent_rules
from .control import NO_EXCLUSIONS, Exclusions, alternatives
from .decisions import (
    Gap,
    Refer,
    ReferralRow,
    Routable,
    RoutingPolicy,
    area_of,
    decide_route,
    transitioned,
)
from .lifecycle import OPEN_STATES, holds_a_slot

if TYPE_CHECKING:
    from .store import ReferralStore

Emitted = list[tuple[str, ev.Contract]]


async def decide(
    store: ReferralStore,
    case: Routable,
    need: ev.Need,
    policy: RoutingPolicy,
    exclusions: Exclusions = NO_EXCLUSIONS,
) -> Refer | Gap:
    """The best candidate not tried yet for the need, and not excluded by its referrer, or why
    none is left (nothing stored)."""
    chain = await store.chain(case.case_id, need.need_id)
    candidates = await store.candidates(need.category, area_of(case))
    excluded = exclusions.services_of(candidates) if exclusions else frozenset()
    return decide_route(case, need, candidates, chain, policy, datetime.now(UTC), excluded=excluded)


def announced(decided: Refer | Gap) -> tuple[str, ev.Contract]:
    """The event that says what routing decided."""
    if isinstance(decided, Gap):
        return ev.NEED_UNMATCHED, decided.unmatched
    return ev.REFERRAL_REQUESTED, decided.referral


async def route_case(
    store: ReferralStore,
    case: Routable,
    policy: RoutingPolicy,
    *,
    correlation_id: str | None,
) -> Emitted:
    """Store the case and route its needs not routed yet (a redelivery or an update adds
    nothing), in one write. A need held for its referrer is not routed: it waits, and the
    referrer is sent its ranked alternatives (a new need has no exclusions yet)."""
    fresh = [
        need for need in case.needs if not await store.need_is_handled(case.case_id, need.need_id)
    ]
    held = [need for need in fresh if need.hold_for_referrer]
    routes = [
        (need, await decide(store, case, need, policy))
        for need in fresh
        if not need.hold_for_referrer
    ]
    await store.save_case(case, routes, correlation_id)
    out = [announced(decided) for _, decided in routes]
    if held:
        await store.hold_needs(case.case_id, [n.need_id for n in held])
    for need in held:
        candidates = await store.candidates(need.category, area_of(case))
        listed = alternatives(
            None, case, need, candidates, NO_EXCLUSIONS, (), k=MAX_ALTERNATIVES, held=True
        )
        out.append((ev.ALTERNATIVES_LISTED, listed))
    return out


async def route_need(
    store: ReferralStore,
    case: Routable,
    need: ev.Need,
    policy: RoutingPolicy,
    *,
    correlation_id: str | None,
) -> Emitted:
    """Refer one need of a stored case to the best candidate not tried yet (nor excluded by its
    referrer), or record why none is left."""
    decided = await decide(
        store, case, need, policy, await store.exclusions(case.case_id, need.need_id)
    )
    await store.record_route(case, need, decided, correlation_id)
    return [announced(decided)]


async def transition(
    store: ReferralStore,
    ref: ReferralRow,
    to: S,
    *,
    reason: ReasonCode | None = None,
    outcome: ev.Outcome | None = None,
    cancelled_by: ev.CancelledBy | None = None,
) -> Emitted:
    """Move the referral to ``to`` (the lifecycle has said it may): an accepted referral holds
    one of its listing's slots until it ends; the decision deadline runs only until an answer."""
    held_before, held_after = holds_a_slot(ref.status), holds_a_slot(to)
    await store.set_state(
        ref,
        to,
        reason=reason,
        outcome=outcome,
        slot_change=(1 if held_after else -1) if held_before != held_after else 0,
        deadline_ends=to not in (S.REQUESTED, S.RECEIVED),
        cancelled_by=cancelled_by,
    )
    change = transitioned(
        ref, to, reason=reason, outcome=outcome, now=datetime.now(UTC), cancelled_by=cancelled_by
    )
    return [(ev.REFERRAL_TRANSITIONED, change)]


async def reroute(store: ReferralStore, ref: ReferralRow, policy: RoutingPolicy) -> Emitted:
    """After a rejection or expiry: the next candidate, linked to this referral (the last of
    its need's chain)."""
    case = await store.load_case(ref.case_id)
    need = next((n for n in case.needs if n.need_id == ref.need_id), None) if case else None
    if case is None or need is None:
        return []
    return await route_need(store, case, need, policy, correlation_id=ref.correlation_id)


async def cancel_open(store: ReferralStore, case_id: str, reason: ReasonCode) -> Emitted:
    out: Emitted = []
    for ref in await store.open_referrals(case_id, list(OPEN_STATES)):
        out += await transition(store, ref, S.CANCELLED, reason=reason)
    return out


async def cancel_uncovered(
    store: ReferralStore, case_id: str, consent: ev.Consent, today: date
) -> Emitted:
    """Cancel the case's open referrals that ``consent`` no longer covers (consent.py decides),
    as a withdrawal: their recipients are told to erase what they received. The covered ones
    are left alone."""
    if store.has_no_open_referral(case_id):  # known from the batch's preload
        return []
    refs = await store.open_referrals(case_id, list(OPEN_STATES))
    if not refs:
        return []
    types = await store.agency_types([r.recipient_agency_id for r in refs])
    out: Emitted = []
    for ref in consent_rules.no_longer_covered(consent, refs, types, today):
        out += await transition(store, ref, S.CANCELLED, reason=ReasonCode.CONSENT_WITHDRAWN)
    return out
