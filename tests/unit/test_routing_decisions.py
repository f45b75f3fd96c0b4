"""Referral's routing decision (decisions.decide_route), pure: no database, no clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.referral.decisions import ChainLink, Gap, Refer, RoutingPolicy, decide_route
from services.referral.matching import Candidate
from shared.contracts import events as ev
from tests import factories as f

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
POLICY = RoutingPolicy(max_attempts=3, sla_seconds_override=None, reminder_at_fraction=0.75)
AREA = "SN0101"
CASE = ev.CaseRegistered.model_validate(
    {
        "case_id": str(uuid.uuid4()),
        "submitting_agency_id": "iom-sn",
        "profile": f.profile(return_area=AREA),
        "needs": f.needs(),
        "consent": f.consent(),
    }
)
NEED = CASE.needs[0]


def _candidate(service_id: str, **kw: Any) -> Candidate:
    args: dict[str, Any] = {
        "agency_id": f"agency-{service_id}",
        "agency_type": ev.AgencyType.NGO,
        "status": ev.ListingStatus.ACTIVE,
        "categories": (NEED.category,),
        "coverage_areas": (AREA,),
        "languages": ("fr",),
        "capacity": ev.CapacityStatus.HAS_CAPACITY,
        "eligibility": ev.Eligibility(),
    }
    return Candidate(service_id=service_id, **{**args, **kw})


def test_a_first_referral_goes_to_the_best_candidate_with_its_deadline_and_reminder() -> None:
    decided = decide_route(CASE, NEED, [_candidate("svc-a")], [], POLICY, NOW)
    assert isinstance(decided, Refer)
    r = decided.referral
    assert (r.attempt, r.previous_referral_id, r.service_id) == (1, None, "svc-a")
    assert r.recipient_agency_id == "agency-svc-a" and r.referring_agency_id == "iom-sn"
    assert decided.respond_by == r.respond_by > NOW
    assert decided.remind_at == NOW + (decided.respond_by - NOW) * 0.75


def test_the_next_attempt_continues_the_chain_and_skips_what_was_tried() -> None:
    chain = [ChainLink("r-1", "svc-a", 1), ChainLink("r-2", "svc-b", 2)]
    candidates = [_candidate("svc-a"), _candidate("svc-b"), _candidate("svc-c")]
    decided = decide_route(CASE, NEED, candidates, chain[::-1], POLICY, NOW)  # any order
    assert isinstance(decided, Refer)
    r = decided.referral
    assert (r.attempt, r.previous_referral_id, r.service_id) == (3, "r-2", "svc-c")


def test_a_chain_at_the_limit_is_a_gap_of_exhausted_attempts() -> None:
    chain = [ChainLink(f"r-{n}", f"svc-{n}", n) for n in (1, 2, 3)]
    decided = decide_route(CASE, NEED, [_candidate("svc-new")], chain, POLICY, NOW)
    assert isinstance(decided, Gap)
    assert decided.unmatched.reason is ev.UnmatchedReason.ATTEMPTS_EXHAUSTED
    assert decided.unmatched.attempts == 3


def test_no_candidate_left_is_a_gap_with_the_matching_reason() -> None:
    nobody = decide_route(CASE, NEED, [], [], POLICY, NOW)
    assert isinstance(nobody, Gap) and nobody.unmatched.reason is ev.UnmatchedReason.NO_LISTING
    assert nobody.unmatched.attempts == 0
    tried_all = decide_route(
        CASE, NEED, [_candidate("svc-a")], [ChainLink("r-1", "svc-a", 1)], POLICY, NOW
    )
    assert isinstance(tried_all, Gap) and tried_all.unmatched.attempts == 1


def test_the_deadline_follows_the_override_then_the_listings_sla() -> None:
    fast = RoutingPolicy(max_attempts=3, sla_seconds_override=6)
    decided = decide_route(CASE, NEED, [_candidate("svc-a", sla_hours=48)], [], fast, NOW)
    assert isinstance(decided, Refer) and decided.respond_by == NOW + timedelta(seconds=6)
    decided = decide_route(CASE, NEED, [_candidate("svc-a", sla_hours=48)], [], POLICY, NOW)
    assert isinstance(decided, Refer) and decided.respond_by == NOW + timedelta(hours=48)
