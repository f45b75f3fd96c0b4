"""Intake's SQL for what handlers used to run inline: the agency registry.

The case registry's SQL is in cases.py and the disclosure log's in disclosures.py, both taking the
unit's connection; gathering them here, with set-based batch loads, is the next step of issue 16.
"""

from __future__ import annotations

from shared.contracts import events as ev
from shared.db import DbConnection


class IntakeStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn  # for cases.py and disclosures.py, until they are stores themselves

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
