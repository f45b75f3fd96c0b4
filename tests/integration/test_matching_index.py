"""Matching's indexed lookup (migration 0006) on the real PostgreSQL: on a realistic directory,
and after referrals changed state through the service's own code, it finds exactly the
candidates, answer statistics and choices of the straightforward query it replaced."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

import asyncpg
import pytest
from asyncpg import Record

from services.referral import directory, routing
from services.referral.lifecycle import ANSWERS, REROUTED_FROM, can_cancel, can_expire
from services.referral.matching import Candidate, best, rank
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection
from shared.db.batch_scope import batch_scope
from shared.db.migrations import SHARED_MIGRATIONS, Migration, discover, migrate
from tests.bench import matching as bench
from tests.unit.test_matching import reference_rank

# The lookup as it was before migration 0006: every listing of the category tested against the
# area, two aggregates over the agency's whole referral history per listing, every listing's
# document parsed.
REFERENCE_SQL = """
SELECT l.service_id, l.agency_id, l.listing, l.held_slots, a.type AS agency_type,
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
   AND EXISTS (SELECT 1 FROM unnest(l.coverage_areas) c WHERE starts_with($2, c))"""

REFERENCE_STATS_SQL = """
SELECT g.agency_id,
       (SELECT avg(CASE WHEN r.status = 'expired' THEN 0 ELSE 1 END) FROM referrals r
         WHERE r.recipient_agency_id = g.agency_id
           AND r.status NOT IN ('requested', 'cancelled', 'entered_in_error')) AS answer_rate,
       (SELECT percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM t.at - r.created_at) / 3600)
          FROM referrals r JOIN referral_transitions t USING (referral_id)
         WHERE r.recipient_agency_id = g.agency_id
           AND t.to_state IN ('accepted', 'rejected')) AS median_hours_to_decide
  FROM (SELECT agency_id FROM listings UNION SELECT recipient_agency_id FROM referrals) g
 WHERE g.agency_id IS NOT NULL"""

POLICY = routing.RoutingPolicy(max_attempts=3)


def _reference_candidate(row: Record) -> Candidate:
    listing = ev.ServiceListing.model_validate_json(row["listing"])
    return Candidate(
        service_id=listing.service_id,
        agency_id=listing.agency_id,
        agency_type=ev.AgencyType(row["agency_type"]) if row["agency_type"] else None,
        status=listing.status,
        categories=tuple(listing.categories),
        coverage_areas=tuple(listing.service_areas),
        languages=tuple(listing.languages),
        capacity=directory.effective_capacity(listing.capacity, row["held_slots"]),
        eligibility=listing.eligibility,
        answer_rate=float(row["answer_rate"]) if row["answer_rate"] is not None else None,
        sla_hours=listing.acceptance_sla_hours,
        median_hours_to_decide=(
            float(row["median_hours_to_decide"])
            if row["median_hours_to_decide"] is not None
            else None
        ),
    )


async def reference_candidates(conn: DbConnection, category: str, area: str) -> list[Candidate]:
    return [_reference_candidate(r) for r in await conn.fetch(REFERENCE_SQL, category, area)]


def _by_id(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: c.service_id)


async def assert_same_as_reference(
    conn: DbConnection, questions: list[bench.Question], rng: random.Random
) -> int:
    """Same active candidates (all fields, floats to the bit), and the same ranking and choice
    as the reference makes of all its candidates; returns how many questions found a listing
    (so a test can tell it compared real choices)."""
    matched = 0
    asked = {(q.need.category, q.profile.return_area) for q in questions}
    async with batch_scope(conn):  # all questions at once, as a consumer batch loads them
        store = ReferralStore(conn)
        await store.preload_candidates(asked)
        batched = {question: await store.candidates(*question) for question in asked}
    for q in questions:
        category, area = q.need.category, q.profile.return_area
        found = await ReferralStore(conn).candidates(category, area)
        expected = await reference_candidates(conn, category, area)
        active = [c for c in expected if c.status is ev.ListingStatus.ACTIVE]
        assert _by_id(found) == _by_id(active), (category, area)
        assert _by_id(batched[(category, area)]) == _by_id(active), (category, area)
        tried = frozenset(c.service_id for c in expected if rng.random() < 0.2)
        ranked = reference_rank(q.need, q.profile, q.consent, expected, exclude_services=tried)
        assert rank(q.need, q.profile, q.consent, found, exclude_services=tried) == ranked
        chosen = best(q.need, q.profile, q.consent, found, exclude_services=tried)
        assert chosen == (ranked[0] if isinstance(ranked, list) else ranked)
        matched += isinstance(ranked, list)
    return matched


async def assert_stats_as_reference(conn: DbConnection) -> int:
    """Every agency's kept statistics equal the aggregates over its whole history; returns how
    many agencies have a median (so a test can tell the history was not trivial)."""
    kept = {
        r["agency_id"]: (r["answer_rate"], r["median_hours_to_decide"])
        for r in await conn.fetch(
            "SELECT agency_id, answer_rate, median_hours_to_decide FROM matching_agencies"
        )
    }
    with_median = 0
    for r in await conn.fetch(REFERENCE_STATS_SQL):
        rate = float(r["answer_rate"]) if r["answer_rate"] is not None else None
        median = r["median_hours_to_decide"]
        assert kept.get(r["agency_id"], (None, None)) == (rate, median), r["agency_id"]
        with_median += median is not None
    return with_median


@asynccontextmanager
async def referral_schema(
    database_url: str, migrations: list[Migration] | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh schema of the referral database with the shared and referral
    migrations (or only those given) applied; the schema is dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=4, server_settings={"search_path": schema}
    )
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await migrate(conn, migrations if migrations is not None else _all_migrations())
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


def _all_migrations() -> list[Migration]:
    return discover("shared", SHARED_MIGRATIONS) + discover("referral", bench.REFERRAL_MIGRATIONS)


@pytest.fixture
async def pool(database_urls: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    async with referral_schema(database_urls["referral"]) as p:
        yield p


class World:
    """A realistic directory (the benchmark's generator, smaller) plus its odd corners."""

    def __init__(self, seed: int, listings: int = 1_200) -> None:
        self.rng = random.Random(seed)
        self.tree = bench.AreaTree.draw(self.rng)
        self.agencies = bench.draw_agencies(self.rng, 50)
        self.size = listings
        self.listings: list[ev.ServiceListing] = []

    async def load(self, conn: DbConnection, history: int) -> None:
        self.listings = await bench.load_directory(
            conn, self.rng, self.tree, self.agencies, self.size
        )
        await bench.load_history(conn, self.rng, self.agencies, self.listings, history)

    async def odd_corners(self, conn: DbConnection) -> None:
        """A provider no agency record names, agencies of a new type, changed and withdrawn
        listings, exhausted slots."""
        for agency in self.rng.sample(self.agencies, 5):
            record = ev.AgencyRecord(
                agency_id=agency.agency_id,
                name=agency.agency_id,
                type=ev.AgencyType.PRIVATE
                if agency.type is not ev.AgencyType.PRIVATE
                else ev.AgencyType.NGO,
                countries=[agency.country],
            )
            await ReferralStore(conn).upsert_agency(record)
        unknown = ev.ServiceListing(
            service_id="svc-unknown-agency",
            agency_id="not-registered",
            name="Unknown",
            categories=["psychosocial.counselling", "social.housing"],
            service_areas=["SN", "GM01"],
            assured_date=date(2026, 1, 15),
        )
        await ReferralStore(conn).upsert_listing(unknown)
        for listing in self.rng.sample(self.listings, 40):  # new areas and categories
            categories = {*listing.categories, "social.transport"}
            changed = ev.ServiceListing.model_validate(
                {
                    **listing.model_dump(),
                    "categories": sorted(categories, reverse=True),
                    "service_areas": [self.tree.return_area(self.rng)[:4]],
                }
            )
            await ReferralStore(conn).upsert_listing(changed)
        for listing in self.rng.sample(self.listings, 20):
            await ReferralStore(conn).withdraw_listing(listing.service_id, listing.agency_id)
        for listing in self.listings:
            slots = listing.capacity.open_slots
            if slots is not None and self.rng.random() < 0.3:
                await conn.execute(
                    "UPDATE listings SET held_slots = held_slots + $2 WHERE service_id = $1",
                    listing.service_id,
                    slots,
                )

    def questions(self, n: int) -> list[bench.Question]:
        out = [bench.draw_question(self.rng, self.tree, self.agencies) for _ in range(n)]
        # a country, a region, an area of a country with no listing at all
        for area in ("SN", "GM01", "FR0101"):
            q = out[self.rng.randrange(n)]
            profile = q.profile.model_copy(update={"return_area": area, "return_country": area[:2]})
            out.append(bench.Question(q.need, profile, q.consent))
        return out


async def drive_referrals(pool: asyncpg.Pool, world: World, n: int) -> int:
    """Refer ``n`` needs and walk each referral through its lifecycle as the handlers and the
    deadline worker do (answers, expiry and re-routing, cancellation, an operator's
    entered-in-error), one transaction per step; returns how many steps changed a state."""
    steps = 0
    for i, q in enumerate(world.questions(n)[:n]):
        case = ev.CaseRegistered(
            case_id=f"case-{i}",
            submitting_agency_id="iom-sn",
            profile=q.profile,
            needs=[q.need],
            consent=q.consent,
        )
        async with pool.acquire() as conn, conn.transaction():
            await ReferralStore(conn).save_case(case)
            await routing.route_need(ReferralStore(conn), case, q.need, POLICY, correlation_id=None)
        for _ in range(world.rng.randint(1, 5)):
            async with pool.acquire() as conn, conn.transaction():
                steps += await _step(conn, case.case_id, world.rng)
    return steps


async def _step(conn: DbConnection, case_id: str, rng: random.Random) -> int:
    row = await conn.fetchrow(
        "SELECT referral_id FROM referrals WHERE case_id = $1 ORDER BY attempt DESC LIMIT 1",
        case_id,
    )
    ref = await ReferralStore(conn).load_referral(str(row["referral_id"])) if row else None
    if ref is None:
        return 0
    # Decisions some hours after the referral: the median is then not trivially ~0.
    await conn.execute(
        "UPDATE referrals SET created_at = created_at - make_interval(hours => $2)"
        " WHERE referral_id = $1 AND status = 'requested'",
        uuid.UUID(ref.referral_id),
        rng.randint(1, 300),
    )
    options = list(ANSWERS.get(ref.status, {}).values())
    if can_expire(ref.status):
        options.append(S.EXPIRED)
    if can_cancel(ref.status):
        options.append(S.CANCELLED)
    if ref.status is not S.ENTERED_IN_ERROR and rng.random() < 0.05:
        options = [S.ENTERED_IN_ERROR]
    if not options:
        return 0
    target = rng.choice(options)
    reason = ReasonCode.NO_RESPONSE if target is S.EXPIRED else None
    await routing.transition(ReferralStore(conn), ref, target, reason=reason)
    if target in REROUTED_FROM:
        await routing.reroute(ReferralStore(conn), ref, POLICY)
    return 1


async def test_indexed_lookup_finds_what_the_straightforward_query_finds(
    pool: asyncpg.Pool,
) -> None:
    world = World(seed=11)
    async with pool.acquire() as conn:
        await world.load(conn, history=2_500)
        await world.odd_corners(conn)
        await conn.execute("ANALYZE")
        assert await assert_stats_as_reference(conn) > 20
        matched = await assert_same_as_reference(conn, world.questions(250), world.rng)
    assert matched > 100

    assert await drive_referrals(pool, world, 120) > 150

    async with pool.acquire() as conn:
        assert await assert_stats_as_reference(conn) > 20
        await assert_same_as_reference(conn, world.questions(250), world.rng)


async def test_lookup_uses_the_matching_index(pool: asyncpg.Pool) -> None:
    world = World(seed=12)
    async with pool.acquire() as conn:
        await world.load(conn, history=200)
        await conn.execute("ANALYZE")
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT service_id FROM listings"
            " WHERE categories @> ARRAY[$1]::text[] AND coverage_areas && $2::text[]",
            "psychosocial.counselling",
            directory.containing_codes(world.tree.districts_of("SN")[0]),
        )
    assert '"Index Name": "listings_matching"' in plan


