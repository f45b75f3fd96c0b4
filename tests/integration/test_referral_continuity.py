"""Referral's side of continuity (decision 16) on the real PostgreSQL, through consumer batches
wired as services/referral/app.py wires them: a handover's lifecycle from the proposal to the
case changing hands, its refusals (nothing written), its expiry through the timer job, ends of
assistance with the programmes that take cases over, the continuity evidence, and the case
events of one batch that read what routing made earlier in it (deferred writes settled)."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from services.referral import cli
from services.referral.cli import continuity_csv
from services.referral.decisions import RoutingPolicy
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.store import ReferralStore
from services.referral.timers import answer_stale_waiting, expire_due_handovers
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.kafka.inbound import InboundEvent
from shared.unit import open_unit, raw_handler, typed_handler
from tests import factories as f
from tests.dsn import with_params
from tests.integration.counting import CountingPool, ServiceBatches
from tests.integration.test_matching_index import referral_schema

OWNER = "iom-sn"
MINISTRY = "gov-labour"
PROGRAMME = "dev-prog"
PROVIDER = "ngo-a"
CATEGORY = "psychosocial.counselling"
JOBS = "economic.job_placement"
INTAKE = "urn:referralexchange:service:intake"


class Referral(ServiceBatches):
    """Referral's consumer as app.py wires it (dispatch table, tombstones, preloads)."""

    def __init__(self, pool: CountingPool) -> None:
        handlers = ReferralHandlers(RoutingPolicy(max_attempts=3))
        typed = typed_handler(
            {
                ev.AGENCY_REGISTERED: handlers.on_agency,
                ev.CASE_REGISTERED: handlers.on_case,
                ev.CASE_UPDATED: handlers.on_case,
                ev.CONSENT_CHANGED: handlers.on_consent_changed,
                ev.CASE_CLOSED: handlers.on_case_ended,
                ev.CASE_ERASED: handlers.on_case_ended,
                ev.ASSISTANCE_ENDED: handlers.on_assistance_ended,
                ev.CASE_HANDED_OVER: handlers.on_case_handed_over,
                ev.HANDOVER_FAILED: handlers.on_handover_failed,
            },
            ReferralStore,
            SOURCE,
            ignored={ev.SUBMISSION_ACCEPTED},
            on_tombstone=handlers.on_agency_removed,
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
                topics.AGENCY_RESPONSES: raw_handler(handlers.on_response, ReferralStore, SOURCE),
            },
        )

    # what the consumer reads

    def intake(self, ce_type: str, payload: Any) -> InboundEvent:
        case_id = str(payload.case_id)  # every case event names its case
        return self.inbound(
            build_event(
                topic=topics.INTAKE_CASES,
                key=case_id,
                type_=ce_type,
                source=INTAKE,
                subject=case_id,
                data=payload,
            )
        )

    def agency(self, agency_id: str, type_: ev.AgencyType) -> InboundEvent:
        return self.inbound(messages.agency_message(f.agency(agency_id, type_)))

    def deregistered(self, agency_id: str) -> InboundEvent:
        self.offset += 1
        record = f.record(
            topics.DIRECTORY_AGENCIES, None, key=agency_id.encode(), offset=self.offset
        )
        return InboundEvent.from_record(record)

    def listed(self, listing: ev.ServiceListing) -> InboundEvent:
        return self.inbound(messages.listing_message(listing))

    def message(self, agency: str, ce_type: str, payload: Any) -> InboundEvent:
        """A message of the agency's own client on its responses topic (keyed by the case)."""
        case_id = str(payload.case_id)
        return self.inbound(
            build_event(
                topic=topics.AGENCY_RESPONSES.name(agency),
                key=case_id,
                type_=ce_type,
                source=messages.agency_source(agency),
                subject=case_id,
                data=payload,
                agency_id=agency,
            )
        )

    def proposal(self, case_id: str, to: str, respond_by: datetime | None = None) -> InboundEvent:
        proposal = ev.HandoverProposal(
            case_id=case_id,
            agency_id=OWNER,
            to_agency_id=to,
            reason=ev.HandoverReason.LONG_TERM_SUPPORT,
            respond_by=respond_by or datetime.now(UTC) + timedelta(days=7),
        )
        return self.message(OWNER, ev.HANDOVER_PROPOSAL_SUBMITTED, proposal)

    def answer(self, handover: dict[str, Any], by: str, action: str, **kw: Any) -> InboundEvent:
        answer = ev.HandoverAnswer.model_validate(
            {
                "handover_id": handover["handover_id"],
                "case_id": handover["case_id"],
                "agency_id": by,
                "action": action,
                **kw,
            }
        )
        return self.message(by, ev.HANDOVER_ANSWER_SUBMITTED, answer)

    def response(self, referral_id: str, case_id: str, action: str, **kw: Any) -> InboundEvent:
        response = ev.ReferralResponse.model_validate(
            {
                "referral_id": referral_id,
                "agency_id": PROVIDER,
                "action": action,
                "responded_at": datetime.now(UTC).isoformat(),
                **kw,
            }
        )
        return self.inbound(messages.response_message(response, case_id))

    # what it wrote

    async def sent(self, ce_type: str) -> list[dict[str, Any]]:
        """The bodies of the events of ``ce_type`` in the outbox, in order, with their key."""
        async with self.pool.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key, body FROM outbox WHERE headers->>'ce_type' = $1 ORDER BY id",
                ce_type,
            )
        return [{**json.loads(r["body"]), "(key)": r["key"]} for r in rows]

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def handover(self, handover_id: str) -> asyncpg.Record:
        [row] = await self.fetch("SELECT * FROM handovers WHERE handover_id = $1", handover_id)
        return row

    async def owner(self, case_id: str) -> str:
        [row] = await self.fetch(
            "SELECT submitting_agency_id FROM cases WHERE case_id = $1", case_id
        )
        return str(row[0])

    async def waiting(self) -> list[str]:
        """The ce_ids of the handover messages waiting for their case, oldest first."""
        rows = await self.fetch("SELECT ce_id FROM waiting_handovers ORDER BY received_at")
        return [r[0] for r in rows]

    def units(self) -> Any:
        """A unit of work of the timers (its own transaction)."""
        return open_unit(self.pool.pool.acquire(), ReferralStore, SOURCE)

    async def written(self) -> tuple[Any, ...]:
        """Everything a refused handover message must leave as it was."""
        return (
            tuple(await self.fetch("SELECT * FROM handovers ORDER BY handover_id")),
            tuple(await self.fetch("SELECT * FROM handover_timers ORDER BY handover_id")),
            tuple(await self.fetch("SELECT case_id, submitting_agency_id, status FROM cases")),
        )


