"""What referral tells `refex platform status` per agency (GET /status): referrals waiting for
its answer, those past their deadline, and the deadlines it missed in the last week. Per agency
because an operator's next step is a call to that agency; counts only, never a referral."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from shared.service import AgencyStatus

MISSED_WITHIN = timedelta(days=7)


async def by_agency(units: Callable[[], AbstractAsyncContextManager[Any]]) -> AgencyStatus:
    async with units() as unit:
        return await unit.stores.deadlines_by_agency(MISSED_WITHIN)  # type: ignore[no-any-return]
