"""The evidence read model end to end on the real broker and databases (issue 19): the four
services as processes; cases, referrals and follow-ups read from intake.cases.v1 and
referral.events.v1 into evidence's own database."""

from __future__ import annotations

import json
import urllib.request

import pytest

from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.test_walking_skeleton import _directory, _eventually, _submission_event

pytestmark = pytest.mark.e2e


def test_evidence_is_ready_with_its_own_database_and_principal(evidence: RunningService) -> None:
    with urllib.request.urlopen(evidence.url("/health/ready"), timeout=5) as answer:
        body = json.loads(answer.read())
    assert body == {
        "service": "evidence",
        "ready": True,
        "checks": {"kafka": True, "database": True, "outbox_relay": True},
    }


async def test_a_registered_case_reaches_the_read_model(
    evidence: RunningService, kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer, provider, listing = await _directory(kafka, database_urls)
    submission = f.submission(referrer, profile=f.profile(return_area=listing.service_areas[0]))
    await publish_events(kafka, [_submission_event(submission)])
    assert await _eventually(
        "SELECT count(*) FROM referrals r JOIN cases c USING (case_id) "
        "WHERE c.owner_agency_id = $1 AND r.provider_id = $2",
        referrer,
        provider,
        dsn=database_urls["evidence"],
    )
