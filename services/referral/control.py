"""Caseworker control (issue 18, decision 19), apart from I/O: what a referrer instruction may
do to its case's needs, and the answers it gets. Pure: the store's facts, the clock and the new
id are arguments; caseworker.py loads what they need and records what they decide.

Checks, in this order; the first that fails is the refusal (nothing changed):

    every action    unknown_case · not_referring_agency (the case's owner of now) · case_not_open
    need actions    unknown_need (list_alternatives, choose, exclude)
    referral ones   unknown_referral (or of another case) · referral_ended (revoke, redirect)
    choose          need_has_open_referral
    choose/redirect unknown_service · same_service (redirect) · service_excluded ·
                    not_acceptable (matching's filters, with the reason) · attempts_exhausted
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.contracts import events as ev
from shared.contracts.events import InstructionError as E

from .decisions import ChainLink, Refer, ReferralRow, Routable, RoutingPolicy, rank_for, referral_to
from .handovers import CaseFacts
from .lifecycle import OPEN_STATES
from .matching import Candidate, Match

MAX_CHAIN = 100  # the contract's largest attempt number

_REASONS = {
    E.UNKNOWN_CASE: "no case has this case_id",
    E.NOT_REFERRING_AGENCY: "only the case's owner, who refers its needs, instructs on them",
    E.CASE_NOT_OPEN: "the case is closed or erased",
    E.UNKNOWN_NEED: "the case has no need with this need_id",
    E.UNKNOWN_REFERRAL: "no referral of this case has this referral_id",
    E.UNKNOWN_SERVICE: "no listing in the directory has this service_id",
    E.REFERRAL_ENDED: "the referral is no longer open (current_state)",
    E.NEED_HAS_OPEN_REFERRAL: "the need has an open referral (current_state): revoke or "
    "redirect it",
    E.SERVICE_EXCLUDED: "the service or its agency is excluded for this need",
    E.NOT_ACCEPTABLE: "the service does not pass matching's filters for this need "
    "(unmatched_reason)",
    E.SAME_SERVICE: "the referral is already with this service",
    E.ATTEMPTS_EXHAUSTED: "the need's chain of referrals is at its longest",
}
_FIELDS = {
    E.UNKNOWN_CASE: "case_id",
    E.UNKNOWN_NEED: "need_id",
    E.UNKNOWN_REFERRAL: "referral_id",
    E.UNKNOWN_SERVICE: "service_id",
    E.SERVICE_EXCLUDED: "service_id",
    E.NOT_ACCEPTABLE: "service_id",
    E.SAME_SERVICE: "service_id",
}


@dataclass(frozen=True, slots=True)
class Refused:
    error: E
    reason: str
    errors: tuple[ev.FieldError, ...] = ()
    current_state: ev.ReferralState | None = None
    unmatched_reason: ev.UnmatchedReason | None = None


def refused(
    error: E,
    *,
    current_state: ev.ReferralState | None = None,
    unmatched_reason: ev.UnmatchedReason | None = None,
) -> Refused:
    reason = _REASONS[error]
    name = _FIELDS.get(error)
    errors = (ev.FieldError(field=name, message=reason),) if name else ()
    return Refused(error, reason, errors, current_state, unmatched_reason)


@dataclass(frozen=True, slots=True)
class Exclusions:
    """What the referrer excluded for one need: services, and agencies (all their services)."""

    services: frozenset[str] = field(default_factory=frozenset)
    agencies: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.services or self.agencies)

    def excludes(self, c: Candidate) -> bool:
        return c.service_id in self.services or c.agency_id in self.agencies

    def services_of(self, candidates: Iterable[Candidate]) -> frozenset[str]:
        """The excluded services among ``candidates`` (an agency's included): what matching's
        ``exclude_services`` leaves out."""
        return self.services | {c.service_id for c in candidates if c.agency_id in self.agencies}

    def adding(self, services: Sequence[str], agencies: Sequence[str]) -> Exclusions:
        return Exclusions(self.services | set(services), self.agencies | set(agencies))


NO_EXCLUSIONS = Exclusions()


def check_case(
    instruction: ev.ReferrerInstruction, case: CaseFacts | None, sender: str
) -> Refused | None:
    """The checks every action makes: the case is known, the sender owns it, it is open."""
    if case is None:
        return refused(E.UNKNOWN_CASE)
    if case.owner_agency_id != sender:
        return refused(E.NOT_REFERRING_AGENCY)
    if case.status != "open":
        return refused(E.CASE_NOT_OPEN)
    return None


def need_of(case: Routable, need_id: str | None) -> ev.Need | Refused:
    need = next((n for n in case.needs if n.need_id == need_id), None)
    return need if need is not None else refused(E.UNKNOWN_NEED)


def open_referral(ref: ReferralRow | None, case_id: str) -> ReferralRow | Refused:
    """The referral a revoke or redirect names: of this case, still open."""
    if ref is None or ref.case_id != case_id:
        return refused(E.UNKNOWN_REFERRAL)
    if ref.status not in OPEN_STATES:
        return refused(E.REFERRAL_ENDED, current_state=ref.status)
    return ref


def alternatives(
    instruction_id: str | None,
    case: Routable,
    need: ev.Need,
    candidates: list[Candidate],
    exclusions: Exclusions,
    chain: Sequence[ChainLink],
    *,
    k: int,
    held: bool,
) -> ev.AlternativesListed:
    """The top ``k`` acceptable providers of the need (matching.rank), its exclusions left
    out, each with its explanation; or, when none, why (matching's reason)."""
    ranked = rank_for(case, need, candidates, exclude_services=exclusions.services_of(candidates))
    tried = {link.service_id for link in chain}
    listed = (
        [
            ev.Alternative(
                rank=n,
                service_id=m.candidate.service_id,
                agency_id=m.candidate.agency_id,
                agency_type=m.candidate.agency_type,
                explanation=m.explanation,
                tried=m.candidate.service_id in tried,
            )
            for n, m in enumerate(ranked[:k], start=1)
        ]
        if isinstance(ranked, list)
        else []
    )
    return ev.AlternativesListed(
        case_id=case.case_id,
        need_id=need.need_id,
        referring_agency_id=case.submitting_agency_id,
        instruction_id=instruction_id,
        held=held,
        alternatives=listed,
        unmatched_reason=None if isinstance(ranked, list) else ranked,
        excluded_service_ids=sorted(exclusions.services),
        excluded_agency_ids=sorted(exclusions.agencies),
    )


def choose(
    case: Routable,
    need: ev.Need,
    chosen: Candidate | None,
    exclusions: Exclusions,
    chain: Sequence[ChainLink],
    policy: RoutingPolicy,
    now: datetime,
    *,
    new_id: uuid.UUID | None = None,
    current_service_id: str | None = None,
) -> Refer | Refused:
    """The referral of the need to the chosen service, as its chain's next attempt (a pin is
    the referrer's choice: not bounded by the automatic attempts limit, only by the chain's
    length); or why not. ``current_service_id``: a redirect's referral, cancelled first."""
    if chosen is None:
        return refused(E.UNKNOWN_SERVICE)
    if chosen.service_id == current_service_id:
        return refused(E.SAME_SERVICE)
    if exclusions.excludes(chosen):
        return refused(E.SERVICE_EXCLUDED)
    ranked = rank_for(case, need, [chosen])
    if not isinstance(ranked, list):
        return refused(E.NOT_ACCEPTABLE, unmatched_reason=ranked)
    ordered = sorted(chain, key=lambda link: link.attempt)
    last = ordered[-1] if ordered else None
    if last is not None and last.attempt >= MAX_CHAIN:
        return refused(E.ATTEMPTS_EXHAUSTED)
    match: Match = ranked[0]
    return referral_to(case, need, match, last, policy, now, new_id=new_id)


def applied(
    instruction_id: str,
    instruction: ev.ReferrerInstruction,
    need_id: str,
    *,
    referral_id: str | None = None,
    previous_referral_id: str | None = None,
    service_id: str | None = None,
    exclusions: Exclusions = NO_EXCLUSIONS,
) -> ev.InstructionApplied:
    return ev.InstructionApplied(
        instruction_id=instruction_id,
        agency_id=instruction.agency_id,
        case_id=instruction.case_id,
        action=instruction.action,
        need_id=need_id,
        referral_id=referral_id,
        previous_referral_id=previous_referral_id,
        service_id=service_id,
        excluded_service_ids=sorted(exclusions.services),
        excluded_agency_ids=sorted(exclusions.agencies),
    )


def refusal_event(
    instruction_id: str,
    sender: str,
    decided: Refused,
    instruction: ev.ReferrerInstruction | None = None,
) -> ev.InstructionRefused:
    return ev.InstructionRefused(
        instruction_id=instruction_id,
        agency_id=sender,
        case_id=instruction.case_id if instruction else None,
        action=instruction.action if instruction else None,
        need_id=instruction.need_id if instruction else None,
        referral_id=instruction.referral_id if instruction else None,
        service_id=instruction.service_id if instruction else None,
        error=decided.error,
        current_state=decided.current_state,
        unmatched_reason=decided.unmatched_reason,
        reason=decided.reason,
        errors=list(decided.errors),
    )
