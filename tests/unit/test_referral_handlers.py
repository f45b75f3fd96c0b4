"""Referral's handlers on an in-memory store: routing, answers, refusals and cancellations in
milliseconds. The same rules run on the real broker and database in tests/e2e/test_referral.py;
here the store is a fake that keeps what it is given; the routing and the transitions are the
service's own (routing.py over the pure decisions.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.referral.control import NO_EXCLUSIONS, Exclusions
from services.referral.decisions import ChainLink, Gap, Refer, ReferralRow, RoutingPolicy
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.handovers import WaitingHandover
from services.referral.matching import Candidate
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.messages import response_message
from shared.kafka.inbound import InboundEvent
from shared.unit import Cause, Unit
from tests import factories as f

POLICY = RoutingPolicy(max_attempts=3)
AREA = "SN0101"
REFERRER = "iom-sn"


class FakeStore:
    """ReferralStore in memory: cases, referrals, chains and unmet needs as dicts. It only
    keeps what it is given, as the real store does; routing decides (routing.py)."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.listed = candidates
        self.cases: dict[str, ev.CaseRegistered] = {}
        self.referrals: dict[str, ReferralRow] = {}
        self.chains: dict[tuple[str, str], list[ChainLink]] = {}
        self.unmet: dict[tuple[str, str], ev.UnmatchedReason] = {}
        self.waiting: dict[str, WaitingHandover] = {}  # handover messages by ce_id
        # consent that follows through (issue 18)
        self.agency_type_of: dict[str, ev.AgencyType] = {}
        self.expiries: dict[str, datetime] = {}  # case id → its consent-expiry timer
        self.erased: dict[str, dict[str, Any] | None] = {}  # case id → the profile it kept
        self.ended: dict[str, str] = {}

    async def save_case(
        self, case: ev.CaseRegistered, routes: Any = (), correlation: Any = None
    ) -> None:
        self.cases[case.case_id] = case
        for need, decided in routes:
            await self.record_route(case, need, decided, correlation)

    async def load_case(self, case_id: str) -> ev.CaseRegistered | None:
        return self.cases.get(case_id)

    async def need_is_handled(self, case_id: str, need_id: str) -> bool:
        return (case_id, need_id) in self.chains or (case_id, need_id) in self.unmet

    async def chain(self, case_id: str, need_id: str) -> list[ChainLink]:
        return list(self.chains.get((case_id, need_id), []))

    async def candidates(self, category: str, area: str) -> list[Candidate]:
        return self.listed

    async def record_route(
        self, case: ev.CaseRegistered, need: ev.Need, decided: Refer | Gap, correlation: Any
    ) -> None:
        key = (case.case_id, need.need_id)
        if isinstance(decided, Gap):
            self.unmet[key] = decided.unmatched.reason
            return
        r = decided.referral
        self.unmet.pop(key, None)
        self.chains.setdefault(key, []).append(ChainLink(r.referral_id, r.service_id, r.attempt))
        self.referrals[r.referral_id] = ReferralRow(
            r.referral_id, r.case_id, r.need_id, r.category, r.urgency,
            ev.ReferralState.REQUESTED, r.attempt, r.referring_agency_id,
            r.recipient_agency_id, r.service_id, correlation,
        )  # fmt: skip

    async def load_referral(self, referral_id: str) -> ReferralRow | None:
        return self.referrals.get(referral_id)

    async def open_referrals(
        self, case_id: str, states: list[ev.ReferralState]
    ) -> list[ReferralRow]:
        return [r for r in self.referrals.values() if r.case_id == case_id and r.status in states]

    async def set_state(self, ref: ReferralRow, to: ev.ReferralState, **_: Any) -> None:
        self.referrals[ref.referral_id] = replace(ref, status=to)

    async def exclusions(self, case_id: str, need_id: str) -> Exclusions:
        return NO_EXCLUSIONS  # a subclass keeps a referrer's (test_caseworker_control.py)

    # consent that follows through
    def has_no_open_referral(self, case_id: str) -> bool:
        return False  # unknown: the handlers ask open_referrals

    async def agency_types(self, agency_ids: list[str]) -> dict[str, ev.AgencyType]:
        return {a: self.agency_type_of[a] for a in agency_ids if a in self.agency_type_of}

    async def set_consent_expiry(self, case_id: str, due_at: datetime | None) -> None:
        if due_at is None:
            self.expiries.pop(case_id, None)
        else:
            self.expiries[case_id] = due_at

    async def case_profile_and_consent(self, case_id: str) -> Any:
        case = self.cases.get(case_id)
        return (case.profile.model_dump(mode="json"), case.consent) if case else None

    async def close_case(self, case_id: str, *, erased: bool = False) -> None:
        self.ended[case_id] = "erased" if erased else "closed"

    async def erase_case(self, case_id: str, kept: dict[str, Any] | None, _: Any) -> None:
        self.erased[case_id] = kept
        self.expiries.pop(case_id, None)
        await self.close_case(case_id, erased=True)

    # handover messages waiting for their case (ce_id the key, in arrival order)
    async def park_handover(self, w: WaitingHandover) -> bool:
        if w.message_id in self.waiting:
            return False
        self.waiting[w.message_id] = replace(w, received_at=datetime.now(UTC))
        return True

    async def take_waiting(self, case_id: str) -> list[WaitingHandover]:
        return [self.waiting.pop(m) for m, w in list(self.waiting.items()) if w.case_id == case_id]

    async def take_stale_waiting(self, older_than_s: float, limit: int) -> list[WaitingHandover]:
        now = datetime.now(UTC)
        stale = [
            m
            for m, w in self.waiting.items()
            if w.received_at and (now - w.received_at).total_seconds() >= older_than_s
        ]
        return [self.waiting.pop(m) for m in stale[:limit]]


