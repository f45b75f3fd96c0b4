"""Referral's side of continuity (decision 16) on an in-memory store: handovers proposed,
requested, answered and expired; every refusal (with its reason, and nothing changed); the
case changing hands; ends of assistance with their continuity proposals; closures that
continue the open referrals. The decisions are the service's own (handovers.py,
continuity.py); the fake store only keeps what it is given."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.referral.continuity import TakeoverListing, next_owners, open_needs
from services.referral.decisions import ReferralRow
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.handovers import AgencyFacts, CaseFacts, HandoverRow
from services.referral.timers import answer_stale_waiting, expire_due_handovers
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.contracts.events import HandoverState
from shared.contracts.events import ReferralState as S
from shared.kafka.inbound import InboundEvent
from shared.unit import Cause, Unit
from tests import factories as f
from tests.unit.test_referral_handlers import (
    AREA,
    POLICY,
    REFERRER,
    FakeStore,
    _candidate,
    _case,
    _response,
)

OWNER = REFERRER  # the case's owner: IOM
MINISTRY = "gov-labour"  # a government service that takes cases over
PROGRAMME = "dev-prog"  # a development programme
STRANGER = "ngo-x"  # registered, unrelated to the case


class Store(FakeStore):
    """FakeStore with what handovers and continuity read and write."""

    def __init__(self) -> None:
        super().__init__([_candidate(1)])
        self.status: dict[str, str] = {}
        self.agencies: dict[str, AgencyFacts] = {}
        self.handovers: dict[str, HandoverRow] = {}
        self.timers: dict[str, datetime] = {}
        self.ends: list[tuple[ev.AssistanceEnded, list[str]]] = []
        self.takeover: list[TakeoverListing] = []

    def snapshot(self) -> Any:
        """Everything a refused message must leave as it was."""
        return (
            dict(self.status),
            dict(self.handovers),
            dict(self.timers),
            {c: case.submitting_agency_id for c, case in self.cases.items()},
            dict(self.referrals),
            list(self.ends),
            dict(self.waiting),
        )

    # cases
    async def save_case(self, case: ev.CaseRegistered, routes: Any = (), c: Any = None) -> None:
        await super().save_case(case, routes, c)
        self.status.setdefault(case.case_id, "open")

    async def load_case(self, case_id: str) -> ev.CaseRegistered | None:
        return self.cases.get(case_id) if self.status.get(case_id) == "open" else None

    async def close_case(self, case_id: str, *, erased: bool = False) -> None:
        self.status[case_id] = "erased" if erased else "closed"

    async def load_case_facts(self, case_id: str, *, lock: bool = False) -> CaseFacts | None:
        case = self.cases.get(case_id)
        if case is None:
            return None
        return CaseFacts(
            case_id,
            case.submitting_agency_id,
            self.status[case_id],
            case.consent,
            case.profile.return_area,
            tuple(case.needs),
        )

    async def last_referral_states(self, case_id: str) -> dict[str, S]:
        last: dict[str, ReferralRow] = {}
        for r in self.referrals.values():
            if r.case_id == case_id and (
                r.need_id not in last or r.attempt > last[r.need_id].attempt
            ):
                last[r.need_id] = r
        return {n: r.status for n, r in last.items()}

    # referrals, with the case's owner of now
    def _owned(self, ref: ReferralRow) -> ReferralRow:
        owner = self.cases[ref.case_id].submitting_agency_id
        return replace(ref, case_owner_agency_id=owner)

    async def load_referral(self, referral_id: str) -> ReferralRow | None:
        ref = self.referrals.get(referral_id)
        return self._owned(ref) if ref else None

    async def open_referrals(self, case_id: str, states: list[S]) -> list[ReferralRow]:
        return [self._owned(r) for r in await super().open_referrals(case_id, states)]

    # agencies
    async def upsert_agency(self, agency: ev.AgencyRecord) -> None:
        self.agencies[agency.agency_id] = AgencyFacts(agency.agency_id, agency.type, True)

    async def deregister_agency(self, agency_id: str) -> None:
        if agency_id in self.agencies:
            self.agencies[agency_id] = replace(self.agencies[agency_id], registered=False)

    async def load_agency(self, agency_id: str) -> AgencyFacts | None:
        return self.agencies.get(agency_id)

    # handovers
    async def pending_handover(self, case_id: str) -> HandoverRow | None:
        return next(
            (
                h
                for h in self.handovers.values()
                if h.case_id == case_id
                and h.state in (HandoverState.PROPOSED, HandoverState.ACCEPTED)
            ),
            None,
        )

    async def load_handover(self, handover_id: str) -> HandoverRow | None:
        return self.handovers.get(handover_id)

    async def record_handover(self, h: HandoverRow) -> None:
        self.handovers[h.handover_id] = h
        self.timers[h.handover_id] = h.respond_by

    async def update_handover(self, h: HandoverRow) -> None:
        self.handovers[h.handover_id] = h
        if h.state is not HandoverState.PROPOSED:
            self.timers.pop(h.handover_id, None)

    async def take_due_handovers(self, limit: int) -> list[str]:
        now = datetime.now(UTC)
        due = sorted((at, h) for h, at in self.timers.items() if at <= now)[:limit]
        for _, h in due:
            del self.timers[h]
        return [h for _, h in due]

    async def hand_over_case(self, handed: ev.CaseHandedOver) -> None:
        case = self.cases[handed.case_id]
        self.cases[handed.case_id] = case.model_copy(
            update={"submitting_agency_id": handed.to_agency_id}
        )
        h = self.handovers.get(handed.handover_id)
        if h is not None and h.state is HandoverState.ACCEPTED:
            self.handovers[h.handover_id] = replace(h, state=HandoverState.COMPLETED)

    async def fail_handover(self, failed: ev.HandoverFailed) -> None:
        h = self.handovers.get(failed.handover_id)
        if h is not None and h.state is HandoverState.ACCEPTED:
            self.handovers[h.handover_id] = replace(h, state=HandoverState.FAILED)

    # continuity
    async def record_assistance_end(self, ended: ev.AssistanceEnded, refs: list[str]) -> None:
        self.ends.append((ended, list(refs)))

    async def takeover_listings(self, area: str, owner: str) -> list[TakeoverListing]:
        return [
            t
            for t in self.takeover
            if t.agency_id != owner and self.agencies.get(t.agency_id, _GONE).registered
        ]


_GONE = AgencyFacts("-", ev.AgencyType.NGO, registered=False)
HANDLERS = ReferralHandlers(POLICY)


def _unit(store: Store, event: InboundEvent | None = None) -> Unit[Any]:
    cause = Cause.of(event) if event else Cause("conv-1", "cause-1", ev.CASE_REGISTERED)
    return Unit(None, store, SOURCE, cause)  # type: ignore[arg-type]


def _sent(unit: Unit[Any]) -> list[tuple[str, str]]:
    return [(e.headers["ce_type"], e.key) for e in unit.emitted]


def _body(unit: Unit[Any], n: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(unit.emitted[n].body)
    return body


def _later(hours: float = 48) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _message(agency: str, ce_type: str, body: dict[str, Any], key: str = "case") -> InboundEvent:
    """What the agency's own client sends on its responses topic (any body, valid or not)."""
    out = build_event(
        topic=topics.AGENCY_RESPONSES.name(agency),
        key=key,
        type_=ce_type,
        source=messages.agency_source(agency),
        subject=key,
        data=f.agency(agency),  # replaced by the body below
        agency_id=agency,
    )
    return InboundEvent.from_record(f.record_of(replace(out, body=json.dumps(body).encode())))


