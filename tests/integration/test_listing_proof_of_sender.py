"""Referral's directory on real PostgreSQL: a provider lists, changes and withdraws only its own
services; a claim for another agency changes nothing."""

from pathlib import Path

import asyncpg
import pytest

from services.referral.handlers import ReferralHandlers
from services.referral.routing import RoutingPolicy
from shared.contracts import topics
from shared.db.migrations import discover, migrate
from shared.kafka.inbound import InboundEvent, PermanentError
from tests import factories as f

HANDLERS = ReferralHandlers(RoutingPolicy(max_attempts=3))
REFERRAL_MIGRATIONS = Path(__file__).resolve().parents[2] / "services/referral/migrations"


@pytest.fixture
async def referral_db(scratch_pool: asyncpg.Pool) -> asyncpg.Pool:
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("referral", REFERRAL_MIGRATIONS))
    return scratch_pool


async def _apply(pool: asyncpg.Pool, record: object) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await HANDLERS.on_listing(InboundEvent.from_record(record), conn)  # type: ignore[arg-type]


async def _owner(pool: asyncpg.Pool, service_id: str) -> str | None:
    async with pool.acquire() as conn:
        owner: str | None = await conn.fetchval(
            "SELECT agency_id FROM listings WHERE service_id = $1", service_id
        )
        return owner


async def test_provider_lists_and_withdraws_its_own_service(referral_db: asyncpg.Pool) -> None:
    listing = f.listing("ngo-a")
    await _apply(referral_db, f.record_of(f.listing_event(listing)))
    assert await _owner(referral_db, listing.service_id) == "ngo-a"
    tombstone = f.record(
        topics.AGENCY_LISTINGS.name("ngo-a"), None, key=listing.service_id.encode()
    )
    await _apply(referral_db, tombstone)
    assert await _owner(referral_db, listing.service_id) is None


async def test_listing_claiming_another_agency_is_refused(referral_db: asyncpg.Pool) -> None:
    listing = f.listing("ngo-a")
    out = f.listing_event(listing)
    forged = f.record(
        topics.AGENCY_LISTINGS.name("ngo-b"),
        out.body,
        [(k, v.encode()) for k, v in out.headers.items() if k != "ce_agencyid"],
        key=listing.service_id.encode(),
    )
    with pytest.raises(PermanentError, match="not the agency of the topic"):
        await _apply(referral_db, forged)
    assert await _owner(referral_db, listing.service_id) is None


async def test_another_agency_cannot_take_over_or_withdraw_a_service(
    referral_db: asyncpg.Pool,
) -> None:
    listing = f.listing("ngo-a")
    await _apply(referral_db, f.record_of(f.listing_event(listing)))
    hijack = f.listing("ngo-b", service_id=listing.service_id, name="Hijacked")
    with pytest.raises(PermanentError, match="another agency"):
        await _apply(referral_db, f.record_of(f.listing_event(hijack)))
    tombstone = f.record(
        topics.AGENCY_LISTINGS.name("ngo-b"), None, key=listing.service_id.encode()
    )
    await _apply(referral_db, tombstone)
    assert await _owner(referral_db, listing.service_id) == "ngo-a"
