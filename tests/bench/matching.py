"""Micro-benchmark of matching one need: the referral service's own lookup and ranking
(``ReferralStore.candidates`` then ``matching.best``, exactly what ``routing.route_need`` runs)
against a realistic directory in a scratch schema of the referral database.

The directory: listings over a hierarchical P-code tree of several countries (country ``SN``,
region ``SN03``, district ``SN0305``; returnees' areas go down to communes ``SN030512``), national,
regional and district coverage, several categories each, mixed status, capacity and eligibility,
a few hundred provider agencies of every type, and a referral history (decisions, expiries,
cancellations) so the providers' answer statistics are not trivial. The schema is migrated with
the referral migrations exactly as the service migrates its database, and dropped at the end.

    .venv/bin/python -m tests.bench.matching --database-url "$REFERRAL_DATABASE_URL"

prints ``{"listings": …, "queries": …, "p50_ms": …, "p95_ms": …, "p99_ms": …,
"mean_candidates": …, …}``. Everything is drawn from a seeded generator: two runs with the same
options build the same directory and ask the same questions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from services.referral import directory, matching
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts.taxonomy import TAXONOMY, BeneficiaryType, Vulnerability
from shared.db import DbConnection
from shared.db.batch_scope import batch_scope
from shared.db.migrations import migrate_service
from shared.logging import configure_logging

REFERRAL_MIGRATIONS = Path(directory.__file__).parent / "migrations"

# Country -> languages spoken there (ISO 639-1), and the size of its tree.
COUNTRIES: dict[str, tuple[str, ...]] = {
    "SN": ("fr", "wo", "ff"),
    "GN": ("fr", "ff"),
    "ML": ("fr", "bm"),
    "GM": ("en", "wo"),
    "NG": ("en", "yo", "ha"),
    "GH": ("en", "tw"),
}
REGIONS_PER_COUNTRY = (6, 14)
DISTRICTS_PER_REGION = (3, 9)
COMMUNES_PER_DISTRICT = 12
AGENCIES_PER_LISTINGS = 25  # a provider runs ~25 services: 400 agencies for 10,000 listings
REFERRALS_PER_LISTING = 2  # history behind the answer statistics
HISTORY_BATCH = 200
WARM_UP_QUERIES = 50
# Needs per consumer batch in the batched timing: a batch of 200 events holds ~100 cases' needs.
BATCH_NEEDS = 100

# What a referral ended as, with weights: decided (answered or expired) and still open.
_HISTORY: tuple[tuple[str, int], ...] = (
    ("requested", 8),
    ("received", 5),
    ("accepted", 10),
    ("in_progress", 10),
    ("on_hold", 2),
    ("completed", 25),
    ("failed", 3),
    ("rejected", 15),
    ("expired", 12),
    ("cancelled", 8),
    ("entered_in_error", 2),
)
_DECIDED_BY = {  # the decision in each final state's history, if any
    "accepted": "accepted",
    "in_progress": "accepted",
    "on_hold": "accepted",
    "completed": "accepted",
    "failed": "accepted",
    "rejected": "rejected",
}


@dataclass(frozen=True, slots=True)
class AreaTree:
    """Countries -> regions -> districts; communes exist only as return areas."""

    regions: dict[str, list[str]]
    districts: dict[str, list[str]]

    @classmethod
    def draw(cls, rng: random.Random) -> AreaTree:
        regions = {
            c: [f"{c}{r:02d}" for r in range(1, rng.randint(*REGIONS_PER_COUNTRY) + 1)]
            for c in COUNTRIES
        }
        districts = {
            r: [f"{r}{d:02d}" for d in range(1, rng.randint(*DISTRICTS_PER_REGION) + 1)]
            for rs in regions.values()
            for r in rs
        }
        return cls(regions, districts)

    def districts_of(self, country: str) -> list[str]:
        return [d for r in self.regions[country] for d in self.districts[r]]

    def return_area(self, rng: random.Random) -> str:
        """Mostly a district or a commune in it; sometimes only the region is known."""
        country = rng.choice(list(COUNTRIES))
        district = rng.choice(self.districts_of(country))
        roll = rng.random()
        if roll < 0.1:
            return district[:4]
        if roll < 0.4:
            return f"{district}{rng.randint(1, COMMUNES_PER_DISTRICT):02d}"
        return district


@dataclass(frozen=True, slots=True)
class Agency:
    agency_id: str
    type: ev.AgencyType
    country: str
    median_hours: float  # how fast it usually decides
    expiry_share: float  # how often it lets referrals expire


@dataclass(frozen=True, slots=True)
class Question:
    need: ev.Need
    profile: ev.Profile
    consent: ev.Consent


def _categories() -> list[str]:
    return sorted(TAXONOMY.categories)


def _category_weights(categories: list[str]) -> list[float]:
    """A few categories are common (counselling, jobs, health), most are rarer."""
    return [1.0 / (1 + i % 7) for i in range(len(categories))]


def draw_agencies(rng: random.Random, count: int) -> list[Agency]:
    types = list(ev.AgencyType)
    return [
        Agency(
            agency_id=f"bench-{i:04d}",
            type=rng.choices(types, weights=[1, 3, 8, 2, 1])[0],
            country=rng.choice(list(COUNTRIES)),
            median_hours=rng.lognormvariate(3.0, 1.0),
            expiry_share=rng.choice([0.0, 0.05, 0.1, 0.3, 0.6]),
        )
        for i in range(count)
    ]


def _coverage(rng: random.Random, tree: AreaTree, country: str) -> list[str]:
    roll = rng.random()
    if roll < 0.12:  # national, sometimes in two countries
        extra = rng.choice(list(COUNTRIES)) if rng.random() < 0.2 else country
        return sorted({country, extra})
    if roll < 0.45:  # one to three regions
        regions = tree.regions[country]
        return rng.sample(regions, min(len(regions), rng.randint(1, 3)))
    districts = tree.districts_of(country)  # one to five districts
    return rng.sample(districts, min(len(districts), rng.randint(1, 5)))


def _eligibility(rng: random.Random) -> ev.Eligibility:
    roll = rng.random()
    vulnerabilities = list(Vulnerability)
    if roll < 0.55:
        return ev.Eligibility()
    if roll < 0.65:
        return ev.Eligibility(minimum_age=18)
    if roll < 0.70:
        return ev.Eligibility(maximum_age=17)
    if roll < 0.78:
        return ev.Eligibility(sexes=[ev.Sex.FEMALE])
    if roll < 0.85:
        return ev.Eligibility(
            beneficiary_types=[BeneficiaryType.RETURNEE, BeneficiaryType.COMMUNITY_MEMBER]
        )
    if roll < 0.88:
        return ev.Eligibility(beneficiary_types=[BeneficiaryType.COMMUNITY_MEMBER])
    return ev.Eligibility(
        minimum_age=rng.choice([None, 16, 18]),
        vulnerability_specialisations=rng.sample(vulnerabilities, rng.randint(1, 3)),
    )


def _capacity(rng: random.Random) -> ev.Capacity:
    roll = rng.random()
    if roll < 0.45:
        return ev.Capacity(status=ev.CapacityStatus.HAS_CAPACITY)
    if roll < 0.70:
        return ev.Capacity(status=ev.CapacityStatus.HAS_CAPACITY, open_slots=rng.randint(1, 40))
    if roll < 0.88:
        return ev.Capacity(status=ev.CapacityStatus.WAITLIST)
    return ev.Capacity(status=ev.CapacityStatus.NO_CAPACITY)


def _listing(rng: random.Random, tree: AreaTree, agency: Agency, index: int) -> ev.ServiceListing:
    categories = _categories()
    chosen = set(rng.choices(categories, weights=_category_weights(categories), k=3))
    picked = sorted(chosen)[: rng.randint(1, len(chosen))]
    languages = list(COUNTRIES[agency.country])
    status = rng.choices(list(ev.ListingStatus), weights=[92, 5, 3])[0]
    return ev.ServiceListing(
        service_id=f"svc-{index:06d}",
        agency_id=agency.agency_id,
        name=f"Service {index}",
        status=status,
        categories=picked,
        service_areas=_coverage(rng, tree, agency.country),
        languages=rng.sample(languages, rng.randint(1, len(languages))),
        eligibility=_eligibility(rng),
        capacity=_capacity(rng),
        acceptance_sla_hours=rng.choice([None, None, 24, 72, 24 * 7]),
        assured_date=date(2026, 1, 15),
    )


def draw_question(rng: random.Random, tree: AreaTree, agencies: list[Agency]) -> Question:
    categories = _categories()
    area = tree.return_area(rng)
    country = area[:2]
    category = rng.choices(categories, weights=_category_weights(categories))[0]
    profile = ev.Profile(
        sex=rng.choice([ev.Sex.FEMALE, ev.Sex.MALE, ev.Sex.MALE, ev.Sex.OTHER]),
        age_band=rng.choices(list(ev.AgeBand), weights=[1, 1, 3, 12, 20, 12, 4, 1])[0],
        nationality=country,
        return_country=country,
        return_date=date(2026, 3, 1),
        return_type="voluntary_assisted",
        return_area=area,
        languages=rng.sample(COUNTRIES[country], rng.randint(1, len(COUNTRIES[country]))),
        vulnerabilities=rng.sample(list(Vulnerability), rng.choice([0, 0, 0, 1, 2])),
    )
    return Question(
        need=ev.Need.model_validate({"need_id": "n1", "category": category}),
        profile=profile,
        consent=_consent(rng, category, agencies),
    )


def _consent(rng: random.Random, category: str, agencies: list[Agency]) -> ev.Consent:
    scope: dict[str, Any] = {"purposes": ["referral", "follow_up"]}
    roll = rng.random()
    if roll < 0.10:
        scope["agency_types"] = ["ngo", "government"]
    elif roll < 0.14:
        scope["categories"] = [category]
    elif roll < 0.17:
        scope["agency_ids"] = [a.agency_id for a in rng.sample(agencies, 5)]
    elif roll < 0.19:
        scope["agency_types"] = ["private"]
    return ev.Consent.model_validate(
        {"given": True, "scope": scope, "recorded_at": "2026-01-20T09:30:00Z", "method": "written"}
    )


# ----- loading -----


@asynccontextmanager
async def scratch_schema(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool confined to a fresh schema of the database, migrated as the referral service
    migrates its own (shared plumbing, then the referral migrations); dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, server_settings={"search_path": schema}
    )
    assert pool is not None
    try:
        await migrate_service(pool, "referral", REFERRAL_MIGRATIONS)
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def load_directory(
    conn: DbConnection, rng: random.Random, tree: AreaTree, agencies: list[Agency], n: int
) -> list[ev.ServiceListing]:
    """Agencies and listings through the service's own upserts (what its handlers run)."""
    listings = [_listing(rng, tree, agencies[i % len(agencies)], i) for i in range(n)]
    async with conn.transaction():
        for a in agencies:
            record = ev.AgencyRecord(
                agency_id=a.agency_id, name=a.agency_id, type=a.type, countries=[a.country]
            )
            await ReferralStore(conn).upsert_agency(record)
        for listing in listings:
            await ReferralStore(conn).upsert_listing(listing)
    return listings