@pytest.fixture
async def referral(database_urls: dict[str, str]) -> AsyncIterator[Referral]:
    async with referral_schema(database_urls["referral"]) as pool:
        yield Referral(CountingPool(pool))


def _case(area: str, categories: tuple[str, ...] = (CATEGORY,)) -> ev.CaseRegistered:
    return ev.CaseRegistered.model_validate(
        {
            "case_id": str(uuid.uuid4()),
            "submitting_agency_id": OWNER,
            "profile": f.profile(return_area=area),
            "needs": [{"need_id": f"n{i}", "category": c} for i, c in enumerate(categories)],
            "consent": f.consent(),
        }
    )


async def _directory(referral: Referral, area: str) -> None:
    """The agencies, and a provider of counselling in the area."""
    await referral.apply(
        [
            referral.agency(OWNER, ev.AgencyType.UN_AGENCY),
            referral.agency(MINISTRY, ev.AgencyType.GOVERNMENT),
            referral.agency(PROGRAMME, ev.AgencyType.DEVELOPMENT_PROGRAMME),
            referral.agency(PROVIDER, ev.AgencyType.NGO),
            referral.listed(f.listing(PROVIDER, categories=[CATEGORY], service_areas=[area])),
        ]
    )


def _handed(proposed: dict[str, Any], ref: str = "MIN-7") -> ev.CaseHandedOver:
    return ev.CaseHandedOver(
        handover_id=proposed["handover_id"],
        case_id=proposed["case_id"],
        from_agency_id=proposed["owner_agency_id"],
        to_agency_id=proposed["receiving_agency_id"],
        to_agency_case_ref=ref,
        handed_over_at=datetime.now(UTC),
    )