def _candidate(n: int) -> Candidate:
    return Candidate(
        service_id=f"svc-{n}",
        agency_id=f"ngo-{n}",
        agency_type=ev.AgencyType.NGO,
        status=ev.ListingStatus.ACTIVE,
        categories=("psychosocial.counselling",),
        coverage_areas=(AREA,),
        languages=("fr",),
        capacity=ev.CapacityStatus.HAS_CAPACITY,
        eligibility=ev.Eligibility(),
    )


def _case(**consent: Any) -> ev.CaseRegistered:
    return ev.CaseRegistered.model_validate(
        {
            "case_id": str(uuid.uuid4()),
            "submitting_agency_id": REFERRER,
            "profile": f.profile(return_area=AREA),
            "needs": [
                {"need_id": "n1", "category": "psychosocial.counselling"},
                {"need_id": "n2", "category": "economic.job_placement"},
            ],
            "consent": f.consent(**consent),
        }
    )


def _unit(store: FakeStore, ce_type: str = ev.CASE_REGISTERED) -> Unit[Any]:
    return Unit(None, store, SOURCE, Cause("conv-1", "cause-1", ce_type))  # type: ignore[arg-type]


def _sent(unit: Unit[Any]) -> list[tuple[str, str]]:
    return [(e.headers["ce_type"], e.key) for e in unit.emitted]


async def test_a_new_case_is_routed_need_by_need_keyed_by_the_case() -> None:
    store, case = FakeStore([_candidate(1)]), _case()
    unit = _unit(store)
    await ReferralHandlers(POLICY).on_case(case, unit)
    # n1 has a provider, n2 (another category) none: a referral and a recorded gap
    assert _sent(unit) == [
        (ev.REFERRAL_REQUESTED, case.case_id),
        (ev.NEED_UNMATCHED, case.case_id),
    ]
    assert all(e.topic == topics.REFERRAL_EVENTS for e in unit.emitted)
    assert {e.headers["ce_causationid"] for e in unit.emitted} == {"cause-1"}
    again = _unit(store)
    await ReferralHandlers(POLICY).on_case(case, again)  # an update: nothing routed twice
    assert again.emitted == []


