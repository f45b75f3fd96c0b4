"""Intake's periodic jobs: the follow-up waves that come due (issue 19, decision 21)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.events import FollowUpStage
from shared.logging import get_logger

from .follow_ups import STATUS_AFTER, Programme, next_stage
from .handlers import IntakeUnit

log = get_logger(__name__)

Units = Callable[[], AbstractAsyncContextManager[IntakeUnit]]

NOTICE_TYPES = {
    FollowUpStage.REMINDER: ev.FOLLOW_UP_REMINDER,
    FollowUpStage.DUE: ev.FOLLOW_UP_DUE,
    FollowUpStage.MISSED: ev.FOLLOW_UP_MISSED,
}


async def tell_follow_ups(units: Units, programme: Programme, limit: int = 200) -> int:
    """Tell the owners of the waves whose reminder date, due date or end of grace came (one
    stage per wave and run; safe with two instances); return how many were told."""
    today = datetime.now(UTC).date()
    async with units() as unit:
        store = unit.stores.follow_ups
        moved = []
        for row in await store.take_movable(today, programme.grace_days, limit):
            stage = next_stage(row.status, row.due_on, row.remind_on, today, programme.grace_days)
            if stage is None:
                continue
            moved.append((row.case_id, row.wave, STATUS_AFTER[stage]))
            notice = ev.FollowUpNotice(
                case_id=row.case_id,
                owner_agency_id=row.owner_agency_id,
                wave=row.wave,
                due_on=row.due_on,
                stage=stage,
            )
            unit.emit(NOTICE_TYPES[stage], notice, topic=topics.INTAKE_CASES, subject=row.case_id)
        await store.set_status(moved)
    if moved:
        log.info("follow_ups_told", count=len(moved))
    return len(moved)
