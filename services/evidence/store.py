"""Evidence's store: all of evidence's SQL (handlers, the publishing job and the report source
read and write only through it; a fake of it runs the handlers in unit tests).

Writes are one statement per event (the read model is small and written at the pace of cases);
reads load the facts the aggregation counts, one query per table, only of the cases whose
consent lets them count (``cases.statistics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import asyncpg

from shared.db import DbConnection

from .facts import (
    AssessmentFact,
    CaseFact,
    Facts,
    FollowUpFact,
    HandoverFact,
    NeedFact,
    ReferralFact,
    UnmetFact,
)

# Advisory lock of the publishing job (arbitrary, constant).
_PUBLISHING = 0x0E1D_E4CE


class EvidenceStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # ----- cases -----

    async def case(self, case_id: str) -> CaseFact | None:
        row = await self.conn.fetchrow(
            """SELECT case_id, owner_agency_id, level, area, sex, age_band, vulnerabilities,
                      statistics FROM cases WHERE case_id = $1""",
            case_id,
        )
        if row is None:
            return None
        return _case(row)

    async def save_case(self, case: CaseFact, registered_at: datetime) -> None:
        """The case as it stands now; it keeps the time it was first registered."""
        await self.conn.execute(
            """INSERT INTO cases (case_id, owner_agency_id, level, area, sex, age_band,
                                  vulnerabilities, statistics, registered_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (case_id) DO UPDATE SET
                   owner_agency_id = EXCLUDED.owner_agency_id, level = EXCLUDED.level,
                   area = EXCLUDED.area, sex = EXCLUDED.sex, age_band = EXCLUDED.age_band,
                   vulnerabilities = EXCLUDED.vulnerabilities,
                   statistics = EXCLUDED.statistics, updated_at = now()""",
            case.case_id,
            case.owner_agency_id,
            case.level,
            case.area,
            case.sex,
            case.age_band,
            list(case.vulnerabilities),
            case.statistics,
            registered_at,
        )

    async def replace_needs(self, case_id: str, needs: Sequence[NeedFact]) -> None:
        """The case's needs as its latest version lists them."""
        await self.conn.execute("DELETE FROM needs WHERE case_id = $1", case_id)
        await self.conn.executemany(
            """INSERT INTO needs (case_id, need_id, category, dimension, level)
               VALUES ($1, $2, $3, $4, $5)""",
            [(case_id, n.need_id, n.category, n.dimension, n.level) for n in needs],
        )

    async def set_statistics(self, case_id: str, statistics: bool) -> None:
        await self.conn.execute(
            "UPDATE cases SET statistics = $2, updated_at = now() WHERE case_id = $1",
            case_id,
            statistics,
        )

    async def set_owner(self, case_id: str, owner_agency_id: str) -> None:
        await self.conn.execute(
            "UPDATE cases SET owner_agency_id = $2, updated_at = now() WHERE case_id = $1",
            case_id,
            owner_agency_id,
        )

    async def end_case(self, case_id: str, ended: str) -> None:
        await self.conn.execute(
            "UPDATE cases SET ended = $2, updated_at = now() WHERE case_id = $1",
            case_id,
            ended,
        )

    async def forget_case(self, case_id: str) -> None:
        """Every row about the case (an erased case whose consent did not allow statistics)."""
        for table in ("referrals", "unmet_needs", "handovers", "assessments", "follow_ups"):
            await self.conn.execute(f"DELETE FROM {table} WHERE case_id = $1", case_id)
        await self.conn.execute("DELETE FROM cases WHERE case_id = $1", case_id)

    # ----- referrals, gaps, handovers -----

    async def record_referral(
        self,
        referral_id: str,
        case_id: str,
        need_id: str,
        category: str,
        provider_id: str,
        requested_at: datetime,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO referrals (referral_id, case_id, need_id, category, provider_id,
                                      requested_at, state)
               VALUES ($1, $2, $3, $4, $5, $6, 'requested')
               ON CONFLICT (referral_id) DO NOTHING""",
            referral_id,
            case_id,
            need_id,
            category,
            provider_id,
            requested_at,
        )

    async def record_transition(
        self, referral_id: str, state: str, *, answered_at: datetime | None, accepted: bool
    ) -> None:
        """The referral's new state; the first answer's time is kept, and once accepted it
        stays accepted (a referral accepted, then completed or failed)."""
        await self.conn.execute(
            """UPDATE referrals SET state = $2,
                      answered_at = COALESCE(answered_at, $3),
                      accepted = accepted OR $4, updated_at = now()
                WHERE referral_id = $1""",
            referral_id,
            state,
            answered_at,
            accepted,
        )

    async def record_unmet(
        self, case_id: str, need_id: str, category: str, reason: str, at: datetime
    ) -> None:
        await self.conn.execute(
            """INSERT INTO unmet_needs (case_id, need_id, category, reason, unmatched_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (case_id, need_id) DO UPDATE SET reason = EXCLUDED.reason""",
            case_id,
            need_id,
            category,
            reason,
            at,
        )

    async def record_handover(
        self, handover_id: str, case_id: str, state: str, at: datetime
    ) -> None:
        await self.conn.execute(
            # Referral's and intake's events of one handover come on two topics: a later state
            # is never replaced by an earlier one (proposed → accepted → how it ended).
            """INSERT INTO handovers (handover_id, case_id, state, at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (handover_id) DO UPDATE SET state = EXCLUDED.state, at = EXCLUDED.at
                WHERE handovers.state = 'proposed'
                   OR (handovers.state = 'accepted' AND EXCLUDED.state <> 'proposed')""",
            handover_id,
            case_id,
            state,
            at,
        )

    # ----- follow-ups -----

    async def record_assessment(self, fact: AssessmentFact) -> None:
        await self.conn.execute(
            """INSERT INTO assessments (case_id, wave, assessed_on, economic, social,
                                        psychosocial, composite)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (case_id, wave) DO UPDATE SET
                   assessed_on = EXCLUDED.assessed_on, economic = EXCLUDED.economic,
                   social = EXCLUDED.social, psychosocial = EXCLUDED.psychosocial,
                   composite = EXCLUDED.composite""",
            fact.case_id,
            fact.wave,
            fact.assessed_on,
            fact.economic,
            fact.social,
            fact.psychosocial,
            fact.composite,
        )

    async def record_follow_up(self, case_id: str, wave: str, due_on: date, stage: str) -> None:
        await self.conn.execute(
            """INSERT INTO follow_ups (case_id, wave, due_on, stage) VALUES ($1, $2, $3, $4)
               ON CONFLICT (case_id, wave) DO UPDATE SET
                   due_on = EXCLUDED.due_on, stage = EXCLUDED.stage""",
            case_id,
            wave,
            due_on,
            stage,
        )

    # ----- reading the facts -----

    async def facts(self) -> Facts:
        """Everything the aggregation counts, of the cases that count (statistics)."""
        counted = "case_id IN (SELECT case_id FROM cases WHERE statistics)"
        cases = await self.conn.fetch(
            """SELECT case_id, owner_agency_id, level, area, sex, age_band, vulnerabilities,
                      statistics FROM cases WHERE statistics ORDER BY case_id"""
        )
        needs = await self.conn.fetch(
            f"SELECT case_id, need_id, category, dimension, level FROM needs WHERE {counted}"
        )
        referrals = await self.conn.fetch(
            f"""SELECT referral_id, case_id, need_id, category, provider_id, requested_at,
                       answered_at, state, accepted FROM referrals WHERE {counted}"""
        )
        unmet = await self.conn.fetch(
            f"""SELECT case_id, need_id, category, reason, unmatched_at FROM unmet_needs
                 WHERE {counted}"""
        )
        handovers = await self.conn.fetch(
            f"SELECT handover_id, case_id, state, at FROM handovers WHERE {counted}"
        )
        assessments = await self.conn.fetch(
            f"""SELECT case_id, wave, assessed_on, economic, social, psychosocial, composite
                  FROM assessments WHERE {counted}"""
        )
        follow_ups = await self.conn.fetch(
            f"SELECT case_id, wave, due_on, stage FROM follow_ups WHERE {counted}"
        )
        return Facts(
            cases=tuple(_case(r) for r in cases),
            needs=tuple(NeedFact(**dict(r)) for r in needs),
            referrals=tuple(ReferralFact(**dict(r)) for r in referrals),
            unmet=tuple(UnmetFact(**dict(r)) for r in unmet),
            handovers=tuple(HandoverFact(**dict(r)) for r in handovers),
            assessments=tuple(AssessmentFact(**dict(r)) for r in assessments),
            follow_ups=tuple(FollowUpFact(**dict(r)) for r in follow_ups),
        )

    # ----- publishing -----

    async def lock_publishing(self) -> bool:
        """Whether this transaction may compute and publish the aggregates (one instance at a
        time; released at commit)."""
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _PUBLISHING))

    async def published_digests(self) -> dict[tuple[str, str], str]:
        rows = await self.conn.fetch("SELECT table_name, period, digest FROM published_aggregates")
        return {(r["table_name"], r["period"]): r["digest"] for r in rows}

    async def mark_published(self, digests: dict[tuple[str, str], str]) -> None:
        await self.conn.executemany(
            """INSERT INTO published_aggregates (table_name, period, digest) VALUES ($1, $2, $3)
               ON CONFLICT (table_name, period) DO UPDATE SET
                   digest = EXCLUDED.digest, published_at = now()""",
            [(table, period, digest) for (table, period), digest in digests.items()],
        )


def _case(row: asyncpg.Record) -> CaseFact:
    return CaseFact(**{**dict(row), "vulnerabilities": tuple(row["vulnerabilities"])})
