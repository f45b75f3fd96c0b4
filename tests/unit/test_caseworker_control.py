"""Caseworker control (issue 18, decision 19) in milliseconds: the pure decisions of control.py,
and referral's handlers on an in-memory store carrying out referrer instructions — held needs,
ranked alternatives, exclusions honoured by later routing, choose, revoke, redirect, and every
refusal changing nothing. The same flow runs on the real broker in tests/e2e/test_control.py."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notification.fanout import notices
from services.referral import control
from services.referral.control import Exclusions
from services.referral.decisions import Gap, Refer, ReferralRow
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.matching import Candidate
from shared.contracts import events as ev
from shared.contracts.messages import instruction_message
from shared.contracts.taxonomy import ReasonCode, Urgency
from shared.kafka.inbound import InboundEvent
from shared.unit import Cause, Unit
from tests import factories as f
from tests.unit.test_referral_continuity import Store
from tests.unit.test_referral_handlers import (
    AREA,
    POLICY,
    REFERRER,
    _candidate,
    _response,
    _unit,
)

COUNSELLING = "psychosocial.counselling"
E = ev.InstructionError


class ControlStore(Store):
    """The continuity tests' fake store (cases with their owner and status) with what caseworker
    control reads and writes: held needs, exclusions, any listing by id."""

    def __init__(self, candidates: list[Candidate]) -> None:
        super().__init__()
        self.listed = candidates
        self.held: set[tuple[str, str]] = set()
        self.excluded: dict[tuple[str, str], Exclusions] = {}

    async def need_is_handled(self, case_id: str, need_id: str) -> bool:
        return (case_id, need_id) in self.held or await super().need_is_handled(case_id, need_id)

    async def hold_needs(self, case_id: str, need_ids: list[str]) -> None:
        self.held |= {(case_id, n) for n in need_ids}

    async def is_held(self, case_id: str, need_id: str) -> bool:
        return (case_id, need_id) in self.held

    async def release_held(self, case_id: str, need_id: str) -> None:
        self.held.discard((case_id, need_id))

    async def exclusions(self, case_id: str, need_id: str) -> Exclusions:
        return self.excluded.get((case_id, need_id), control.NO_EXCLUSIONS)

    async def add_exclusions(
        self, case_id: str, need_id: str, services: list[str], agencies: list[str]
    ) -> None:
        key = (case_id, need_id)
        self.excluded[key] = self.excluded.get(key, control.NO_EXCLUSIONS).adding(
            services, agencies
        )

    async def listing_candidate(self, service_id: str) -> Candidate | None:
        return next((c for c in self.listed if c.service_id == service_id), None)

    async def record_route(
        self, case: ev.CaseRegistered, need: ev.Need, decided: Refer | Gap, correlation: Any
    ) -> None:
        await super().record_route(case, need, decided, correlation)
        if isinstance(decided, Refer):  # the open referral's case owner, as the real store reads
            r = self.referrals[decided.referral.referral_id]
            self.referrals[r.referral_id] = replace(
                r, case_owner_agency_id=case.submitting_agency_id
            )


def _scored(n: int, *, area: str = AREA, **kw: Any) -> Candidate:
    """Candidate n, ranked by its answer rate (a higher n ranks lower)."""
    return replace(_candidate(n), answer_rate=1 - n / 10, coverage_areas=(area,), **kw)


def held_case(
    area: str = AREA, category: str = COUNSELLING, *, held: bool = True
) -> ev.CaseRegistered:
    """A case of the referrer with one need n1, held for its choice (or not)."""
    return ev.CaseRegistered.model_validate(
        {
            "case_id": str(uuid.uuid4()),
            "submitting_agency_id": REFERRER,
            "profile": f.profile(return_area=area),
            "needs": [{"need_id": "n1", "category": category, "hold_for_referrer": held}],
            "consent": f.consent(),
        }
    )


def _instruction(
    case: ev.CaseRegistered, action: str, sender: str = REFERRER, **kw: Any
) -> InboundEvent:
    instruction = ev.ReferrerInstruction.model_validate(
        {"case_id": case.case_id, "agency_id": sender, "action": action, **kw}
    )
    return InboundEvent.from_record(f.record_of(instruction_message(instruction)))


async def _send(store: ControlStore, event: InboundEvent) -> list[tuple[str, dict[str, Any]]]:
    unit = Unit(None, store, SOURCE, Cause.of(event))  # type: ignore[arg-type]
    await ReferralHandlers(POLICY).on_response(event, unit)
    return [(e.headers["ce_type"], json.loads(e.body)) for e in unit.emitted]


async def _registered(store: ControlStore, case: ev.CaseRegistered) -> list[tuple[str, Any]]:
    unit = _unit(store)
    await ReferralHandlers(POLICY).on_case(case, unit)
    return [(e.headers["ce_type"], json.loads(e.body)) for e in unit.emitted]


# ----- the pure decisions -----


def test_alternatives_are_ranked_with_explanations_and_leave_out_the_exclusions() -> None:
    case, listed = held_case(), [_scored(3), _scored(1), _scored(2)]
    need = case.needs[0]
    every = control.alternatives(
        "i1", case, need, listed, control.NO_EXCLUSIONS, (), k=10, held=True
    )
    assert [a.service_id for a in every.alternatives] == ["svc-1", "svc-2", "svc-3"]
    assert [a.rank for a in every.alternatives] == [1, 2, 3]
    assert every.alternatives[0].explanation.components["answer_rate"] == 0.9
    without = control.alternatives(
        "i2", case, need, listed, Exclusions(agencies=frozenset({"ngo-1"})), (), k=1, held=False
    )
    assert [a.service_id for a in without.alternatives] == ["svc-2"]  # top 1, ngo-1 excluded
    assert without.excluded_agency_ids == ["ngo-1"]
    none = control.alternatives("i3", case, need, [], control.NO_EXCLUSIONS, (), k=5, held=True)
    assert (none.alternatives, none.unmatched_reason) == ([], ev.UnmatchedReason.NO_LISTING)


def test_a_choice_is_refused_for_an_unknown_excluded_or_unacceptable_service() -> None:
    case, now = held_case(), datetime.now(UTC)
    need, none = case.needs[0], control.NO_EXCLUSIONS

    def chosen(c: Candidate | None, exclusions: Exclusions = none, **kw: Any) -> Any:
        return control.choose(case, need, c, exclusions, (), POLICY, now, **kw)

    assert chosen(None).error is E.UNKNOWN_SERVICE
    assert chosen(_scored(1), Exclusions(services=frozenset({"svc-1"}))).error is E.SERVICE_EXCLUDED
    assert chosen(_scored(1), Exclusions(agencies=frozenset({"ngo-1"}))).error is E.SERVICE_EXCLUDED
    elsewhere = chosen(_scored(1, area="ML01"))
    assert (elsewhere.error, elsewhere.unmatched_reason) == (
        E.NOT_ACCEPTABLE,
        ev.UnmatchedReason.NO_LISTING,
    )
    full = chosen(_scored(1, capacity=ev.CapacityStatus.NO_CAPACITY))
    assert full.unmatched_reason is ev.UnmatchedReason.NO_CAPACITY
    assert chosen(_scored(1), current_service_id="svc-1").error is E.SAME_SERVICE
    refer = chosen(_scored(2))
    assert isinstance(refer, Refer)
    assert (refer.referral.service_id, refer.referral.attempt) == ("svc-2", 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "choose", "need_id": "n1"}, "service_id"),
        ({"action": "revoke"}, "referral_id"),
        ({"action": "exclude", "need_id": "n1"}, "exclude"),
        ({"action": "list_alternatives", "need_id": "n1", "k": 11}, "k"),
        ({"action": "revoke", "referral_id": "r", "reason_code": "at_capacity"}, "reason_code"),
        ({"action": "list_alternatives", "need_id": "n1", "service_id": "s"}, "service_id"),
    ],
)
def test_an_instruction_missing_what_its_action_needs_is_invalid(
    body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        ev.ReferrerInstruction.model_validate({"case_id": "c", "agency_id": REFERRER, **body})


# ----- the handlers -----


async def test_a_held_need_is_not_routed_its_referrer_hears_the_alternatives() -> None:
    store, case = ControlStore([_scored(1), _scored(2)]), held_case()
    [(type_, listed)] = await _registered(store, case)
    assert type_ == ev.ALTERNATIVES_LISTED
    assert (listed["held"], listed.get("instruction_id"), listed["referring_agency_id"]) == (
        True,
        None,
        REFERRER,
    )
    assert [a["service_id"] for a in listed["alternatives"]] == ["svc-1", "svc-2"]
    assert store.referrals == {} and (case.case_id, "n1") in store.held
    assert await _registered(store, case) == []  # an update routes and lists nothing again
    [notice] = notices(ev.ALTERNATIVES_LISTED, ev.AlternativesListed.model_validate(listed))
    assert (notice.agency_id, notice.subject) == (REFERRER, f"{case.case_id}:n1")


async def test_list_exclude_choose_the_second_then_revoke() -> None:
    """The e2e flow: the referrer excludes a provider, picks the second-ranked alternative of
    what is left, revokes it; the recipient is told to erase what it received."""
    store, case = ControlStore([_scored(1), _scored(2), _scored(3)]), held_case()
    await _registered(store, case)
    [(_, excluded)] = await _send(
        store, _instruction(case, "exclude", need_id="n1", exclude_agency_ids=["ngo-1"])
    )
    assert excluded["excluded_agency_ids"] == ["ngo-1"]
    [(type_, listed)] = await _send(store, _instruction(case, "list_alternatives", need_id="n1"))
    assert type_ == ev.ALTERNATIVES_LISTED
    assert [a["service_id"] for a in listed["alternatives"]] == ["svc-2", "svc-3"]
    second = listed["alternatives"][1]["service_id"]
    sent = await _send(store, _instruction(case, "choose", need_id="n1", service_id=second))
    assert [t for t, _ in sent] == [ev.REFERRAL_REQUESTED, ev.INSTRUCTION_APPLIED]
    referral_id = sent[0][1]["referral_id"]
    assert sent[1][1]["referral_id"] == referral_id and sent[0][1]["service_id"] == "svc-3"
    assert (case.case_id, "n1") not in store.held

    revoked = await _send(store, _instruction(case, "revoke", referral_id=referral_id))
    assert [t for t, _ in revoked] == [ev.REFERRAL_TRANSITIONED, ev.INSTRUCTION_APPLIED]
    change = ev.ReferralTransitioned.model_validate(revoked[0][1])
    assert (change.to_state, change.reason_code, change.cancelled_by) == (
        ev.ReferralState.CANCELLED,
        ReasonCode.OTHER,
        ev.CancelledBy.REQUESTER,
    )
    told = {n.inbox_type: n for n in notices(ev.REFERRAL_TRANSITIONED, change)}
    cancelled = told[ev.INBOX_REFERRAL_CANCELLED]
    assert cancelled.agency_id == "ngo-3"
    assert cancelled.data.erase_received_data is True  # type: ignore[attr-defined]
    assert store.referrals[referral_id].status is ev.ReferralState.CANCELLED


async def test_exclusions_are_honoured_by_a_later_reroute() -> None:
    store, case = ControlStore([_scored(1), _scored(2), _scored(3)]), held_case()
    await _registered(store, case)
    await _send(store, _instruction(case, "exclude", need_id="n1", exclude_service_ids=["svc-2"]))
    [(_, requested), _] = await _send(
        store, _instruction(case, "choose", need_id="n1", service_id="svc-1")
    )
    ref = store.referrals[requested["referral_id"]]
    event = _response(ref, "ngo-1", "reject", reason_code="at_capacity")
    unit = Unit(None, store, SOURCE, Cause.of(event))  # type: ignore[arg-type]
    await ReferralHandlers(POLICY).on_response(event, unit)
    rerouted = json.loads(unit.emitted[-1].body)
    assert (rerouted["service_id"], rerouted["attempt"]) == ("svc-3", 2)  # svc-2 excluded


async def test_a_redirect_cancels_and_refers_the_next_attempt() -> None:
    store = ControlStore([_scored(1), _scored(2)])
    case = held_case().model_copy(
        update={"needs": [ev.Need(need_id="n1", category=COUNSELLING)]}  # type: ignore[call-arg]
    )
    await _registered(store, case)  # routed at once to svc-1
    [first] = store.referrals.values()
    sent = await _send(
        store, _instruction(case, "redirect", referral_id=first.referral_id, service_id="svc-2")
    )
    assert [t for t, _ in sent] == [
        ev.REFERRAL_TRANSITIONED,
        ev.REFERRAL_REQUESTED,
        ev.INSTRUCTION_APPLIED,
    ]
    assert sent[0][1]["cancelled_by"] == "requester"
    assert (sent[1][1]["attempt"], sent[1][1]["previous_referral_id"]) == (2, first.referral_id)
    assert sent[2][1]["previous_referral_id"] == first.referral_id


async def _refused(store: ControlStore, event: InboundEvent) -> dict[str, Any]:
    before = dict(store.referrals), set(store.held), dict(store.excluded)
    [(type_, body)] = await _send(store, event)
    assert type_ == ev.INSTRUCTION_REFUSED
    assert (dict(store.referrals), set(store.held), dict(store.excluded)) == before
    return body


async def test_every_refusal_changes_nothing_and_says_why() -> None:
    store, case = ControlStore([_scored(1), _scored(2)]), held_case()
    await _registered(store, case)
    unknown = await _refused(store, _instruction(case, "choose", need_id="n1", service_id="nope"))
    assert (unknown["error"], unknown["errors"][0]["field"]) == ("unknown_service", "service_id")
    stranger = await _refused(
        store, _instruction(case, "list_alternatives", sender="ngo-9", need_id="n1")
    )
    assert stranger["error"] == "not_referring_agency"
    missing = await _refused(store, _instruction(case, "list_alternatives", need_id="n7"))
    assert missing["error"] == "unknown_need"

    [(_, requested), _] = await _send(
        store, _instruction(case, "choose", need_id="n1", service_id="svc-1")
    )
    again = await _refused(store, _instruction(case, "choose", need_id="n1", service_id="svc-2"))
    assert (again["error"], again["current_state"]) == ("need_has_open_referral", "requested")
    referral_id = requested["referral_id"]
    # a revoke of a referral the sender did not make: another agency, not the case's owner
    not_theirs = await _refused(
        store, _instruction(case, "revoke", sender="ngo-2", referral_id=referral_id)
    )
    assert not_theirs["error"] == "not_referring_agency"
    same = await _refused(
        store, _instruction(case, "redirect", referral_id=referral_id, service_id="svc-1")
    )
    assert same["error"] == "same_service"
    # a completed referral cannot be revoked
    ref = store.referrals[referral_id]
    store.referrals[referral_id] = replace(ref, status=ev.ReferralState.COMPLETED)
    done = await _refused(store, _instruction(case, "revoke", referral_id=referral_id))
    assert (done["error"], done["current_state"]) == ("referral_ended", "completed")
    other = await _refused(store, _instruction(case, "revoke", referral_id=str(uuid.uuid4())))
    assert other["error"] == "unknown_referral"
    store.status[case.case_id] = "closed"
    closed = await _refused(store, _instruction(case, "list_alternatives", need_id="n1"))
    assert closed["error"] == "case_not_open"
    nobody = replace_case(case)
    assert (await _refused(store, _instruction(nobody, "revoke", referral_id="r")))[
        "error"
    ] == "unknown_case"


def replace_case(case: ev.CaseRegistered) -> ev.CaseRegistered:
    return case.model_copy(update={"case_id": str(uuid.uuid4())})


async def test_an_invalid_instruction_is_refused_with_its_fields() -> None:
    store = ControlStore([])
    case = held_case()
    valid = instruction_message(
        ev.ReferrerInstruction(
            case_id=case.case_id,
            agency_id=REFERRER,
            action=ev.InstructionAction.CHOOSE,
            need_id="n1",
            service_id="svc-1",
        )
    )
    body_sent = {
        "case_id": case.case_id,
        "agency_id": REFERRER,
        "action": "choose",
        "need_id": "n1",
    }
    bad = replace(valid, body=json.dumps(body_sent).encode())  # no service_id
    body = await _refused(store, InboundEvent.from_record(f.record_of(bad)))
    assert body["error"] == "invalid_instruction" and body["errors"]
    [notice] = notices(ev.INSTRUCTION_REFUSED, ev.InstructionRefused.model_validate(body))
    assert (notice.agency_id, notice.subject) == (REFERRER, body["instruction_id"])


def test_a_cancel_by_the_service_for_another_reason_does_not_ask_to_erase() -> None:
    ref = ReferralRow(
        "r1", "c1", "n1", COUNSELLING, Urgency.NORMAL, ev.ReferralState.REQUESTED, 1,
        REFERRER, "ngo-1", "svc-1", None,
    )  # fmt: skip
    from services.referral.decisions import transitioned

    closed = transitioned(
        ref, ev.ReferralState.CANCELLED, reason=ReasonCode.OTHER, now=datetime.now(UTC)
    )
    [_, cancelled] = notices(ev.REFERRAL_TRANSITIONED, closed)
    assert cancelled.data.erase_received_data is False  # type: ignore[attr-defined]


def test_the_requester_may_cancel_what_is_open_and_only_that() -> None:
    from services.referral.lifecycle import OPEN_STATES, requester_can_cancel

    assert {s for s in ev.ReferralState if requester_can_cancel(s)} == OPEN_STATES
    assert not requester_can_cancel(ev.ReferralState.COMPLETED)


async def test_an_exclusion_leaves_the_open_referral_alone_and_a_held_need_may_have_none() -> None:
    store = ControlStore([_scored(1)])
    routed = held_case().model_copy(
        update={"needs": [ev.Need(need_id="n1", category=COUNSELLING)]}  # type: ignore[call-arg]
    )
    await _registered(store, routed)
    [ref] = store.referrals.values()
    [(type_, applied)] = await _send(
        store, _instruction(routed, "exclude", need_id="n1", exclude_service_ids=["svc-1"])
    )
    assert type_ == ev.INSTRUCTION_APPLIED and applied["excluded_service_ids"] == ["svc-1"]
    assert store.referrals[ref.referral_id].status is ev.ReferralState.REQUESTED

    empty = ControlStore([_scored(1, area="ML01")])  # covers another area
    held = held_case()
    [(_, listed)] = await _registered(empty, held)
    assert (listed["alternatives"], listed["unmatched_reason"]) == ([], "no_listing")
    assert (held.case_id, "n1") in empty.held and empty.unmet == {}
