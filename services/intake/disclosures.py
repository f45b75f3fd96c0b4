"""Disclosures: when a referral goes to an agency the case's consent covers, send that agency
the minimum needed to contact the returnee — name, contacts, preferred language — sealed for its
public key. Every decision, disclosed or refused, is written to the disclosure log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from asyncpg import Record

from shared.contracts import events as ev
from shared.contracts.events import DisclosureRefusalReason as Refusal
from shared.db import DbConnection
from shared.logging import get_logger

from . import cases, crypto
from .consent import disclosure_refusal

log = get_logger(__name__)

Decision = tuple[str, ev.DisclosureSealed | ev.DisclosureRefused]


async def decide_disclosure(
    conn: DbConnection, referral: ev.ReferralRequested, source_event_id: str, master_key: bytes
) -> Decision | None:
    """The disclosure (or refusal) for this referral; None if it was decided before."""
    decided = await conn.fetchval(
        "SELECT 1 FROM disclosure_log WHERE referral_id = $1", referral.referral_id
    )
    if decided:
        return None
    disclosure_id = str(uuid.uuid4())
    row = await cases.load_case(conn, referral.case_id)
    agency = await conn.fetchrow(
        "SELECT type, public_key FROM agencies WHERE agency_id = $1", referral.recipient_agency_id
    )
    if agency is None and row is not None:
        # The registry and the referral events are separate topics: intake may simply not have
        # read the recipient's record yet. Transient: retried, then dead-lettered for replay.
        raise LookupError(f"recipient agency {referral.recipient_agency_id} not known yet")
    refusal = _refusal(referral, row, agency)
    if refusal is None and row is not None and agency is not None:
        personal = await cases.read_personal(conn, row.case_id, master_key)
        contact = ev.DisclosedContact(
            given_name=personal.given_name,
            family_name=personal.family_name,
            contacts=personal.contacts,
            preferred_language=personal.preferred_language,
        )
        public_key: str = agency["public_key"]
        sealed = ev.DisclosureSealed(
            disclosure_id=disclosure_id,
            referral_id=referral.referral_id,
            case_id=referral.case_id,
            recipient_agency_id=referral.recipient_agency_id,
            sealed_box=crypto.seal_for(public_key, contact.model_dump_json().encode()),
            recipient_key_sha256=crypto.key_fingerprint(public_key),
            consent_recorded_at=row.consent.recorded_at,
        )
        await _log(
            conn,
            sealed.disclosure_id,
            referral,
            row.consent_version,
            "disclosed",
            None,
            sealed.recipient_key_sha256,
            source_event_id,
        )
        await cases.add_history(
            conn,
            row.case_id,
            "disclosed",
            source_event_id,
            referral.recipient_agency_id,
            {"referral_id": referral.referral_id, "consent_version": row.consent_version},
        )
        log.info(
            "disclosure_sealed",
            case_id=row.case_id,
            referral_id=referral.referral_id,
            recipient=referral.recipient_agency_id,
        )
        return ev.DISCLOSURE_SEALED, sealed
    reason = refusal or Refusal.UNKNOWN_CASE
    if row is not None:  # the log and the history are a case's: an unknown case has neither
        await _log(
            conn,
            disclosure_id,
            referral,
            row.consent_version,
            "refused",
            reason.value,
            None,
            source_event_id,
        )
        await cases.add_history(
            conn,
            row.case_id,
            "disclosure_refused",
            source_event_id,
            referral.recipient_agency_id,
            {"referral_id": referral.referral_id, "reason": reason.value},
        )
    log.info(
        "disclosure_refused",
        case_id=referral.case_id,
        referral_id=referral.referral_id,
        recipient=referral.recipient_agency_id,
        reason=reason.value,
    )
    return ev.DISCLOSURE_REFUSED, ev.DisclosureRefused(
        disclosure_id=disclosure_id,
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        recipient_agency_id=referral.recipient_agency_id,
        reason=reason,
    )


def _refusal(
    referral: ev.ReferralRequested, row: cases.CaseRow | None, agency: Record | None
) -> Refusal | None:
    if row is None:
        return Refusal.UNKNOWN_CASE
    if row.status != "open":
        return Refusal.CASE_NOT_OPEN
    if agency is None:
        return Refusal.UNKNOWN_AGENCY
    refusal = disclosure_refusal(
        row.consent,
        recipient_id=referral.recipient_agency_id,
        recipient_type=ev.AgencyType(agency["type"]),
        category=referral.category,
        today=datetime.now(UTC).date(),
    )
    if refusal is None and not agency["public_key"]:
        return Refusal.NO_PUBLIC_KEY
    return refusal


async def _log(
    conn: DbConnection,
    disclosure_id: str,
    referral: ev.ReferralRequested,
    consent_version: int | None,
    outcome: str,
    reason: str | None,
    key_sha256: str | None,
    source_event_id: str,
) -> None:
    await conn.execute(
        """INSERT INTO disclosure_log (referral_id, disclosure_id, case_id, recipient_agency_id,
               outcome, reason, consent_version, recipient_key_sha256, source_event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        referral.referral_id,
        disclosure_id,
        uuid.UUID(referral.case_id),
        referral.recipient_agency_id,
        outcome,
        reason,
        consent_version,
        key_sha256,
        source_event_id,
    )
