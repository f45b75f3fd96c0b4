"""Consent rules of intake: what a withdrawal leaves, and whether a disclosure is covered."""

from __future__ import annotations

from datetime import date

from shared.contracts import events as ev
from shared.contracts.events import DisclosureRefusalReason as Refusal


def after_withdrawal(consent: ev.Consent, withdrawal: ev.ConsentWithdrawal) -> ev.Consent:
    """The consent left once some purposes (or all, when none are named) are withdrawn."""
    kept = []
    if consent.scope is not None and withdrawal.purposes is not None:
        kept = [p for p in consent.scope.purposes if p not in withdrawal.purposes]
    if not kept or consent.scope is None:
        return ev.Consent(given=False, recorded_at=withdrawal.withdrawn_at, method="digital")
    scope = consent.scope.model_copy(update={"purposes": kept})
    return consent.model_copy(update={"scope": scope, "recorded_at": withdrawal.withdrawn_at})


def agency_refusal(
    consent: ev.Consent, *, recipient_id: str, recipient_type: ev.AgencyType, today: date
) -> Refusal | None:
    """None when the consent covers giving the returnee's data to this agency at all (given,
    for referral, not expired, the agency and its type within the scope); otherwise the first
    reason it does not (checked in this order). A handover asks this: the new owner keeps the
    whole case, whatever the need."""
    scope = consent.scope
    if not consent.given or scope is None:
        return Refusal.NO_CONSENT
    if ev.ConsentPurpose.REFERRAL not in scope.purposes:
        return Refusal.PURPOSE_NOT_COVERED
    if scope.expires_on is not None and scope.expires_on < today:
        return Refusal.CONSENT_EXPIRED
    if scope.agency_ids is not None and recipient_id not in scope.agency_ids:
        return Refusal.AGENCY_NOT_COVERED
    if scope.agency_types is not None and recipient_type not in scope.agency_types:
        return Refusal.AGENCY_TYPE_NOT_COVERED
    return None


def disclosure_refusal(
    consent: ev.Consent,
    *,
    recipient_id: str,
    recipient_type: ev.AgencyType,
    category: str,
    today: date,
) -> Refusal | None:
    """None when the consent covers disclosing contact details to this recipient for this
    service category; otherwise the first reason it does not (checked in this order)."""
    refused = agency_refusal(
        consent, recipient_id=recipient_id, recipient_type=recipient_type, today=today
    )
    if refused is not None:
        return refused
    categories = consent.scope.categories if consent.scope is not None else None
    if categories is not None and category not in categories:
        return Refusal.CATEGORY_NOT_COVERED
    return None


def duplicate_not_told(
    consent: ev.Consent,
    owner: tuple[str, ev.AgencyType | None],
    other_consent: ev.Consent,
    other_owner: tuple[str, ev.AgencyType | None],
    today: date,
) -> str | None:
    """None when both owners of two likely-duplicate cases may be told of each other: each
    case's consent covers sharing with the *other* owner (given, purpose referral, not expired,
    its agency_ids / agency_types naming that owner, as for a handover). Otherwise why not,
    ``case:<reason>`` (this case's consent) or ``duplicate:<reason>`` (the other's); an owner
    whose type intake does not know is ``unknown_agency``."""
    for side, mine, to in (("case", consent, other_owner), ("duplicate", other_consent, owner)):
        agency_id, agency_type = to
        refused = (
            agency_refusal(mine, recipient_id=agency_id, recipient_type=agency_type, today=today)
            if agency_type is not None
            else Refusal.UNKNOWN_AGENCY
        )
        if refused is not None:
            return f"{side}:{refused.value}"
    return None
