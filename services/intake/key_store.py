"""What intake published about its submission keys (issue 22): the SQL of ``submission_keys``
(migration 0007). Reached as ``IntakeStore.submission_keys``."""

from __future__ import annotations

from collections.abc import Sequence

from shared.contracts import events as ev
from shared.db import DbConnection

from .sealing import PublishedKey


class SubmissionKeyStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def published(self) -> list[PublishedKey]:
        """Each key as last published, the table locked until the transaction ends: two
        instances starting at once publish a change once, one after the other."""
        await self.conn.execute("LOCK TABLE submission_keys IN SHARE ROW EXCLUSIVE MODE")
        rows = await self.conn.fetch(
            "SELECT key_sha256, public_key, status FROM submission_keys ORDER BY key_sha256"
        )
        return [
            PublishedKey(r["key_sha256"], r["public_key"], ev.SubmissionKeyStatus(r["status"]))
            for r in rows
        ]

    async def record(self, keys: Sequence[PublishedKey]) -> None:
        """These keys as now published."""
        if not keys:
            return
        await self.conn.execute(
            """INSERT INTO submission_keys (key_sha256, public_key, status)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
               ON CONFLICT (key_sha256) DO UPDATE
                 SET public_key = EXCLUDED.public_key, status = EXCLUDED.status,
                     published_at = now()""",
            [k.key_sha256 for k in keys],
            [k.public_key for k in keys],
            [k.status.value for k in keys],
        )
