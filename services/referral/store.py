"""Referral's store: all of referral's SQL, behind one object (handlers, timers and commands
read and write only through it; a fake of it runs the handlers in unit tests).

In a consumer's batch it works set-based: ``preload_cases`` reads, in one query per table, the
referral chains and recorded gaps of every case the batch's case events name, and the candidate
listings of every (category, area) their needs ask for. The lookups below answer from the
batch cache, and every write here keeps it true: a route recorded extends its need's chain,
and anything that changes what matching reads (a listing, an agency, a referral's state, which
moves held slots and answer rates) drops the cached candidates. What routing decides for the
batch's cases (their rows, referrals, decision timers and gaps) is written at the batch's end,
one statement for all of them; any statement that reads or changes those tables first writes
what is pending (``batch_scope.settle``). Outside a batch (a timer, a command) every call is its
own statement.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contracts import events as ev
from shared.contracts.events import ReferralState
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection, batch_scope

from .decisions import ChainLink, Gap, Refer, ReferralRow
from .directory import candidate, containing_codes
from .evidence import COLUMNS, EvidenceRow
from .matching import Candidate

# The batch cache's entries (shared.db.batch_scope.cache).
_CHAINS = "referral.chains"  # (case_id, need_id) → list[ChainLink]
_HANDLED = "referral.handled"  # (case_id, need_id) → bool: a chain or a recorded gap
_CANDIDATES = "referral.candidates"  # (category, area) → list[Candidate]

_CANDIDATE_COLUMNS = """l.service_id, l.agency_id, l.status, l.categories, l.coverage_areas,
                  l.languages, l.capacity, l.open_slots, l.held_slots, l.eligibility,
                  l.acceptance_sla_hours, m.agency_type, m.answer_rate, m.median_hours_to_decide"""


@dataclass(frozen=True, slots=True)
class DueReminder:
    referral_id: str
    due_at: datetime


class ReferralStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    def _cache(self, name: str) -> dict[Any, Any] | None:
        return batch_scope.cache(self.conn, name)

    def _directory_changed(self) -> None:
        """What matching reads changed: the candidates cached for the batch are read again."""
        candidates = self._cache(_CANDIDATES)
        if candidates is not None:
            candidates.clear()

    # ----- loading a batch at once -----

    async def preload_cases(self, cases: Sequence[ev.CaseRegistered]) -> None:
        """The chains and gaps of the batch's cases, and the candidates of all their needs."""
        chains, handled = self._cache(_CHAINS), self._cache(_HANDLED)
        if chains is None or handled is None or not cases:
            return
        case_ids = sorted({c.case_id for c in cases})
        await batch_scope.settle(self.conn)
        records = await self.conn.fetch(
            """SELECT case_id, need_id, referral_id, service_id, attempt FROM referrals
                WHERE case_id = ANY($1::text[])
               UNION ALL
               SELECT case_id, need_id, NULL, NULL, NULL FROM unmet_needs
                WHERE case_id = ANY($1::text[])""",
            case_ids,
        )
        for case in cases:
            for need in case.needs:
                chains.setdefault((case.case_id, need.need_id), [])
                handled.setdefault((case.case_id, need.need_id), False)
        for r in records:
            key = (r["case_id"], r["need_id"])
            handled[key] = True
            if r["referral_id"] is not None:
                chains.setdefault(key, []).append(
                    ChainLink(str(r["referral_id"]), r["service_id"], r["attempt"])
                )
        await self.preload_candidates(
            {(n.category, c.profile.return_area) for c in cases for n in c.needs}
        )

    async def preload_candidates(self, wanted: set[tuple[str, str]]) -> None:
        """The candidates of many (category, area) questions in one query: each question is
        answered by the same index as :meth:`candidates` (a lateral join per question)."""
        cached = self._cache(_CANDIDATES)
        if cached is None:
            return
        questions = sorted(q for q in wanted if q not in cached)
        if not questions:
            return
        numbers, categories, codes = [], [], []
        for n, (category, area) in enumerate(questions):
            for code in containing_codes(area):
                numbers.append(n)
                categories.append(category)
                codes.append(code)
        records = await self.conn.fetch(
            f"""WITH q AS (
                  SELECT n, category, array_agg(code) AS codes
                    FROM unnest($1::int[], $2::text[], $3::text[]) AS x (n, category, code)
                   GROUP BY n, category)
                SELECT q.n, c.* FROM q CROSS JOIN LATERAL (
                  SELECT {_CANDIDATE_COLUMNS}
                    FROM listings l LEFT JOIN matching_agencies m USING (agency_id)
                   WHERE l.categories @> ARRAY[q.category] AND l.coverage_areas && q.codes
                     AND l.status = 'active') c""",
            numbers,
            categories,
            codes,
        )
        found: dict[int, list[Candidate]] = {n: [] for n in range(len(questions))}
        for r in records:
            found[r[0]].append(candidate(r[1:]))
        for n, question in enumerate(questions):
            cached[question] = found[n]

    # ----- the directory -----

    async def upsert_listing(self, listing: ev.ServiceListing) -> bool:
        """Insert or update; False when another agency lists this service_id (nothing
        changed)."""
        self._directory_changed()
        row = await self.conn.fetchval(
            """INSERT INTO listings (service_id, agency_id, status, categories, coverage_areas,
                                     languages, capacity, listing)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
               ON CONFLICT (service_id) DO UPDATE SET
                 agency_id = EXCLUDED.agency_id, status = EXCLUDED.status,
                 categories = EXCLUDED.categories, coverage_areas = EXCLUDED.coverage_areas,
                 languages = EXCLUDED.languages, capacity = EXCLUDED.capacity,
                 listing = EXCLUDED.listing, held_slots = 0, updated_at = now()
               WHERE listings.agency_id = EXCLUDED.agency_id
               RETURNING 1""",
            listing.service_id,
            listing.agency_id,
            listing.status.value,
            listing.categories,
            listing.service_areas,
            listing.languages,
            listing.capacity.status.value,
            listing.model_dump_json(),
        )
        return row is not None

    async def withdraw_listing(self, service_id: str, agency_id: str) -> bool:
        self._directory_changed()
        status = await self.conn.execute(
            "DELETE FROM listings WHERE service_id = $1 AND agency_id = $2", service_id, agency_id
        )
        return bool(status != "DELETE 0")

    async def upsert_agency(self, agency: ev.AgencyRecord) -> None:
        self._directory_changed()
        await self.conn.execute(
            """INSERT INTO agencies (agency_id, type, record) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (agency_id) DO UPDATE SET type = EXCLUDED.type,
                 record = EXCLUDED.record, updated_at = now()""",
            agency.agency_id,
            agency.type.value,
            agency.model_dump_json(),
        )

    async def candidates(self, category: str, area: str) -> list[Candidate]:
        """Active listings of the category whose coverage contains the area (prefix match),
        with their agency's type and its record of answering referrals (share not left to
        expire). Matching drops other listings before any filter that could name a gap, so
        leaving them out changes no choice and no reason.

        Category and area are answered by one GIN index, the agency's type and record by its
        row of ``matching_agencies`` (kept by triggers, migration 0006): the cost follows the
        number of candidates, not the size of the directory or of the referral history."""
        cached = self._cache(_CANDIDATES)
        if cached is not None and (category, area) in cached:
            known: list[Candidate] = cached[(category, area)]
            return known
        await batch_scope.settle(self.conn)
        rows = await self.conn.fetch(
            f"""SELECT {_CANDIDATE_COLUMNS}
                  FROM listings l LEFT JOIN matching_agencies m USING (agency_id)
                 WHERE l.categories @> ARRAY[$1]::text[] AND l.coverage_areas && $2::text[]
                   AND l.status = 'active'""",
            category,
            containing_codes(area),
        )
        found = [candidate(r) for r in rows]
        if cached is not None:
            cached[(category, area)] = found
        return found

    # ----- cases -----

    async def save_case(
        self,
        case: ev.CaseRegistered,
        routes: Sequence[tuple[ev.Need, Refer | Gap]] = (),
        correlation_id: str | None = None,
    ) -> None:
        """The case's row, and what routing decided for its needs, in one statement."""
        await self._write_routes(case, routes, correlation_id, with_case=True)

    async def load_case(self, case_id: str) -> ev.CaseRegistered | None:
        await batch_scope.settle(self.conn)
        row = await self.conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
        if row is None:
            return None
        return ev.CaseRegistered(
            case_id=case_id,
            submitting_agency_id=row["submitting_agency_id"],
            profile=ev.Profile.model_validate_json(row["profile"]),
            needs=[ev.Need.model_validate(n) for n in json.loads(row["needs"])],
            consent=ev.Consent.model_validate_json(row["consent"]),
        )

    async def update_consent(self, case_id: str, consent: ev.Consent) -> None:
        await batch_scope.settle(self.conn)
        await self.conn.execute(
            "UPDATE cases SET consent = $2::jsonb, updated_at = now() WHERE case_id = $1",
            case_id,
            consent.model_dump_json(),
        )

    async def close_case(self, case_id: str) -> None:
        await batch_scope.settle(self.conn)
        await self.conn.execute("UPDATE cases SET status = 'closed' WHERE case_id = $1", case_id)

    # ----- each need's chain of referrals, and its gap -----

    async def need_is_handled(self, case_id: str, need_id: str) -> bool:
        """A need already has a chain or a recorded gap: a redelivery or an update adds
        nothing."""
        handled = self._cache(_HANDLED)
        if handled is not None and (case_id, need_id) in handled:
            return bool(handled[(case_id, need_id)])
        await batch_scope.settle(self.conn)
        return bool(
            await self.conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM referrals WHERE case_id = $1 AND need_id = $2)
                   OR EXISTS (SELECT 1 FROM unmet_needs WHERE case_id = $1 AND need_id = $2)""",
                case_id,
                need_id,
            )
        )

    async def chain(self, case_id: str, need_id: str) -> list[ChainLink]:
        """The referrals already made for the need."""
        chains = self._cache(_CHAINS)
        if chains is not None and (case_id, need_id) in chains:
            return list(chains[(case_id, need_id)])
        await batch_scope.settle(self.conn)
        return [
            ChainLink(str(r["referral_id"]), r["service_id"], r["attempt"])
            for r in await self.conn.fetch(
                "SELECT referral_id, service_id, attempt FROM referrals"
                " WHERE case_id = $1 AND need_id = $2",
                case_id,
                need_id,
            )
        ]

    async def record_route(
        self,
        case: ev.CaseRegistered,
        need: ev.Need,
        decided: Refer | Gap,
        correlation_id: str | None,
    ) -> None:
        """What routing decided for one need of a stored case, in one statement: the gap; or
        the referral, its decision timer, and the need no longer unmet."""
        await self._write_routes(case, [(need, decided)], correlation_id, with_case=False)

    async def _write_routes(
        self,
        case: ev.CaseRegistered,
        routes: Sequence[tuple[ev.Need, Refer | Gap]],
        correlation_id: str | None,
        *,
        with_case: bool,
    ) -> None:
        chains, handled = self._cache(_CHAINS), self._cache(_HANDLED)
        for need, decided in routes:
            key = (case.case_id, need.need_id)
            if handled is not None:
                handled[key] = True
            if isinstance(decided, Refer) and chains is not None and key in chains:
                r = decided.referral
                chains[key].append(ChainLink(r.referral_id, r.service_id, r.attempt))
        if not with_case and not routes:
            return
        pending = _Routes(case, list(routes), correlation_id, with_case)
        await batch_scope.write(self.conn, "routes", [pending], _write_routes)

    async def unmet_needs_fitting(self, listing: ev.ServiceListing) -> list[tuple[str, str]]:
        """(case id, need id) of the unmet needs the listing may serve, oldest first, locked
        (another instance skips them)."""
        await batch_scope.settle(self.conn)
        rows = await self.conn.fetch(
            """SELECT case_id, need_id FROM unmet_needs
               WHERE category = ANY($1::text[]) AND reason <> 'attempts_exhausted'
                 AND EXISTS (SELECT 1 FROM unnest($2::text[]) a WHERE starts_with(area, a))
               ORDER BY since FOR UPDATE SKIP LOCKED""",
            listing.categories,
            listing.service_areas,
        )
        return [(str(r["case_id"]), r["need_id"]) for r in rows]

    # ----- referrals and their states -----

    async def load_referral(self, referral_id: str) -> ReferralRow | None:
        """Locked for the transaction (FOR UPDATE)."""
        try:
            rid = uuid.UUID(referral_id)
        except ValueError:
            return None
        await batch_scope.settle(self.conn)
        row = await self.conn.fetchrow(
            "SELECT * FROM referrals WHERE referral_id = $1 FOR UPDATE", rid
        )
        return ReferralRow.of(row) if row else None

    async def open_referrals(
        self, case_id: str, states: Sequence[ReferralState]
    ) -> list[ReferralRow]:
        """The case's referrals in ``states``, locked for the transaction."""
        await batch_scope.settle(self.conn)
        rows = await self.conn.fetch(
            "SELECT * FROM referrals WHERE case_id = $1 AND status = ANY($2::text[]) FOR UPDATE",
            case_id,
            [s.value for s in states],
        )
        return [ReferralRow.of(r) for r in rows]

    async def set_state(
        self,
        ref: ReferralRow,
        to: ReferralState,
        *,
        reason: ReasonCode | None,
        outcome: ev.Outcome | None,
        slot_change: int,
        deadline_ends: bool,
    ) -> None:
        """The referral's new state and its transition record; ``slot_change`` slots held (or
        given back) at its listing; ``deadline_ends``: its decision timer is dropped."""
        self._directory_changed()  # held slots and answer rates move with states
        await batch_scope.settle(self.conn)
        await self.conn.execute(
            """WITH r AS (
                 UPDATE referrals SET status = $2, reason_code = $3, outcome = $4,
                        updated_at = now()
                  WHERE referral_id = $1),
               s AS (
                 UPDATE listings SET held_slots = greatest(held_slots + $7, 0)
                  WHERE service_id = $6 AND $7 <> 0),
               d AS (DELETE FROM timers WHERE referral_id = $1 AND $8)
               INSERT INTO referral_transitions (referral_id, from_state, to_state, reason_code)
               VALUES ($1, $5, $2, $3)""",
            uuid.UUID(ref.referral_id),
            to.value,
            reason.value if reason else None,
            outcome.value if outcome else None,
            ref.status.value,
            ref.service_id,
            slot_change,
            deadline_ends,
        )

    async def take_due_deadlines(self, limit: int) -> list[str]:
        """The referrals whose decision deadline has passed, their timers deleted (rows
        another instance holds are skipped)."""
        rows = await self.conn.fetch(
            """DELETE FROM timers WHERE referral_id IN (
                   SELECT referral_id FROM timers WHERE due_at <= now()
                   ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING referral_id, due_at""",
            limit,
        )
        return [str(r["referral_id"]) for r in sorted(rows, key=lambda r: r["due_at"])]

    async def take_due_reminders(self, limit: int) -> list[DueReminder]:
        """The referrals to remind (deadline near, not yet reminded), marked reminded."""
        rows = await self.conn.fetch(
            """UPDATE timers SET reminded = true WHERE referral_id IN (
                   SELECT referral_id FROM timers
                    WHERE NOT reminded AND remind_at <= now() AND due_at > now()
                    ORDER BY remind_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING referral_id, due_at, remind_at""",
            limit,
        )
        ordered = sorted(rows, key=lambda r: r["remind_at"])
        return [DueReminder(str(r["referral_id"]), r["due_at"]) for r in ordered]

    # ----- evidence (evidence.py words it) -----

    async def pathway_report(self, area_digits: int = 2) -> list[EvidenceRow]:
        """Per area (``area_digits`` digits after the country code: 2 = first administrative
        level, as in P-codes "SN01"), dimension and category: referrals made, acceptance and
        completion rates, median hours to answer and to decide, unmet needs by reason."""
        rows = await self.conn.fetch(_PATHWAY_REPORT, area_digits)
        return [EvidenceRow(tuple(r[c] for c in COLUMNS)) for r in rows]


