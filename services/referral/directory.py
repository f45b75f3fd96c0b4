"""The materialised directory: listings and agencies upserted from their compacted topics."""

from __future__ import annotations

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
    """Listings of the category whose coverage contains the area (prefix match), with their
    agency's type and its record of answering referrals (share not left to expire)."""
    rows = await conn.fetch(
        """SELECT l.service_id, l.agency_id, l.listing, l.held_slots, a.type AS agency_type,
                  (SELECT avg(CASE WHEN r.status = 'expired' THEN 0 ELSE 1 END)
                     FROM referrals r
                    WHERE r.recipient_agency_id = l.agency_id
                      AND r.status NOT IN ('requested', 'cancelled', 'entered_in_error')
                  ) AS answer_rate,
                  (SELECT percentile_cont(0.5) WITHIN GROUP (
                              ORDER BY extract(epoch FROM t.at - r.created_at) / 3600)
                     FROM referrals r JOIN referral_transitions t USING (referral_id)
                    WHERE r.recipient_agency_id = l.agency_id
                      AND t.to_state IN ('accepted', 'rejected')
                  ) AS median_hours_to_decide
             FROM listings l LEFT JOIN agencies a USING (agency_id)
            WHERE l.categories @> ARRAY[$1]::text[]
              AND EXISTS (SELECT 1 FROM unnest(l.coverage_areas) c WHERE starts_with($2, c))""",
        category,
        area,
    )
    return [_candidate(r) for r in rows]


def effective_capacity(capacity: ev.Capacity, held_slots: int) -> ev.CapacityStatus:
    """The provider's capacity less the slots our accepted referrals hold since its last update."""
    if capacity.open_slots is not None and held_slots >= capacity.open_slots:
        return ev.CapacityStatus.NO_CAPACITY
    return capacity.status


async def hold_slot(conn: DbConnection, service_id: str, delta: int) -> None:
    await conn.execute(
        "UPDATE listings SET held_slots = greatest(held_slots + $2, 0) WHERE service_id = $1",
        service_id,
        delta,
    )


def _candidate(row: Record) -> Candidate:
    listing = ev.ServiceListing.model_validate_json(row["listing"])
    return Candidate(
        service_id=listing.service_id,
        agency_id=listing.agency_id,
        agency_type=ev.AgencyType(row["agency_type"]) if row["agency_type"] else None,
        status=listing.status,
        categories=tuple(listing.categories),
        coverage_areas=tuple(listing.service_areas),
        languages=tuple(listing.languages),
        capacity=effective_capacity(listing.capacity, row["held_slots"]),
        eligibility=listing.eligibility,
        answer_rate=float(row["answer_rate"]) if row["answer_rate"] is not None else None,
        sla_hours=listing.acceptance_sla_hours,
        median_hours_to_decide=(
            float(row["median_hours_to_decide"])
            if row["median_hours_to_decide"] is not None
            else None
        ),
    )
