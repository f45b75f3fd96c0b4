"""Disclosures: when a referral goes to an agency the case's consent covers, send that agency
the minimum needed to contact the returnee — name, contacts, preferred language — sealed for its
public key. Pure decisions: the handler reads the case and the recipient through the store,
asks :func:`refusal`, and logs the outcome either way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.contracts import events as ev
from shared.contracts.events import DisclosureRefusalReason as Refusal

from . import crypto
from .cases import CaseRow
from .consent import disclosure_refusal


@dataclass(frozen=True, slots=True)
class Recipient:
    """A registered agency as intake knows it: its type and the key disclosures are sealed to."""

    type: ev.AgencyType
    public_key: str | None


def refusal(
    referral: ev.ReferralRequested, case: CaseRow | None, recipient: Recipient | None, today: date
) -> Refusal | None:
    """None when the contact details may go to the referral's recipient; otherwise why not
    (checked in this order)."""
    if case is None:
        return Refusal.UNKNOWN_CASE
    if case.status != "open":
        return Refusal.CASE_NOT_OPEN
    if recipient is None:
        return Refusal.UNKNOWN_AGENCY
    refused = disclosure_refusal(
        case.consent,
        recipient_id=referral.recipient_agency_id,
        recipient_type=recipient.type,
        category=referral.category,
        today=today,
    )
    if refused is None and not recipient.public_key:
        return Refusal.NO_PUBLIC_KEY
    return refused


def sealed(
    referral: ev.ReferralRequested,
    case: CaseRow,
    public_key: str,
    personal: ev.PersonalData,
    disclosure_id: str,
) -> ev.DisclosureSealed:
    """The minimum contact details, sealed so that only the holder of ``public_key`` reads them."""
    contact = ev.DisclosedContact(
        given_name=personal.given_name,
        family_name=personal.family_name,
        contacts=personal.contacts,
        preferred_language=personal.preferred_language,
    )
    return ev.DisclosureSealed(
        disclosure_id=disclosure_id,
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        recipient_agency_id=referral.recipient_agency_id,
        sealed_box=crypto.seal_for(public_key, contact.model_dump_json().encode()),
        recipient_key_sha256=crypto.key_fingerprint(public_key),
        consent_recorded_at=case.consent.recorded_at,
    )


def refused(
    referral: ev.ReferralRequested, disclosure_id: str, reason: Refusal
) -> ev.DisclosureRefused:
    """The event that says no personal data (or community brief) went with the referral."""
    return ev.DisclosureRefused(
        disclosure_id=disclosure_id,
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        recipient_agency_id=referral.recipient_agency_id,
        reason=reason,
    )
