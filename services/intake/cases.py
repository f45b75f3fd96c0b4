"""Case registry persistence. Personal data is only ever written encrypted (see crypto.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.contracts import events as ev
from shared.db import DbConnection, batch_scope
from shared.db.batch_scope import Writer

from . import crypto

MAX_SIGNALLED_DUPLICATES = 10


@dataclass(frozen=True, slots=True)
class CaseRow:
    case_id: str
    agency_id: str
    agency_case_ref: str
    status: str
    profile: ev.Profile
    needs: list[ev.Need]
    consent: ev.Consent
    consent_version: int

    def pseudonymous(self, duplicates: list[str]) -> ev.CaseRegistered:
        return ev.CaseRegistered(
            case_id=self.case_id,
            submitting_agency_id=self.agency_id,
            profile=self.profile,
            needs=self.needs,
            consent=self.consent,
            possible_duplicate_of=duplicates,
        )


_COLUMNS = """case_id, agency_id, agency_case_ref, status, profile, needs, consent,
              consent_version"""


def _row(record: Any) -> CaseRow:
    return CaseRow(
        case_id=str(record["case_id"]),
        agency_id=record["agency_id"],
        agency_case_ref=record["agency_case_ref"],
        status=record["status"],
        profile=ev.Profile.model_validate_json(record["profile"]),
        needs=[ev.Need.model_validate(n) for n in json.loads(record["needs"])],
        consent=ev.Consent.model_validate_json(record["consent"]),
        consent_version=record["consent_version"],
    )


def _needs_json(needs: list[ev.Need]) -> str:
    return json.dumps([n.model_dump(mode="json") for n in needs])


async def find_case(conn: DbConnection, agency_id: str, agency_case_ref: str) -> CaseRow | None:
    """The agency's case by its own reference, locked for this transaction."""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM cases WHERE agency_id = $1 AND agency_case_ref = $2 FOR UPDATE",
        agency_id,
        agency_case_ref,
    )
    return _row(record) if record else None


async def load_case(conn: DbConnection, case_id: str) -> CaseRow | None:
    try:
        cid = uuid.UUID(case_id)
    except ValueError:
        return None  # not an id intake ever gave out
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM cases WHERE case_id = $1", cid)
    return _row(record) if record else None


async def create_case(
    conn: DbConnection, submission: ev.CaseSubmission, master_key: bytes
) -> CaseRow:
    case_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO cases (case_id, agency_id, agency_case_ref, profile, needs, consent)
           VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb)""",
        case_id,
        submission.agency_id,
        submission.agency_case_ref,
        submission.profile.model_dump_json(),
        _needs_json(submission.needs),
        submission.consent.model_dump_json(),
    )
    data_key = crypto.new_data_key()
    await conn.execute(
        "INSERT INTO case_keys (case_id, wrapped_key) VALUES ($1, $2)",
        case_id,
        crypto.wrap_key(master_key, data_key),
    )
    await _write_personal(conn, case_id, data_key, submission.personal)
    row = await load_case(conn, str(case_id))
    assert row is not None
    return row


async def update_case(
    conn: DbConnection,
    row: CaseRow,
    *,
    profile: ev.Profile | None = None,
    needs: list[ev.Need] | None = None,
    consent: ev.Consent | None = None,
) -> CaseRow:
    """Replace the given pseudonymous blocks; a changed consent gets the next version number."""
    consent_changed = consent is not None and consent != row.consent
    await conn.execute(
        """UPDATE cases SET profile = $2::jsonb, needs = $3::jsonb, consent = $4::jsonb,
                  consent_version = consent_version + $5, updated_at = now()
           WHERE case_id = $1""",
        uuid.UUID(row.case_id),
        (profile or row.profile).model_dump_json(),
        _needs_json(needs if needs is not None else row.needs),
        (consent or row.consent).model_dump_json(),
        1 if consent_changed else 0,
    )
    updated = await load_case(conn, row.case_id)
    assert updated is not None
    return updated


async def replace_personal(
    conn: DbConnection, case_id: str, master_key: bytes, personal: ev.PersonalData
) -> None:
    data_key = await _data_key(conn, case_id, master_key)
    await _write_personal(conn, uuid.UUID(case_id), data_key, personal)


async def read_personal(conn: DbConnection, case_id: str, master_key: bytes) -> ev.PersonalData:
    """Decrypt a case's personal data; KeyDestroyed once the case was erased."""
    data_key = await _data_key(conn, case_id, master_key)
    sealed = await conn.fetchval(
        "SELECT personal_sealed FROM cases WHERE case_id = $1", uuid.UUID(case_id)
    )
    if sealed is None:
        raise crypto.KeyDestroyed("no personal data stored")
    return ev.PersonalData.model_validate_json(crypto.decrypt(data_key, bytes(sealed)))


async def _data_key(conn: DbConnection, case_id: str, master_key: bytes) -> bytes:
    wrapped = await conn.fetchval(
        "SELECT wrapped_key FROM case_keys WHERE case_id = $1", uuid.UUID(case_id)
    )
    return crypto.unwrap_key(master_key, bytes(wrapped) if wrapped is not None else None)