async def test_a_handover_from_proposal_to_the_new_owner(referral: Referral) -> None:
    area = f.unique_area()
    await _directory(referral, area)
    case = _case(area)
    await referral.apply([referral.intake(ev.CASE_REGISTERED, case)])
    [referral_id] = [str(r[0]) for r in await referral.fetch("SELECT referral_id FROM referrals")]

    proposal = referral.proposal(case.case_id, MINISTRY)
    await referral.apply([proposal])
    [proposed] = await referral.sent(ev.HANDOVER_PROPOSED)
    assert (proposed["(key)"], proposed["message_id"]) == (case.case_id, proposal.event_id)
    row = await referral.handover(proposed["handover_id"])
    assert (row["state"], row["direction"], row["answering_agency_id"]) == (
        "proposed",
        "offer",
        MINISTRY,
    )
    [timer] = await referral.fetch("SELECT due_at FROM handover_timers")
    assert timer["due_at"] == row["respond_by"]

    await referral.apply([referral.answer(proposed, MINISTRY, "accept", agency_case_ref="MIN-7")])
    [accepted] = await referral.sent(ev.HANDOVER_ACCEPTED)
    assert (accepted["receiving_case_ref"], accepted["(key)"]) == ("MIN-7", case.case_id)
    assert (await referral.handover(proposed["handover_id"]))["state"] == "accepted"
    assert await referral.fetch("SELECT * FROM handover_timers") == []

    # intake moved the case: the owner changes, the provider hears who owns it now
    await referral.apply([referral.intake(ev.CASE_HANDED_OVER, _handed(proposed))])
    assert (await referral.handover(proposed["handover_id"]))["state"] == "completed"
    assert await referral.owner(case.case_id) == MINISTRY
    [continues] = await referral.sent(ev.SUPPORT_CONTINUES)
    assert (continues["referral_id"], continues["recipient_agency_id"]) == (referral_id, PROVIDER)
    assert (continues["owner_agency_id"], continues["cause"]) == (MINISTRY, "case_handed_over")

    # the provider's progress reaches the new owner; the new owner's need is referred by it
    await referral.apply([referral.response(referral_id, case.case_id, "accept")])
    [moved] = await referral.sent(ev.REFERRAL_TRANSITIONED)
    assert (moved["referring_agency_id"], moved["case_owner_agency_id"]) == (OWNER, MINISTRY)
    updated = case.model_copy(
        update={
            "submitting_agency_id": MINISTRY,
            "needs": [*case.needs, ev.Need(need_id="n9", category=CATEGORY)],
        }
    )
    await referral.apply([referral.intake(ev.CASE_UPDATED, updated)])
    assert await referral.owner(case.case_id) == MINISTRY
    [new] = await referral.fetch("SELECT referring_agency_id FROM referrals WHERE need_id = 'n9'")
    assert new[0] == MINISTRY


