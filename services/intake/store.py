"""Intake's store: all of intake's SQL, behind one object (handlers, timers and commands read
and write only through it).

In a consumer's batch it works set-based. ``preload_submissions`` and ``preload_disclosures``
read, in one query each, every case, data key, agency, earlier decision and identity hash the
batch's events will look at, into the batch cache; the lookups below answer from it, and every
write here keeps it true (the store is the only writer of these tables). The writes are
deferred to the batch's end, one statement per table for the whole batch: the cases created or
changed (their final state), their new data keys, their identity hashes and duplicate links,
and the logs (case history, consent records, submission records, the disclosure log). A
lookup the cache cannot answer, an erasure and a handover (rare: written at once) first write
what is pending (``batch_scope.settle``), so no statement misses an earlier event's write.
Outside a batch (a command) every call is its own statement.

Personal data is only ever written encrypted (crypto.py); the case rows are pseudonymous.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contracts import events as ev
from shared.contracts.taxonomy import Urgency
from shared.db import DbConnection, batch_scope
from shared.kafka.inbound import InboundEvent

from . import crypto
from .cases import CaseRow, case_row, needs_json
from .community import CommunityNeedRow
from .disclosures import Recipient
from .follow_up_store import FollowUpStore
from .key_store import SubmissionKeyStore

MAX_SIGNALLED_DUPLICATES = 10

_COLUMNS = """c.case_id, c.agency_id, c.agency_case_ref, c.status, c.profile, c.needs,
              c.consent, c.consent_version, c.assistance_ended_at, c.assistance_end_reason"""
# The batch cache's entries (shared.db.batch_scope.cache).
_BY_REF = "intake.case_by_ref"  # (agency_id, agency_case_ref) → case_id | None
_CASES = "intake.cases"  # case_id → CaseRow | None
_SECRETS = "intake.secrets"  # case_id → Secret
_AGENCIES = "intake.agencies"  # agency_id → Recipient | None
_DECIDED = "intake.disclosures_decided"  # referral_id → bool
_HANDOVERS_DECIDED = "intake.handovers_decided"  # handover_id → bool
_FORMER = "intake.former_owners"  # (agency_id, agency_case_ref) → FormerOwner | None
_CLOSED_REASONS = "intake.closed_reasons"  # case_id → the reason of a closure in this batch
_HOLDERS = "intake.identity_holders"  # (key_id, hash) → {case_id: agency_id}, not erased
_HASHES = "intake.identity_hashes"  # case_id → (key_id, hashes): its set, replaced this batch
# The order the deferred writes run in at the flush: a case before what references it.
_RANK_CASES, _RANK_KEYS, _RANK_HASHES, _RANK_LINKS = -4, -3, -2, -1


@dataclass(frozen=True, slots=True)
class Secret:
    """A case's wrapped data key and its personal data ciphertext (None once erased)."""

    wrapped_key: bytes | None
    personal_sealed: bytes | None


@dataclass(frozen=True, slots=True)
class DisclosureEntry:
    """One decision of the disclosure log: a referral's contact details (``referral_id``), or a
    handed-over case's whole personal data (kind ``handover``, ``handover_id``)."""

    disclosure_id: str
    referral_id: str | None
    case_id: str
    recipient_agency_id: str
    outcome: str  # disclosed | refused
    reason: str | None
    consent_version: int | None
    recipient_key_sha256: str | None
    source_event_id: str
    kind: str = "referral"  # referral | handover | community_need
    handover_id: str | None = None

    @classmethod
    def of_referral(
        cls,
        referral: ev.ReferralRequested,
        disclosure_id: str,
        reason: ev.DisclosureRefusalReason | None,
        key_sha256: str | None,
        *,
        case_id: str,
        consent_version: int | None,
        source_event_id: str,
        kind: str = "referral",
    ) -> DisclosureEntry:
        """The decision on a referral's disclosure: sealed (no ``reason``) or refused."""
        return cls(
            disclosure_id=disclosure_id,
            referral_id=referral.referral_id,
            case_id=case_id,
            recipient_agency_id=referral.recipient_agency_id,
            outcome="refused" if reason is not None else "disclosed",
            reason=reason.value if reason is not None else None,
            consent_version=consent_version,
            recipient_key_sha256=key_sha256,
            source_event_id=source_event_id,
            kind=kind,
        )


@dataclass(frozen=True, slots=True)
class DisclosedFacts:
    """A referral's disclosure to its recipient, as an erasure confirmation checks it."""

    disclosure_id: str
    case_id: str
    owner_agency_id: str  # the case's owner of now
    erased_at: datetime | None  # a confirmation recorded before


@dataclass(frozen=True, slots=True)
class FormerOwner:
    """An (agency, reference) pair that named a case before the agency handed it over."""

    case_id: str
    to_agency_id: str  # whom that owner handed it to


def _identity(case: str, agency: str, key: str, hashes: str) -> str:
    """The identity check as CTEs: the case's ``hashes`` under ``key`` stored, and the cases
    of agencies other than ``agency`` sharing one (``others``) linked both ways. The arguments
    are the statement's parameter numbers."""
    return f"""added AS (
                  INSERT INTO identity_hashes (case_id, key_id, hash)
                  SELECT {case}, {key}, h FROM unnest({hashes}::bytea[]) AS h
                  ON CONFLICT DO NOTHING),
                others AS (
                  SELECT DISTINCT h.case_id FROM identity_hashes h JOIN cases c USING (case_id)
                   WHERE h.key_id = {key} AND h.hash = ANY({hashes}::bytea[])
                     AND h.case_id <> {case} AND c.agency_id <> {agency}
                     AND c.status <> 'erased'),
                linked AS (
                  INSERT INTO duplicate_links (case_id, other_case_id)
                  SELECT {case}, case_id FROM others UNION ALL SELECT case_id, {case} FROM others
                  ON CONFLICT DO NOTHING)"""


