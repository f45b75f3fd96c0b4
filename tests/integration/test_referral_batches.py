"""Referral's case handling in consumer batches on the real PostgreSQL, as services/referral/
app.py wires it: the chains, gaps and candidates of a batch's cases are loaded once and what
routing decides for all of them is written in one statement (the round trips of a batch do not
grow with its cases or their needs), and an event sees what an earlier event of the same batch
changed — a listing published, a need already routed, a referral made."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from services.referral.decisions import RoutingPolicy
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.kafka.inbound import InboundEvent
from shared.unit import raw_handler, typed_handler
from tests import factories as f
from tests.integration.counting import CountingPool, ServiceBatches
from tests.integration.test_matching_index import referral_schema

REFERRER = "iom-sn"
CATEGORY = "psychosocial.counselling"


class Referral(ServiceBatches):
    def __init__(self, pool: CountingPool) -> None:
        handlers = ReferralHandlers(RoutingPolicy(max_attempts=3))
        typed = typed_handler(
            {
                ev.CASE_REGISTERED: handlers.on_case,
                ev.CASE_UPDATED: handlers.on_case,
                ev.AGENCY_REGISTERED: handlers.on_agency,
                ev.CASE_CLOSED: handlers.on_case_ended,
            },
            ReferralStore,
            SOURCE,
            preload={
                ev.CASE_REGISTERED: ReferralStore.preload_cases,
                ev.CASE_UPDATED: ReferralStore.preload_cases,
            },
        )
        super().__init__(
            pool,
            "referral",
            {
                topics.INTAKE_CASES: typed,
                topics.DIRECTORY_AGENCIES: typed,
                topics.AGENCY_LISTINGS: raw_handler(handlers.on_listing, ReferralStore, SOURCE),
            },
        )

    def registered(
        self, case: ev.CaseRegistered, ce_type: str = ev.CASE_REGISTERED
    ) -> InboundEvent:
        return self.inbound(
            build_event(
                topic=topics.INTAKE_CASES,
                key=case.case_id,
                type_=ce_type,
                source="urn:referralexchange:service:intake",
                subject=case.case_id,
                data=case,
            )
        )

    def closed(self, case_id: str) -> InboundEvent:
        closure = ev.CaseClosed(
            case_id=case_id, reason=ev.ClosureReason.COMPLETED, closed_at=datetime.now(UTC)
        )
        return self.inbound(
            build_event(
                topic=topics.INTAKE_CASES,
                key=case_id,
                type_=ev.CASE_CLOSED,
                source="urn:referralexchange:service:intake",
                subject=case_id,
                data=closure,
            )
        )

    async def states(self, case_id: str) -> list[str]:
        async with self.pool.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT status FROM referrals WHERE case_id = $1 ORDER BY need_id", case_id
            )
        return [r[0] for r in rows]

    def listed(self, listing: ev.ServiceListing) -> InboundEvent:
        return self.inbound(messages.listing_message(listing))

    async def routed(self, case_id: str) -> list[tuple[str, str]]:
        """(need, service) of the case's referrals, and (need, 'unmet') of its gaps."""
        async with self.pool.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT need_id, service_id FROM referrals WHERE case_id = $1
                   UNION ALL SELECT need_id, 'unmet' FROM unmet_needs WHERE case_id = $1
                   ORDER BY 1""",
                case_id,
            )
        return [(r[0], r[1]) for r in rows]


@pytest.fixture
async def referral(database_urls: dict[str, str]) -> AsyncIterator[Referral]:
    async with referral_schema(database_urls["referral"]) as pool:
        yield Referral(CountingPool(pool))


def _case(area: str, needs: int = 1) -> ev.CaseRegistered:
    return ev.CaseRegistered.model_validate(
        {
            "case_id": str(uuid.uuid4()),
            "submitting_agency_id": REFERRER,
            "profile": f.profile(return_area=area),
            "needs": [{"need_id": f"n{i}", "category": CATEGORY} for i in range(needs)],
            "consent": f.consent(),
        }
    )


def _listing(agency: str, area: str) -> ev.ServiceListing:
    return f.listing(agency, categories=[CATEGORY], service_areas=[area])


async def test_a_listing_published_earlier_in_the_batch_is_a_candidate(
    referral: Referral,
) -> None:
    area = f.unique_area()
    early, late, listing = _case(area), _case(area), _listing("ngo-a", area)
    await referral.apply(
        [
            referral.inbound(messages.agency_message(f.agency("ngo-a"))),
            referral.registered(early),  # no listing yet: a gap
            referral.listed(listing),  # (which retries the gap)
            referral.registered(late),  # the listing is there
        ]
    )
    assert await referral.routed(late.case_id) == [("n0", listing.service_id)]
    assert await referral.routed(early.case_id) == [("n0", listing.service_id)]


async def test_a_case_updated_in_the_batch_that_routed_it_is_not_routed_again(
    referral: Referral,
) -> None:
    area = f.unique_area()
    await referral.apply([referral.listed(_listing("ngo-b", area))])
    case = _case(area, needs=2)
    await referral.apply([referral.registered(case), referral.registered(case, ev.CASE_UPDATED)])
    assert len(await referral.routed(case.case_id)) == 2  # one referral per need, not two


async def test_the_round_trips_of_a_batch_do_not_grow_with_its_cases_or_needs(
    referral: Referral,
) -> None:
    areas = [f.unique_area() for _ in range(3)]
    await referral.apply([referral.listed(_listing(f"ngo-{n}", a)) for n, a in enumerate(areas)])
    gapless = f.unique_area()  # no listing: its needs are gaps
    few_cases = [_case(areas[0])]
    many_cases = [_case(a, needs=3) for a in areas * 2] + [_case(gapless, needs=2)]
    few = await referral.apply([referral.registered(c) for c in few_cases])
    many = await referral.apply([referral.registered(c) for c in many_cases])
    assert few == many, f"{few} statements for 1 case and 1 need, {many} for 7 cases, 20 needs"
    assert many <= 5  # the inbox claim, two loads, the routes, the outbox
    # what the one statement wrote is what routing decided
    for case in many_cases[:-1]:
        assert [need for need, _ in await referral.routed(case.case_id)] == ["n0", "n1", "n2"]
        assert await referral.states(case.case_id) == ["requested"] * 3
    assert await referral.routed(many_cases[-1].case_id) == [("n0", "unmet"), ("n1", "unmet")]
    async with referral.pool.pool.acquire() as conn:
        timers = await conn.fetchval(
            """SELECT count(*) FROM timers t JOIN referrals r USING (referral_id)
                WHERE r.case_id = ANY($1::text[])""",
            [c.case_id for c in many_cases],
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM cases WHERE case_id = ANY($1::text[])",
            [c.case_id for c in many_cases],
        )
    assert (timers, stored) == (18, 7)


async def test_a_case_closed_in_the_batch_that_routed_it_has_its_referrals_cancelled(
    referral: Referral,
) -> None:
    """The closure reads the referrals routing made earlier in the batch, not yet written."""
    area = f.unique_area()
    await referral.apply([referral.listed(_listing("ngo-c", area))])
    kept, closed = _case(area), _case(area, needs=2)
    await referral.apply(
        [referral.registered(closed), referral.registered(kept), referral.closed(closed.case_id)]
    )
    assert await referral.states(closed.case_id) == ["cancelled", "cancelled"]
    assert await referral.states(kept.case_id) == ["requested"]