async def test_handover_messages_the_rules_refuse_change_nothing(referral: Referral) -> None:
    area = f.unique_area()
    await _directory(referral, area)
    case, erased = _case(area), _case(area)
    await referral.apply(
        [
            referral.intake(ev.CASE_REGISTERED, case),
            referral.intake(ev.CASE_REGISTERED, erased),
            referral.intake(
                ev.CASE_ERASED, ev.CaseErased(case_id=erased.case_id, erased_at=datetime.now(UTC))
            ),
            referral.deregistered(PROGRAMME),
        ]
    )
    [(status,)] = await referral.fetch(
        "SELECT status FROM cases WHERE case_id = $1", erased.case_id
    )
    assert status == "erased"
    before = await referral.written()
    await referral.apply(
        [
            referral.proposal(case.case_id, "nobody"),  # unknown agency
            referral.proposal(case.case_id, PROGRAMME),  # deregistered
            referral.proposal(case.case_id, OWNER),  # the current owner
            referral.proposal(erased.case_id, MINISTRY),  # an erased case
            unknown := referral.proposal(str(uuid.uuid4()), MINISTRY),  # a case not read yet
        ]
    )
    refused = await referral.sent(ev.HANDOVER_REFUSED)
    assert [(r["error"], r["(key)"]) for r in refused] == [
        ("unknown_agency", case.case_id),
        ("unknown_agency", case.case_id),
        ("already_owner", case.case_id),
        ("case_not_open", erased.case_id),
    ]
    assert "erased" in refused[3]["reason"]
    assert await referral.written() == before
    # the unknown case's proposal waits for it; it never comes: refused after the wait
    assert await referral.waiting() == [unknown.event_id]
    assert await answer_stale_waiting(referral.units, wait_s=0) == 1
    [*_, never] = await referral.sent(ev.HANDOVER_REFUSED)
    assert (never["error"], never["(key)"], never["message_id"]) == (
        "unknown_case",
        OWNER,
        unknown.event_id,
    )
    assert await referral.waiting() == [] and await referral.written() == before
    # registered again (the registry's next record): a receiver again
    await referral.apply([referral.agency(PROGRAMME, ev.AgencyType.DEVELOPMENT_PROGRAMME)])
    await referral.apply([referral.proposal(case.case_id, PROGRAMME)])
    [proposed] = await referral.sent(ev.HANDOVER_PROPOSED)
    assert proposed["receiving_agency_id"] == PROGRAMME


@pytest.mark.parametrize("batches", ["one batch", "two batches"])
async def test_a_proposal_read_before_its_case_is_proposed_once_the_case_is(
    referral: Referral, batches: str
) -> None:
    """The owner proposes on hearing submission-accepted; referral reads its responses topic
    before intake.cases.v1 has given it the case: the proposal waits, then is proposed."""
    area = f.unique_area()
    await _directory(referral, area)
    case = _case(area)
    early = referral.proposal(case.case_id, MINISTRY)
    registered = referral.intake(ev.CASE_REGISTERED, case)
    if batches == "one batch":
        await referral.apply([early, registered])
    else:
        await referral.apply([early])
        assert await referral.waiting() == [early.event_id]
        assert await referral.sent(ev.HANDOVER_PROPOSED) == []
        await referral.apply([registered])
    [proposed] = await referral.sent(ev.HANDOVER_PROPOSED)
    assert (proposed["(key)"], proposed["message_id"]) == (case.case_id, early.event_id)
    assert proposed["receiving_agency_id"] == MINISTRY
    assert await referral.sent(ev.HANDOVER_REFUSED) == []
    assert await referral.waiting() == []
    assert (await referral.handover(proposed["handover_id"]))["state"] == "proposed"
    # the case's referrals were routed as always
    assert len(await referral.sent(ev.REFERRAL_REQUESTED)) == 1
    # an update of the case, a redelivery of the proposal (skipped by the inbox), the job:
    # nothing more is proposed or refused
    await referral.apply([referral.intake(ev.CASE_UPDATED, case)])
    await referral.consumer.process_batch([early])
    assert await answer_stale_waiting(referral.units, wait_s=0) == 0
    assert len(await referral.sent(ev.HANDOVER_PROPOSED)) == 1
    assert await referral.sent(ev.HANDOVER_REFUSED) == []


async def test_a_proposal_whose_case_another_instance_applied_is_decided_at_the_next_tick(
    referral: Referral,
) -> None:
    """The proposal is parked while another instance applies its case without seeing it (both
    uncommitted): the timer job decides it at its next tick, not after the whole wait."""
    area = f.unique_area()
    await _directory(referral, area)
    case = _case(area)
    early = referral.proposal(case.case_id, MINISTRY)
    await referral.apply([early])
    assert await referral.waiting() == [early.event_id]
    async with open_unit(referral.pool.pool.acquire(), ReferralStore, SOURCE) as unit:
        await unit.stores.save_case(case)  # the case, as the other instance stored it
    assert await answer_stale_waiting(referral.units, wait_s=3600) == 1
    [proposed] = await referral.sent(ev.HANDOVER_PROPOSED)
    assert proposed["message_id"] == early.event_id
    assert await referral.sent(ev.HANDOVER_REFUSED) == []
    assert await referral.waiting() == []


