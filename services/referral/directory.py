"""The materialised directory: listings and agencies upserted from their compacted topics."""

from __future__ import annotations

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
             listing = EXCLUDED.listing, updated_at = now()
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
    """Active listings of the category whose coverage contains the area (prefix match)."""
    rows = await conn.fetch(
        """SELECT service_id, agency_id, coverage_areas, languages, capacity FROM listings
           WHERE status = 'active' AND categories @> ARRAY[$1]::text[]
             AND EXISTS (SELECT 1 FROM unnest(coverage_areas) a WHERE starts_with($2, a))""",
        category,
        area,
    )
    return [
        Candidate(
            r["service_id"],
            r["agency_id"],
            tuple(r["coverage_areas"]),
            tuple(r["languages"]),
            ev.CapacityStatus(r["capacity"]),
        )
        for r in rows
    ]
