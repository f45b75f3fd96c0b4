"""The benchmark's world: a hierarchical area tree over several countries, referring agencies
and provider agencies registered as an operator does, at least 2,000 listings spread over the
tree, and case submissions of 1-3 needs drawn from the taxonomy.

Everything is drawn from a seeded generator, so two runs with the same options send the same
shape of traffic (ids differ: each run registers its own agencies)."""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from nacl.public import PrivateKey

from shared.contracts import events as ev
from shared.contracts.envelope import OutgoingEvent
from shared.contracts.taxonomy import TAXONOMY
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.bench.matching import COUNTRIES  # one country/language table for the bench
from tests.chaos.traffic import Agency
from tests.e2e.kafka_helpers import register_agency_access

REGIONS_PER_COUNTRY = 8
DISTRICTS_PER_REGION = 6
AGE_BANDS = ("18-24", "25-34", "35-49", "50-64")


@dataclass(frozen=True)
class AreaTree:
    """P-code style: country ``SN``, region ``SN03``, district ``SN0305``."""

    countries: tuple[str, ...] = tuple(COUNTRIES)

    def regions(self, country: str) -> list[str]:
        return [f"{country}{r:02d}" for r in range(1, REGIONS_PER_COUNTRY + 1)]

    def districts(self, region: str) -> list[str]:
        return [f"{region}{d:02d}" for d in range(1, DISTRICTS_PER_REGION + 1)]

    def all_districts(self) -> list[str]:
        return [d for c in self.countries for r in self.regions(c) for d in self.districts(r)]


@dataclass
class World:
    run_id: str
    tree: AreaTree
    referrers: list[Agency]  # with their own credentials and producers
    provider_ids: list[str]
    country_of: dict[str, str]  # agency id -> the country it works in
    listings: list[ev.ServiceListing] = field(default_factory=list)

    @property
    def agency_ids(self) -> list[str]:
        return [a.agency_id for a in self.referrers] + self.provider_ids


def categories() -> list[str]:
    return sorted(TAXONOMY.categories)


def public_key() -> str:
    return base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()


def listing_for(
    provider_id: str, country: str, tree: AreaTree, rng: random.Random
) -> ev.ServiceListing:
    """National (15 %), regional (35 %) or district (50 %) coverage, a few categories, mostly
    open capacity, sometimes an eligibility restriction."""
    region = rng.choice(tree.regions(country))
    scope = rng.random()
    if scope < 0.15:
        areas = [country]
    elif scope < 0.5:
        areas = rng.sample(tree.regions(country), k=rng.randint(1, 2))
    else:
        areas = rng.sample(tree.districts(region), k=rng.randint(1, 3))
    eligibility: dict[str, object] = {}
    if rng.random() < 0.2:
        eligibility["minimum_age"] = 18
        eligibility["maximum_age"] = rng.choice([35, 64])
    if rng.random() < 0.1:
        eligibility["sexes"] = [rng.choice(["female", "male"])]
    return f.listing(
        provider_id,
        categories=rng.sample(categories(), k=rng.randint(1, 3)),
        service_areas=areas,
        languages=list(COUNTRIES[country][: rng.randint(1, 2)]),
        capacity={"status": rng.choices(["has_capacity", "waitlist"], weights=[9, 1])[0]},
        eligibility=eligibility,
    )


async def build_world(
    kafka: KafkaConnection,
    *,
    referrers: int,
    providers: int,
    listings: int,
    seed: int,
) -> World:
    """Register the agencies (topics, principals, ACLs) as the operator does, publish their
    registry records and the listings, and start the referrers' own producers."""
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:6]
    tree = AreaTree()
    countries = list(tree.countries)
    referrer_agencies: list[Agency] = []
    for n in range(referrers):
        agency_id = f"bench-{run_id}-ref{n:02d}"
        referrer_agencies.append(Agency(agency_id, await register_agency_access(kafka, agency_id)))
    provider_ids = [f"bench-{run_id}-pro{n:03d}" for n in range(providers)]
    country_of = {
        a: countries[n % len(countries)]
        for group in ([r.agency_id for r in referrer_agencies], provider_ids)
        for n, a in enumerate(group)
    }
    # Providers only receive: their topics and ACLs are needed, their producers are not.
    semaphore = asyncio.Semaphore(4)

    async def register(agency_id: str) -> None:
        async with semaphore:
            await register_agency_access(kafka, agency_id)

    await asyncio.gather(*(register(p) for p in provider_ids))
    world = World(run_id, tree, referrer_agencies, provider_ids, country_of)
    world.listings = [
        listing_for(p, country_of[p], tree, rng)
        for p in (provider_ids[n % providers] for n in range(listings))
    ]
    records: list[OutgoingEvent] = [
        f.agency_event(
            ev.AgencyRecord(
                agency_id=a.agency_id,
                name=a.agency_id,
                type=ev.AgencyType.UN_AGENCY,
                countries=[country_of[a.agency_id]],
            )
        )
        for a in referrer_agencies
    ]
    records += [
        f.agency_event(
            ev.AgencyRecord(
                agency_id=p,
                name=p,
                type=rng.choice([ev.AgencyType.NGO, ev.AgencyType.GOVERNMENT]),
                countries=[country_of[p]],
                public_key=public_key(),
            )
        )
        for p in provider_ids
    ]
    # The operator (super user) publishes the registry and, on the providers' behalf, their
    # listings: the same records each provider would send on its own listings topic.
    records += [f.listing_event(listing) for listing in world.listings]
    await publish_all(kafka, records)
    for agency in referrer_agencies:
        await agency.start()
    return world


async def publish_all(kafka: KafkaConnection, records: list[OutgoingEvent]) -> None:
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                r.topic,
                r.body,
                key=r.key.encode(),
                headers=[(k, v.encode()) for k, v in r.headers.items()],
            )
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def submission(world: World, rng: random.Random) -> ev.CaseSubmission:
    """A returnee to a random district of the referrer's country, 1-3 distinct needs."""
    referrer = rng.choice(world.referrers)
    country = world.country_of[referrer.agency_id]
    region = rng.choice(world.tree.regions(country))
    district = rng.choice(world.tree.districts(region))
    chosen = rng.sample(categories(), k=rng.randint(1, 3))
    return f.submission(
        referrer.agency_id,
        # 64 random bits: the factories' 32 collide about once in 40,000 submissions of one
        # agency, and a second submission under a case's reference is an update of that case
        # (no new needs), which the bench would wait for for ever.
        agency_case_ref=f"CASE-{rng.getrandbits(64):016x}",
        profile=f.profile(
            sex=rng.choice(["female", "male"]),
            age_band=rng.choice(AGE_BANDS),
            nationality=country,
            return_country=country,
            return_area=district,
            languages=list(COUNTRIES[country]),
        ),
        needs=[{"need_id": f"n{i}", "category": c} for i, c in enumerate(chosen, 1)],
    )
