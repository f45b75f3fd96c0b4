"""A referrer instruction carried out (issue 18, decision 19): read through the store, decide
(control.py, pure), record through the store, announce. Every instruction is answered to its
sender: alternatives-listed, instruction-applied, or instruction-refused (nothing changed)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.events import InstructionAction as A
from shared.contracts.taxonomy import ReasonCode
from shared.logging import get_logger
from shared.unit import Unit

from . import control, routing
from .control import Refused
from .decisions import Refer, ReferralRow, Routable, RoutingPolicy, area_of
from .lifecycle import OPEN_STATES

if TYPE_CHECKING:
    from .store import ReferralStore

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Origin:
    """The instruction's ce_id, its sender (the topic's agency) and its conversation."""

    message_id: str
    sender: str
    correlation_id: str | None


def _emit(
    unit: Unit[ReferralStore],
    events: routing.Emitted,
    origin: Origin,
    key: str | None = None,
) -> None:
    for type_, data in events:
        subject = getattr(data, "referral_id", None) or getattr(data, "case_id", None)
        unit.emit(
            type_,
            data,
            topic=topics.REFERRAL_EVENTS,
            key=key,
            subject=str(subject or origin.sender),
            correlation_id=origin.correlation_id,
        )


def refuse(
    unit: Unit[ReferralStore],
    decided: Refused,
    origin: Origin,
    instruction: ev.ReferrerInstruction | None = None,
    *,
    known_case: bool = False,
) -> None:
    """Told to the sender; keyed by the case when it names one the sender may hear about (its
    events stay in order), else by the sender."""
    refused = control.refusal_event(origin.message_id, origin.sender, decided, instruction)
    key = instruction.case_id if instruction and known_case else origin.sender
    _emit(unit, [(ev.INSTRUCTION_REFUSED, refused)], origin, key=key)
    log.info("instruction_refused", error=decided.error.value, agency_id=origin.sender)


async def instruct(
    unit: Unit[ReferralStore],
    instruction: ev.ReferrerInstruction,
    origin: Origin,
    policy: RoutingPolicy,
) -> None:
    """Check the case and the sender (the case's row locked: instructions and routing of one
    case do not race), then carry out the action or refuse it; either way the sender hears."""
    store = unit.stores
    facts = await store.load_case_facts(instruction.case_id, lock=True)
    bad = control.check_case(instruction, facts, origin.sender)
    case = await store.load_case(instruction.case_id) if bad is None else None
    if bad is not None or case is None:
        owner = facts is not None and facts.owner_agency_id == origin.sender
        refuse(
            unit,
            bad or control.refused(ev.InstructionError.CASE_NOT_OPEN),
            origin,
            instruction,
            known_case=owner,
        )
        return
    if instruction.action is A.REVOKE or instruction.action is A.REDIRECT:
        decided = await _cancel(unit, case, instruction, origin, policy)
    else:
        decided = await _need_action(unit, case, instruction, origin, policy)
    if isinstance(decided, Refused):
        refuse(unit, decided, origin, instruction, known_case=True)
        return
    _emit(unit, decided, origin)
    log.info("instruction_applied", action=instruction.action.value, case_id=instruction.case_id)


async def _need_action(
    unit: Unit[ReferralStore],
    case: Routable,
    instruction: ev.ReferrerInstruction,
    origin: Origin,
    policy: RoutingPolicy,
) -> routing.Emitted | Refused:
    """list_alternatives, exclude, choose: about one need of the case."""
    store = unit.stores
    need = control.need_of(case, instruction.need_id)
    if isinstance(need, Refused):
        return need
    exclusions = await store.exclusions(case.case_id, need.need_id)
    if instruction.action is A.EXCLUDE:
        services, agencies = instruction.exclude_service_ids, instruction.exclude_agency_ids
        await store.add_exclusions(case.case_id, need.need_id, services, agencies)
        merged = exclusions.adding(services, agencies)
        return [
            (
                ev.INSTRUCTION_APPLIED,
                control.applied(origin.message_id, instruction, need.need_id, exclusions=merged),
            )
        ]
    chain = await store.chain(case.case_id, need.need_id)
    if instruction.action is A.LIST_ALTERNATIVES:
        candidates = await store.candidates(need.category, area_of(case))
        listed = control.alternatives(
            origin.message_id,
            case,
            need,
            candidates,
            exclusions,
            chain,
            k=instruction.k,
            held=await store.is_held(case.case_id, need.need_id),
        )
        return [(ev.ALTERNATIVES_LISTED, listed)]
    # choose: only when the need has no open referral (held, unmet, or after an end)
    open_ref = await _open_referral_of(store, case.case_id, need.need_id)
    if open_ref is not None:
        return control.refused(
            ev.InstructionError.NEED_HAS_OPEN_REFERRAL, current_state=open_ref.status
        )
    assert instruction.service_id is not None  # the contract requires it with choose
    chosen = await store.listing_candidate(instruction.service_id)
    decided = control.choose(case, need, chosen, exclusions, chain, policy, datetime.now(UTC))
    if isinstance(decided, Refused):
        return decided
    await store.release_held(case.case_id, need.need_id)
    await store.record_route(case, need, decided, origin.correlation_id)
    referral = decided.referral
    return [
        (ev.REFERRAL_REQUESTED, referral),
        (
            ev.INSTRUCTION_APPLIED,
            control.applied(
                origin.message_id,
                instruction,
                need.need_id,
                referral_id=referral.referral_id,
                previous_referral_id=referral.previous_referral_id,
                service_id=referral.service_id,
                exclusions=exclusions,
            ),
        ),
    ]


async def _cancel(
    unit: Unit[ReferralStore],
    case: Routable,
    instruction: ev.ReferrerInstruction,
    origin: Origin,
    policy: RoutingPolicy,
) -> routing.Emitted | Refused:
    """revoke (the requester's cancel) and redirect (cancel, then refer the need to the chosen
    service as the next attempt of its chain). Everything is checked before anything changes."""
    store = unit.stores
    assert instruction.referral_id is not None  # the contract requires it
    ref = control.open_referral(await store.load_referral(instruction.referral_id), case.case_id)
    if isinstance(ref, Refused):
        return ref
    reason = instruction.reason_code or ReasonCode.OTHER
    redirected: tuple[ev.Need, Refer] | None = None
    if instruction.action is A.REDIRECT:
        to = await _redirect_to(store, case, ref, instruction, policy)
        if isinstance(to, Refused):
            return to
        redirected = to
    out = await routing.transition(
        store,
        ref,
        ev.ReferralState.CANCELLED,
        reason=reason,
        cancelled_by=ev.CancelledBy.REQUESTER,
    )
    # The referral's own conversation for its chain's events (a case's events share one); the
    # answer in the instruction's.
    chain = replace(origin, correlation_id=ref.correlation_id or origin.correlation_id)
    if redirected is None:
        _emit(unit, out, chain)
        applied = control.applied(
            origin.message_id, instruction, ref.need_id, referral_id=ref.referral_id
        )
        return [(ev.INSTRUCTION_APPLIED, applied)]
    need, decided = redirected
    await store.record_route(case, need, decided, chain.correlation_id)
    referral = decided.referral
    _emit(unit, [*out, (ev.REFERRAL_REQUESTED, referral)], chain)
    applied = control.applied(
        origin.message_id,
        instruction,
        ref.need_id,
        referral_id=referral.referral_id,
        previous_referral_id=ref.referral_id,
        service_id=referral.service_id,
    )
    return [(ev.INSTRUCTION_APPLIED, applied)]


async def _redirect_to(
    store: ReferralStore,
    case: Routable,
    ref: ReferralRow,
    instruction: ev.ReferrerInstruction,
    policy: RoutingPolicy,
) -> tuple[ev.Need, Refer] | Refused:
    """The referral a redirect makes once its referral is cancelled (checked first)."""
    need = control.need_of(case, ref.need_id)
    if isinstance(need, Refused):
        return need
    assert instruction.service_id is not None  # the contract requires it with redirect
    decided = control.choose(
        case,
        need,
        await store.listing_candidate(instruction.service_id),
        await store.exclusions(case.case_id, need.need_id),
        await store.chain(case.case_id, need.need_id),
        policy,
        datetime.now(UTC),
        current_service_id=ref.service_id,
    )
    return decided if isinstance(decided, Refused) else (need, decided)


async def _open_referral_of(store: ReferralStore, case_id: str, need_id: str) -> ReferralRow | None:
    refs = await store.open_referrals(case_id, list(OPEN_STATES))
    return next((r for r in refs if r.need_id == need_id), None)