def proposal(case_id: str, to: str, *, by: str = OWNER, **kw: Any) -> InboundEvent:
    body = {
        "case_id": case_id,
        "agency_id": by,
        "to_agency_id": to,
        "reason": "long_term_support",
        "respond_by": _later(),
        **kw,
    }
    return _message(by, ev.HANDOVER_PROPOSAL_SUBMITTED, body, case_id)


def request(case_id: str, by: str, **kw: Any) -> InboundEvent:
    body = {
        "case_id": case_id,
        "agency_id": by,
        "agency_case_ref": "MIN-1",
        "reason": "government_service",
        "respond_by": _later(),
        **kw,
    }
    return _message(by, ev.HANDOVER_REQUEST_SUBMITTED, body, case_id)


def answer(h: HandoverRow | dict[str, str], by: str, action: str, **kw: Any) -> InboundEvent:
    ids = {"handover_id": h.handover_id, "case_id": h.case_id} if isinstance(h, HandoverRow) else h
    body = {**ids, "agency_id": by, "action": action, **kw}
    return _message(by, ev.HANDOVER_ANSWER_SUBMITTED, body, ids["case_id"])


async def send(store: Store, event: InboundEvent) -> Unit[Any]:
    unit = _unit(store, event)
    await HANDLERS.on_response(event, unit)
    return unit


async def _world(**consent: Any) -> tuple[Store, ev.CaseRegistered]:
    """IOM's case (n1 referred to ngo-1, n2 a gap), the ministry, a programme, a stranger."""
    store = Store()
    for agency, type_ in [
        (OWNER, ev.AgencyType.UN_AGENCY),
        (MINISTRY, ev.AgencyType.GOVERNMENT),
        (PROGRAMME, ev.AgencyType.DEVELOPMENT_PROGRAMME),
        (STRANGER, ev.AgencyType.NGO),
        ("ngo-1", ev.AgencyType.NGO),
    ]:
        await HANDLERS.on_agency(f.agency(agency, type_), _unit(store))
    case = _case(**consent)
    await HANDLERS.on_case(case, _unit(store))
    return store, case


