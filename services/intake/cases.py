"""Case registry persistence: register or update a case, record each submission."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.contracts import events as ev
from shared.db import DbConnection


@dataclass(frozen=True, slots=True)
class StoredCase:
    case_id: str
    created: bool


async def upsert_case(conn: DbConnection, submission: ev.CaseSubmission) -> StoredCase:
    """Same agency + agency case reference updates the case instead of creating another."""
    row = await conn.fetchrow(
        """INSERT INTO cases
             (case_id, agency_id, agency_case_ref, profile, needs, consent, personal)
           VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb)
           ON CONFLICT (agency_id, agency_case_ref) DO UPDATE
             SET profile = EXCLUDED.profile, needs = EXCLUDED.needs, consent = EXCLUDED.consent,
                 personal = EXCLUDED.personal, updated_at = now()
           RETURNING case_id, (xmax = 0) AS created""",
        uuid.uuid4(),
        submission.agency_id,
        submission.agency_case_ref,
        submission.profile.model_dump_json(),
        "[" + ",".join(n.model_dump_json() for n in submission.needs) + "]",
        submission.consent.model_dump_json(),
        submission.personal.model_dump_json(),
    )
    assert row is not None
    return StoredCase(str(row["case_id"]), bool(row["created"]))


async def record_submission(
    conn: DbConnection,
    submission_id: str,
    agency_id: str | None,
    case_id: str | None,
    outcome: str,
) -> None:
    await conn.execute(
        """INSERT INTO submissions (submission_id, agency_id, case_id, outcome)
           VALUES ($1, $2, $3, $4) ON CONFLICT (submission_id) DO NOTHING""",
        submission_id,
        agency_id,
        uuid.UUID(case_id) if case_id else None,
        outcome,
    )
