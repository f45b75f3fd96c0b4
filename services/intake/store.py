"""Intake's store: everything its handlers read and write, behind one object.

The case registry's statements are in cases.py and the disclosure log's in disclosures.py (the
store hands them its connection); the agency registry's are here.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.contracts import events as ev
from shared.db import DbConnection

from . import cases
from .cases import CaseRow
from .disclosures import Decision, decide_disclosure


class IntakeStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # ----- the case registry (cases.py) -----

    async def find_case(self, agency_id: str, agency_case_ref: str) -> CaseRow | None:
        return await cases.find_case(self.conn, agency_id, agency_case_ref)

    async def create_case(self, submission: ev.CaseSubmission, master_key: bytes) -> CaseRow:
        return await cases.create_case(self.conn, submission, master_key)

    async def update_case(
        self,
        row: CaseRow,
        *,
        profile: ev.Profile | None = None,
        needs: list[ev.Need] | None = None,
        consent: ev.Consent | None = None,
    ) -> CaseRow:
        return await cases.update_case(
            self.conn, row, profile=profile, needs=needs, consent=consent
        )

    async def replace_personal(
        self, case_id: str, master_key: bytes, personal: ev.PersonalData
    ) -> None:
        await cases.replace_personal(self.conn, case_id, master_key, personal)

    async def read_personal(self, case_id: str, master_key: bytes) -> ev.PersonalData:
        return await cases.read_personal(self.conn, case_id, master_key)

    async def set_status(self, case_id: str, status: str, reason: str | None) -> None:
        await cases.set_status(self.conn, case_id, status, reason)

    async def erase(self, case_id: str) -> None:
        await cases.erase(self.conn, case_id)

    async def add_consent_record(self, row: CaseRow, kind: str, source_event_id: str) -> None:
        await cases.add_consent_record(self.conn, row, kind, source_event_id)

    async def add_history(
        self,
        case_id: str,
        action: str,
        source_event_id: str,
        agency_id: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await cases.add_history(self.conn, case_id, action, source_event_id, agency_id, details)

    async def record_identity(self, row: CaseRow, key_id: str, hashes: list[bytes]) -> list[str]:
        return await cases.record_identity(self.conn, row, key_id, hashes)

    async def record_submission(
        self, submission_id: str, agency_id: str | None, case_id: str | None, outcome: str
    ) -> None:
        await cases.record_submission(self.conn, submission_id, agency_id, case_id, outcome)

    # ----- for operator commands -----

    async def case_record(self, case_id: str) -> tuple[list[Any], list[Any], list[Any]]:
        """A case's history, consent versions and disclosure log (pseudonymous), in order."""
        cid = uuid.UUID(case_id)
        history = await self.conn.fetch(
            "SELECT at, action, agency_id, source_event_id, details FROM case_history "
            "WHERE case_id = $1 ORDER BY id",
            cid,
        )
        consents = await self.conn.fetch(
            "SELECT version, kind, recorded_at, consent->'scope'->'purposes' AS purposes "
            "FROM consent_records WHERE case_id = $1 ORDER BY version",
            cid,
        )
        disclosures = await self.conn.fetch(
            "SELECT at, referral_id, recipient_agency_id, outcome, reason, consent_version "
            "FROM disclosure_log WHERE case_id = $1 ORDER BY at",
            cid,
        )
        return list(history), list(consents), list(disclosures)

    async def unerased_case_ids(self) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT case_id FROM cases WHERE status <> 'erased' ORDER BY case_id"
        )
        return [str(r["case_id"]) for r in rows]

    async def replace_identity_hashes(self, case_id: str, key_id: str, hashes: list[bytes]) -> None:
        """The case's hashes under ``key_id`` (those under other keys are left)."""
        cid = uuid.UUID(case_id)
        await self.conn.execute(
            "DELETE FROM identity_hashes WHERE case_id = $1 AND key_id = $2", cid, key_id
        )
        await self.conn.executemany(
            "INSERT INTO identity_hashes (case_id, key_id, hash) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            [(cid, key_id, h) for h in hashes],
        )

    async def drop_identity_hashes_except(self, key_id: str) -> int:
        status = await self.conn.execute("DELETE FROM identity_hashes WHERE key_id <> $1", key_id)
        return int(status.split()[-1])

    # ----- disclosures (disclosures.py) -----

    async def decide_disclosure(
        self, referral: ev.ReferralRequested, source_event_id: str, master_key: bytes
    ) -> Decision | None:
        """Sealed or refused, logged; None when decided before (a redelivery)."""
        return await decide_disclosure(self.conn, referral, source_event_id, master_key)

    # ----- the agency registry -----

    async def save_agency(self, agency: ev.AgencyRecord) -> None:
        await self.conn.execute(
            """INSERT INTO agencies (agency_id, type, public_key) VALUES ($1, $2, $3)
               ON CONFLICT (agency_id) DO UPDATE SET type = EXCLUDED.type,
                 public_key = EXCLUDED.public_key, updated_at = now()""",
            agency.agency_id,
            agency.type.value,
            agency.public_key,
        )

    async def remove_agency(self, agency_id: str) -> None:
        await self.conn.execute("DELETE FROM agencies WHERE agency_id = $1", agency_id)