async def _proposed(store: Store, case: ev.CaseRegistered, to: str = MINISTRY) -> HandoverRow:
    unit = await send(store, proposal(case.case_id, to))
    assert _sent(unit) == [(ev.HANDOVER_PROPOSED, case.case_id)], _body(unit)
    return store.handovers[_body(unit)["handover_id"]]


async def refused(
    store: Store, event: InboundEvent, error: str, key: str, *, state: str | None = None
) -> dict[str, Any]:
    """The message is refused to its sender with ``error`` and changes nothing."""
    before = store.snapshot()
    unit = await send(store, event)
    assert _sent(unit) == [(ev.HANDOVER_REFUSED, key)]
    body = _body(unit)
    assert (body["error"], body.get("state")) == (error, state), body
    assert body["agency_id"] == event.sender_agency
    assert body["message_id"] == event.event_id and body["reason"]
    assert store.snapshot() == before
    return body


# ----- proposals -----


async def test_a_proposal_records_the_handover_and_its_deadline_and_announces_it() -> None:
    store, case = await _world()
    event = proposal(case.case_id, MINISTRY)
    unit = await send(store, event)
    assert _sent(unit) == [(ev.HANDOVER_PROPOSED, case.case_id)]
    body = _body(unit)
    h = store.handovers[body["handover_id"]]
    assert (body["direction"], body["owner_agency_id"]) == ("offer", OWNER)
    assert (body["receiving_agency_id"], body["answering_agency_id"]) == (MINISTRY, MINISTRY)
    assert body["message_id"] == event.event_id
    assert h.state is HandoverState.PROPOSED and store.timers[h.handover_id] == h.respond_by
    assert unit.emitted[0].topic == topics.REFERRAL_EVENTS


async def test_a_proposal_that_breaks_the_contract_is_refused_with_its_field_errors() -> None:
    store, case = await _world()
    body = await refused(
        store,
        proposal(case.case_id, MINISTRY, reason="no_such_reason"),
        "invalid_message",
        OWNER,  # nothing parsed to name a case: keyed by the sender
    )
    assert [e["field"] for e in body["errors"]] == ["reason"]
    late = await refused(
        store,
        proposal(case.case_id, MINISTRY, respond_by=_later(-1)),
        "invalid_message",
        case.case_id,  # parsed, and names a known case
    )
    assert [e["field"] for e in late["errors"]] == ["respond_by"]
    # the body names another agency than the topic it came on (the topic is the proof)
    forged = _message(
        STRANGER,
        ev.HANDOVER_PROPOSAL_SUBMITTED,
        {
            "case_id": case.case_id,
            "agency_id": OWNER,
            "to_agency_id": STRANGER,
            "reason": "other",
            "respond_by": _later(),
        },
        case.case_id,
    )
    assert [
        e["field"] for e in (await refused(store, forged, "invalid_message", STRANGER))["errors"]
    ] == ["agency_id"]


def _units(store: Store, emitted: list[Unit[Any]]) -> Any:
    """The timers' units of work on the fake store, each kept in ``emitted``."""

    @asynccontextmanager
    async def units() -> AsyncIterator[Unit[Any]]:
        unit = _unit(store)
        yield unit
        emitted.append(unit)

    return units


async def test_a_proposal_before_its_case_waits_and_is_decided_when_the_case_arrives() -> None:
    """The owner heard submission-accepted and proposed before referral read the case."""
    store, _ = await _world()
    case = _case()
    before = store.snapshot()
    event = proposal(case.case_id, MINISTRY)
    waits = await send(store, event)
    assert _sent(waits) == []  # not answered yet
    assert [w.message_id for w in store.waiting.values()] == [event.event_id]
    assert store.snapshot()[:-1] == before[:-1]  # only the waiting message
    arrived = _unit(store)
    await HANDLERS.on_case(case, arrived)
    proposed = [e for e in arrived.emitted if e.headers["ce_type"] == ev.HANDOVER_PROPOSED]
    assert [e.key for e in proposed] == [case.case_id]
    body = json.loads(proposed[0].body)
    assert (body["message_id"], body["receiving_agency_id"]) == (event.event_id, MINISTRY)
    # the proposal's conversation, not the case's
    assert proposed[0].headers["ce_correlationid"] == event.correlation_id
    assert store.handovers[body["handover_id"]].state is HandoverState.PROPOSED
    assert store.waiting == {}
    await HANDLERS.on_case(case, again := _unit(store))  # an update decides nothing again
    assert ev.HANDOVER_PROPOSED not in [t for t, _ in _sent(again)]


