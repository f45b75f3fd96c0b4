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
from datetime import date, datetime, timedelta
from typing import Any

from shared.contracts import events as ev
from shared.contracts.events import ReferralState
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection, batch_scope

from .continuity import TakeoverListing
from .control import Exclusions
from .decisions import ChainLink, CommunityCase, Gap, Refer, ReferralRow, Routable, area_of
from .directory import candidate, containing_codes
from .evidence import (
    COLUMNS,
    CONTINUITY_COLUMNS,
    LEVEL_COLUMNS,
    STRUCTURAL_COLUMNS,
    ContinuityRow,
    EvidenceRow,
    LevelRow,
    StructuralRow,
)
from .handovers import AgencyFacts, CaseFacts, HandoverRow, WaitingHandover
from .lifecycle import OPEN_STATES
from .matching import Candidate
from .structural import (
    Cluster,
    CommitmentRow,
    GapFacts,
    GapReport,
    GapRule,
    Government,
    at_midnight,
)

# The batch cache's entries (shared.db.batch_scope.cache).
_CHAINS = "referral.chains"  # (case_id, need_id) → list[ChainLink]
_HANDLED = "referral.handled"  # (case_id, need_id) → bool: a chain or a recorded gap
_CANDIDATES = "referral.candidates"  # (category, area) → list[Candidate]
_WAITING = "referral.waiting"  # case_id → bool: handover messages wait for the case
_OPEN = "referral.open"  # case_id → bool: the case may have open referrals (False: none)