async def test_migration_back_fills_the_statistics_of_an_existing_history(
    database_urls: dict[str, str],
) -> None:
    migrations = _all_migrations()
    before = [m for m in migrations if m.version < "referral/0006"]
    world = World(seed=13, listings=600)
    async with referral_schema(database_urls["referral"], before) as pool:
        async with pool.acquire() as conn:
            await world.load(conn, history=1_500)
            assert await conn.fetchval("SELECT to_regclass('matching_agencies')") is None
            assert await migrate(conn, migrations) != []
            assert await assert_stats_as_reference(conn) > 20
            await assert_same_as_reference(conn, world.questions(100), world.rng)
        await drive_referrals(pool, world, 40)
        async with pool.acquire() as conn:
            assert await assert_stats_as_reference(conn) > 20


async def test_concurrent_decisions_of_one_agency_keep_its_median_exact(
    pool: asyncpg.Pool,
) -> None:
    """Two transactions decide referrals of one agency at once (received -> accepted and
    received -> rejected change neither count): the one that commits last must compute the
    median with the other's decision in it, not overwrite it with one that misses it."""
    async with pool.acquire() as conn:
        for n, hours in ((1, 10), (2, 30)):
            await conn.execute(
                """INSERT INTO referrals (referral_id, case_id, need_id, category,
                       referring_agency_id, recipient_agency_id, service_id, status, created_at)
                   VALUES ($1, $2, 'n1', 'social.housing', 'iom-sn', 'ngo-a', 'svc-a',
                           'received', now() - make_interval(hours => $3))""",
                uuid.UUID(int=n),
                f"case-{n}",
                hours,
            )

    async def decide(conn: DbConnection, n: int, to: S) -> None:
        ref = await ReferralStore(conn).load_referral(str(uuid.UUID(int=n)))
        assert ref is not None
        await routing.transition(ReferralStore(conn), ref, to)

    async with pool.acquire() as first, pool.acquire() as second:
        one, other = first.transaction(), second.transaction()
        await one.start()
        await other.start()
        await decide(first, 1, S.ACCEPTED)
        late = asyncio.create_task(decide(second, 2, S.REJECTED))
        await asyncio.sleep(0.5)
        assert not late.done()  # it waits for the agency's row
        await one.commit()
        await late
        await other.commit()
    async with pool.acquire() as conn:
        assert await assert_stats_as_reference(conn) == 1
        median = await conn.fetchval(
            "SELECT median_hours_to_decide FROM matching_agencies WHERE agency_id = 'ngo-a'"
        )
    assert 19.9 < median < 20.1  # of 10 and 30 hours