async def test_a_waiting_message_is_decided_by_the_rules_when_its_case_arrives() -> None:
    """Decided as if it arrived then: a proposal by another agency than the owner is refused."""
    store, _ = await _world()
    case = _case()
    event = proposal(case.case_id, MINISTRY, by=STRANGER)
    assert _sent(await send(store, event)) == []
    await HANDLERS.on_case(case, arrived := _unit(store))
    [refusal] = [e for e in arrived.emitted if e.headers["ce_type"] == ev.HANDOVER_REFUSED]
    body = json.loads(refusal.body)
    assert (body["error"], refusal.key) == ("not_owner", case.case_id)
    assert (body["message_id"], body["agency_id"]) == (event.event_id, STRANGER)
    assert store.handovers == {} and store.waiting == {}


async def test_a_waiting_message_whose_case_never_comes_is_refused_after_the_wait() -> None:
    store, _ = await _world()
    event = proposal("no-such-case", MINISTRY)
    assert _sent(await send(store, event)) == []
    emitted: list[Unit[Any]] = []
    units = _units(store, emitted)
    assert await answer_stale_waiting(units, wait_s=120) == 0  # still waiting
    assert [_sent(u) for u in emitted] == [[]]
    before = store.snapshot()
    for m, w in store.waiting.items():  # the wait has passed
        assert w.received_at is not None
        store.waiting[m] = replace(w, received_at=w.received_at - timedelta(seconds=121))
    assert await answer_stale_waiting(units, wait_s=120) == 1
    unit = emitted[-1]
    assert _sent(unit) == [(ev.HANDOVER_REFUSED, OWNER)]  # no known case: keyed by the sender
    body = _body(unit)
    assert (body["error"], body["message_id"], body["agency_id"]) == (
        "unknown_case",
        event.event_id,
        OWNER,
    )
    assert unit.emitted[0].headers["ce_correlationid"] == event.correlation_id
    assert store.snapshot()[:-1] == before[:-1] and store.waiting == {}
    assert await answer_stale_waiting(units, wait_s=0) == 0  # answered once


async def test_a_redelivered_waiting_message_waits_once_and_is_decided_once() -> None:
    store, _ = await _world()
    case = _case()
    event = proposal(case.case_id, MINISTRY)
    assert _sent(await send(store, event)) == []
    assert _sent(await send(store, event)) == []  # the same ce_id again
    assert len(store.waiting) == 1
    await HANDLERS.on_case(case, arrived := _unit(store))
    assert [t for t, _ in _sent(arrived)].count(ev.HANDOVER_PROPOSED) == 1
    assert ev.HANDOVER_REFUSED not in [t for t, _ in _sent(arrived)]
    assert len(store.handovers) == 1


async def test_a_proposal_of_an_unknown_case_with_a_past_deadline_is_refused_at_once() -> None:
    """The contract is checked first: nothing to wait for."""
    store, _ = await _world()
    body = await refused(
        store, proposal("no-such-case", MINISTRY, respond_by=_later(-1)), "invalid_message", OWNER
    )
    assert [e["field"] for e in body["errors"]] == ["respond_by"]


async def test_a_proposal_of_a_case_the_sender_does_not_own_is_refused() -> None:
    store, case = await _world()
    await refused(store, proposal(case.case_id, MINISTRY, by=STRANGER), "not_owner", case.case_id)


@pytest.mark.parametrize("ended", [ev.CASE_CLOSED, ev.CASE_ERASED])
async def test_a_proposal_of_a_closed_or_erased_case_is_refused(ended: str) -> None:
    store, case = await _world()
    now = datetime.now(UTC)
    if ended == ev.CASE_CLOSED:
        gone: ev.CaseClosed | ev.CaseErased = ev.CaseClosed(
            case_id=case.case_id, reason=ev.ClosureReason.COMPLETED, closed_at=now
        )
    else:
        gone = ev.CaseErased(case_id=case.case_id, erased_at=now)
    await HANDLERS.on_case_ended(gone, _unit(store))
    body = await refused(store, proposal(case.case_id, MINISTRY), "case_not_open", case.case_id)
    assert ("erased" if ended == ev.CASE_ERASED else "closed") in body["reason"]


async def test_a_proposal_to_an_unknown_or_deregistered_agency_is_refused() -> None:
    store, case = await _world()
    unknown = await refused(store, proposal(case.case_id, "nobody"), "unknown_agency", case.case_id)
    assert "not registered" in unknown["reason"]
    await HANDLERS.on_agency_removed(MINISTRY, _unit(store))  # a tombstone on the registry
    gone = await refused(store, proposal(case.case_id, MINISTRY), "unknown_agency", case.case_id)
    assert "deregistered" in gone["reason"]
    await HANDLERS.on_agency(f.agency(MINISTRY, ev.AgencyType.GOVERNMENT), _unit(store))
    await _proposed(store, case)  # registered again: accepted


async def test_a_proposal_to_the_current_owner_is_refused() -> None:
    store, case = await _world()
    await refused(store, proposal(case.case_id, OWNER), "already_owner", case.case_id)