_CANDIDATE_COLUMNS = """l.service_id, l.agency_id, l.status, l.categories, l.coverage_areas,
                  l.languages, l.capacity, l.open_slots, l.held_slots, l.eligibility,
                  l.acceptance_sla_hours, m.agency_type, m.answer_rate, m.median_hours_to_decide,
                  l.levels"""


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
        waiting, open_ = self._cache(_WAITING), self._cache(_OPEN)
        if chains is None or handled is None or waiting is None or open_ is None or not cases:
            return
        case_ids = sorted({c.case_id for c in cases})
        await batch_scope.settle(self.conn)
        # The cases with handover messages waiting come in the same query (a row without a
        # need), so a batch of cases takes no more round trips for them.
        records = await self.conn.fetch(
            """SELECT case_id, need_id, referral_id, service_id, attempt,
                      status = ANY($2::text[]) AS open FROM referrals
                WHERE case_id = ANY($1::text[])
               UNION ALL
               SELECT case_id, need_id, NULL, NULL, NULL, NULL FROM unmet_needs
                WHERE case_id = ANY($1::text[])
               UNION ALL
               SELECT case_id, need_id, NULL, NULL, NULL, NULL FROM held_needs
                WHERE case_id = ANY($1::text[])
               UNION ALL
               SELECT case_id, NULL, NULL, NULL, NULL, NULL FROM waiting_handovers
                WHERE case_id = ANY($1::text[])""",
            case_ids,
            [state.value for state in OPEN_STATES],
        )
        for case in cases:
            waiting.setdefault(case.case_id, False)
            open_.setdefault(case.case_id, False)
            for need in case.needs:
                chains.setdefault((case.case_id, need.need_id), [])
                handled.setdefault((case.case_id, need.need_id), False)
        for r in records:
            if r["need_id"] is None:
                waiting[r["case_id"]] = True
                continue
            key = (r["case_id"], r["need_id"])
            handled[key] = True
            if r["open"]:
                open_[r["case_id"]] = True
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
        """A registration (or a registration again after a deregistration: a trigger of
        migration 0008 clears the mark)."""
        self._directory_changed()
        await self.conn.execute(
            """INSERT INTO agencies (agency_id, type, record) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (agency_id) DO UPDATE SET type = EXCLUDED.type,
                 record = EXCLUDED.record, updated_at = now()""",
            agency.agency_id,
            agency.type.value,
            agency.model_dump_json(),
        )

    async def deregister_agency(self, agency_id: str) -> None:
        """A tombstone on the registry: the row stays (referrals and statistics name the
        agency), marked, so no handover goes to it and it is no next owner. Matching reads
        nothing of it that changes."""
        await self.conn.execute(
            """UPDATE agencies SET deregistered_at = now(), updated_at = now()
                WHERE agency_id = $1 AND deregistered_at IS NULL""",
            agency_id,
        )

    async def load_agency(self, agency_id: str) -> AgencyFacts | None:
        row = await self.conn.fetchrow(
            "SELECT type, deregistered_at FROM agencies WHERE agency_id = $1", agency_id
        )
        if row is None:
            return None
        return AgencyFacts(agency_id, ev.AgencyType(row[0]), registered=row[1] is None)

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
        case: Routable,
        routes: Sequence[tuple[ev.Need, Refer | Gap]] = (),
        correlation_id: str | None = None,
    ) -> None:
        """The case's row, and what routing decided for its needs, in one statement."""
        await self._write_routes(case, routes, correlation_id, with_case=True)

    async def load_case(self, case_id: str) -> Routable | None:
        """An open case, to route more of its needs (re-routing, a listing that fits a gap):
        a closed or erased case gets no new referral, even while some go on after a closure
        that continued them. A community need comes back as a :class:`CommunityCase`."""
        await batch_scope.settle(self.conn)
        row = await self.conn.fetchrow(
            "SELECT * FROM cases WHERE case_id = $1 AND status = 'open'", case_id
        )
        if row is None:
            return None
        if row["kind"] == "community":
            return CommunityCase(
                case_id=case_id,
                submitting_agency_id=row["submitting_agency_id"],
                area=json.loads(row["profile"])["return_area"],
                needs=[ev.Need.model_validate(n) for n in json.loads(row["needs"])],
                people_affected=row["people_affected"],
                returnee_share=float(row["returnee_share"]),
            )
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

    async def close_case(self, case_id: str, *, erased: bool = False) -> None:
        await batch_scope.settle(self.conn)
        await self.conn.execute(
            "UPDATE cases SET status = $2, updated_at = now() WHERE case_id = $1",
            case_id,
            "erased" if erased else "closed",
        )

    async def load_case_facts(self, case_id: str, *, lock: bool = False) -> CaseFacts | None:
        """Owner, status, consent, area and needs of a case; ``lock``: the row is held for the
        transaction (a handover decided on it cannot race another). None for a community need
        too: it has no person to hand over and no consent (decision 17)."""
        await batch_scope.settle(self.conn)
        row = await self.conn.fetchrow(
            "SELECT submitting_agency_id, status, consent, profile->>'return_area', needs"
            " FROM cases WHERE case_id = $1 AND kind = 'individual'"
            + (" FOR UPDATE" if lock else ""),
            case_id,
        )
        if row is None:
            return None
        return CaseFacts(
            case_id=case_id,
            owner_agency_id=row[0],
            status=row[1],
            consent=ev.Consent.model_validate_json(row[2]),
            return_area=row[3],
            needs=tuple(ev.Need.model_validate(n) for n in json.loads(row[4])),
        )

    async def last_referral_states(self, case_id: str) -> dict[str, ReferralState]:
        """Need id → the state of the last referral of its chain (needs never referred are
        absent)."""
        await batch_scope.settle(self.conn)
        rows = await self.conn.fetch(
            """SELECT DISTINCT ON (need_id) need_id, status FROM referrals
                WHERE case_id = $1 ORDER BY need_id, attempt DESC""",
            case_id,
        )
        return {r[0]: ReferralState(r[1]) for r in rows}

    # ----- each need's chain of referrals, and its gap -----

    async def need_is_handled(self, case_id: str, need_id: str) -> bool:
        """A need already has a chain, a recorded gap or waits for its referrer's choice: a
        redelivery or an update adds nothing."""
        handled = self._cache(_HANDLED)
        if handled is not None and (case_id, need_id) in handled:
            return bool(handled[(case_id, need_id)])
        await batch_scope.settle(self.conn)
        return bool(
            await self.conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM referrals WHERE case_id = $1 AND need_id = $2)
                   OR EXISTS (SELECT 1 FROM unmet_needs WHERE case_id = $1 AND need_id = $2)
                   OR EXISTS (SELECT 1 FROM held_needs WHERE case_id = $1 AND need_id = $2)""",
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
        case: Routable,
        need: ev.Need,
        decided: Refer | Gap,
        correlation_id: str | None,
    ) -> None:
        """What routing decided for one need of a stored case, in one statement: the gap; or
        the referral, its decision timer, and the need no longer unmet."""
        await self._write_routes(case, [(need, decided)], correlation_id, with_case=False)

    async def _write_routes(
        self,
        case: Routable,
        routes: Sequence[tuple[ev.Need, Refer | Gap]],
        correlation_id: str | None,
        *,
        with_case: bool,
    ) -> None:
        chains, handled, open_ = self._cache(_CHAINS), self._cache(_HANDLED), self._cache(_OPEN)
        for need, decided in routes:
            key = (case.case_id, need.need_id)
            if isinstance(decided, Refer) and open_ is not None:
                open_[case.case_id] = True
            if handled is not None:
                handled[key] = True
            if isinstance(decided, Refer) and chains is not None and key in chains:
                r = decided.referral
                chains[key].append(ChainLink(r.referral_id, r.service_id, r.attempt))
        if not with_case and not routes:
            return
        pending = _Routes(case, list(routes), correlation_id, with_case)
        await batch_scope.write(self.conn, "routes", [pending], _write_routes)

    async def unmet_needs_fitting(
        self, listing: ev.ServiceListing
    ) -> list[tuple[str, str, ev.UnmatchedReason]]:
        """(case id, need id, the gap's reason) of the unmet needs the listing may serve,
        oldest first, locked (another instance skips them)."""
        await batch_scope.settle(self.conn)
        rows = await self.conn.fetch(
            """SELECT case_id, need_id, reason FROM unmet_needs
               WHERE category = ANY($1::text[]) AND reason <> 'attempts_exhausted'
                 AND EXISTS (SELECT 1 FROM unnest($2::text[]) a WHERE starts_with(area, a))
               ORDER BY since FOR UPDATE SKIP LOCKED""",
            listing.categories,
            listing.service_areas,
        )
        return [(str(r["case_id"]), r["need_id"], ev.UnmatchedReason(r["reason"])) for r in rows]

    # ----- referrals and their states -----

    async def load_referral(self, referral_id: str) -> ReferralRow | None:
        """Locked for the transaction (FOR UPDATE)."""
        try:
            rid = uuid.UUID(referral_id)
        except ValueError:
            return None
        await batch_scope.settle(self.conn)
        row = await self.conn.fetchrow(
            f"SELECT {_REFERRAL_WITH_OWNER} WHERE r.referral_id = $1 FOR UPDATE OF r", rid
        )
        return ReferralRow.of(row) if row else None

    def has_no_open_referral(self, case_id: str) -> bool:
        """True when the batch's preload saw the case without any open referral (and the batch
        opened none since): a consent check of it costs no round trip. False when unknown."""
        open_ = self._cache(_OPEN)
        return open_ is not None and open_.get(case_id) is False

    async def open_referrals(
        self, case_id: str, states: Sequence[ReferralState]
    ) -> list[ReferralRow]:
        """The case's referrals in ``states``, locked for the transaction."""
        await batch_scope.settle(self.conn)
        rows = await self.conn.fetch(
            f"""SELECT {_REFERRAL_WITH_OWNER}
                 WHERE r.case_id = $1 AND r.status = ANY($2::text[])
                 ORDER BY r.need_id FOR UPDATE OF r""",
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
        cancelled_by: ev.CancelledBy | None = None,
    ) -> None:
        """The referral's new state and its transition record (with who cancelled, when the
        requester did); ``slot_change`` slots held (or given back) at its listing;
        ``deadline_ends``: its decision timer is dropped."""
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
               INSERT INTO referral_transitions (referral_id, from_state, to_state, reason_code,
                                                 cancelled_by)
               VALUES ($1, $5, $2, $3, $9)""",
            uuid.UUID(ref.referral_id),
            to.value,
            reason.value if reason else None,
            outcome.value if outcome else None,
            ref.status.value,
            ref.service_id,
            slot_change,
            deadline_ends,
            cancelled_by.value if cancelled_by else None,
        )

    async def count_open_by_state(self) -> dict[str, int]:
        """Open referrals per state (the partial index of open referrals answers it)."""
        rows = await self.conn.fetch(
            """SELECT status, count(*) AS n FROM referrals
                WHERE status IN ('requested', 'received', 'accepted', 'in_progress', 'on_hold')
                GROUP BY status"""
        )
        return {r["status"]: int(r["n"]) for r in rows}

    async def deadlines_by_agency(self, missed_within: timedelta) -> dict[str, dict[str, int]]:
        """Per recipient agency: referrals waiting for its answer, those of them past their
        deadline (the deadline job has not expired them yet: it is behind or failing), and the
        deadlines it missed within ``missed_within`` (for `refex platform status`)."""
        rows = await self.conn.fetch(
            """WITH waiting AS (
                 SELECT recipient_agency_id AS agency_id, count(*) AS awaiting_answer,
                        count(*) FILTER (WHERE respond_by < now()) AS past_deadline
                   FROM referrals
                  WHERE status IN ('requested', 'received') AND recipient_agency_id IS NOT NULL
                  GROUP BY 1),
               missed AS (
                 SELECT r.recipient_agency_id AS agency_id, count(*) AS deadlines_missed
                   FROM referral_transitions t JOIN referrals r USING (referral_id)
                  WHERE t.to_state = 'expired' AND t.at > now() - $1::interval
                    AND r.recipient_agency_id IS NOT NULL
                  GROUP BY 1)
               SELECT agency_id, coalesce(w.awaiting_answer, 0) AS awaiting_answer,
                      coalesce(w.past_deadline, 0) AS past_deadline,
                      coalesce(m.deadlines_missed, 0) AS deadlines_missed
                 FROM waiting w FULL JOIN missed m USING (agency_id)""",
            missed_within,
        )
        return {
            r["agency_id"]: {
                k: int(r[k]) for k in ("awaiting_answer", "past_deadline", "deadlines_missed")
            }
            for r in rows
        }

    async def count_unmet_by_reason(self) -> dict[str, int]:
        rows = await self.conn.fetch(
            "SELECT reason, count(*) AS n FROM unmet_needs GROUP BY reason"
        )
        return {r["reason"]: int(r["n"]) for r in rows}

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

    # ----- caseworker control: held needs, exclusions (control.py decides) -----

    async def hold_needs(self, case_id: str, need_ids: Sequence[str]) -> None:
        """Needs that wait for their referrer's choice, written with the batch's routes (a
        need held is handled: the preload and :meth:`need_is_handled` read this table)."""
        handled = self._cache(_HANDLED)
        if handled is not None:
            for need_id in need_ids:
                handled[(case_id, need_id)] = True
        await batch_scope.write(
            self.conn, "held_needs", [(case_id, n) for n in need_ids], _write_held
        )

    async def is_held(self, case_id: str, need_id: str) -> bool:
        await batch_scope.settle(self.conn)
        return bool(
            await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM held_needs WHERE case_id = $1 AND need_id = $2)",
                case_id,
                need_id,
            )
        )

    async def release_held(self, case_id: str, need_id: str) -> None:
        """The referrer chose: the need no longer waits (its referral is recorded beside)."""
        await batch_scope.settle(self.conn)
        await self.conn.execute(
            "DELETE FROM held_needs WHERE case_id = $1 AND need_id = $2", case_id, need_id
        )

    async def exclusions(self, case_id: str, need_id: str) -> Exclusions:
        """What the referrer excluded for the need (services, agencies)."""
        rows = await self.conn.fetch(
            "SELECT kind, excluded_id FROM need_exclusions WHERE case_id = $1 AND need_id = $2",
            case_id,
            need_id,
        )
        return Exclusions(
            frozenset(r[1] for r in rows if r[0] == "service"),
            frozenset(r[1] for r in rows if r[0] == "agency"),
        )

    async def add_exclusions(
        self, case_id: str, need_id: str, services: Sequence[str], agencies: Sequence[str]
    ) -> None:
        """More exclusions for the need (one already there stays once), in one statement."""
        kinds = ["service"] * len(services) + ["agency"] * len(agencies)
        await self.conn.execute(
            """INSERT INTO need_exclusions (case_id, need_id, kind, excluded_id)
               SELECT $1, $2, k, x FROM unnest($3::text[], $4::text[]) AS u (k, x)
               ON CONFLICT DO NOTHING""",
            case_id,
            need_id,
            kinds,
            [*services, *agencies],
        )

    async def listing_candidate(self, service_id: str) -> Candidate | None:
        """A listing of the directory as matching reads it, whatever its category, area or
        status (a referrer's choice is checked by matching's filters, which say why not)."""
        await batch_scope.settle(self.conn)
        row = await self.conn.fetchrow(
            f"""SELECT {_CANDIDATE_COLUMNS}
                  FROM listings l LEFT JOIN matching_agencies m USING (agency_id)
                 WHERE l.service_id = $1""",
            service_id,
        )
        return candidate(row) if row else None

    # ----- handovers and their deadlines (handovers.py decides) -----

    async def pending_handover(self, case_id: str) -> HandoverRow | None:
        """The case's handover still waiting (proposed, or accepted and not yet moved)."""
        row = await self.conn.fetchrow(
            "SELECT * FROM handovers WHERE case_id = $1 AND state IN ('proposed', 'accepted')",
            case_id,
        )
        return _handover(row) if row else None

    async def load_handover(self, handover_id: str) -> HandoverRow | None:
        """Locked for the transaction (FOR UPDATE): an answer and the expiry cannot race."""
        row = await self.conn.fetchrow(
            "SELECT * FROM handovers WHERE handover_id = $1 FOR UPDATE", handover_id
        )
        return _handover(row) if row else None

    async def record_handover(self, h: HandoverRow) -> None:
        """A new handover and its deadline's timer, in one statement."""
        await self.conn.execute(
            """WITH h AS (
                 INSERT INTO handovers (handover_id, case_id, direction, owner_agency_id,
                     receiving_agency_id, answering_agency_id, reason, respond_by, state,
                     receiving_case_ref, consent, message_id, correlation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13))
               INSERT INTO handover_timers (handover_id, due_at) VALUES ($1, $8)""",
            h.handover_id,
            h.case_id,
            h.direction.value,
            h.owner_agency_id,
            h.receiving_agency_id,
            h.answering_agency_id,
            h.reason.value,
            h.respond_by,
            h.state.value,
            h.receiving_case_ref,
            h.consent.model_dump_json() if h.consent else None,
            h.message_id,
            h.correlation_id,
        )

    async def update_handover(self, h: HandoverRow) -> None:
        """The handover's new state (with the new owner's reference, or the reason it was
        rejected); its timer is dropped once it no longer waits for an answer."""
        await self.conn.execute(
            """WITH h AS (
                 UPDATE handovers SET state = $2, receiving_case_ref = $3, decline_reason = $4,
                        updated_at = now()
                  WHERE handover_id = $1)
               DELETE FROM handover_timers WHERE handover_id = $1 AND $2 <> 'proposed'""",
            h.handover_id,
            h.state.value,
            h.receiving_case_ref,
            h.decline_reason.value if h.decline_reason else None,
        )

    async def park_handover(self, w: WaitingHandover) -> bool:
        """A proposal or request waits for its case; False if it waits already (a redelivery).
        Reads and writes no table a batch defers (no settle)."""
        waiting = self._cache(_WAITING)
        if waiting is not None:
            waiting[w.case_id] = True
        row = await self.conn.fetchval(
            """INSERT INTO waiting_handovers (ce_id, case_id, ce_type, sender_agency_id,
                   correlation_id, payload)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb)
               ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id""",
            w.message_id,
            w.case_id,
            w.ce_type,
            w.sender_agency_id,
            w.correlation_id,
            w.payload,
        )
        return row is not None

    async def take_waiting(self, case_id: str) -> list[WaitingHandover]:
        """The messages waiting for the case, oldest first, no longer waiting. No round trip
        when the batch's preload found none and none was parked in the batch since."""
        waiting = self._cache(_WAITING)
        if waiting is not None and waiting.get(case_id) is False:
            return []
        rows = await self.conn.fetch(
            "DELETE FROM waiting_handovers WHERE case_id = $1 RETURNING *", case_id
        )
        if waiting is not None:
            waiting[case_id] = False
        return sorted((_waiting(r) for r in rows), key=_arrival)

    async def take_stale_waiting(self, older_than_s: float, limit: int) -> list[WaitingHandover]:
        """The messages that waited longer than ``older_than_s`` for their case, or whose case
        has come meanwhile (another instance applied it while the message was being parked, so
        it never saw the message), oldest first, no longer waiting; rows another transaction
        holds (its case arriving) are skipped."""
        rows = await self.conn.fetch(
            """DELETE FROM waiting_handovers WHERE ce_id IN (
                   SELECT ce_id FROM waiting_handovers w
                    WHERE received_at <= now() - make_interval(secs => $1)
                       OR EXISTS (SELECT 1 FROM cases c WHERE c.case_id = w.case_id)
                    ORDER BY received_at LIMIT $2 FOR UPDATE OF w SKIP LOCKED)
               RETURNING *""",
            older_than_s,
            limit,
        )
        return sorted((_waiting(r) for r in rows), key=_arrival)

    async def take_due_handovers(self, limit: int) -> list[str]:
        """The handovers whose answer deadline has passed, their timers deleted, oldest
        deadline first. Each handover's row is locked with its timer, skipping rows another
        transaction holds: a handover being answered is left to its answer (which holds the
        handover, then drops the timer), so the expiry never waits on an answer and an answer
        only waits for an expiry that already holds both."""
        rows = await self.conn.fetch(
            """DELETE FROM handover_timers WHERE handover_id IN (
                   SELECT t.handover_id FROM handover_timers t JOIN handovers h USING (handover_id)
                    WHERE t.due_at <= now()
                    ORDER BY t.due_at LIMIT $1 FOR UPDATE OF t, h SKIP LOCKED)
               RETURNING handover_id, due_at""",
            limit,
        )
        return [r["handover_id"] for r in sorted(rows, key=lambda r: r["due_at"])]

    async def hand_over_case(self, handed: ev.CaseHandedOver) -> None:
        """Intake moved the case: its owner is the new one (who refers its new needs and hears
        its referrals' progress), and the handover is completed."""
        await batch_scope.settle(self.conn)
        await self.conn.execute(
            """WITH c AS (
                 UPDATE cases SET submitting_agency_id = $3, updated_at = now()
                  WHERE case_id = $2)
               UPDATE handovers SET state = 'completed', updated_at = now()
                WHERE handover_id = $1 AND case_id = $2 AND state = 'accepted'""",
            handed.handover_id,
            handed.case_id,
            handed.to_agency_id,
        )

    async def fail_handover(self, failed: ev.HandoverFailed) -> None:
        """Intake could not move the case: the owner keeps it."""
        await self.conn.execute(
            """UPDATE handovers SET state = 'failed', updated_at = now()
                WHERE handover_id = $1 AND case_id = $2 AND state = 'accepted'""",
            failed.handover_id,
            failed.case_id,
        )

    # ----- continuity after an owner's assistance ends (continuity.py decides) -----

    async def record_assistance_end(
        self, ended: ev.AssistanceEnded, open_referral_ids: Sequence[str]
    ) -> None:
        """The end of the owner's assistance and the referrals open at that moment (the
        evidence counts those that moved afterwards), in one statement."""
        await batch_scope.settle(self.conn)
        await self.conn.execute(
            """WITH e AS (
                 INSERT INTO assistance_ends (case_id, owner_agency_id, reason, ended_at)
                 VALUES ($1, $2, $3, $4) RETURNING id)
               INSERT INTO assistance_end_referrals (assistance_end_id, referral_id)
               SELECT e.id, x.referral_id FROM e, unnest($5::uuid[]) AS x (referral_id)""",
            ended.case_id,
            ended.owner_agency_id,
            ended.reason.value,
            ended.ended_at,
            [uuid.UUID(r) for r in open_referral_ids],
        )

    async def takeover_listings(self, area: str, owner_agency_id: str) -> list[TakeoverListing]:
        """Active listings that take cases over, whose coverage contains ``area``, of
        registered agencies other than the owner (with their agency's type)."""
        rows = await self.conn.fetch(
            """SELECT l.service_id, l.agency_id, a.type, l.categories, l.coverage_areas
                 FROM listings l JOIN agencies a USING (agency_id)
                WHERE l.takes_over_cases AND l.status = 'active'
                  AND l.coverage_areas && $1::text[]
                  AND l.agency_id <> $2 AND a.deregistered_at IS NULL""",
            containing_codes(area),
            owner_agency_id,
        )
        return [
            TakeoverListing(r[0], r[1], ev.AgencyType(r[2]), tuple(r[3]), tuple(r[4])) for r in rows
        ]

    # ----- structural gaps (structural.py decides) -----

    async def gap_clusters(
        self, rule: GapRule, period: tuple[date, date], previous_start: date
    ) -> list[Cluster]:
        """The current period's clusters of unmet needs at the threshold not yet reported,
        with their count the period before (its report's, else its unmet needs recorded)."""
        rows = await self.conn.fetch(
            _GAP_CLUSTERS,
            rule.district_digits,
            at_midnight(period[0]),
            at_midnight(period[1]),
            at_midnight(previous_start),
            rule.threshold,
            period[0],
            previous_start,
        )
        return [Cluster(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    async def government_coverage(self) -> list[Government]:
        """The registered government agencies, with their records' countries and their
        listings' service areas."""
        rows = await self.conn.fetch(
            """SELECT a.agency_id, a.record -> 'countries',
                      coalesce(array_agg(DISTINCT x.area) FILTER (WHERE x.area IS NOT NULL),
                               '{}')
                 FROM agencies a
                 LEFT JOIN listings l USING (agency_id)
                 LEFT JOIN LATERAL unnest(l.coverage_areas) AS x (area) ON true
                WHERE a.type = 'government' AND a.deregistered_at IS NULL
                GROUP BY a.agency_id, a.record"""
        )
        return [Government(r[0], tuple(json.loads(r[1])), tuple(r[2])) for r in rows]

    async def record_gap(self, report: GapReport) -> bool:
        """The report and its addressees, in one statement; False when the district, category
        and period were reported already (by another instance: nothing to announce)."""
        inserted = await self.conn.fetchval(
            """WITH g AS (
                 INSERT INTO structural_gaps (report_id, area, category, period_start,
                     period_end, unmet_needs, previous_unmet_needs, trend, reasons)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
                 ON CONFLICT (area, category, period_start) DO NOTHING RETURNING report_id),
               a AS (
                 INSERT INTO structural_gap_addressees (report_id, agency_id)
                 SELECT g.report_id, x FROM g, unnest($10::text[]) AS x)
               SELECT count(*) FROM g""",
            uuid.UUID(report.report_id),
            report.area,
            report.category,
            report.period_start,
            report.period_end,
            report.unmet_needs,
            report.previous,
            report.trend.value,
            json.dumps([r.model_dump(mode="json") for r in report.reasons]),
            list(report.addressees),
        )
        return bool(inserted)

    async def load_gap(self, report_id: str) -> GapFacts | None:
        try:
            rid = uuid.UUID(report_id)
        except ValueError:
            return None
        row = await self.conn.fetchrow(
            """SELECT g.area, g.category,
                      coalesce(array_agg(a.agency_id) FILTER (WHERE a.agency_id IS NOT NULL),
                               '{}')
                 FROM structural_gaps g LEFT JOIN structural_gap_addressees a USING (report_id)
                WHERE g.report_id = $1 GROUP BY g.report_id""",
            rid,
        )
        return GapFacts(str(rid), row[0], row[1], frozenset(row[2])) if row else None

    async def load_commitment(self, report_id: str, agency_id: str) -> CommitmentRow | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM structural_commitments WHERE report_id = $1 AND agency_id = $2",
            uuid.UUID(report_id),
            agency_id,
        )
        if row is None:
            return None
        return CommitmentRow(
            report_id=str(row["report_id"]),
            agency_id=row["agency_id"],
            kind=ev.CommitmentKind(row["kind"]),
            message_id=row["message_id"],
            service_id=row["service_id"],
            planned_by=row["planned_by"],
            reason=ev.NotPlannedReason(row["reason"]) if row["reason"] else None,
            note=row["note"],
        )

    async def listing_owner(self, service_id: str) -> str | None:
        owner: str | None = await self.conn.fetchval(
            "SELECT agency_id FROM listings WHERE service_id = $1", service_id
        )
        return owner

    async def save_commitment(self, c: CommitmentRow) -> None:
        """The agency's commitment to the report, replacing its earlier one."""
        await self.conn.execute(
            """INSERT INTO structural_commitments (report_id, agency_id, kind, service_id,
                   planned_by, reason, note, message_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (report_id, agency_id) DO UPDATE SET kind = EXCLUDED.kind,
                 service_id = EXCLUDED.service_id, planned_by = EXCLUDED.planned_by,
                 reason = EXCLUDED.reason, note = EXCLUDED.note,
                 message_id = EXCLUDED.message_id,
                 revisions = structural_commitments.revisions + 1, committed_at = now()""",
            uuid.UUID(c.report_id),
            c.agency_id,
            c.kind.value,
            c.service_id,
            c.planned_by,
            c.reason.value if c.reason else None,
            c.note,
            c.message_id,
        )

    # ----- consent that follows through (issue 18; consent.py decides) -----

    async def agency_types(self, agency_ids: Sequence[str]) -> dict[str, ev.AgencyType]:
        """The type of each known agency among ``agency_ids`` (what a consent scope names)."""
        if not agency_ids:
            return {}
        rows = await self.conn.fetch(
            "SELECT agency_id, type FROM agencies WHERE agency_id = ANY($1::text[])",
            sorted(set(agency_ids)),
        )
        return {r[0]: ev.AgencyType(r[1]) for r in rows}

    async def set_consent_expiry(self, case_id: str, due_at: datetime | None) -> None:
        """The case's consent expiry timer moved to ``due_at``, or dropped (None). Deferred to
        the batch's end (only the consent-expiry job reads the table); the last one of a case
        in a batch wins."""
        await batch_scope.write(
            self.conn, "consent_expiries", [(case_id, due_at)], _write_consent_expiries
        )

    async def take_due_consent_expiries(self, limit: int) -> list[tuple[str, datetime]]:
        """The cases whose consent expired and when, their timers deleted (rows another
        instance holds are skipped)."""
        rows = await self.conn.fetch(
            """DELETE FROM consent_expiries WHERE case_id IN (
                   SELECT case_id FROM consent_expiries WHERE due_at <= now()
                   ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING case_id, due_at""",
            limit,
        )
        return [(r["case_id"], r["due_at"]) for r in sorted(rows, key=lambda r: r["due_at"])]

    async def case_profile_and_consent(
        self, case_id: str
    ) -> tuple[dict[str, Any], ev.Consent] | None:
        """The stored profile (as JSON) and consent of a case, whatever its status."""
        await batch_scope.settle(self.conn)
        row = await self.conn.fetchrow(
            "SELECT profile, consent FROM cases WHERE case_id = $1", case_id
        )
        if row is None:
            return None
        return json.loads(row[0]), ev.Consent.model_validate_json(row[1])

    async def erase_case(
        self, case_id: str, kept_profile: dict[str, Any] | None, consent: ev.Consent
    ) -> None:
        """An erased case: its row keeps only ``kept_profile`` (the statistics fields; none
        without that purpose), no needs and no consent scope; its consent timer goes; without
        statistics its unmet needs go too (they hold its area). One statement."""
        await batch_scope.settle(self.conn)
        await self.conn.execute(
            """WITH c AS (
                 UPDATE cases SET status = 'erased', profile = $2::jsonb, needs = '[]'::jsonb,
                        consent = $3::jsonb, updated_at = now()
                  WHERE case_id = $1),
               t AS (DELETE FROM consent_expiries WHERE case_id = $1)
               DELETE FROM unmet_needs WHERE case_id = $1 AND $4""",
            case_id,
            json.dumps(kept_profile or {}),
            consent.model_dump_json(),
            kept_profile is None,
        )

    # ----- evidence (evidence.py words it) -----

    async def pathway_report(self, area_digits: int = 2) -> list[EvidenceRow]:
        """Per area (``area_digits`` digits after the country code: 2 = first administrative
        level, as in P-codes "SN01"), dimension and category: referrals made, acceptance and
        completion rates, median hours to answer and to decide, unmet needs by reason."""
        rows = await self.conn.fetch(_PATHWAY_REPORT, area_digits)
        return [EvidenceRow(tuple(r[c] for c in COLUMNS)) for r in rows]

    async def continuity_report(self, area_digits: int = 2) -> list[ContinuityRow]:
        """Per area (as :meth:`pathway_report`) and programme (the owner agency at the time):
        handovers proposed (offers and requests), requested, completed, rejected, expired and
        failed; ends of assistance; needs whose support continued after the owner's assistance
        ended (a referral open at the end that its provider answered afterwards)."""
        rows = await self.conn.fetch(_CONTINUITY_REPORT, area_digits)
        return [ContinuityRow(tuple(r[c] for c in CONTINUITY_COLUMNS)) for r in rows]

    async def level_report(self) -> list[LevelRow]:
        """Per level and beneficiary type (issue 18, evidence.LevelRow): needs, referred,
        accepted, completed, unmet; people and returnees concerned."""
        rows = await self.conn.fetch(_LEVEL_REPORT)
        return [LevelRow(tuple(r[c] for c in LEVEL_COLUMNS)) for r in rows]

    async def structural_report(self) -> list[StructuralRow]:
        """Every structural gap reported, latest period first, one row per addressed agency
        with its commitment beside it (a gap addressed to nobody: one row without)."""
        rows = await self.conn.fetch(_STRUCTURAL_REPORT)
        return [StructuralRow(tuple(r[c] for c in STRUCTURAL_COLUMNS)) for r in rows]


async def _write_consent_expiries(
    conn: DbConnection, rows: Sequence[tuple[str, datetime | None]]
) -> None:
    """Each case's last timer of the batch: set (upserted) or dropped, in one statement."""
    last = dict(rows)
    await conn.execute(
        """WITH x AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS x (case_id, due)),
             d AS (DELETE FROM consent_expiries e USING x
                    WHERE e.case_id = x.case_id AND x.due IS NULL)
           INSERT INTO consent_expiries (case_id, due_at)
           SELECT case_id, due FROM x WHERE due IS NOT NULL
           ON CONFLICT (case_id) DO UPDATE SET due_at = EXCLUDED.due_at""",
        list(last),
        list(last.values()),
    )


def _handover(r: Any) -> HandoverRow:
    return HandoverRow(
        handover_id=r["handover_id"],
        case_id=r["case_id"],
        direction=ev.HandoverDirection(r["direction"]),
        owner_agency_id=r["owner_agency_id"],
        receiving_agency_id=r["receiving_agency_id"],
        answering_agency_id=r["answering_agency_id"],
        reason=ev.HandoverReason(r["reason"]),
        respond_by=r["respond_by"],
        state=ev.HandoverState(r["state"]),
        message_id=r["message_id"],
        receiving_case_ref=r["receiving_case_ref"],
        consent=ev.Consent.model_validate_json(r["consent"]) if r["consent"] else None,
        decline_reason=(
            ev.HandoverDeclineReason(r["decline_reason"]) if r["decline_reason"] else None
        ),
        correlation_id=r["correlation_id"],
    )


def _waiting(r: Any) -> WaitingHandover:
    return WaitingHandover(
        message_id=r["ce_id"],
        case_id=r["case_id"],
        ce_type=r["ce_type"],
        sender_agency_id=r["sender_agency_id"],
        payload=r["payload"],
        correlation_id=r["correlation_id"],
        received_at=r["received_at"],
    )


def _arrival(w: WaitingHandover) -> tuple[Any, str]:
    return (w.received_at, w.message_id)


# A referral's row with its case's owner of now (none if referral has no row of the case).
_REFERRAL_WITH_OWNER = """r.*, c.submitting_agency_id AS case_owner_agency_id
  FROM referrals r LEFT JOIN cases c USING (case_id)"""


@dataclass(frozen=True, slots=True)
class _Routes:
    """What routing decided for some needs of one case (and the case's row, ``with_case``)."""

    case: Routable
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
        [_profile_json(c) for c in cases.values()],
        [json.dumps([n.model_dump(mode="json") for n in c.needs]) for c in cases.values()],
        [_consent_json(c) for c in cases.values()],
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
        [area_of(w.case) for w, _ in gaps.values()],
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
        # issue 18: what a community need is ($28..$30, parallel to the cases)
        ["community" if isinstance(c, CommunityCase) else "individual" for c in cases.values()],
        [c.people_affected if isinstance(c, CommunityCase) else None for c in cases.values()],
        [c.returnee_share if isinstance(c, CommunityCase) else None for c in cases.values()],
    )


