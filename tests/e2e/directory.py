"""The directory most end-to-end tests start from: a referring agency and a provider with one
listing in a district no other test uses, known to referral and notification."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from shared.contracts import events as ev
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.kafka_helpers import register_agency_access


async def eventually(query: str, *args: Any, dsn: str, timeout: float = 30) -> Any:
    """The query's first value once it is truthy (or its last value after ``timeout``)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while (value := await conn.fetchval(query, *args)) in (None, 0, False):
            if asyncio.get_running_loop().time() > deadline:
                return value
            await asyncio.sleep(0.2)
        return value
    finally:
        await conn.close()


async def directory(
    kafka: KafkaConnection, urls: dict[str, str], listed: list[str] | None = None
) -> tuple[str, str, ev.ServiceListing]:
    """(referrer, provider, listing), once both services know them; ``listed`` collects the
    listing event's id (for a module whose log test expects it)."""
    referrer, provider = f.unique("iom"), f.unique("ngo")
    listing = f.listing(provider, service_areas=[f.unique_area()])
    listed_event = f.listing_event(listing)
    if listed is not None:
        listed.append(listed_event.event_id)
    for agency_id in (referrer, provider):  # as `refex platform register-agency` does
        await register_agency_access(kafka, agency_id)
    await publish_events(
        kafka,
        [
            f.agency_event(f.agency(referrer, ev.AgencyType.UN_AGENCY)),
            f.agency_event(f.agency(provider)),
            listed_event,
        ],
    )
    assert await eventually(
        "SELECT 1 FROM listings WHERE service_id = $1", listing.service_id, dsn=urls["referral"]
    )
    assert await eventually(
        "SELECT count(*) = 2 FROM agencies WHERE agency_id IN ($1, $2)",
        referrer,
        provider,
        dsn=urls["notification"],
    )
    return referrer, provider, listing