async def test_a_second_handover_while_one_waits_is_refused() -> None:
    store, case = await _world()
    first = await _proposed(store, case)
    await refused(
        store, proposal(case.case_id, PROGRAMME), "already_pending", case.case_id, state="proposed"
    )
    await refused(
        store, request(case.case_id, PROGRAMME), "already_pending", case.case_id, state="proposed"
    )
    await send(store, answer(first, MINISTRY, "accept", agency_case_ref="MIN-7"))
    # accepted, the case not moved yet: still waiting (on intake)
    await refused(
        store, proposal(case.case_id, PROGRAMME), "already_pending", case.case_id, state="accepted"
    )


@pytest.mark.parametrize(
    ("scope", "why"),
    [
        ({"purposes": ["referral"], "agency_ids": ["ngo-1"]}, "other agencies"),
        ({"purposes": ["referral"], "agency_types": ["ngo"]}, "other agency types"),
        ({"purposes": ["follow_up"]}, "purpose referral"),
        ({"purposes": ["referral"], "expires_on": "2026-01-01"}, "expired"),
    ],
)
async def test_a_proposal_the_consent_does_not_cover_is_refused(
    scope: dict[str, Any], why: str
) -> None:
    store, case = await _world(scope=scope)
    body = await refused(
        store, proposal(case.case_id, MINISTRY), "consent_not_covering", case.case_id
    )
    assert why in body["reason"]


async def test_a_proposal_carrying_a_consent_that_covers_the_new_owner_is_accepted() -> None:
    store, case = await _world(scope={"purposes": ["referral"], "agency_ids": ["ngo-1"]})
    renewed = f.consent(scope={"purposes": ["referral"], "agency_ids": ["ngo-1", MINISTRY]})
    not_covering = f.consent(given=False, scope=None)
    await refused(
        store,
        proposal(case.case_id, MINISTRY, consent=not_covering),
        "consent_not_covering",
        case.case_id,
    )
    unit = await send(store, proposal(case.case_id, MINISTRY, consent=renewed))
    [h] = store.handovers.values()
    accepted = await send(store, answer(h, MINISTRY, "accept", agency_case_ref="MIN-7"))
    assert _sent(accepted) == [(ev.HANDOVER_ACCEPTED, case.case_id)]
    assert _body(accepted)["consent"]["scope"]["agency_ids"] == ["ngo-1", MINISTRY]
    assert _sent(unit) == [(ev.HANDOVER_PROPOSED, case.case_id)]


# ----- requests -----


async def test_a_request_waits_on_the_owner_and_carries_the_requesters_reference() -> None:
    store, case = await _world()
    unit = await send(store, request(case.case_id, MINISTRY, agency_case_ref="MIN-42"))
    assert _sent(unit) == [(ev.HANDOVER_PROPOSED, case.case_id)]
    body = _body(unit)
    assert (body["direction"], body["answering_agency_id"]) == ("request", OWNER)
    assert body["receiving_agency_id"] == MINISTRY
    h = store.handovers[body["handover_id"]]
    approved = await send(store, answer(h, OWNER, "accept"))
    assert _sent(approved) == [(ev.HANDOVER_ACCEPTED, case.case_id)]
    assert _body(approved)["receiving_case_ref"] == "MIN-42"
    assert store.handovers[h.handover_id].state is HandoverState.ACCEPTED
    assert h.handover_id not in store.timers


async def test_requests_the_rules_do_not_allow_are_refused() -> None:
    store, case = await _world(scope={"purposes": ["referral"], "agency_types": ["government"]})
    # a request of a case not read yet waits for it (refused by the job if it never comes)
    waits = request("no-such-case", MINISTRY)
    assert _sent(await send(store, waits)) == []
    assert [w.ce_type for w in store.waiting.values()] == [ev.HANDOVER_REQUEST_SUBMITTED]
    emitted: list[Unit[Any]] = []
    assert await answer_stale_waiting(_units(store, emitted), wait_s=0) == 1
    assert _sent(emitted[0]) == [(ev.HANDOVER_REFUSED, MINISTRY)]
    assert _body(emitted[0])["error"] == "unknown_case"
    # a requester the registry does not know cannot write on a topic, but may be deregistered
    await HANDLERS.on_agency_removed(STRANGER, _unit(store))
    await refused(store, request(case.case_id, STRANGER), "unknown_agency", case.case_id)
    await refused(store, request(case.case_id, OWNER), "already_owner", case.case_id)
    await refused(store, request(case.case_id, PROGRAMME), "consent_not_covering", case.case_id)
    await HANDLERS.on_case_ended(
        ev.CaseErased(case_id=case.case_id, erased_at=datetime.now(UTC)), _unit(store)
    )
    await refused(store, request(case.case_id, MINISTRY), "case_not_open", case.case_id)


# ----- answers -----