async def test_a_second_proposal_in_the_same_batch_waits_for_the_first(referral: Referral) -> None:
    area = f.unique_area()
    await _directory(referral, area)
    case = _case(area)
    await referral.apply(
        [
            referral.intake(ev.CASE_REGISTERED, case),
            referral.proposal(case.case_id, MINISTRY),
            referral.proposal(case.case_id, PROGRAMME),
        ]
    )
    [proposed] = await referral.sent(ev.HANDOVER_PROPOSED)
    [refused] = await referral.sent(ev.HANDOVER_REFUSED)
    assert proposed["receiving_agency_id"] == MINISTRY
    assert (refused["error"], refused["state"]) == ("already_pending", "proposed")
    # a second acceptance is refused with where the handover stands
    await referral.apply(
        [
            referral.answer(proposed, MINISTRY, "accept", agency_case_ref="MIN-1"),
            referral.answer(proposed, MINISTRY, "accept", agency_case_ref="MIN-1"),
        ]
    )
    assert len(await referral.sent(ev.HANDOVER_ACCEPTED)) == 1
    [_, again] = await referral.sent(ev.HANDOVER_REFUSED)
    assert (again["error"], again["state"]) == ("not_pending", "accepted")


async def test_an_unanswered_handover_expires_through_the_timer_job(referral: Referral) -> None:
    area = f.unique_area()
    await _directory(referral, area)
    case, answered = _case(area), _case(area)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    await referral.apply(
        [
            referral.intake(ev.CASE_REGISTERED, case),
            referral.intake(ev.CASE_REGISTERED, answered),
            referral.proposal(case.case_id, MINISTRY, respond_by=soon),
            referral.proposal(answered.case_id, MINISTRY, respond_by=soon),
        ]
    )
    waiting, rejected = await referral.sent(ev.HANDOVER_PROPOSED)
    await referral.apply([referral.answer(rejected, MINISTRY, "reject", reason="no_capacity")])

    def units() -> Any:
        return open_unit(referral.pool.pool.acquire(), ReferralStore, SOURCE)

    assert await expire_due_handovers(units) == 0  # not due yet
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    assert await expire_due_handovers(units) == 1  # the rejected one's timer went with it
    assert await expire_due_handovers(units) == 0
    assert (await referral.handover(waiting["handover_id"]))["state"] == "expired"
    assert (await referral.handover(rejected["handover_id"]))["state"] == "rejected"
    ended = await referral.sent(ev.HANDOVER_ENDED)
    assert [(e["handover_id"], e["state"]) for e in ended] == [
        (rejected["handover_id"], "rejected"),
        (waiting["handover_id"], "expired"),
    ]
    assert await referral.owner(case.case_id) == OWNER
    # an answer after expiry is refused
    await referral.apply([referral.answer(waiting, MINISTRY, "accept", agency_case_ref="MIN-2")])
    [late] = await referral.sent(ev.HANDOVER_REFUSED)
    assert (late["error"], late["state"]) == ("not_pending", "expired")


