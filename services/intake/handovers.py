"""Handovers (decision 16): when referral says a handover was accepted, whether the case can
move to its new owner, and its whole personal data sealed for that owner's key. Pure
decisions: the handler reads the case, the new owner's registry entry and who holds the new
reference through the store, asks :func:`refusal`, and moves the case or reports the failure.

Referral checked the handover when it was proposed; intake checks again when it moves the case,
because the case, its consent and the registry may have changed while the answer was awaited.
"""

from __future__ import annotations

from datetime import date

from shared.contracts import events as ev
from shared.contracts.events import HandoverFailureReason as Failure

from . import crypto
from .cases import CaseRow
from .consent import agency_refusal
from .disclosures import Recipient


def consent_for(current: ev.Consent, carried: ev.Consent | None) -> ev.Consent:
    """The consent the move relies on: the record the handover carried, unless the case's own
    is as recent (the same record) or more recent — a withdrawal or a change recorded after the
    proposal stands, the returnee's latest word wins."""
    if carried is None or carried.recorded_at <= current.recorded_at:
        return current
    return carried


def refusal(
    accepted: ev.HandoverAccepted,
    case: CaseRow | None,
    receiver: Recipient | None,
    reference_holder: str | None,
    today: date,
) -> Failure | None:
    """None when the case can move to ``accepted.receiving_agency_id`` under
    ``accepted.receiving_case_ref``; otherwise the first reason it cannot (checked in this
    order). ``reference_holder``: the case the receiver's reference already names, if any (as
    an owner or a former owner). The consent checked is the one the move would rely on
    (:func:`consent_for`): the carried record, if newer than the case's."""
    if case is None:
        return Failure.UNKNOWN_CASE
    if case.status != "open":
        return Failure.CASE_NOT_OPEN
    # The receiver owning it already can only be another handover that moved it meanwhile
    # (referral refuses a handover to the current owner).
    if case.agency_id != accepted.owner_agency_id or case.agency_id == accepted.receiving_agency_id:
        return Failure.OWNER_CHANGED
    if receiver is None:
        # Not transient, unlike a referral's recipient: the handover was proposed, answered
        # and accepted since referral knew the agency, so intake has read its record; an
        # agency missing now was deregistered meanwhile.
        return Failure.UNKNOWN_AGENCY
    if reference_holder is not None and reference_holder != case.case_id:
        return Failure.REFERENCE_TAKEN
    refused = agency_refusal(
        consent_for(case.consent, accepted.consent),
        recipient_id=accepted.receiving_agency_id,
        recipient_type=receiver.type,
        today=today,
    )
    if refused is not None:
        return Failure(refused.value)  # the consent reasons have the same codes
    if not receiver.public_key:
        return Failure.NO_PUBLIC_KEY
    return None


def sealed(
    accepted: ev.HandoverAccepted,
    case: CaseRow,
    public_key: str,
    personal: ev.PersonalData,
    disclosure_id: str,
) -> ev.CaseDataSealed:
    """The case's whole personal data, sealed so that only the holder of the new owner's
    ``public_key`` reads it: the new owner keeps the case and may need every field."""
    return ev.CaseDataSealed(
        disclosure_id=disclosure_id,
        handover_id=accepted.handover_id,
        case_id=case.case_id,
        recipient_agency_id=accepted.receiving_agency_id,
        sealed_box=crypto.seal_for(public_key, personal.model_dump_json().encode()),
        recipient_key_sha256=crypto.key_fingerprint(public_key),
        consent_recorded_at=case.consent.recorded_at,
    )