async def test_a_rejection_ends_the_handover_with_its_reason() -> None:
    store, case = await _world()
    h = await _proposed(store, case)
    unit = await send(store, answer(h, MINISTRY, "reject", reason="no_capacity"))
    assert _sent(unit) == [(ev.HANDOVER_ENDED, case.case_id)]
    assert (_body(unit)["state"], _body(unit)["reason"]) == ("rejected", "no_capacity")
    assert store.handovers[h.handover_id].state is HandoverState.REJECTED
    assert h.handover_id not in store.timers
    assert store.cases[case.case_id].submitting_agency_id == OWNER
    # the conversation of the handover, not of the answer
    assert unit.emitted[0].headers["ce_correlationid"] == h.correlation_id


async def test_an_accepted_offer_is_handed_to_intake_with_the_new_owners_reference() -> None:
    store, case = await _world()
    h = await _proposed(store, case)
    unit = await send(store, answer(h, MINISTRY, "accept", agency_case_ref="MIN-7"))
    assert _sent(unit) == [(ev.HANDOVER_ACCEPTED, case.case_id)]
    body = _body(unit)
    assert (body["owner_agency_id"], body["receiving_agency_id"]) == (OWNER, MINISTRY)
    assert body["receiving_case_ref"] == "MIN-7" and "consent" not in body
    assert store.handovers[h.handover_id].state is HandoverState.ACCEPTED
    assert h.handover_id not in store.timers


async def test_answers_the_handover_does_not_wait_for_are_refused() -> None:
    store, case = await _world()
    h = await _proposed(store, case)
    unknown = {"handover_id": str(uuid.uuid4()), "case_id": case.case_id}
    await refused(
        store,
        answer(unknown, MINISTRY, "accept", agency_case_ref="M"),
        "unknown_handover",
        case.case_id,
    )
    other_case = {"handover_id": h.handover_id, "case_id": "no-such-case"}
    await refused(
        store,
        answer(other_case, MINISTRY, "accept", agency_case_ref="M"),
        "unknown_handover",
        MINISTRY,
    )
    # the owner cannot accept its own offer for the receiver
    await refused(
        store, answer(h, OWNER, "accept", agency_case_ref="M"), "not_answering_agency", case.case_id
    )
    missing = await refused(store, answer(h, MINISTRY, "accept"), "reference_missing", case.case_id)
    assert [e["field"] for e in missing["errors"]] == ["agency_case_ref"]
    invalid = await refused(
        store, answer(h, MINISTRY, "reject"), "invalid_message", MINISTRY
    )  # a rejection needs its reason
    assert invalid["errors"]


async def test_a_second_acceptance_is_refused_with_where_the_handover_stands() -> None:
    store, case = await _world()
    h = await _proposed(store, case)
    await send(store, answer(h, MINISTRY, "accept", agency_case_ref="MIN-7"))
    await refused(
        store,
        answer(h, MINISTRY, "accept", agency_case_ref="MIN-7"),
        "not_pending",
        case.case_id,
        state="accepted",
    )


async def test_an_unanswered_handover_expires_at_its_deadline_and_a_late_answer_is_refused() -> (
    None
):
    store, case = await _world()
    h = await _proposed(store, case)
    store.timers[h.handover_id] = datetime.now(UTC) - timedelta(seconds=1)  # its deadline passed
    emitted: list[Unit[Any]] = []

    @asynccontextmanager
    async def units() -> AsyncIterator[Unit[Any]]:
        unit = _unit(store)
        yield unit
        emitted.append(unit)

    assert await expire_due_handovers(units) == 1
    [unit] = emitted
    assert _sent(unit) == [(ev.HANDOVER_ENDED, case.case_id)]
    assert (_body(unit)["state"], _body(unit).get("reason")) == ("expired", None)
    assert store.handovers[h.handover_id].state is HandoverState.EXPIRED
    assert store.cases[case.case_id].submitting_agency_id == OWNER  # the owner keeps it
    assert await expire_due_handovers(units) == 0  # taken once
    await refused(
        store,
        answer(h, MINISTRY, "accept", agency_case_ref="MIN-7"),
        "not_pending",
        case.case_id,
        state="expired",
    )
    await _proposed(store, case, PROGRAMME)  # nothing waits any more: a new one may


async def test_a_handover_answered_before_its_deadline_does_not_expire() -> None:
    store, case = await _world()
    h = await _proposed(store, case)
    await send(store, answer(h, MINISTRY, "reject", reason="not_in_mandate"))
    emitted: list[Unit[Any]] = []

    @asynccontextmanager
    async def units() -> AsyncIterator[Unit[Any]]:
        unit = _unit(store)
        yield unit
        emitted.append(unit)

    assert await expire_due_handovers(units) == 0
    assert emitted[0].emitted == []


# ----- the case changes hands (intake.cases.v1) -----