@dataclass(frozen=True, slots=True)
class _Routes:
    """What routing decided for some needs of one case (and the case's row, ``with_case``)."""

    case: ev.CaseRegistered
    routes: list[tuple[ev.Need, Refer | Gap]]
    correlation_id: str | None
    with_case: bool


async def _write_routes(conn: DbConnection, written: Sequence[_Routes]) -> None:
    """The cases' rows, and what routing decided for their needs, in one statement for all of
    them: referrals with their decision timers (their needs no longer unmet), and gaps. A case
    or a need decided twice keeps its last row."""
    cases = {w.case.case_id: w.case for w in written if w.with_case}
    refs: list[tuple[_Routes, Refer]] = []
    gaps: dict[tuple[str, str], tuple[_Routes, ev.NeedUnmatched]] = {}
    for w in written:
        for need, decided in w.routes:
            if isinstance(decided, Refer):
                refs.append((w, decided))
                gaps.pop((w.case.case_id, need.need_id), None)
            else:
                gaps[(w.case.case_id, need.need_id)] = (w, decided.unmatched)
    await conn.execute(
        _WRITE_ROUTES,
        # the cases
        list(cases),
        [c.submitting_agency_id for c in cases.values()],
        [c.profile.model_dump_json() for c in cases.values()],
        [json.dumps([n.model_dump(mode="json") for n in c.needs]) for c in cases.values()],
        [c.consent.model_dump_json() for c in cases.values()],
        # the referrals, with their timers; their needs are no longer unmet
        [uuid.UUID(d.referral.referral_id) for _, d in refs],
        [w.case.case_id for w, _ in refs],
        [d.referral.need_id for _, d in refs],
        [d.referral.category for _, d in refs],
        [w.case.submitting_agency_id for w, _ in refs],
        [d.referral.recipient_agency_id for _, d in refs],
        [d.referral.service_id for _, d in refs],
        [d.referral.explanation.model_dump_json() for _, d in refs],
        [d.referral.attempt for _, d in refs],
        [
            uuid.UUID(d.referral.previous_referral_id) if d.referral.previous_referral_id else None
            for _, d in refs
        ],
        [d.referral.urgency.value for _, d in refs],
        [d.respond_by for _, d in refs],
        [d.remind_at for _, d in refs],
        [w.correlation_id for w, _ in refs],
        # the gaps
        [case_id for case_id, _ in gaps],
        [need_id for _, need_id in gaps],
        [g.category for _, g in gaps.values()],
        [w.case.profile.return_area for w, _ in gaps.values()],
        [g.reason.value for _, g in gaps.values()],
        [g.attempts for _, g in gaps.values()],
        # the needs referred, and not left with a gap after it, are no longer unmet
        *_columns(
            [
                (w.case.case_id, d.referral.need_id)
                for w, d in refs
                if (w.case.case_id, d.referral.need_id) not in gaps
            ],
            2,
        ),
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


# What routing decided for the needs of some cases: the cases' rows ($1..$5, parallel arrays),
# referrals ($6..$19) with their decision timers, gaps ($20..$25) recorded, the unmet-need rows
# of the needs referred ($26, $27) dropped.
_WRITE_ROUTES = """
WITH c AS (
    INSERT INTO cases (case_id, submitting_agency_id, profile, needs, consent)
    SELECT id, agency, profile::jsonb, needs::jsonb, consent::jsonb
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
           AS x (id, agency, profile, needs, consent)
    ON CONFLICT (case_id) DO UPDATE SET profile = EXCLUDED.profile, needs = EXCLUDED.needs,
      consent = EXCLUDED.consent, updated_at = now()),
  r AS (
    INSERT INTO referrals (referral_id, case_id, need_id, category, referring_agency_id,
        recipient_agency_id, service_id, status, explanation, attempt, previous_referral_id,
        urgency, respond_by, correlation_id)
    SELECT id, case_id, need, category, referring, recipient, service, 'requested',
           explanation::jsonb, attempt, previous, urgency, due, correlation
      FROM unnest($6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                  $12::text[], $13::text[], $14::int[], $15::uuid[], $16::text[],
                  $17::timestamptz[], $19::text[])
           AS x (id, case_id, need, category, referring, recipient, service, explanation,
                 attempt, previous, urgency, due, correlation)),
  t AS (
    INSERT INTO timers (referral_id, due_at, remind_at)
    SELECT * FROM unnest($6::uuid[], $17::timestamptz[], $18::timestamptz[])),
  d AS (
    DELETE FROM unmet_needs u USING unnest($26::text[], $27::text[]) AS x (case_id, need_id)
     WHERE u.case_id = x.case_id AND u.need_id = x.need_id),
  g AS (
    INSERT INTO unmet_needs (case_id, need_id, category, area, reason, attempts)
    SELECT * FROM unnest($20::text[], $21::text[], $22::text[], $23::text[], $24::text[],
                         $25::int[])
    ON CONFLICT (case_id, need_id) DO UPDATE SET reason = EXCLUDED.reason,
      attempts = EXCLUDED.attempts)
SELECT 1
"""

_PATHWAY_REPORT = """
WITH r AS (
    SELECT r.referral_id, r.category, split_part(r.category, '.', 1) AS dimension,
           left(c.profile->>'return_area', 2 + $1) AS area, r.status, r.created_at,
           (SELECT min(t.at) FROM referral_transitions t WHERE t.referral_id = r.referral_id
             AND t.to_state <> 'cancelled') AS first_answer_at,
           (SELECT min(t.at) FROM referral_transitions t WHERE t.referral_id = r.referral_id
             AND t.to_state IN ('accepted', 'rejected')) AS decided_at,
           EXISTS (SELECT 1 FROM referral_transitions t WHERE t.referral_id = r.referral_id
             AND t.to_state = 'accepted') AS was_accepted
      FROM referrals r JOIN cases c USING (case_id)
), made AS (
    SELECT area, dimension, category,
           count(*) AS referrals,
           avg(CASE WHEN was_accepted THEN 1.0 ELSE 0.0 END) AS acceptance_rate,
           avg(CASE WHEN status = 'completed' THEN 1.0 ELSE 0.0 END)
               FILTER (WHERE was_accepted) AS completion_rate,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY
               extract(epoch FROM first_answer_at - created_at) / 3600) AS median_hours_to_answer,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY
               extract(epoch FROM decided_at - created_at) / 3600) AS median_hours_to_decide
      FROM r GROUP BY 1, 2, 3
), unmet_by_reason AS (
    SELECT left(area, 2 + $1) AS area, split_part(category, '.', 1) AS dimension, category,
           reason, count(*) AS n
      FROM unmet_needs GROUP BY 1, 2, 3, 4
), unmet AS (
    SELECT area, dimension, category, sum(n)::int AS unmet_needs,
           string_agg(reason || ' x' || n, ', ' ORDER BY reason) AS unmet_reasons
      FROM unmet_by_reason GROUP BY 1, 2, 3
)
SELECT coalesce(m.area, u.area) AS area, coalesce(m.dimension, u.dimension) AS dimension,
       coalesce(m.category, u.category) AS category, coalesce(m.referrals, 0) AS referrals,
       m.acceptance_rate, m.completion_rate, m.median_hours_to_answer, m.median_hours_to_decide,
       coalesce(u.unmet_needs, 0) AS unmet_needs, coalesce(u.unmet_reasons, '') AS unmet_reasons
  FROM made m FULL JOIN unmet u USING (area, dimension, category)
 ORDER BY 1, 2, 3
"""
