"""Caseworker control (issue 18, decision 19) on the real PostgreSQL, through referral's consumer
batches as app.py wires them: a held need waits in held_needs (with the batch's other cases,
one batch), exclusions are kept in need_exclusions and honoured by a re-route, a choice takes
the need out of held_needs with its referral and deadline, a redirect and a revoke end the
referral's deadline (the transition records the requester), and refusals write nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.contracts import events as ev
from tests import factories as f
from tests.integration.counting import CountingPool
from tests.integration.test_matching_index import referral_schema
from tests.integration.test_referral_continuity import OWNER, PROVIDER, Referral
from tests.unit.test_caseworker_control import held_case

TRACING = "social.family_tracing"
OTHERS = ("ngo-b", "ngo-c")


@pytest.fixture
async def referral(database_urls: dict[str, str]) -> AsyncIterator[Referral]:
    async with referral_schema(database_urls["referral"]) as pool:
        yield Referral(CountingPool(pool))


def _case(area: str, *, held: bool) -> ev.CaseRegistered:
    return held_case(area, TRACING, held=held)


async def _directory(referral: Referral, area: str) -> list[str]:
    """Three providers of the category in the area, best first (languages, capacity)."""
    listings = [
        f.listing(PROVIDER, categories=[TRACING], service_areas=[area], languages=["fr"]),
        f.listing(
            OTHERS[0],
            categories=[TRACING],
            service_areas=[area],
            capacity={"status": "waitlist"},
        ),
        f.listing(OTHERS[1], categories=[TRACING], service_areas=[area], languages=["en"]),
    ]
    await referral.apply(
        [
            referral.agency(OWNER, ev.AgencyType.UN_AGENCY),
            *(referral.agency(a, ev.AgencyType.NGO) for a in (PROVIDER, *OTHERS)),
            *(referral.listed(listing) for listing in listings),
        ]
    )
    return [listing.service_id for listing in listings]


def _instruction(referral: Referral, case_id: str, sender: str = OWNER, **body: Any) -> Any:
    instruction = ev.ReferrerInstruction.model_validate(
        {"case_id": case_id, "agency_id": sender, **body}
    )
    return referral.message(sender, ev.REFERRER_INSTRUCTION_SUBMITTED, instruction)


async def _state(referral: Referral) -> tuple[Any, ...]:
    """Everything a refused instruction must leave as it was."""
    return (
        tuple(await referral.fetch("SELECT * FROM referrals ORDER BY referral_id")),
        tuple(await referral.fetch("SELECT * FROM timers ORDER BY referral_id")),
        tuple(await referral.fetch("SELECT case_id, need_id FROM held_needs ORDER BY 1, 2")),
        tuple(await referral.fetch("SELECT * FROM need_exclusions ORDER BY 1, 2, 3, 4")),
    )


async def test_held_need_choice_redirect_and_revoke(referral: Referral) -> None:
    area = f.unique_area()
    services = await _directory(referral, area)
    held, routed = _case(area, held=True), _case(area, held=False)
    # one batch: the held case and a routed one (the held row is written with the routes)
    await referral.apply(
        [referral.intake(ev.CASE_REGISTERED, held), referral.intake(ev.CASE_REGISTERED, routed)]
    )
    assert [tuple(r) for r in await referral.fetch("SELECT case_id, need_id FROM held_needs")] == [
        (held.case_id, "n1")
    ]
    [made] = await referral.fetch("SELECT case_id, service_id FROM referrals")
    assert tuple(made) == (routed.case_id, services[0])
    [listed] = await referral.sent(ev.ALTERNATIVES_LISTED)
    assert (listed["(key)"], listed["held"]) == (held.case_id, True)
    assert [a["service_id"] for a in listed["alternatives"]] == services
    await referral.apply([referral.intake(ev.CASE_UPDATED, held)])  # nothing routed again
    assert len(await referral.fetch("SELECT 1 FROM referrals")) == 1

    # refusals write nothing
    before = await _state(referral)
    for bad in (
        _instruction(referral, held.case_id, action="choose", need_id="n1", service_id="nope"),
        _instruction(referral, held.case_id, "ngo-b", action="list_alternatives", need_id="n1"),
        _instruction(referral, held.case_id, action="exclude", need_id="n9",
                     exclude_service_ids=["x"]),
    ):  # fmt: skip
        await referral.apply([bad])
    assert await _state(referral) == before
    errors = [r["error"] for r in await referral.sent(ev.INSTRUCTION_REFUSED)]
    assert errors == ["unknown_service", "not_referring_agency", "unknown_need"]

    # exclude the best agency, choose the second of the rest
    await referral.apply(
        [
            _instruction(
                referral, held.case_id, action="exclude", need_id="n1",
                exclude_agency_ids=[PROVIDER],
            ),
            _instruction(
                referral, held.case_id, action="choose", need_id="n1", service_id=services[2]
            ),
        ]
    )  # fmt: skip
    kept = await referral.fetch("SELECT kind, excluded_id FROM need_exclusions")
    assert [tuple(r) for r in kept] == [("agency", PROVIDER)]
    assert await referral.fetch("SELECT 1 FROM held_needs") == []
    [chosen] = await referral.fetch(
        "SELECT referral_id, attempt FROM referrals WHERE case_id = $1", held.case_id
    )
    first = str(chosen["referral_id"])
    assert await referral.fetch("SELECT 1 FROM timers WHERE referral_id = $1", chosen[0])

    # redirect: the referral is cancelled (its deadline ends), the chosen one is the next attempt
    await referral.apply(
        [
            _instruction(
                referral, held.case_id, action="redirect", referral_id=first,
                service_id=services[1],
            )
        ]
    )  # fmt: skip
    rows = await referral.fetch(
        "SELECT referral_id::text, service_id, status, attempt, previous_referral_id::text"
        " FROM referrals WHERE case_id = $1 ORDER BY attempt",
        held.case_id,
    )
    assert [tuple(r) for r in rows] == [
        (first, services[2], "cancelled", 1, None),
        (rows[1][0], services[1], "requested", 2, first),
    ]
    second = rows[1][0]
    assert await referral.fetch("SELECT 1 FROM timers WHERE referral_id = $1::uuid", first) == []
    assert await referral.fetch("SELECT 1 FROM timers WHERE referral_id = $1::uuid", second)
    [by] = await referral.fetch(
        "SELECT cancelled_by, reason_code FROM referral_transitions WHERE referral_id = $1::uuid",
        first,
    )
    assert tuple(by) == ("requester", "other")

    # a revoke by the recipient (not the referrer) is refused; the referrer's is applied
    await referral.apply(
        [_instruction(referral, held.case_id, OTHERS[0], action="revoke", referral_id=second)]
    )
    assert (await referral.sent(ev.INSTRUCTION_REFUSED))[-1]["error"] == "not_referring_agency"
    await referral.apply(
        [_instruction(referral, held.case_id, action="revoke", referral_id=second)]
    )
    [status] = await referral.fetch(
        "SELECT status FROM referrals WHERE referral_id = $1::uuid", second
    )
    assert status[0] == "cancelled"
    assert await referral.fetch("SELECT 1 FROM timers WHERE referral_id = $1::uuid", second) == []
    cancels = [t for t in await referral.sent(ev.REFERRAL_TRANSITIONED) if t.get("cancelled_by")]
    assert [t["referral_id"] for t in cancels] == [first, second]


async def test_a_reroute_honours_the_exclusions(referral: Referral) -> None:
    area = f.unique_area()
    services = await _directory(referral, area)
    case = _case(area, held=True)
    await referral.apply([referral.intake(ev.CASE_REGISTERED, case)])
    await referral.apply(
        [
            _instruction(
                referral, case.case_id, action="exclude", need_id="n1",
                exclude_service_ids=[services[1]],
            ),
            _instruction(
                referral, case.case_id, action="choose", need_id="n1", service_id=services[0]
            ),
        ]
    )  # fmt: skip
    [referral_id] = [str(r[0]) for r in await referral.fetch("SELECT referral_id FROM referrals")]
    await referral.apply([referral.response(referral_id, case.case_id, "reject",
                                            reason_code="at_capacity")])  # fmt: skip
    [rerouted] = await referral.fetch(
        "SELECT service_id, attempt FROM referrals WHERE status = 'requested'"
    )
    assert tuple(rerouted) == (services[2], 2)  # services[1] excluded