async def load_history(
    conn: DbConnection,
    rng: random.Random,
    agencies: list[Agency],
    listings: Sequence[ev.ServiceListing],
    n: int,
) -> None:
    """Past referrals and their transitions, as the service would have written them: bulk
    inserts (the rows are what counts, not how they got there), committed in batches as a
    stream of answers would be (one transaction would leave every row version behind)."""
    by_id = {a.agency_id: a for a in agencies}
    now = datetime.now(UTC)
    for start in range(0, n, HISTORY_BATCH):
        referrals: list[tuple[Any, ...]] = []
        transitions: list[tuple[Any, ...]] = []
        for i in range(start, min(n, start + HISTORY_BATCH)):
            listing = rng.choice(listings)
            agency = by_id[listing.agency_id]
            status = rng.choices([s for s, _ in _HISTORY], weights=[w for _, w in _HISTORY])[0]
            if status in _DECIDED_BY and rng.random() < agency.expiry_share:
                status = "expired"
            rid = uuid.UUID(int=rng.getrandbits(128))
            created = now - timedelta(days=rng.uniform(1, 365))
            referrals.append(
                (rid, f"bench-case-{i}", "n1", listing.categories[0], "bench-referrer",
                 listing.agency_id, listing.service_id, status, created)
            )  # fmt: skip
            transitions += _transitions(rng, rid, status, created, agency)
        async with conn.transaction():
            await conn.copy_records_to_table(
                "referrals",
                records=referrals,
                columns=[
                    "referral_id", "case_id", "need_id", "category", "referring_agency_id",
                    "recipient_agency_id", "service_id", "status", "created_at",
                ],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "referral_transitions",
                records=transitions,
                columns=["referral_id", "from_state", "to_state", "at"],
            )