async def _accepted(store: Store, case: ev.CaseRegistered) -> HandoverRow:
    h = await _proposed(store, case)
    await send(store, answer(h, MINISTRY, "accept", agency_case_ref="MIN-7"))
    return store.handovers[h.handover_id]


def _handed(h: HandoverRow) -> ev.CaseHandedOver:
    return ev.CaseHandedOver(
        handover_id=h.handover_id,
        case_id=h.case_id,
        from_agency_id=h.owner_agency_id,
        to_agency_id=h.receiving_agency_id,
        to_agency_case_ref=h.receiving_case_ref or "",
        handed_over_at=datetime.now(UTC),
    )


async def test_a_case_handed_over_tells_its_providers_and_its_new_owner_hears_their_progress() -> (
    None
):
    store, case = await _world()
    h = await _accepted(store, case)
    unit = _unit(store)
    await HANDLERS.on_case_handed_over(_handed(h), unit)
    [referral] = store.referrals.values()
    assert _sent(unit) == [(ev.SUPPORT_CONTINUES, case.case_id)]
    body = _body(unit)
    assert (body["referral_id"], body["recipient_agency_id"]) == (referral.referral_id, "ngo-1")
    assert (body["owner_agency_id"], body["cause"]) == (MINISTRY, "case_handed_over")
    assert store.handovers[h.handover_id].state is HandoverState.COMPLETED
    assert store.cases[case.case_id].submitting_agency_id == MINISTRY
    # the provider answers: the transition names the new owner
    event = _response(referral, "ngo-1", "accept")
    answered = _unit(store, event)
    await HANDLERS.on_response(event, answered)
    transitioned = _body(answered)
    assert transitioned["referring_agency_id"] == OWNER
    assert transitioned["case_owner_agency_id"] == MINISTRY
    # the new owner's update adds a need: referred by it
    updated = case.model_copy(
        update={
            "submitting_agency_id": MINISTRY,
            "needs": [*case.needs, ev.Need(need_id="n3", category="psychosocial.counselling")],
        }
    )
    more = _unit(store)
    await HANDLERS.on_case(updated, more)
    [(type_, _)] = _sent(more)
    assert type_ == ev.REFERRAL_REQUESTED and _body(more)["referring_agency_id"] == MINISTRY


async def test_a_transition_of_a_case_never_handed_over_names_no_other_owner() -> None:
    store, _ = await _world()
    [referral] = store.referrals.values()
    event = _response(referral, "ngo-1", "acknowledge")
    unit = _unit(store, event)
    await HANDLERS.on_response(event, unit)
    assert "case_owner_agency_id" not in _body(unit)


async def test_a_failed_handover_leaves_the_owner_and_tells_nobody_more() -> None:
    store, case = await _world()
    h = await _accepted(store, case)
    unit = _unit(store)
    failed = ev.HandoverFailed(
        handover_id=h.handover_id,
        case_id=case.case_id,
        from_agency_id=OWNER,
        to_agency_id=MINISTRY,
        reason=ev.HandoverFailureReason.NO_PUBLIC_KEY,
    )
    await HANDLERS.on_handover_failed(failed, unit)
    assert unit.emitted == []  # intake's event tells both parties
    assert store.handovers[h.handover_id].state is HandoverState.FAILED
    assert store.cases[case.case_id].submitting_agency_id == OWNER
    await _proposed(store, case, PROGRAMME)  # nothing waits any more


# ----- assistance ends, closures that continue -----


def _ended(case: ev.CaseRegistered) -> ev.AssistanceEnded:
    return ev.AssistanceEnded(
        case_id=case.case_id,
        owner_agency_id=OWNER,
        reason=ev.AssistanceEndReason.PROGRAMME_ENDED,
        ended_at=datetime.now(UTC),
    )


def _takeover(service: str, agency: str, type_: ev.AgencyType, *categories: str) -> TakeoverListing:
    return TakeoverListing(service, agency, type_, categories, (AREA[:4],))