async def test_consent_that_no_longer_covers_referral_cancels_what_is_open() -> None:
    store, case = FakeStore([_candidate(1)]), _case()
    await ReferralHandlers(POLICY).on_case(case, _unit(store))
    withdrawn = ev.ConsentChanged(
        case_id=case.case_id, consent=ev.Consent.model_validate(f.consent(given=False, scope=None))
    )
    store.update_consent = _noop  # type: ignore[attr-defined]
    unit = _unit(store, ev.CONSENT_CHANGED)
    await ReferralHandlers(POLICY).on_consent_changed(withdrawn, unit)
    [(type_, _)] = _sent(unit)
    body = json.loads(unit.emitted[0].body)
    assert type_ == ev.REFERRAL_TRANSITIONED
    assert (body["to_state"], body["reason_code"]) == ("cancelled", "consent_withdrawn")


async def _noop(*args: Any) -> None:
    return None


def _response(referral: ReferralRow, agency: str, action: str, **kw: Any) -> InboundEvent:
    response = ev.ReferralResponse.model_validate(
        {
            "referral_id": referral.referral_id,
            "agency_id": agency,
            "action": action,
            "responded_at": datetime.now(UTC).isoformat(),
            **kw,
        }
    )
    return InboundEvent.from_record(f.record_of(response_message(response, referral.case_id)))


async def test_a_rejection_is_applied_and_rerouted_to_the_next_provider() -> None:
    store, case = FakeStore([_candidate(1), _candidate(2)]), _case()
    await ReferralHandlers(POLICY).on_case(case, _unit(store))
    [first] = store.referrals.values()
    event = _response(first, first.recipient_agency_id, "reject", reason_code="at_capacity")
    unit = Unit(None, store, SOURCE, Cause.of(event))  # type: ignore[arg-type]
    await ReferralHandlers(POLICY).on_response(event, unit)
    assert _sent(unit) == [
        (ev.REFERRAL_TRANSITIONED, case.case_id),
        (ev.RESPONSE_APPLIED, case.case_id),
        (ev.REFERRAL_REQUESTED, case.case_id),
    ]
    rerouted = json.loads(unit.emitted[2].body)
    assert (rerouted["attempt"], rerouted["previous_referral_id"]) == (2, first.referral_id)
    # the referral's own conversation, not the answer's
    assert {e.headers["ce_correlationid"] for e in unit.emitted} == {"conv-1"}


async def test_an_answer_from_another_agency_or_about_nothing_is_refused_to_its_sender() -> None:
    store, case = FakeStore([_candidate(1)]), _case()
    await ReferralHandlers(POLICY).on_case(case, _unit(store))
    [referral] = store.referrals.values()
    # ngo-9 is not the recipient (its own topic proves who it is)
    intruder = _response(referral, "ngo-9", "accept")
    unit = Unit(None, store, SOURCE, Cause.of(intruder))  # type: ignore[arg-type]
    await ReferralHandlers(POLICY).on_response(intruder, unit)
    assert _sent(unit) == [(ev.RESPONSE_REFUSED, case.case_id)]
    assert json.loads(unit.emitted[0].body)["error"] == "not_recipient"
    assert store.referrals[referral.referral_id].status is ev.ReferralState.REQUESTED

    unknown = _response(replace(referral, referral_id=str(uuid.uuid4())), "ngo-9", "accept")
    unit = Unit(None, store, SOURCE, Cause.of(unknown))  # type: ignore[arg-type]
    await ReferralHandlers(POLICY).on_response(unknown, unit)
    assert _sent(unit) == [(ev.RESPONSE_REFUSED, "ngo-9")]  # no case known: keyed by sender
    assert json.loads(unit.emitted[0].body)["error"] == "unknown_referral"