async def _write_personal(
    conn: DbConnection, case_id: uuid.UUID, data_key: bytes, personal: ev.PersonalData
) -> None:
    await conn.execute(
        "UPDATE cases SET personal_sealed = $2 WHERE case_id = $1",
        case_id,
        crypto.encrypt(data_key, personal.model_dump_json().encode()),
    )


async def set_status(conn: DbConnection, case_id: str, status: str, reason: str | None) -> None:
    await conn.execute(
        "UPDATE cases SET status = $2, closed_reason = $3, updated_at = now() WHERE case_id = $1",
        uuid.UUID(case_id),
        status,
        reason,
    )


async def erase(conn: DbConnection, case_id: str) -> None:
    """Crypto-shred: destroy the data key, drop the ciphertext and the identity hashes."""
    cid = uuid.UUID(case_id)
    await conn.execute(
        "UPDATE case_keys SET wrapped_key = NULL, destroyed_at = now() WHERE case_id = $1", cid
    )
    await conn.execute("UPDATE cases SET personal_sealed = NULL WHERE case_id = $1", cid)
    await conn.execute("DELETE FROM identity_hashes WHERE case_id = $1", cid)
    await set_status(conn, case_id, "erased", None)


async def add_consent_record(
    conn: DbConnection, row: CaseRow, kind: str, source_event_id: str
) -> None:
    await _log_row(
        conn,
        "consent_records",
        (uuid.UUID(row.case_id), row.consent_version, kind, row.consent.model_dump_json(),
         source_event_id),
        _write_consent_records,
    )  # fmt: skip


async def _write_consent_records(conn: DbConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.execute(
        """INSERT INTO consent_records (case_id, version, kind, consent, source_event_id)
           SELECT c, v, k, j::jsonb, s
             FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[])
                  WITH ORDINALITY AS x (c, v, k, j, s, ord)
            ORDER BY ord""",
        *_columns(rows, 5),
    )


async def add_history(
    conn: DbConnection,
    case_id: str,
    action: str,
    source_event_id: str,
    agency_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Pseudonymous audit entry: ids, types, counts — never personal data."""
    await _log_row(
        conn,
        "case_history",
        (uuid.UUID(case_id), action, source_event_id, agency_id, json.dumps(details or {})),
        _write_history,
    )


async def _write_history(conn: DbConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.execute(
        """INSERT INTO case_history (case_id, action, source_event_id, agency_id, details)
           SELECT c, a, s, g, d::jsonb
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                  WITH ORDINALITY AS x (c, a, s, g, d, ord)
            ORDER BY ord""",
        *_columns(rows, 5),
    )


async def record_identity(
    conn: DbConnection, row: CaseRow, key_id: str, hashes: list[bytes]
) -> list[str]:
    """Store the case's identity hashes; return the cases of *other* agencies sharing one."""
    cid = uuid.UUID(row.case_id)
    await conn.execute("DELETE FROM identity_hashes WHERE case_id = $1", cid)
    await conn.executemany(
        "INSERT INTO identity_hashes (case_id, key_id, hash) VALUES ($1, $2, $3)",
        [(cid, key_id, h) for h in hashes],
    )
    others = await conn.fetch(
        """SELECT DISTINCT h.case_id FROM identity_hashes h JOIN cases c USING (case_id)
           WHERE h.key_id = $1 AND h.hash = ANY($2::bytea[]) AND h.case_id <> $3
             AND c.agency_id <> $4 AND c.status <> 'erased'
           ORDER BY h.case_id""",
        key_id,
        hashes,
        cid,
        row.agency_id,
    )
    duplicates = [str(r["case_id"]) for r in others]
    await conn.executemany(
        """INSERT INTO duplicate_links (case_id, other_case_id) VALUES ($1, $2), ($2, $1)
           ON CONFLICT DO NOTHING""",
        [(cid, uuid.UUID(d)) for d in duplicates],
    )
    # All links are recorded; the case event names at most the contract's limit of them.
    return duplicates[:MAX_SIGNALLED_DUPLICATES]


async def record_submission(
    conn: DbConnection,
    submission_id: str,
    agency_id: str | None,
    case_id: str | None,
    outcome: str,
) -> None:
    """The log of every message an agency sent and what became of it."""
    await _log_row(
        conn,
        "submissions",
        (submission_id, agency_id, uuid.UUID(case_id) if case_id else None, outcome),
        _write_submissions,
    )


async def _write_submissions(conn: DbConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.execute(
        """INSERT INTO submissions (submission_id, agency_id, case_id, outcome)
           SELECT s, a, c, o FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
                  WITH ORDINALITY AS x (s, a, c, o, ord)
            ORDER BY ord
           ON CONFLICT (submission_id) DO NOTHING""",
        *_columns(rows, 4),
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def _log_row(conn: DbConnection, table: str, row: tuple[Any, ...], writer: Writer) -> None:
    """The case's logs (history, consent records, submissions) are written, never read, while
    a batch runs: deferred to the batch's end, one statement per table; at once outside one
    (a command)."""
    await batch_scope.write(conn, table, [row], writer)
