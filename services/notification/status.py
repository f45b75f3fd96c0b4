"""What notification tells `refex platform status` per agency (GET /status): a disabled webhook
endpoint (since when, why), deliveries waiting and those given up in the last week. Counts and
the disabling reason only, never an address, a URL or a message."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from shared.service import AgencyStatus

GIVEN_UP_WITHIN = timedelta(days=7)


async def by_agency(units: Callable[[], AbstractAsyncContextManager[Any]]) -> AgencyStatus:
    async with units() as unit:
        return await unit.stores.channels_by_agency(GIVEN_UP_WITHIN)  # type: ignore[no-any-return]