async def test_the_end_of_assistance_proposes_the_programmes_that_take_cases_over(
    referral: Referral,
) -> None:
    area = f.unique_area()
    await _directory(referral, area)
    takes_over = {"takes_over_cases": True, "service_areas": [area[:4]]}
    ministry = f.listing(MINISTRY, categories=[JOBS], **takes_over)
    programme = f.listing(PROGRAMME, categories=[JOBS, CATEGORY], **takes_over)
    await referral.apply(
        [
            referral.listed(ministry),
            referral.listed(programme),
            # not proposed: the owner's own, one that does not take cases over, another area
            referral.listed(f.listing(OWNER, categories=[JOBS], **takes_over)),
            referral.listed(f.listing("ngo-b", categories=[JOBS], service_areas=[area])),
            referral.listed(
                f.listing("ngo-c", categories=[JOBS], takes_over_cases=True, service_areas=["GM"])
            ),
            referral.agency("ngo-b", ev.AgencyType.NGO),
            referral.agency("ngo-c", ev.AgencyType.NGO),
        ]
    )
    case = _case(area, (CATEGORY, JOBS))
    ended = ev.AssistanceEnded(
        case_id=case.case_id,
        owner_agency_id=OWNER,
        reason=ev.AssistanceEndReason.BUDGET_ENDED,
        ended_at=datetime.now(UTC),
    )
    await referral.apply(
        [referral.intake(ev.CASE_REGISTERED, case), referral.intake(ev.ASSISTANCE_ENDED, ended)]
    )
    [proposed] = await referral.sent(ev.CONTINUITY_PROPOSED)
    assert proposed["open_need_ids"] == ["n0", "n1"]
    assert [(c["agency_id"], c["service_id"]) for c in proposed["candidates"]] == [
        (PROGRAMME, programme.service_id),  # serves both open categories
        (MINISTRY, ministry.service_id),
    ]
    assert proposed["candidates"][1]["explanation"]["score"] == 0.5
    # a deregistered agency is no next owner
    await referral.apply([referral.deregistered(PROGRAMME)])
    again = ended.model_copy(update={"ended_at": datetime.now(UTC)})
    await referral.apply([referral.intake(ev.ASSISTANCE_ENDED, again)])
    _, second = await referral.sent(ev.CONTINUITY_PROPOSED)
    assert [c["agency_id"] for c in second["candidates"]] == [MINISTRY]


async def test_case_events_of_a_batch_tell_the_providers_of_the_referrals_made_earlier_in_it(
    referral: Referral,
) -> None:
    """The case's referrals are written at the batch's end; the handover and the end of
    assistance read them (and change the case's owner) before."""
    area = f.unique_area()
    await _directory(referral, area)
    handed, ended, closed = _case(area), _case(area), _case(area)
    handover = {
        "handover_id": str(uuid.uuid4()),
        "case_id": handed.case_id,
        "owner_agency_id": OWNER,
        "receiving_agency_id": MINISTRY,
    }
    closure = ev.CaseClosed(
        case_id=closed.case_id,
        reason=ev.ClosureReason.COMPLETED,
        closed_at=datetime.now(UTC),
        open_referrals=ev.OpenReferralsOnClosure.CONTINUE,
    )
    await referral.apply(
        [
            referral.intake(ev.CASE_REGISTERED, handed),
            referral.intake(ev.CASE_REGISTERED, ended),
            referral.intake(ev.CASE_REGISTERED, closed),
            referral.intake(ev.CASE_HANDED_OVER, _handed(handover)),
            referral.intake(
                ev.ASSISTANCE_ENDED,
                ev.AssistanceEnded(
                    case_id=ended.case_id,
                    owner_agency_id=OWNER,
                    reason=ev.AssistanceEndReason.COMPLETED,
                    ended_at=datetime.now(UTC),
                ),
            ),
            referral.intake(ev.CASE_CLOSED, closure),
        ]
    )
    continued = await referral.sent(ev.SUPPORT_CONTINUES)
    assert [(c["case_id"], c["owner_agency_id"], c["cause"]) for c in continued] == [
        (handed.case_id, MINISTRY, "case_handed_over"),
        (ended.case_id, OWNER, "assistance_ended"),
        (closed.case_id, OWNER, "case_closed"),
    ]
    assert all(c["recipient_agency_id"] == PROVIDER for c in continued)
    assert await referral.owner(handed.case_id) == MINISTRY
    states = await referral.fetch("SELECT DISTINCT status FROM referrals")
    assert [s[0] for s in states] == ["requested"]  # nothing cancelled
    [(recorded,)] = await referral.fetch("SELECT count(*) FROM assistance_end_referrals")
    assert recorded == 1


