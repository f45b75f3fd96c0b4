"""The materialised directory as matching reads it: a listing row as a candidate, the codes a
coverage must list to contain an area, capacity less held slots. Pure (the store reads the rows)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from shared.contracts import events as ev
from shared.contracts.taxonomy import Level

from .matching import Candidate


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


def candidate(row: Any) -> Candidate:
    """A candidate from a row of the store's candidate columns (a record or a tuple, unpacked by
    position: this runs for every candidate of every need). Only the eligibility is parsed,
    once per distinct one: parsing every candidate's whole listing was most of a lookup's
    time."""
    (
        service_id, agency_id, status, categories, coverage_areas, languages, capacity,
        open_slots, held_slots, eligibility, sla_hours, agency_type, answer_rate, median_hours,
        levels,
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
        levels=_levels(levels),
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


_INDIVIDUAL = frozenset({Level.INDIVIDUAL})


@lru_cache(maxsize=64)
def _levels(json_text: str | None) -> frozenset[Level]:
    """The listing's levels (a JSON list; none for a row written before migration 0010)."""
    if json_text is None:
        return _INDIVIDUAL
    return frozenset(Level(v) for v in json.loads(json_text))