_CREATE_IDENTITY = _identity("$1", "$2", "$9", "$10")
_REPLACE_IDENTITY = _identity("$1", "$2", "$3", "$4")


_COMMUNITY_COLUMNS = """need_id, agency_id, agency_case_ref, status, area, category, urgency,
                        people_affected, returnee_share, submitted_at"""


def _community_need(record: Any) -> CommunityNeedRow:
    return CommunityNeedRow(
        need_id=str(record["need_id"]),
        agency_id=record["agency_id"],
        agency_case_ref=record["agency_case_ref"],
        status=record["status"],
        area=record["area"],
        category=record["category"],
        urgency=Urgency(record["urgency"]),
        people_affected=record["people_affected"],
        returnee_share=float(record["returnee_share"]),
        submitted_at=record["submitted_at"],
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # not an id intake ever gave out


def _secret(record: Any) -> Secret:
    key, sealed = record["wrapped_key"], record["personal_sealed"]
    return Secret(
        bytes(key) if key is not None else None, bytes(sealed) if sealed is not None else None
    )


class IntakeStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn
        self.follow_ups = FollowUpStore(conn)  # follow-up plans and assessments (issue 19)
        self.submission_keys = SubmissionKeyStore(conn)  # what intake.keys.v1 says (issue 22)

    def _cache(self, name: str) -> dict[Any, Any] | None:
        return batch_scope.cache(self.conn, name)

    def _remember(self, row: CaseRow, secret: Secret | None = None) -> CaseRow:
        cases, by_ref = self._cache(_CASES), self._cache(_BY_REF)
        if cases is not None and by_ref is not None:
            cases[row.case_id] = row
            by_ref[(row.agency_id, row.agency_case_ref)] = row.case_id
            secrets = self._cache(_SECRETS)
            if secret is not None and secrets is not None:
                secrets[row.case_id] = secret
        return row

    # ----- loading a batch at once -----

    async def preload_submissions(
        self,
        events: Sequence[InboundEvent],
        key_id: str | None = None,
        hashes: Sequence[bytes] = (),
    ) -> None:
        """The cases (locked), data keys and ciphertexts a batch of submissions will touch: an
        agency's own topic is keyed by the agency_case_ref (read_submission refuses any other
        key), so the key and the topic's agency name the case before the body is parsed. With
        the identity ``hashes`` (under ``key_id``) its submissions carry: the cases holding
        each (the duplicate check of a new case then costs no round trip)."""
        if key_id is not None:
            await self._load_holders(key_id, hashes)
        wanted = set()
        for event in events:
            if event.sender_agency is not None and event.key is not None:
                try:
                    wanted.add((event.sender_agency, event.key.decode()))
                except UnicodeDecodeError:
                    continue  # refused by its handler; nothing to load
        by_ref = self._cache(_BY_REF)
        if not wanted or by_ref is None:
            return
        agencies, refs = zip(*sorted(wanted), strict=True)
        # The pairs that name no case may name one a former owner handed over (its writes are
        # refused with whom it went to): read in the same statement, as one JSON list carried
        # by every row (and by a row of nulls when no pair names a case).
        records = await self.conn.fetch(
            f"""WITH r AS (SELECT * FROM unnest($1::text[], $2::text[])
                              AS r (agency_id, agency_case_ref)),
                     locked AS (
                       SELECT {_COLUMNS}, k.wrapped_key, c.personal_sealed
                         FROM r JOIN cases c ON c.agency_id = r.agency_id
                                            AND c.agency_case_ref = r.agency_case_ref
                         LEFT JOIN case_keys k ON k.case_id = c.case_id
                          FOR UPDATE OF c),
                     former AS (
                       SELECT coalesce(json_agg(json_build_array(
                                f.agency_id, f.agency_case_ref, f.case_id, f.to_agency_id)),
                                '[]') AS former_owners
                         FROM r JOIN former_owners f ON f.agency_id = r.agency_id
                                                    AND f.agency_case_ref = r.agency_case_ref)
                SELECT locked.*, former.former_owners FROM former LEFT JOIN locked ON true""",
            list(agencies),
            list(refs),
        )
        by_ref.update(dict.fromkeys(wanted))
        former = self._cache(_FORMER)
        if former is not None:
            former.update(dict.fromkeys(wanted))
            for agency, ref, case_id, to_agency in json.loads(records[0]["former_owners"]):
                former[(agency, ref)] = FormerOwner(str(case_id), to_agency)
        for record in records:
            if record["case_id"] is not None:
                self._remember(case_row(record), _secret(record))

    async def preload_disclosures(self, referrals: Sequence[ev.ReferralRequested]) -> None:
        """For a batch of referrals: whether each was decided before, its case (with key and
        ciphertext) and its recipient's registry entry."""
        decided, cases = self._cache(_DECIDED), self._cache(_CASES)
        secrets, agencies = self._cache(_SECRETS), self._cache(_AGENCIES)
        if decided is None or cases is None or secrets is None or agencies is None:
            return
        await batch_scope.settle(self.conn)
        records = await self.conn.fetch(
            f"""SELECT r.referral_id, r.case_key, r.recipient,
                       d.referral_id IS NOT NULL AS decided, {_COLUMNS},
                       k.wrapped_key, c.personal_sealed,
                       a.agency_id AS known_agency, a.type AS agency_type, a.public_key
                  FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
                       AS r (referral_id, case_key, case_id, recipient)
                  LEFT JOIN disclosure_log d ON d.referral_id = r.referral_id
                  LEFT JOIN cases c ON c.case_id = r.case_id
                  LEFT JOIN case_keys k ON k.case_id = r.case_id
                  LEFT JOIN agencies a ON a.agency_id = r.recipient""",
            [r.referral_id for r in referrals],
            [r.case_id for r in referrals],
            [_uuid(r.case_id) for r in referrals],
            [r.recipient_agency_id for r in referrals],
        )
        for record in records:
            decided[record["referral_id"]] = bool(record["decided"])
            if record["case_id"] is None:
                cases.setdefault(record["case_key"], None)
            elif str(record["case_id"]) not in cases:  # loaded (and locked) with the submissions
                self._remember(case_row(record), _secret(record))
            agencies.setdefault(
                record["recipient"],
                Recipient(ev.AgencyType(record["agency_type"]), record["public_key"])
                if record["known_agency"] is not None
                else None,
            )

    # ----- the case registry -----

    async def find_case(self, agency_id: str, agency_case_ref: str) -> CaseRow | None:
        """The agency's case by its own reference, locked for this transaction."""
        by_ref, cases = self._cache(_BY_REF), self._cache(_CASES)
        if by_ref is not None and cases is not None and (agency_id, agency_case_ref) in by_ref:
            case_id = by_ref[(agency_id, agency_case_ref)]
            return cases.get(case_id) if case_id is not None else None
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            f"""SELECT {_COLUMNS} FROM cases c
                 WHERE c.agency_id = $1 AND c.agency_case_ref = $2 FOR UPDATE""",
            agency_id,
            agency_case_ref,
        )
        return self._remember(case_row(record)) if record else None

    async def load_case(self, case_id: str) -> CaseRow | None:
        cases = self._cache(_CASES)
        if cases is not None and case_id in cases:
            cached: CaseRow | None = cases[case_id]
            return cached
        cid = _uuid(case_id)
        if cid is None:
            return None
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM cases c WHERE c.case_id = $1", cid
        )
        return self._remember(case_row(record)) if record else None

    def _in_batch(self) -> bool:
        return self._cache(_CASES) is not None

    def _changed(self, row: CaseRow, secret: Secret | None = None) -> CaseRow:
        """In a batch: the case's new state, kept in the cache and written at the flush."""
        self._remember(row, secret)
        scope = batch_scope.current(self.conn)
        assert scope is not None  # only called in a batch
        scope.defer("cases", [row.case_id], _write_cases, _RANK_CASES)
        return row

    async def create_case(
        self, submission: ev.CaseSubmission, master_key: bytes, key_id: str, hashes: list[bytes]
    ) -> tuple[CaseRow, list[str]]:
        """The case, its data key (wrapped by the master key), its personal data (encrypted
        with the data key) and its identity hashes; with the cases of *other* agencies sharing
        a hash (linked as possible duplicates). In a batch, written at its end with the batch's
        other cases; outside one, in one statement."""
        personal = submission.personal
        if not isinstance(personal, ev.PersonalData):
            # The handler opens a sealed block first (sealing.py); stored as it came, it would
            # read back as no one's data.
            raise TypeError("a sealed personal block is stored only once opened")
        case_id = uuid.uuid4()
        data_key = crypto.new_data_key()
        wrapped = crypto.wrap_key(master_key, data_key)
        sealed = crypto.encrypt(data_key, personal.model_dump_json().encode())
        if self._in_batch():
            row = self._changed(
                CaseRow(
                    case_id=str(case_id),
                    agency_id=submission.agency_id,
                    agency_case_ref=submission.agency_case_ref,
                    status="open",
                    profile=submission.profile,
                    needs=submission.needs,
                    consent=submission.consent,
                    consent_version=1,
                ),
                Secret(wrapped, sealed),
            )
            await batch_scope.write(
                self.conn, "case_keys", [(case_id, wrapped)], _write_new_keys, _RANK_KEYS
            )
            return row, await self._identify_in_batch(row, key_id, hashes)
        records = await self.conn.fetch(
            f"""WITH c AS (
                  INSERT INTO cases (case_id, agency_id, agency_case_ref, profile, needs,
                                     consent, personal_sealed)
                  VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7)
                  RETURNING *),
                k AS (INSERT INTO case_keys (case_id, wrapped_key) VALUES ($1, $8)),
                {_CREATE_IDENTITY}
                SELECT {_COLUMNS}, o.case_id AS duplicate
                  FROM c LEFT JOIN (SELECT case_id FROM others ORDER BY case_id) o ON true""",
            case_id,
            submission.agency_id,
            submission.agency_case_ref,
            submission.profile.model_dump_json(),
            needs_json(submission.needs),
            submission.consent.model_dump_json(),
            sealed,
            wrapped,
            key_id,
            hashes,
        )
        row = case_row(records[0])
        duplicates = [str(r["duplicate"]) for r in records if r["duplicate"] is not None]
        return row, sorted(duplicates)[:MAX_SIGNALLED_DUPLICATES]

    async def update_case(
        self,
        row: CaseRow,
        *,
        profile: ev.Profile | None = None,
        needs: list[ev.Need] | None = None,
        consent: ev.Consent | None = None,
    ) -> CaseRow:
        """Replace the given pseudonymous blocks; a changed consent gets the next version."""
        consent_changed = consent is not None and consent != row.consent
        if self._in_batch():
            return self._changed(
                dataclasses.replace(
                    row,
                    profile=profile or row.profile,
                    needs=needs if needs is not None else row.needs,
                    consent=consent or row.consent,
                    consent_version=row.consent_version + (1 if consent_changed else 0),
                )
            )
        record = await self.conn.fetchrow(
            f"""UPDATE cases c SET profile = $2::jsonb, needs = $3::jsonb, consent = $4::jsonb,
                       consent_version = consent_version + $5, updated_at = now()
                 WHERE c.case_id = $1 RETURNING {_COLUMNS}""",
            uuid.UUID(row.case_id),
            (profile or row.profile).model_dump_json(),
            needs_json(needs if needs is not None else row.needs),
            (consent or row.consent).model_dump_json(),
            1 if consent_changed else 0,
        )
        return case_row(record)

    async def set_status(self, case_id: str, status: str, reason: str | None) -> None:
        cases, reasons = self._cache(_CASES), self._cache(_CLOSED_REASONS)
        if cases is not None and reasons is not None and cases.get(case_id) is not None:
            reasons[case_id] = reason
            self._changed(dataclasses.replace(cases[case_id], status=status))
            return
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            f"""UPDATE cases c SET status = $2, closed_reason = $3, updated_at = now()
                 WHERE c.case_id = $1 RETURNING {_COLUMNS}""",
            uuid.UUID(case_id),
            status,
            reason,
        )
        if record is not None:
            self._remember(case_row(record))

    async def erase(self, case_id: str) -> None:
        """Crypto-shred: destroy the data key, drop the ciphertext and the identity hashes.
        At once, even in a batch (rare, and it must not wait on anything): what the batch
        deferred is written first."""
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            f"""WITH k AS (UPDATE case_keys SET wrapped_key = NULL, destroyed_at = now()
                            WHERE case_id = $1),
                     h AS (DELETE FROM identity_hashes WHERE case_id = $1)
                UPDATE cases c SET personal_sealed = NULL, status = 'erased',
                       closed_reason = NULL, updated_at = now()
                 WHERE c.case_id = $1 RETURNING {_COLUMNS}""",
            uuid.UUID(case_id),
        )
        if record is not None:
            self._remember(case_row(record), Secret(None, None))
        holders, final = self._cache(_HOLDERS), self._cache(_HASHES)
        if holders is not None and final is not None:
            final.pop(case_id, None)
            for held in holders.values():
                held.pop(case_id, None)

    async def end_assistance(self, row: CaseRow, ended_at: datetime, reason: str) -> CaseRow:
        """The owner's own assistance ended; the case stays open under it."""
        if self._in_batch():
            return self._changed(
                dataclasses.replace(row, assistance_ended_at=ended_at, assistance_end_reason=reason)
            )
        record = await self.conn.fetchrow(
            f"""UPDATE cases c SET assistance_ended_at = $2, assistance_end_reason = $3,
                       updated_at = now()
                 WHERE c.case_id = $1 RETURNING {_COLUMNS}""",
            uuid.UUID(row.case_id),
            ended_at,
            reason,
        )
        return case_row(record)

    # ----- handovers -----

    async def lock_case(self, case_id: str) -> CaseRow | None:
        """The case as the database holds it, locked for this transaction (a handover decides
        on it, and the owner's submissions may be applied elsewhere at the same time): what
        the batch deferred is written first, and the cache takes the row read."""
        cid = _uuid(case_id)
        if cid is None:
            return None
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM cases c WHERE c.case_id = $1 FOR UPDATE", cid
        )
        return self._remember(case_row(record)) if record else None

    async def former_owner(self, agency_id: str, agency_case_ref: str) -> FormerOwner | None:
        """The case this pair named before its agency handed it over, if it did."""
        former = self._cache(_FORMER)
        if former is not None and (agency_id, agency_case_ref) in former:
            cached: FormerOwner | None = former[(agency_id, agency_case_ref)]
            return cached
        record = await self.conn.fetchrow(
            """SELECT case_id, to_agency_id FROM former_owners
                WHERE agency_id = $1 AND agency_case_ref = $2""",
            agency_id,
            agency_case_ref,
        )
        found = FormerOwner(str(record["case_id"]), record["to_agency_id"]) if record else None
        if former is not None:
            former[(agency_id, agency_case_ref)] = found
        return found

    async def reference_holder(self, agency_id: str, agency_case_ref: str) -> str | None:
        """The case this agency's reference names, as its owner's or a former owner's (an
        erased or closed case keeps its reference: references are never reused)."""
        row = await self.find_case(agency_id, agency_case_ref)
        if row is not None:
            return row.case_id
        former = await self.former_owner(agency_id, agency_case_ref)
        return former.case_id if former is not None else None

    async def hand_over(
        self, row: CaseRow, agency_id: str, agency_case_ref: str, handover_id: str
    ) -> CaseRow:
        """Move the case to its new owner under the new owner's reference, its assistance
        running again; the old pair is kept as a former owner's (the pair of a case coming back
        to a former owner names it again). At once, even in a batch (rare; it changes the keys
        the batch cache finds cases by): what the batch deferred is written first."""
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            f"""WITH back AS (
                  DELETE FROM former_owners WHERE agency_id = $2 AND agency_case_ref = $3),
                former AS (
                  INSERT INTO former_owners (agency_id, agency_case_ref, case_id, to_agency_id,
                                             handover_id)
                  VALUES ($4, $5, $1, $2, $6)
                  ON CONFLICT (agency_id, agency_case_ref) DO UPDATE SET
                    case_id = EXCLUDED.case_id, to_agency_id = EXCLUDED.to_agency_id,
                    handover_id = EXCLUDED.handover_id, handed_over_at = now())
                UPDATE cases c SET agency_id = $2, agency_case_ref = $3,
                       assistance_ended_at = NULL, assistance_end_reason = NULL,
                       updated_at = now()
                 WHERE c.case_id = $1 RETURNING {_COLUMNS}""",
            uuid.UUID(row.case_id),
            agency_id,
            agency_case_ref,
            row.agency_id,
            row.agency_case_ref,
            handover_id,
        )
        moved = case_row(record)
        by_ref, former = self._cache(_BY_REF), self._cache(_FORMER)
        if by_ref is not None and former is not None:
            by_ref[(row.agency_id, row.agency_case_ref)] = None
            former[(row.agency_id, row.agency_case_ref)] = FormerOwner(row.case_id, agency_id)
            former[(agency_id, agency_case_ref)] = None
        holders = self._cache(_HOLDERS)
        for held in (holders or {}).values():  # the duplicate check compares owners
            if row.case_id in held:
                held[row.case_id] = agency_id
        return self._remember(moved)

    async def handover_decided(self, handover_id: str) -> bool:
        """Whether the move of this handover was decided (and logged) before."""
        decided = self._cache(_HANDOVERS_DECIDED)
        if decided is not None and handover_id in decided:
            return bool(decided[handover_id])
        found = await self.conn.fetchval(
            "SELECT 1 FROM disclosure_log WHERE handover_id = $1", handover_id
        )
        if decided is not None:
            decided[handover_id] = bool(found)
        return bool(found)

    async def _secret_of(self, case_id: str) -> Secret:
        secrets = self._cache(_SECRETS)
        if secrets is not None and case_id in secrets:
            cached: Secret = secrets[case_id]
            return cached
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            """SELECT k.wrapped_key, c.personal_sealed FROM cases c
                 LEFT JOIN case_keys k ON k.case_id = c.case_id WHERE c.case_id = $1""",
            uuid.UUID(case_id),
        )
        secret = _secret(record) if record is not None else Secret(None, None)
        if secrets is not None:
            secrets[case_id] = secret
        return secret

    async def replace_personal(
        self, case_id: str, master_key: bytes, personal: ev.PersonalData
    ) -> None:
        secret = await self._secret_of(case_id)
        data_key = crypto.unwrap_key(master_key, secret.wrapped_key)
        sealed = crypto.encrypt(data_key, personal.model_dump_json().encode())
        cases = self._cache(_CASES)
        if cases is not None and cases.get(case_id) is not None:
            self._changed(cases[case_id], Secret(secret.wrapped_key, sealed))
            return
        await self.conn.execute(
            "UPDATE cases SET personal_sealed = $2 WHERE case_id = $1", uuid.UUID(case_id), sealed
        )

    async def read_personal(self, case_id: str, master_key: bytes) -> ev.PersonalData:
        """Decrypt a case's personal data; KeyDestroyed once the case was erased."""
        secret = await self._secret_of(case_id)
        data_key = crypto.unwrap_key(master_key, secret.wrapped_key)
        if secret.personal_sealed is None:
            raise crypto.KeyDestroyed("no personal data stored")
        return ev.PersonalData.model_validate_json(crypto.decrypt(data_key, secret.personal_sealed))

    async def record_identity(self, row: CaseRow, key_id: str, hashes: list[bytes]) -> list[str]:
        """Make ``hashes`` the case's identity hashes and link the cases of *other* agencies
        sharing one; return those cases (at most the contract's limit). In a batch, written at
        its end; outside one, in one statement."""
        if self._in_batch():
            return await self._identify_in_batch(row, key_id, hashes)
        others = await self.conn.fetch(
            f"""WITH gone AS (
                  DELETE FROM identity_hashes
                   WHERE case_id = $1 AND NOT (key_id = $3 AND hash = ANY($4::bytea[]))),
                {_REPLACE_IDENTITY}
               SELECT case_id FROM others ORDER BY case_id""",
            uuid.UUID(row.case_id),
            row.agency_id,
            key_id,
            hashes,
        )
        # All links are recorded; the case event names at most the contract's limit of them.
        return [str(r["case_id"]) for r in others][:MAX_SIGNALLED_DUPLICATES]

    # ----- the duplicate check in a batch: against the holders of each hash, in memory -----

    async def _load_holders(self, key_id: str, hashes: Sequence[bytes]) -> None:
        """The cases (not erased) holding each of ``hashes`` that the cache does not know yet,
        in one query; the batch's own writes keep the entries true from then on."""
        holders, final, cases = self._cache(_HOLDERS), self._cache(_HASHES), self._cache(_CASES)
        if holders is None or final is None or cases is None:
            return
        missing = sorted({h for h in hashes if (key_id, h) not in holders})
        if not missing:
            return
        await batch_scope.settle(self.conn)
        records = await self.conn.fetch(
            """SELECT h.hash, h.case_id, c.agency_id FROM identity_hashes h
                 JOIN cases c USING (case_id)
                WHERE h.key_id = $1 AND h.hash = ANY($2::bytea[]) AND c.status <> 'erased'""",
            key_id,
            missing,
        )
        for h in missing:
            holders[(key_id, h)] = {}
        for r in records:
            case_id, h = str(r["case_id"]), bytes(r["hash"])
            replaced = final.get(case_id)
            if replaced is not None and (replaced[0] != key_id or h not in replaced[1]):
                continue  # no longer its hash: the batch replaced its set
            cached = cases.get(case_id)
            if cached is not None and cached.status == "erased":
                continue
            holders[(key_id, h)][case_id] = r["agency_id"]

    async def _identify_in_batch(self, row: CaseRow, key_id: str, hashes: list[bytes]) -> list[str]:
        """What :meth:`record_identity` does, decided against the batch cache (the database's
        holders and the batch's own cases) and deferred: the case's hash set, replaced, and its
        links to the cases of other agencies sharing a hash."""
        await self._load_holders(key_id, hashes)
        holders, final = self._cache(_HOLDERS), self._cache(_HASHES)
        assert holders is not None and final is not None
        others = sorted(
            {
                other
                for h in hashes
                for other, agency in holders[(key_id, h)].items()
                if agency != row.agency_id and other != row.case_id
            }
        )
        for held in holders.values():  # its earlier set, if any, is replaced
            held.pop(row.case_id, None)
        for h in hashes:
            holders[(key_id, h)][row.case_id] = row.agency_id
        final[row.case_id] = (key_id, list(hashes))
        me = uuid.UUID(row.case_id)
        links = [(me, uuid.UUID(o)) for o in others] + [(uuid.UUID(o), me) for o in others]
        await batch_scope.write(
            self.conn, "identity_hashes", [row.case_id], _write_identity, _RANK_HASHES
        )
        await batch_scope.write(self.conn, "duplicate_links", links, _write_links, _RANK_LINKS)
        # All links are recorded; the case event names at most the contract's limit of them.
        return others[:MAX_SIGNALLED_DUPLICATES]

    # ----- the logs: written, never read, while a batch runs (deferred to its end) -----

    async def add_consent_record(self, row: CaseRow, kind: str, source_event_id: str) -> None:
        consent = row.consent.model_dump_json()
        entry = (uuid.UUID(row.case_id), row.consent_version, kind, consent, source_event_id)
        await batch_scope.write(self.conn, "consent_records", [entry], _write_consent_records)

    async def add_history(
        self,
        case_id: str,
        action: str,
        source_event_id: str,
        agency_id: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Pseudonymous audit entry: ids, types, counts — never personal data."""
        entry = (uuid.UUID(case_id), action, source_event_id, agency_id, json.dumps(details or {}))
        await batch_scope.write(self.conn, "case_history", [entry], _write_history)

    async def record_submission(
        self, submission_id: str, agency_id: str | None, case_id: str | None, outcome: str
    ) -> None:
        """The log of every message an agency sent and what became of it."""
        entry = (submission_id, agency_id, uuid.UUID(case_id) if case_id else None, outcome)
        await batch_scope.write(self.conn, "submissions", [entry], _write_submissions)

    # ----- disclosures -----

    async def disclosure_decided(self, referral_id: str) -> bool:
        """Whether the disclosure of this referral was decided (and logged) before."""
        decided = self._cache(_DECIDED)
        if decided is not None and referral_id in decided:
            return bool(decided[referral_id])
        found = await self.conn.fetchval(
            "SELECT 1 FROM disclosure_log WHERE referral_id = $1", referral_id
        )
        return bool(found)

    async def recipient(self, agency_id: str) -> Recipient | None:
        agencies = self._cache(_AGENCIES)
        if agencies is not None and agency_id in agencies:
            cached: Recipient | None = agencies[agency_id]
            return cached
        record = await self.conn.fetchrow(
            "SELECT type, public_key FROM agencies WHERE agency_id = $1", agency_id
        )
        return Recipient(ev.AgencyType(record["type"]), record["public_key"]) if record else None

    async def log_disclosure(self, entry: DisclosureEntry) -> None:
        """The disclosure log's entry (read only by the redelivery checks and by commands)."""
        if entry.kind == "handover":
            decided, decision = self._cache(_HANDOVERS_DECIDED), entry.handover_id
        else:
            decided, decision = self._cache(_DECIDED), entry.referral_id
        if decided is not None:
            decided[decision] = True
        await batch_scope.write(self.conn, "disclosure_log", [entry], _write_disclosures)

    # ----- community needs (issue 18; community.py decides). Written at once: no handler
    # reads them through the batch cache, and they are few. -----

    async def find_community_need(
        self, agency_id: str, agency_case_ref: str
    ) -> CommunityNeedRow | None:
        """The agency's community need by its own reference, locked for this transaction."""
        record = await self.conn.fetchrow(
            f"""SELECT {_COMMUNITY_COLUMNS} FROM community_needs
                 WHERE agency_id = $1 AND agency_case_ref = $2 FOR UPDATE""",
            agency_id,
            agency_case_ref,
        )
        return _community_need(record) if record else None

    async def load_community_need(self, need_id: str) -> CommunityNeedRow | None:
        nid = _uuid(need_id)
        if nid is None:
            return None
        record = await self.conn.fetchrow(
            f"SELECT {_COMMUNITY_COLUMNS} FROM community_needs WHERE need_id = $1", nid
        )
        return _community_need(record) if record else None

    async def save_community_need(
        self,
        submission: ev.CommunityNeedSubmission,
        master_key: bytes,
        existing: CommunityNeedRow | None,
    ) -> CommunityNeedRow:
        """A new community need, or the new version of ``existing``; the description under a
        new data key (wrapped by the master key) either way."""
        data_key = crypto.new_data_key()
        record = await self.conn.fetchrow(
            f"""INSERT INTO community_needs (need_id, agency_id, agency_case_ref, area, category,
                    urgency, people_affected, returnee_share, wrapped_key, description_sealed)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (need_id) DO UPDATE SET area = EXCLUDED.area,
                  category = EXCLUDED.category, urgency = EXCLUDED.urgency,
                  people_affected = EXCLUDED.people_affected,
                  returnee_share = EXCLUDED.returnee_share, wrapped_key = EXCLUDED.wrapped_key,
                  description_sealed = EXCLUDED.description_sealed, submitted_at = now(),
                  updated_at = now()
                RETURNING {_COMMUNITY_COLUMNS}""",
            uuid.UUID(existing.need_id) if existing else uuid.uuid4(),
            submission.agency_id,
            submission.agency_case_ref,
            submission.area,
            submission.category,
            submission.urgency.value,
            submission.people_affected,
            submission.returnee_share,
            crypto.wrap_key(master_key, data_key),
            crypto.encrypt(data_key, submission.description.encode()),
        )
        return _community_need(record)

    async def close_community_need(self, need_id: str, reason: str) -> None:
        await self.conn.execute(
            """UPDATE community_needs SET status = 'closed', closed_reason = $2,
                      updated_at = now() WHERE need_id = $1""",
            uuid.UUID(need_id),
            reason,
        )

    async def erase_community_need(self, need_id: str) -> None:
        """Crypto-shred the description: its key and ciphertext are dropped."""
        await self.conn.execute(
            """UPDATE community_needs SET status = 'erased', wrapped_key = NULL,
                      description_sealed = NULL, closed_reason = NULL, updated_at = now()
                WHERE need_id = $1""",
            uuid.UUID(need_id),
        )

    async def read_community_description(self, need_id: str, master_key: bytes) -> str:
        """Decrypt a community need's description; KeyDestroyed once it was erased."""
        record = await self.conn.fetchrow(
            "SELECT wrapped_key, description_sealed FROM community_needs WHERE need_id = $1",
            uuid.UUID(need_id),
        )
        if record is None or record["description_sealed"] is None:
            raise crypto.KeyDestroyed("no description stored")
        data_key = crypto.unwrap_key(master_key, record["wrapped_key"])
        return crypto.decrypt(data_key, record["description_sealed"]).decode()

    # ----- consent that follows through (issue 18) -----

    async def disclosed_to(self, referral_id: str, agency_id: str) -> DisclosedFacts | None:
        """The disclosure of this referral's contact details to ``agency_id``, with its case's
        owner of now and any erasure confirmed before; None if none was disclosed to it (a
        refused one, another recipient's, no such referral). Locked for the transaction."""
        await batch_scope.settle(self.conn)
        record = await self.conn.fetchrow(
            """SELECT d.disclosure_id, d.case_id, c.agency_id, d.erased_at
                 FROM disclosure_log d JOIN cases c USING (case_id)
                WHERE d.referral_id = $1 AND d.recipient_agency_id = $2
                  AND d.kind = 'referral' AND d.outcome = 'disclosed'
                  FOR UPDATE OF d""",
            referral_id,
            agency_id,
        )
        if record is None:
            return None
        return DisclosedFacts(
            disclosure_id=record[0],
            case_id=str(record[1]),
            owner_agency_id=record[2],
            erased_at=record[3],
        )

    async def record_erasure(
        self, disclosure_id: str, erased_at: datetime, submission_id: str
    ) -> None:
        """The recipient's confirmation, on the disclosure's entry of the log."""
        await self.conn.execute(
            """UPDATE disclosure_log SET erased_at = $2, erasure_submission_id = $3,
                      erasure_recorded_at = now()
                WHERE disclosure_id = $1 AND erased_at IS NULL""",
            disclosure_id,
            erased_at,
            submission_id,
        )

    async def record_duplicates(
        self, case_id: str, found: Sequence[tuple[str, str | None]]
    ) -> set[str]:
        """Each (other case, why it is not told or None) recorded once per pair; return the
        other cases to tell about now: pairs new and told, or recorded untold before and told
        now (a pair told once is not told again)."""
        if not found:
            return set()
        me = uuid.UUID(case_id)
        rows = [(me, uuid.UUID(other), why) for other, why in found]
        records = await self.conn.fetch(
            """WITH x AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])
                            AS x (me, other, why))
               INSERT INTO possible_duplicates AS p (case_id, other_case_id, told, not_told_why,
                                                     told_at)
               SELECT least(me, other), greatest(me, other), why IS NULL, why,
                      CASE WHEN why IS NULL THEN now() END
                 FROM x
               ON CONFLICT (case_id, other_case_id) DO UPDATE
                  SET told = true, not_told_why = NULL, told_at = now()
                WHERE NOT p.told AND EXCLUDED.told
               RETURNING p.case_id, p.other_case_id, p.told""",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )
        return {str(r[1] if r[0] == me else r[0]) for r in records if r[2]}

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
        agencies = self._cache(_AGENCIES)
        if agencies is not None:
            agencies[agency.agency_id] = Recipient(agency.type, agency.public_key)

    async def remove_agency(self, agency_id: str) -> None:
        await self.conn.execute("DELETE FROM agencies WHERE agency_id = $1", agency_id)
        agencies = self._cache(_AGENCIES)
        if agencies is not None:
            agencies[agency_id] = None

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
            "SELECT at, kind, coalesce(referral_id, handover_id) AS of, recipient_agency_id, "
            "outcome, reason, consent_version FROM disclosure_log WHERE case_id = $1 ORDER BY at",
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

    async def wrapped_keys_after(
        self, last: uuid.UUID | None, limit: int
    ) -> list[tuple[uuid.UUID, bytes]]:
        """Live wrapped data keys in case order, after ``last`` (master-key rotation)."""
        rows = await self.conn.fetch(
            """SELECT case_id, wrapped_key FROM case_keys
               WHERE wrapped_key IS NOT NULL AND ($1::uuid IS NULL OR case_id > $1)
               ORDER BY case_id LIMIT $2""",
            last,
            limit,
        )
        return [(r["case_id"], bytes(r["wrapped_key"])) for r in rows]

    async def set_wrapped_key(self, case_id: uuid.UUID, wrapped: bytes) -> None:
        await self.conn.execute(
            "UPDATE case_keys SET wrapped_key = $2 WHERE case_id = $1", case_id, wrapped
        )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def _write_consent_records(conn: DbConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.execute(
        """INSERT INTO consent_records (case_id, version, kind, consent, source_event_id)
           SELECT c, v, k, j::jsonb, s
             FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[])
                  WITH ORDINALITY AS x (c, v, k, j, s, ord)
            ORDER BY ord""",
        *_columns(rows, 5),
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


async def _write_submissions(conn: DbConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.execute(
        """INSERT INTO submissions (submission_id, agency_id, case_id, outcome)
           SELECT s, a, c, o FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
                  WITH ORDINALITY AS x (s, a, c, o, ord)
            ORDER BY ord
           ON CONFLICT (submission_id) DO NOTHING""",
        *_columns(rows, 4),
    )


async def _write_disclosures(conn: DbConnection, entries: Sequence[DisclosureEntry]) -> None:
    await conn.execute(
        """INSERT INTO disclosure_log (referral_id, disclosure_id, case_id, recipient_agency_id,
               outcome, reason, consent_version, recipient_key_sha256, source_event_id, kind,
               handover_id, community_need_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[],
                                $6::text[], $7::int[], $8::text[], $9::text[], $10::text[],
                                $11::text[], $12::uuid[])""",
        [e.referral_id for e in entries],
        [e.disclosure_id for e in entries],
        [uuid.UUID(e.case_id) if e.kind != "community_need" else None for e in entries],
        [e.recipient_agency_id for e in entries],
        [e.outcome for e in entries],
        [e.reason for e in entries],
        [e.consent_version for e in entries],
        [e.recipient_key_sha256 for e in entries],
        [e.source_event_id for e in entries],
        [e.kind for e in entries],
        [e.handover_id for e in entries],
        # a community need's disclosure names the community need (issue 18), not a case
        [uuid.UUID(e.case_id) if e.kind == "community_need" else None for e in entries],
    )


# ----- the deferred writers of a batch's cases (they read the final state from its cache) -----


async def _write_cases(conn: DbConnection, case_ids: Sequence[str]) -> None:
    """The final state of every case the batch created or changed, in one statement: the
    pseudonymous blocks, the status and the personal data ciphertext (kept when the batch did
    not replace it; an erasure writes at once, never through here)."""
    cases = batch_scope.cache(conn, _CASES)
    secrets = batch_scope.cache(conn, _SECRETS)
    reasons = batch_scope.cache(conn, _CLOSED_REASONS)
    assert cases is not None and secrets is not None and reasons is not None
    rows: list[CaseRow] = [cases[c] for c in dict.fromkeys(case_ids)]
    sealed = [secrets.get(r.case_id) for r in rows]
    await conn.execute(
        """INSERT INTO cases (case_id, agency_id, agency_case_ref, status, closed_reason,
                              profile, needs, consent, consent_version, personal_sealed,
                              assistance_ended_at, assistance_end_reason)
           SELECT c, a, r, s, cr, p::jsonb, n::jsonb, co::jsonb, v, ps, ae, ar
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::int[], $10::bytea[],
                         $11::timestamptz[], $12::text[])
                  AS x (c, a, r, s, cr, p, n, co, v, ps, ae, ar)
           ON CONFLICT (case_id) DO UPDATE SET
             agency_id = EXCLUDED.agency_id, agency_case_ref = EXCLUDED.agency_case_ref,
             status = EXCLUDED.status,
             closed_reason = CASE WHEN EXCLUDED.status = 'closed'
                                  THEN coalesce(EXCLUDED.closed_reason, cases.closed_reason) END,
             profile = EXCLUDED.profile, needs = EXCLUDED.needs, consent = EXCLUDED.consent,
             consent_version = EXCLUDED.consent_version,
             personal_sealed = coalesce(EXCLUDED.personal_sealed, cases.personal_sealed),
             assistance_ended_at = EXCLUDED.assistance_ended_at,
             assistance_end_reason = EXCLUDED.assistance_end_reason,
             updated_at = now()""",
        [uuid.UUID(r.case_id) for r in rows],
        [r.agency_id for r in rows],
        [r.agency_case_ref for r in rows],
        [r.status for r in rows],
        [reasons.get(r.case_id) for r in rows],
        [r.profile.model_dump_json() for r in rows],
        [needs_json(r.needs) for r in rows],
        [r.consent.model_dump_json() for r in rows],
        [r.consent_version for r in rows],
        [s.personal_sealed if s is not None else None for s in sealed],
        [r.assistance_ended_at for r in rows],
        [r.assistance_end_reason for r in rows],
    )


async def _write_new_keys(conn: DbConnection, rows: Sequence[tuple[uuid.UUID, bytes]]) -> None:
    await conn.execute(
        """INSERT INTO case_keys (case_id, wrapped_key)
           SELECT * FROM unnest($1::uuid[], $2::bytea[])""",
        [r[0] for r in rows],
        [r[1] for r in rows],
    )


async def _write_identity(conn: DbConnection, case_ids: Sequence[str]) -> None:
    """Each case's identity hash set, replaced by the one the batch left it with."""
    final = batch_scope.cache(conn, _HASHES)
    assert final is not None
    owners, keys, hashes = [], [], []
    ids = [c for c in dict.fromkeys(case_ids) if c in final]  # an erased one is gone
    for case_id in ids:
        key_id, held = final[case_id]
        for h in held:
            owners.append(uuid.UUID(case_id))
            keys.append(key_id)
            hashes.append(h)
    await conn.execute(
        """WITH x AS (SELECT * FROM unnest($2::uuid[], $3::text[], $4::bytea[])
                        AS x (case_id, key_id, hash)),
                gone AS (
                  DELETE FROM identity_hashes h WHERE h.case_id = ANY($1::uuid[])
                     AND NOT EXISTS (SELECT 1 FROM x WHERE x.case_id = h.case_id
                                        AND x.key_id = h.key_id AND x.hash = h.hash))
           INSERT INTO identity_hashes (case_id, key_id, hash) SELECT * FROM x
           ON CONFLICT DO NOTHING""",
        [uuid.UUID(c) for c in ids],
        owners,
        keys,
        hashes,
    )


async def _write_links(conn: DbConnection, rows: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    await conn.execute(
        """INSERT INTO duplicate_links (case_id, other_case_id)
           SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING""",
        [r[0] for r in rows],
        [r[1] for r in rows],
    )