# ----- a listing retries the unmet needs it fits -----


class ListingStore(FakeStore):
    """FakeStore with listings: a new or changed listing joins the candidates, and the unmet
    needs of its category are the ones it may serve (as the real store's query)."""

    async def upsert_listing(self, listing: ev.ServiceListing) -> bool:
        self.listed = [c for c in self.listed if c.service_id != listing.service_id]
        self.listed.append(_candidate_of(listing))
        return True

    async def unmet_needs_fitting(
        self, listing: ev.ServiceListing
    ) -> list[tuple[str, str, ev.UnmatchedReason]]:
        return [
            (case_id, need_id, reason)
            for (case_id, need_id), reason in self.unmet.items()
            if any(n.need_id == need_id and n.category in listing.categories
                   for n in self.cases[case_id].needs)
        ]  # fmt: skip


def _candidate_of(listing: ev.ServiceListing) -> Candidate:
    return replace(
        _candidate(0),
        service_id=listing.service_id,
        agency_id=listing.agency_id,
        categories=tuple(listing.categories),
    )


def _listing_event(listing: ev.ServiceListing, *, replayed: bool = False) -> InboundEvent:
    event = InboundEvent.from_record(f.record_of(f.listing_event(listing)))
    return replace(event, replayed=replayed)


async def _on_listing(store: FakeStore, event: InboundEvent) -> list[tuple[str, str]]:
    unit = Unit(None, store, SOURCE, Cause.of(event))  # type: ignore[arg-type]
    await ReferralHandlers(POLICY).on_listing(event, unit)
    return [(type_, key) for type_, key in _sent(unit) if type_ != ev.LISTING_PUBLISHED]


async def test_a_new_listing_refers_the_unmet_need_it_now_fits() -> None:
    store, case = ListingStore([]), _case()
    await ReferralHandlers(POLICY).on_case(case, _unit(store))
    assert set(store.unmet.values()) == {ev.UnmatchedReason.NO_LISTING}
    listing = f.listing("ngo-7", categories=["economic.job_placement"], service_areas=[AREA])
    assert await _on_listing(store, _listing_event(listing)) == [
        (ev.REFERRAL_REQUESTED, case.case_id)
    ]
    assert (case.case_id, "n2") not in store.unmet


async def test_a_gap_is_told_again_only_when_its_reason_changes() -> None:
    # consent allows only ngo-1: every other listing of the category leaves the need unmet
    store = ListingStore([])
    case = _case(scope={"purposes": ["referral"], "agency_ids": ["ngo-1"]})
    await ReferralHandlers(POLICY).on_case(case, _unit(store))
    listing = f.listing("ngo-7", categories=["economic.job_placement"], service_areas=[AREA])
    # no_listing → consent_scope: the referrer hears the new reason once
    assert await _on_listing(store, _listing_event(listing)) == [(ev.NEED_UNMATCHED, case.case_id)]
    assert store.unmet[(case.case_id, "n2")] is ev.UnmatchedReason.CONSENT_SCOPE
    # the same listing updated, then replayed at a restart: still consent_scope, nothing told
    updated = listing.model_copy(update={"name": "Job placement"})
    assert await _on_listing(store, _listing_event(updated)) == []
    assert await _on_listing(store, _listing_event(updated, replayed=True)) == []


async def test_a_replayed_listing_routes_nothing() -> None:
    store, case = ListingStore([]), _case()
    await ReferralHandlers(POLICY).on_case(case, _unit(store))
    listing = f.listing("ngo-7", categories=["economic.job_placement"], service_areas=[AREA])
    # its first coming retried the needs; a replay at start-up only rebuilds the listing
    assert await _on_listing(store, _listing_event(listing, replayed=True)) == []
    assert (case.case_id, "n2") in store.unmet
    assert [c.service_id for c in store.listed] == [listing.service_id]
