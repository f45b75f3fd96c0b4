"""Intake's follow-up rows and assessments (issue 19): the SQL of ``follow_ups`` and
``assessments`` (migration 0006). Reached as ``IntakeStore.follow_ups``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.contracts import events as ev
from shared.db import DbConnection, batch_scope

from .follow_ups import Plan

OPEN = ("scheduled", "reminded", "due")


@dataclass(frozen=True, slots=True)
class FollowUpRow:
    case_id: str
    wave: str
    owner_agency_id: str
    due_on: date
    remind_on: date
    status: str


class FollowUpStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def plan(self, case_id: str, owner: str, plan: Plan | None, reminder_days: int) -> None:
        """The case follows ``plan`` under ``owner`` from now on (its waves counted from the
        case's registration; one cancelled before comes back), or none (``plan`` None: every
        open wave cancelled). Deferred to the batch's flush, after the case's own row; the last
        plan of a case in a batch is the one written."""
        waves = tuple((w.name, w.days, max(w.days - reminder_days, 0)) for w in plan or ())
        await batch_scope.write(
            self.conn, "follow_ups", [(uuid.UUID(case_id), owner, waves)], _write_plans
        )

    async def take_movable(self, today: date, grace_days: int, limit: int) -> list[FollowUpRow]:
        """Open waves that may move on today (a reminder, the date, missed past its grace:
        follow_ups.next_stage decides), oldest first, locked (another instance skips them)."""
        rows = await self.conn.fetch(
            """SELECT case_id, wave, owner_agency_id, due_on, remind_on, status FROM follow_ups
                WHERE (status = 'scheduled' AND remind_on <= $1)
                   OR (status = 'reminded' AND due_on <= $1)
                   OR (status = 'due' AND due_on + $2::int < $1)
                ORDER BY remind_on, case_id, wave LIMIT $3 FOR UPDATE SKIP LOCKED""",
            today,
            grace_days,
            limit,
        )
        return [FollowUpRow(**{**dict(r), "case_id": str(r["case_id"])}) for r in rows]

    async def set_status(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """(case id, wave, status) of waves the job moved on."""
        await self.conn.executemany(
            """UPDATE follow_ups SET status = $3, updated_at = now()
                WHERE case_id = $1 AND wave = $2""",
            [(uuid.UUID(c), w, s) for c, w, s in rows],
        )

    async def save_assessment(
        self,
        assessment: ev.AssessmentSubmission,
        scores: ev.OutcomeScores,
        submission_id: str,
    ) -> None:
        """The case's assessment of the wave (replacing an earlier one), and the wave done."""
        await batch_scope.settle(self.conn)
        case_id = uuid.UUID(assessment.case_id)
        await self.conn.execute(
            """INSERT INTO assessments (case_id, wave, assessed_on, indicator_set, answers,
                                        scores, submission_id)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)
               ON CONFLICT (case_id, wave) DO UPDATE SET assessed_on = EXCLUDED.assessed_on,
                 indicator_set = EXCLUDED.indicator_set, answers = EXCLUDED.answers,
                 scores = EXCLUDED.scores, submission_id = EXCLUDED.submission_id,
                 recorded_at = now()""",
            case_id,
            assessment.wave,
            assessment.assessed_on,
            assessment.indicator_set,
            json.dumps({a.indicator: a.answer for a in assessment.answers}),
            scores.model_dump_json(),
            submission_id,
        )
        await self.conn.execute(
            """UPDATE follow_ups SET status = 'done', updated_at = now()
                WHERE case_id = $1 AND wave = $2""",
            case_id,
            assessment.wave,
        )

    async def erase_assessments(self, case_id: str) -> None:
        """An erased case keeps no answers (its scores went out as aggregates already)."""
        await batch_scope.settle(self.conn)
        await self.conn.execute("DELETE FROM assessments WHERE case_id = $1", uuid.UUID(case_id))

    async def of_case(self, case_id: str) -> list[FollowUpRow]:
        await batch_scope.settle(self.conn)
        rows = await self.conn.fetch(
            """SELECT case_id, wave, owner_agency_id, due_on, remind_on, status FROM follow_ups
                WHERE case_id = $1 ORDER BY due_on, wave""",
            uuid.UUID(case_id),
        )
        return [FollowUpRow(**{**dict(r), "case_id": str(r["case_id"])}) for r in rows]


async def _write_plans(conn: DbConnection, entries: Sequence[tuple[Any, ...]]) -> None:
    last = {case_id: (owner, waves) for case_id, owner, waves in entries}
    planned = [
        (case_id, wave, owner, days, remind)
        for case_id, (owner, waves) in last.items()
        for wave, days, remind in waves
    ]
    if planned:
        await conn.executemany(
            """INSERT INTO follow_ups (case_id, wave, owner_agency_id, due_on, remind_on)
               SELECT c.case_id, $2, $3, c.created_at::date + $4::int,
                      c.created_at::date + $5::int
                 FROM cases c WHERE c.case_id = $1
               ON CONFLICT (case_id, wave) DO UPDATE SET
                 owner_agency_id = EXCLUDED.owner_agency_id,
                 status = CASE follow_ups.status WHEN 'cancelled' THEN 'scheduled'
                          ELSE follow_ups.status END,
                 updated_at = now()""",
            planned,
        )
    await conn.executemany(
        """UPDATE follow_ups SET status = 'cancelled', updated_at = now()
            WHERE case_id = $1 AND status = ANY($3::text[]) AND NOT wave = ANY($2::text[])""",
        [(case_id, [w for w, _, _ in waves], list(OPEN)) for case_id, (_, waves) in last.items()],
    )