async def test_the_continuity_evidence_per_area_and_programme(
    referral: Referral,
    database_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    area = f.unique_area()
    await _directory(referral, area)
    cases = [_case(area) for _ in range(5)]
    soon = datetime.now(UTC) + timedelta(seconds=2)
    await referral.apply([referral.intake(ev.CASE_REGISTERED, c) for c in cases])
    await referral.apply(
        [referral.proposal(c.case_id, MINISTRY, respond_by=soon) for c in cases[:4]]
    )
    completed, rejected, failed, _unanswered = await referral.sent(ev.HANDOVER_PROPOSED)
    await referral.apply(
        [
            referral.answer(completed, MINISTRY, "accept", agency_case_ref="M-1"),
            referral.answer(rejected, MINISTRY, "reject", reason="not_in_mandate"),
            referral.answer(failed, MINISTRY, "accept", agency_case_ref="M-2"),
        ]
    )
    await referral.apply(
        [
            referral.intake(ev.CASE_HANDED_OVER, _handed(completed, "M-1")),
            referral.intake(
                ev.HANDOVER_FAILED,
                ev.HandoverFailed(
                    handover_id=failed["handover_id"],
                    case_id=failed["case_id"],
                    from_agency_id=OWNER,
                    to_agency_id=MINISTRY,
                    reason=ev.HandoverFailureReason.NO_PUBLIC_KEY,
                ),
            ),
        ]
    )
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    assert (
        await expire_due_handovers(
            lambda: open_unit(referral.pool.pool.acquire(), ReferralStore, SOURCE)
        )
        == 1
    )
    # the owner's assistance ends on the fifth case: its referral is answered afterwards (the
    # support continued); on the fourth, its referral is only cancelled by the closure
    last, quiet = cases[4], cases[3]
    for c in (last, quiet):
        await referral.apply(
            [
                referral.intake(
                    ev.ASSISTANCE_ENDED,
                    ev.AssistanceEnded(
                        case_id=c.case_id,
                        owner_agency_id=OWNER,
                        reason=ev.AssistanceEndReason.PROGRAMME_ENDED,
                        ended_at=datetime.now(UTC),
                    ),
                )
            ]
        )
    [(referral_id,)] = await referral.fetch(
        "SELECT referral_id FROM referrals WHERE case_id = $1", last.case_id
    )
    await referral.apply(
        [
            referral.response(str(referral_id), last.case_id, "accept"),
            referral.intake(
                ev.CASE_CLOSED,
                ev.CaseClosed(
                    case_id=quiet.case_id,
                    reason=ev.ClosureReason.LOST_CONTACT,
                    closed_at=datetime.now(UTC),
                ),
            ),
        ]
    )
    async with open_unit(referral.pool.pool.acquire(), ReferralStore, SOURCE) as unit:
        report = await unit.stores.continuity_report(area_digits=len(area) - 2)
    rows = {(r.values[0], r.values[1]): r for r in report}
    assert set(rows) == {(area, OWNER)}
    assert rows[(area, OWNER)].values[2:] == (4, 0, 1, 1, 1, 1, 2, 1)
    # by country, the same (one area and one programme in this schema)
    async with open_unit(referral.pool.pool.acquire(), ReferralStore, SOURCE) as unit:
        by_country = await unit.stores.continuity_report(area_digits=0)
    assert [r.values for r in by_country] == [(area[:2], OWNER, 4, 0, 1, 1, 1, 1, 2, 1)]

    # the operator's command prints it and writes it beside the pathways' CSV
    [(schema,)] = await referral.fetch("SELECT current_schema()")
    monkeypatch.setenv(
        "REFERRAL_DATABASE_URL", with_params(database_urls["referral"], search_path=schema)
    )
    out = tmp_path / "evidence.csv"
    command = ["evidence", "--area-digits", "0", "--csv", str(out)]
    result = await asyncio.to_thread(CliRunner().invoke, cli.app, command)
    assert result.exit_code == 0, result.output
    assert "Continuity" in result.output and "Referral pathways" in result.output
    assert next(csv.DictReader(out.open()))["referrals"] == str(len(cases))  # as before
    [row] = list(csv.DictReader(continuity_csv(out).open()))
    assert (row["area"], row["programme"], row["handovers_expired"]) == (area[:2], OWNER, "1")
    assert row["needs_continued"] == "1"
