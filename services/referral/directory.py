"""The materialised directory: listings and agencies upserted from their compacted topics."""

from __future__ import annotations

from functools import lru_cache

from asyncpg import Record

from shared.contracts import events as ev
from shared.db import DbConnection

from .matching import Candidate


async def upsert_listing(conn: DbConnection, listing: ev.ServiceListing) -> bool:
    """Insert or update; False when the service id belongs to another agency (nothing changed)."""
    row = await conn.fetchval(
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


async def withdraw_listing(conn: DbConnection, service_id: str, agency_id: str) -> bool:
    status = await conn.execute(
        "DELETE FROM listings WHERE service_id = $1 AND agency_id = $2", service_id, agency_id
    )
    return bool(status != "DELETE 0")


async def upsert_agency(conn: DbConnection, agency: ev.AgencyRecord) -> None:
    await conn.execute(
        """INSERT INTO agencies (agency_id, type, record) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (agency_id) DO UPDATE SET type = EXCLUDED.type, record = EXCLUDED.record,
             updated_at = now()""",
        agency.agency_id,
        agency.type.value,
        agency.model_dump_json(),
    )


async def candidates_for(conn: DbConnection, category: str, area: str) -> list[Candidate]:
    """Active listings of the category whose coverage contains the area (prefix match), with
    their agency's type and its record of answering referrals (share not left to expire).
    Matching drops other listings before any filter that could name a gap, so leaving them
    out changes no choice and no reason.

    Category and area are answered by one GIN index, the agency's type and record by its row
    of ``matching_agencies`` (kept by triggers, migration 0006): the cost follows the number
    of candidates, not the size of the directory or of the referral history."""
    rows = await conn.fetch(
        """SELECT l.service_id, l.agency_id, l.status, l.categories, l.coverage_areas,
                  l.languages, l.capacity, l.open_slots, l.held_slots, l.eligibility,
                  l.acceptance_sla_hours, m.agency_type, m.answer_rate, m.median_hours_to_decide
             FROM listings l LEFT JOIN matching_agencies m USING (agency_id)
            WHERE l.categories @> ARRAY[$1]::text[] AND l.coverage_areas && $2::text[]
              AND l.status = 'active'""",
        category,
        containing_codes(area),
    )
    return [_candidate(r) for r in rows]


def containing_codes(area: str) -> list[str]:
    """Every code a coverage must list to contain ``area``: all its string prefixes, the empty
    one and the area itself included. ``coverage && containing_codes(area)`` is then exactly
    ``exists c in coverage: starts_with(area, c)``, whatever the codes look like."""
    return [area[:n] for n in range(len(area) + 1)]


def effective_capacity(capacity: ev.Capacity, held_slots: int) -> ev.CapacityStatus:
    """The provider's capacity less the slots our accepted referrals hold since its last update."""
    return _effective_capacity(capacity.status, capacity.open_slots, held_slots)


def _effective_capacity(
    status: ev.CapacityStatus, open_slots: int | None, held_slots: int
) -> ev.CapacityStatus:
    if open_slots is not None and held_slots >= open_slots:
        return ev.CapacityStatus.NO_CAPACITY
    return status


async def hold_slot(conn: DbConnection, service_id: str, delta: int) -> None:
    await conn.execute(
        "UPDATE listings SET held_slots = greatest(held_slots + $2, 0) WHERE service_id = $1",
        service_id,
        delta,
    )


def _candidate(row: Record) -> Candidate:
    """A candidate from the row of ``candidates_for`` (unpacked by position: this runs for every
    candidate of every need). Only the eligibility is parsed, once per distinct one: parsing
    every candidate's whole listing was most of a lookup's time."""
    (
        service_id, agency_id, status, categories, coverage_areas, languages, capacity,
        open_slots, held_slots, eligibility, sla_hours, agency_type, answer_rate, median_hours,
    ) = row  # fmt: skip
    return Candidate(
        service_id=service_id,
        agency_id=agency_id,
        agency_type=_AGENCY_TYPES[agency_type] if agency_type else None,
        status=_LISTING_STATUSES[status],
        categories=tuple(categories),
        coverage_areas=tuple(coverage_areas),
        languages=tuple(languages),
        capacity=_effective_capacity(_CAPACITY_STATUSES[capacity], open_slots, held_slots),
        eligibility=_eligibility(eligibility),
        answer_rate=answer_rate,
        sla_hours=sla_hours,
        median_hours_to_decide=median_hours,
    )


# By value, as the enums' constructors would find them (a dict look-up is much cheaper).
_AGENCY_TYPES = {t.value: t for t in ev.AgencyType}
_LISTING_STATUSES = {s.value: s for s in ev.ListingStatus}
_CAPACITY_STATUSES = {c.value: c for c in ev.CapacityStatus}


@lru_cache(maxsize=4096)
def _eligibility(json_text: str) -> ev.Eligibility:
    """Parsed once per distinct eligibility: most listings share a few (the model is frozen, so
    sharing one instance is safe)."""
    return ev.Eligibility.model_validate_json(json_text)
