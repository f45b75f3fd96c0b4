"""The evidence read model on the real PostgreSQL, through consumer batches wired as its app.py
wires them: a redelivered batch changes nothing (the inbox), a handover's steps from two topics
never go back, an erasure keeps only what statistics allows, and the report source reads the
store into suppressed tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.evidence import handlers as h
from services.evidence.report import ANSWERS_BY_PROVIDER, SCORES_BY_PATHWAY, Filters
from services.evidence.source import report_source
from services.evidence.store import EvidenceStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.db.migrations import SHARED_MIGRATIONS, discover
from shared.kafka.inbound import InboundEvent
from shared.unit import typed_handler
from tests import factories as f
from tests.integration.counting import CountingPool, ServiceBatches
from tests.integration.test_matching_index import referral_schema
from tests.unit.test_evidence_handlers import handed_over

pytestmark = pytest.mark.integration

MIGRATIONS = Path(h.__file__).parent / "migrations"
AT = datetime(2026, 12, 2, 9, tzinfo=UTC)
PSY = "psychosocial.counselling"


class Evidence(ServiceBatches):
    def __init__(self, pool: CountingPool) -> None:
        typed = typed_handler(h.HANDLERS, EvidenceStore, h.SOURCE, ignored=h.IGNORED)
        super().__init__(
            pool, "evidence", {topics.INTAKE_CASES: typed, topics.REFERRAL_EVENTS: typed}
        )

    def event(self, topic: str, ce_type: str, payload: Any, at: datetime = AT) -> InboundEvent:
        case_id = str(payload.case_id)
        return self.inbound(
            build_event(
                topic=topic, key=case_id, type_=ce_type, source="urn:test", data=payload, time=at
            )
        )


@pytest.fixture
async def pool(database_urls: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    migrations = discover("shared", SHARED_MIGRATIONS) + discover("evidence", MIGRATIONS)
    async with referral_schema(database_urls["evidence"], migrations) as p:
        yield p


def case(n: int, purposes: list[str], **profile: Any) -> ev.CaseRegistered:
    return ev.CaseRegistered.model_validate(
        {
            "case_id": f"case-{n}",
            "submitting_agency_id": "iom-sn",
            "profile": f.profile(**profile),
            "needs": f.needs(PSY),
            "consent": f.consent(scope={"purposes": purposes}),
        }
    )


def requested(n: int) -> ev.ReferralRequested:
    return ev.ReferralRequested.model_validate(
        {
            "referral_id": f"ref-{n}",
            "case_id": f"case-{n}",
            "need_id": "n1",
            "category": PSY,
            "urgency": "normal",
            "referring_agency_id": "iom-sn",
            "recipient_agency_id": "ngo-psy",
            "service_id": "s1",
            "explanation": {"matched": [], "score": 0.5, "components": {}},
        }
    )


def accepted(n: int, hours: int) -> ev.ReferralTransitioned:
    return ev.ReferralTransitioned.model_validate(
        {
            "referral_id": f"ref-{n}",
            "case_id": f"case-{n}",
            "need_id": "n1",
            "from_state": "requested",
            "to_state": "accepted",
            "attempt": 1,
            "referring_agency_id": "iom-sn",
            "recipient_agency_id": "ngo-psy",
            "occurred_at": AT + timedelta(hours=hours),
        }
    )


def scores(n: int, wave: str, composite: float) -> ev.AssessmentRecorded:
    return ev.AssessmentRecorded(
        case_id=f"case-{n}",
        owner_agency_id="iom-sn",
        wave=wave,
        assessed_on=AT.date(),
        indicator_set="rss-v1",
        scores=ev.OutcomeScores(composite=composite),
        indicators_answered=15,
    )


async def test_a_batch_applied_twice_counts_once_and_the_report_reads_it(
    pool: asyncpg.Pool,
) -> None:
    evidence = Evidence(CountingPool(pool))
    batch = []
    for n in range(6):
        purposes = ["referral", "statistics"] if n < 5 else ["referral"]
        batch.append(evidence.event(topics.INTAKE_CASES, ev.CASE_REGISTERED, case(n, purposes)))
        batch.append(evidence.event(topics.REFERRAL_EVENTS, ev.REFERRAL_REQUESTED, requested(n)))
        transition = accepted(n, hours=n + 1)
        batch.append(evidence.event(topics.REFERRAL_EVENTS, ev.REFERRAL_TRANSITIONED, transition))
        for wave, composite in (("baseline", 0.4), ("month_6", 0.7)):
            recorded = scores(n, wave, composite)
            batch.append(evidence.event(topics.INTAKE_CASES, ev.ASSESSMENT_RECORDED, recorded))
    await evidence.apply(batch)
    await evidence.apply(batch)  # a redelivery after a crash before the offset commit

    report = await report_source(lambda: pool, 5)(Filters(country="SN"))
    [provider] = report.table(ANSWERS_BY_PROVIDER).rows
    made, answered, accepted_, *_, p50, p90 = provider.values
    assert (made, answered, accepted_) == (5, 5, 5), "once each, the uncounted case left out"
    assert provider.cases == 5 and p50 == 3.0 and p90 == pytest.approx(4.6)
    [pathway] = report.table(SCORES_BY_PATHWAY).rows
    assert pathway.key == (PSY, "month_6") and pathway.cases == 5
    assert pathway.values[-1] == pytest.approx(0.3)
    assert report.options["period"] == ("2026-12",)


async def test_a_handover_completed_by_intake_is_not_set_back_by_referral_s_proposal(
    pool: asyncpg.Pool,
) -> None:
    evidence = Evidence(CountingPool(pool))
    moved = handed_over(AT)
    proposed = ev.HandoverProposed.model_validate(
        {
            "handover_id": "h1",
            "case_id": "case-1",
            "direction": "offer",
            "owner_agency_id": "iom-sn",
            "receiving_agency_id": "gov-sn",
            "answering_agency_id": "gov-sn",
            "reason": "programme_ended",
            "respond_by": (AT + timedelta(days=3)).isoformat(),
            "message_id": "m1",
        }
    )
    await evidence.apply(
        [
            evidence.event(topics.INTAKE_CASES, ev.CASE_REGISTERED, case(1, ["statistics"])),
            evidence.event(topics.INTAKE_CASES, ev.CASE_HANDED_OVER, moved),
            # read later from the other topic, though it came first
            evidence.event(topics.REFERRAL_EVENTS, ev.HANDOVER_PROPOSED, proposed),
        ]
    )
    async with pool.acquire() as conn:
        state = await conn.fetchval("SELECT state FROM handovers WHERE handover_id = 'h1'")
        owner = await conn.fetchval("SELECT owner_agency_id FROM cases WHERE case_id = 'case-1'")
    assert (state, owner) == ("completed", "gov-sn")


async def test_an_erasure_keeps_only_what_statistics_allows(pool: asyncpg.Pool) -> None:
    evidence = Evidence(CountingPool(pool))
    kept = case(1, ["statistics"], vulnerabilities=["disability"])
    gone = case(2, ["referral"])
    await evidence.apply(
        [
            evidence.event(topics.INTAKE_CASES, ev.CASE_REGISTERED, kept),
            evidence.event(topics.INTAKE_CASES, ev.CASE_REGISTERED, gone),
            evidence.event(topics.REFERRAL_EVENTS, ev.REFERRAL_REQUESTED, requested(2)),
            evidence.event(topics.INTAKE_CASES, ev.ASSESSMENT_RECORDED, scores(2, "baseline", 0.5)),
        ]
    )
    await evidence.apply(
        [
            evidence.event(
                topics.INTAKE_CASES, ev.CASE_ERASED, ev.CaseErased(case_id=c, erased_at=AT)
            )
            for c in ("case-1", "case-2")
        ]
    )
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT case_id, sex, age_band, area, vulnerabilities, ended FROM cases"
        )
        left = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t} WHERE case_id = 'case-2'")
            for t in ("referrals", "assessments", "needs")
        }
    assert [tuple(r.values()) for r in rows] == [
        ("case-1", "female", "25-34", "SN0101", [], "erased")
    ]
    assert left == {"referrals": 0, "assessments": 0, "needs": 0}
