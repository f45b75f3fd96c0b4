"""Referral's directory on real PostgreSQL: a provider lists, changes and withdraws only its own
services; a claim for another agency changes nothing and is rejected to the sender."""

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.referral.decisions import RoutingPolicy
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.db.migrations import discover, migrate
from shared.kafka.inbound import InboundEvent
from shared.unit import raw_handler
from tests import factories as f

# As services/referral/app.py wires it: the raw event, through a unit of work.
ON_LISTING = raw_handler(
    ReferralHandlers(RoutingPolicy(max_attempts=3)).on_listing, ReferralStore, SOURCE
)
REFERRAL_MIGRATIONS = Path(__file__).resolve().parents[2] / "services/referral/migrations"


@pytest.fixture
async def referral_db(scratch_pool: asyncpg.Pool) -> asyncpg.Pool:
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("referral", REFERRAL_MIGRATIONS))
    return scratch_pool


async def _apply(pool: asyncpg.Pool, record: object) -> list[tuple[str, dict[str, Any]]]:
    """Apply one listings record; the answers it queued for the provider: (ce_type, data)."""
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
        await ON_LISTING(InboundEvent.from_record(record), conn)
        rows = await conn.fetch(
            "SELECT headers, body FROM outbox WHERE id > $1 ORDER BY id", before
        )
    return [(json.loads(r["headers"])["ce_type"], json.loads(r["body"])) for r in rows]


async def _owner(pool: asyncpg.Pool, service_id: str) -> str | None:
    async with pool.acquire() as conn:
        owner: str | None = await conn.fetchval(
            "SELECT agency_id FROM listings WHERE service_id = $1", service_id
        )
        return owner


async def test_provider_lists_and_withdraws_its_own_service(referral_db: asyncpg.Pool) -> None:
    listing = f.listing("ngo-a")
    [(type_, published)] = await _apply(referral_db, f.record_of(f.listing_event(listing)))
    assert (type_, published["status"], published["agency_id"]) == (
        ev.LISTING_PUBLISHED,
        "active",
        "ngo-a",
    )
    assert await _owner(referral_db, listing.service_id) == "ngo-a"
    tombstone = f.record(
        topics.AGENCY_LISTINGS.name("ngo-a"), None, key=listing.service_id.encode(), offset=7
    )
    [(type_, withdrawn)] = await _apply(referral_db, tombstone)
    assert (type_, withdrawn["status"], withdrawn["submission_id"]) == (
        ev.LISTING_WITHDRAWN,
        "withdrawn",
        f"{topics.AGENCY_LISTINGS.name('ngo-a')}/0/7",
    )
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
    [(type_, rejected)] = await _apply(referral_db, forged)
    assert (type_, rejected["agency_id"]) == (ev.LISTING_REJECTED, "ngo-b")
    assert "not the agency of the topic" in rejected["reason"]
    assert await _owner(referral_db, listing.service_id) is None


async def test_another_agency_cannot_take_over_or_withdraw_a_service(
    referral_db: asyncpg.Pool,
) -> None:
    listing = f.listing("ngo-a")
    await _apply(referral_db, f.record_of(f.listing_event(listing)))
    hijack = f.listing("ngo-b", service_id=listing.service_id, name="Hijacked")
    [(type_, rejected)] = await _apply(referral_db, f.record_of(f.listing_event(hijack)))
    assert (type_, rejected["agency_id"]) == (ev.LISTING_REJECTED, "ngo-b")
    assert "already listed by another agency" in rejected["reason"]
    tombstone = f.record(
        topics.AGENCY_LISTINGS.name("ngo-b"), None, key=listing.service_id.encode()
    )
    [(type_, refused)] = await _apply(referral_db, tombstone)
    assert (type_, refused["errors"][0]["field"]) == (ev.LISTING_REJECTED, "(key)")
    assert await _owner(referral_db, listing.service_id) == "ngo-a"