async def test_the_end_of_assistance_continues_the_referrals_and_proposes_next_owners() -> None:
    store, case = await _world()
    store.takeover = [
        _takeover(
            "svc-prog", PROGRAMME, ev.AgencyType.DEVELOPMENT_PROGRAMME, "economic.job_placement"
        ),
        _takeover("svc-min", MINISTRY, ev.AgencyType.GOVERNMENT, "economic.job_placement"),
        _takeover("svc-own", OWNER, ev.AgencyType.UN_AGENCY, "economic.job_placement"),
        _takeover(
            "svc-x",
            STRANGER,
            ev.AgencyType.NGO,
            "economic.job_placement",
            "psychosocial.counselling",
        ),
    ]
    unit = _unit(store)
    await HANDLERS.on_assistance_ended(_ended(case), unit)
    [referral] = store.referrals.values()
    assert _sent(unit) == [
        (ev.SUPPORT_CONTINUES, case.case_id),
        (ev.CONTINUITY_PROPOSED, case.case_id),
    ]
    continues = _body(unit)
    assert (continues["cause"], continues["assistance_end_reason"]) == (
        "assistance_ended",
        "programme_ended",
    )
    assert (continues["referral_id"], continues["owner_agency_id"]) == (referral.referral_id, OWNER)
    proposed = _body(unit, 1)
    assert proposed["owner_agency_id"] == OWNER
    assert proposed["open_need_ids"] == ["n1", "n2"]  # n1 referred (not completed), n2 a gap
    ranked = [(c["agency_id"], c["explanation"]["score"]) for c in proposed["candidates"]]
    # both categories first; then one of two, the government service before the programme
    assert ranked == [(STRANGER, 1.0), (MINISTRY, 0.5), (PROGRAMME, 0.5)]
    assert "category:economic.job_placement" in proposed["candidates"][1]["explanation"]["matched"]
    [(recorded, open_then)] = store.ends  # for the evidence: what was open at the end
    assert (recorded.case_id, open_then) == (case.case_id, [referral.referral_id])
    assert store.referrals[referral.referral_id].status is S.REQUESTED  # nothing cancelled


async def test_no_next_owner_is_proposed_when_every_need_is_served() -> None:
    store, case = await _world()
    served = case.model_copy(update={"needs": case.needs[:1]})
    store.cases[case.case_id] = served
    [referral] = store.referrals.values()
    store.referrals[referral.referral_id] = replace(referral, status=S.COMPLETED)
    unit = _unit(store)
    await HANDLERS.on_assistance_ended(_ended(case), unit)
    assert unit.emitted == []  # no open referral to tell, no open need


async def test_a_closure_that_continues_the_open_referrals_tells_their_providers() -> None:
    store, case = await _world()
    unit = _unit(store)
    closure = ev.CaseClosed(
        case_id=case.case_id,
        reason=ev.ClosureReason.COMPLETED,
        closed_at=datetime.now(UTC),
        open_referrals=ev.OpenReferralsOnClosure.CONTINUE,
    )
    await HANDLERS.on_case_ended(closure, unit)
    [referral] = store.referrals.values()
    assert _sent(unit) == [(ev.SUPPORT_CONTINUES, case.case_id)]
    assert (_body(unit)["cause"], _body(unit)["owner_agency_id"]) == ("case_closed", OWNER)
    assert store.referrals[referral.referral_id].status is S.REQUESTED
    assert store.status[case.case_id] == "closed"
    # a rejection ends that referral; a closed case is not re-routed
    event = _response(referral, "ngo-1", "reject", reason_code="at_capacity")
    answered = _unit(store, event)
    await HANDLERS.on_response(event, answered)
    assert [t for t, _ in _sent(answered)] == [ev.REFERRAL_TRANSITIONED, ev.RESPONSE_APPLIED]


async def test_a_closure_that_cancels_is_as_before() -> None:
    store, case = await _world()
    unit = _unit(store)
    closure = ev.CaseClosed(
        case_id=case.case_id, reason=ev.ClosureReason.COMPLETED, closed_at=datetime.now(UTC)
    )
    await HANDLERS.on_case_ended(closure, unit)
    assert [t for t, _ in _sent(unit)] == [ev.REFERRAL_TRANSITIONED]
    assert _body(unit)["to_state"] == "cancelled"


# ----- the pure parts -----


def test_a_need_is_open_unless_its_last_referral_is_completed() -> None:
    needs = [ev.Need(need_id=n, category="psychosocial.counselling") for n in ("a", "b", "c", "d")]
    states = {"a": S.COMPLETED, "b": S.IN_PROGRESS, "c": S.FAILED}
    assert [n.need_id for n in open_needs(needs, states)] == ["b", "c", "d"]


def test_next_owners_one_per_agency_at_most_five_best_first() -> None:
    listings = [
        _takeover(f"svc-{n}", f"ngo-{n % 7}", ev.AgencyType.NGO, "economic.job_placement")
        for n in range(20)
    ] + [_takeover("svc-far", "ngo-far", ev.AgencyType.NGO, "economic.job_placement")]
    listings[-1] = replace(listings[-1], coverage_areas=("GM",))  # does not cover the area
    chosen = next_owners(
        owner_agency_id=OWNER,
        return_area=AREA,
        open_categories=["economic.job_placement", "economic.job_placement"],
        consent=ev.Consent.model_validate(f.consent()),
        listings=listings,
        now=datetime.now(UTC),
    )
    assert len(chosen) == 5
    assert len({c.agency_id for c in chosen}) == 5 and "ngo-far" not in {
        c.agency_id for c in chosen
    }
    assert [c.service_id for c in chosen] == sorted(c.service_id for c in chosen)
    explanation = chosen[0].explanation
    assert explanation.score == 1.0 and explanation.components["consent_covers"] == 1.0
    assert f"coverage:{AREA[:4]}" in explanation.matched