def _profile_json(case: Routable) -> str:
    """The profile column: a community need keeps only its area there (under the name the
    evidence queries group by), no profile of anyone."""
    if isinstance(case, CommunityCase):
        return json.dumps({"return_area": case.area})
    return case.profile.model_dump_json()


def _consent_json(case: Routable) -> str | None:
    return None if isinstance(case, CommunityCase) else case.consent.model_dump_json()


async def _write_held(conn: DbConnection, rows: Sequence[tuple[str, str]]) -> None:
    await conn.execute(
        """INSERT INTO held_needs (case_id, need_id)
           SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING""",
        *_columns(rows, 2),
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


# What routing decided for the needs of some cases: the cases' rows ($1..$5 and $28..$30,
# parallel arrays),
# referrals ($6..$19) with their decision timers, gaps ($20..$25) recorded, the unmet-need rows
# of the needs referred ($26, $27) dropped.
_WRITE_ROUTES = """
WITH c AS (
    INSERT INTO cases (case_id, submitting_agency_id, profile, needs, consent, kind,
                       people_affected, returnee_share)
    SELECT id, agency, profile::jsonb, needs::jsonb, consent::jsonb, kind, people, share
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $28::text[],
                  $29::int[], $30::float8[])
           AS x (id, agency, profile, needs, consent, kind, people, share)
    ON CONFLICT (case_id) DO UPDATE SET submitting_agency_id = EXCLUDED.submitting_agency_id,
      profile = EXCLUDED.profile, needs = EXCLUDED.needs, consent = EXCLUDED.consent,
      people_affected = EXCLUDED.people_affected, returnee_share = EXCLUDED.returnee_share,
      updated_at = now()),
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

_CONTINUITY_REPORT = """
WITH h AS (
    SELECT left(c.profile->>'return_area', 2 + $1) AS area, h.owner_agency_id AS programme,
           count(*) AS handovers_proposed,
           count(*) FILTER (WHERE h.direction = 'request') AS handovers_requested,
           count(*) FILTER (WHERE h.state = 'completed') AS handovers_completed,
           count(*) FILTER (WHERE h.state = 'rejected') AS handovers_rejected,
           count(*) FILTER (WHERE h.state = 'expired') AS handovers_expired,
           count(*) FILTER (WHERE h.state = 'failed') AS handovers_failed
      FROM handovers h JOIN cases c USING (case_id)
     GROUP BY 1, 2
), a AS (
    SELECT left(c.profile->>'return_area', 2 + $1) AS area, e.owner_agency_id AS programme,
           count(DISTINCT e.id) AS assistance_ended,
           -- a need counts once, however many of its referrals went on
           count(DISTINCT r.case_id || '/' || r.need_id) FILTER (WHERE EXISTS (
               SELECT 1 FROM referral_transitions t
                WHERE t.referral_id = r.referral_id AND t.at > e.ended_at
                  -- the provider's own answers, not what the service did to the referral
                  AND t.to_state NOT IN ('cancelled', 'expired', 'entered_in_error')
           )) AS needs_continued
      FROM assistance_ends e JOIN cases c USING (case_id)
      LEFT JOIN assistance_end_referrals x ON x.assistance_end_id = e.id
      LEFT JOIN referrals r ON r.referral_id = x.referral_id
     GROUP BY 1, 2
)
SELECT area, programme,
       coalesce(h.handovers_proposed, 0) AS handovers_proposed,
       coalesce(h.handovers_requested, 0) AS handovers_requested,
       coalesce(h.handovers_completed, 0) AS handovers_completed,
       coalesce(h.handovers_rejected, 0) AS handovers_rejected,
       coalesce(h.handovers_expired, 0) AS handovers_expired,
       coalesce(h.handovers_failed, 0) AS handovers_failed,
       coalesce(a.assistance_ended, 0) AS assistance_ended,
       coalesce(a.needs_continued, 0) AS needs_continued
  FROM h FULL JOIN a USING (area, programme)
 ORDER BY 1, 2
"""

_LEVEL_REPORT = """
WITH n AS (
    SELECT c.case_id, n ->> 'need_id' AS need_id,
           coalesce(n ->> 'level', 'individual') AS level,
           CASE c.kind WHEN 'community' THEN 'community_member' ELSE 'returnee' END
               AS beneficiary_type,
           CASE c.kind WHEN 'community' THEN c.people_affected ELSE 1 END AS people,
           CASE c.kind WHEN 'community' THEN c.people_affected * c.returnee_share ELSE 1 END
               AS returnees
      FROM cases c CROSS JOIN LATERAL jsonb_array_elements(c.needs) AS n
), per_need AS (
    SELECT n.*,
           EXISTS (SELECT 1 FROM referrals r
                    WHERE r.case_id = n.case_id AND r.need_id = n.need_id) AS referred,
           EXISTS (SELECT 1 FROM referrals r JOIN referral_transitions t USING (referral_id)
                    WHERE r.case_id = n.case_id AND r.need_id = n.need_id
                      AND t.to_state = 'accepted') AS accepted,
           EXISTS (SELECT 1 FROM referrals r
                    WHERE r.case_id = n.case_id AND r.need_id = n.need_id
                      AND r.status = 'completed') AS completed,
           EXISTS (SELECT 1 FROM unmet_needs u
                    WHERE u.case_id = n.case_id AND u.need_id = n.need_id) AS unmet
      FROM n
), people AS (
    -- a case's people count once per level and beneficiary type, however many needs it has
    SELECT DISTINCT ON (case_id, level, beneficiary_type) case_id, level, beneficiary_type,
           people, returnees
      FROM n
)
SELECT p.level, p.beneficiary_type, count(*) AS needs,
       count(*) FILTER (WHERE referred) AS needs_referred,
       count(*) FILTER (WHERE accepted) AS needs_accepted,
       count(*) FILTER (WHERE completed) AS needs_completed,
       count(*) FILTER (WHERE unmet) AS needs_unmet,
       (SELECT sum(people) FROM people x
         WHERE x.level = p.level AND x.beneficiary_type = p.beneficiary_type)::int
           AS people_affected,
       (SELECT round(sum(returnees)) FROM people x
         WHERE x.level = p.level AND x.beneficiary_type = p.beneficiary_type)::int
           AS returnees_affected
  FROM per_need p
 GROUP BY 1, 2
 ORDER BY 1, 2
"""
# The current period's unmet needs per district ($1 digits) and category, from $2 to $3, at the
# threshold ($5) and not reported for the period ($6); with the period before ($4 to $2,
# starting $7): its report's count if it had one, else its unmet needs still recorded.
_GAP_CLUSTERS = """
WITH cur AS (
    SELECT left(area, 2 + $1) AS area, category, reason, count(*)::int AS n
      FROM unmet_needs WHERE since >= $2 AND since < $3
     GROUP BY 1, 2, 3
), totals AS (
    SELECT area, category, jsonb_object_agg(reason, n) AS reasons
      FROM cur GROUP BY 1, 2 HAVING sum(n) >= $5
)
SELECT t.area, t.category, t.reasons::text,
       coalesce(
         (SELECT p.unmet_needs FROM structural_gaps p WHERE p.area = t.area
             AND p.category = t.category AND p.period_start = $7),
         (SELECT count(*) FROM unmet_needs u WHERE left(u.area, 2 + $1) = t.area
             AND u.category = t.category AND u.since >= $4 AND u.since < $2))::int
  FROM totals t
 WHERE NOT EXISTS (SELECT 1 FROM structural_gaps g WHERE g.area = t.area
                      AND g.category = t.category AND g.period_start = $6)
 ORDER BY 1, 2
"""

_STRUCTURAL_REPORT = """
SELECT g.area, split_part(g.category, '.', 1) AS dimension, g.category, g.period_start,
       g.period_end, g.unmet_needs, g.previous_unmet_needs AS previous_period, g.trend,
       (SELECT string_agg((r ->> 'reason') || ' x' || (r ->> 'count'), ', ')
          FROM jsonb_array_elements(g.reasons) r) AS unmet_reasons,
       g.report_id::text AS report_id, a.agency_id AS addressed_agency,
       c.kind AS commitment, c.service_id, c.planned_by, c.reason AS not_planned_reason,
       c.committed_at
  FROM structural_gaps g
  LEFT JOIN structural_gap_addressees a USING (report_id)
  LEFT JOIN structural_commitments c USING (report_id, agency_id)
 ORDER BY g.period_start DESC, g.area, g.category, a.agency_id
"""