def _transitions(
    rng: random.Random, rid: uuid.UUID, status: str, created: datetime, agency: Agency
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    at, state = created, "requested"
    if status == "received" or (status != "requested" and rng.random() < 0.5):
        at += timedelta(hours=rng.uniform(0.1, 12))  # acknowledged first
        out.append((rid, state, "received", at))
        state = "received"
    decision = _DECIDED_BY.get(status)
    if decision is not None:
        at += timedelta(hours=rng.lognormvariate(0, 0.7) * agency.median_hours)
        out.append((rid, state, decision, at))
        state = decision
    if status != state:  # what followed: started, completed, expired, cancelled, …
        at += timedelta(hours=rng.uniform(1, 200))
        out.append((rid, state, status, at))
    return out


async def vacuum_schema(conn: DbConnection) -> None:
    """Vacuum and analyse the scratch schema's tables, as autovacuum leaves a directory in use
    (a bulk load leaves dead row versions and GIN pending lists behind)."""
    tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    for t in tables:
        await conn.execute(f'VACUUM ANALYZE "{t["tablename"]}"')


# ----- timing -----


async def time_queries(
    conn: DbConnection, questions: Sequence[Question]
) -> tuple[list[float], list[int], int]:
    """Milliseconds per question for the service's lookup and ranking, candidates per question,
    and how many found a listing."""
    durations: list[float] = []
    sizes: list[int] = []
    matched = 0
    for q in questions:
        started = time.perf_counter()
        candidates = await ReferralStore(conn).candidates(q.need.category, q.profile.return_area)
        chosen = matching.best(q.need, q.profile, q.consent, candidates)
        durations.append((time.perf_counter() - started) * 1000)
        sizes.append(len(candidates))
        matched += isinstance(chosen, matching.Match)
    return durations, sizes, matched


async def time_batched_queries(
    conn: DbConnection, questions: Sequence[Question], batch: int = BATCH_NEEDS
) -> list[float]:
    """Milliseconds per question as a consumer batch pays it: the candidates of ``batch``
    questions read in one query (``ReferralStore.preload_candidates``, as referral does for a
    batch's cases), that query's time shared equally, plus each question's own ranking."""
    durations: list[float] = []
    for start in range(0, len(questions), batch):
        chunk = questions[start : start + batch]
        async with batch_scope(conn):
            store = ReferralStore(conn)
            started = time.perf_counter()
            await store.preload_candidates(
                {(q.need.category, q.profile.return_area) for q in chunk}
            )
            shared_ms = (time.perf_counter() - started) * 1000 / len(chunk)
            for q in chunk:
                started = time.perf_counter()
                candidates = await store.candidates(q.need.category, q.profile.return_area)
                matching.best(q.need, q.profile, q.consent, candidates)
                durations.append(shared_ms + (time.perf_counter() - started) * 1000)
    return durations


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


async def benchmark_matching(
    database_url: str,
    *,
    listings: int = 10_000,
    queries: int = 2_000,
    seed: int = 1,
    referrals: int | None = None,
) -> dict[str, Any]:
    """Build the directory in a scratch schema of ``database_url`` (the referral database, or
    any database the role may create a schema in), time ``queries`` random needs, drop it."""
    rng = random.Random(seed)
    tree = AreaTree.draw(rng)
    agencies = draw_agencies(rng, max(10, listings // AGENCIES_PER_LISTINGS))
    history = REFERRALS_PER_LISTING * listings if referrals is None else referrals
    async with scratch_schema(database_url) as pool, pool.acquire() as conn:
        loaded = await load_directory(conn, rng, tree, agencies, listings)
        await load_history(conn, rng, agencies, loaded, history)
        await vacuum_schema(conn)
        del loaded
        warm_up = [draw_question(rng, tree, agencies) for _ in range(WARM_UP_QUERIES)]
        await time_queries(conn, warm_up)  # plans, prepared statements, caches
        questions = [draw_question(rng, tree, agencies) for _ in range(queries)]
        # What the benchmark itself built is not the service's heap: keep the collector's
        # full passes over it out of the timings.
        gc.collect()
        gc.freeze()
        try:
            durations, sizes, matched = await time_queries(conn, questions)
            batched = await time_batched_queries(conn, questions)
        finally:
            gc.unfreeze()
    return {
        "listings": listings,
        "queries": queries,
        "p50_ms": round(percentile(durations, 50), 3),
        "p95_ms": round(percentile(durations, 95), 3),
        "p99_ms": round(percentile(durations, 99), 3),
        "mean_candidates": round(statistics.fmean(sizes), 1),
        "max_ms": round(max(durations), 3),
        # the same questions, BATCH_NEEDS at a time, as referral's consumer asks them
        "batched_p50_ms": round(percentile(batched, 50), 3),
        "batched_p99_ms": round(percentile(batched, 99), 3),
        "batch_needs": BATCH_NEEDS,
        "referrals": history,
        "matched_share": round(matched / queries, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("REFERRAL_DATABASE_URL"))
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--referrals", type=int, default=None)
    args = parser.parse_args()
    configure_logging("bench", "WARNING")  # stdout carries the result only
    if not args.database_url:
        parser.error("--database-url (or REFERRAL_DATABASE_URL) is required")
    result = asyncio.run(
        benchmark_matching(
            args.database_url,
            listings=args.listings,
            queries=args.queries,
            seed=args.seed,
            referrals=args.referrals,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
