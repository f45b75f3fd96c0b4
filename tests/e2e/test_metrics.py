"""/metrics of every service on the real broker and databases: the numbers an ops engineer
watches move as one submission flows through intake, referral and notification, and no agency,
case or person is named in any of them."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.directory import directory
from tests.e2e.kafka_helpers import collect, data_of, headers_of
from tests.e2e.personal_data import MARK, PERSONAL

pytestmark = pytest.mark.e2e

SERVICE_ENV = {f"{s}_METRICS_INTERVAL_S": "0.5" for s in ("INTAKE", "REFERRAL", "NOTIFICATION")}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(service: RunningService) -> tuple[str, Samples]:
    with urllib.request.urlopen(service.url("/metrics"), timeout=10) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def _total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def _until(check: object, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "the metrics never moved"
        await asyncio.sleep(0.5)


async def test_the_metrics_move_as_a_submission_flows_and_name_no_one(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    intake, referral, notification = (services[n] for n in ("intake", "referral", "notification"))
    referrer, provider, listing = await directory(kafka, database_urls)
    before = {name: _scrape(s)[1] for name, s in services.items()}

    submission = f.submission(
        referrer, personal=PERSONAL, profile=f.profile(return_area=listing.service_areas[0])
    )
    sent = f.submission_event(submission)
    await publish_events(kafka, [sent])
    [received] = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_correlationid") == sent.event_id,
    )
    case_id = data_of(received)["case_id"]

    def moved(service: RunningService, name: str, **labels: str) -> bool:
        now = _scrape(service)[1]
        return _total(now, name, **labels) > _total(before[service.name], name, **labels)

    # intake consumed the submission and relayed its case event. (FastStream labels a batch by
    # its first record's topic, which may be another topic's: the total is what is checked;
    # that no agency topic is named is checked at the end.)
    await _until(lambda: moved(intake, "faststream_received_messages_total"))
    await _until(lambda: moved(intake, "refex_outbox_published_total"))
    # referral applied a batch, relayed the referral, and has one more open referral
    await _until(lambda: moved(referral, "refex_consumer_batch_records_count"))
    await _until(lambda: moved(referral, "refex_outbox_published_total"))
    await _until(
        lambda: _total(_scrape(referral)[1], "refex_referrals_open", state="requested") >= 1
    )
    # notification wrote the provider's inbox; its group has caught up with referral's events
    await _until(lambda: moved(notification, "refex_outbox_published_total"))
    await _until(
        lambda: (
            ("refex_consumer_lag_records", frozenset({("topic", topics.REFERRAL_EVENTS)}))
            in _scrape(notification)[1]
        )
    )
    await _until(
        lambda: (
            _total(
                _scrape(notification)[1], "refex_consumer_lag_records", topic=topics.REFERRAL_EVENTS
            )
            == 0
        )
    )
    for service in (intake, referral, notification):
        text, samples = _scrape(service)
        assert _total(samples, "process_resident_memory_bytes") > 0
        assert _total(samples, "refex_outbox_unsent_rows") == 0  # all relayed
        # No agency, case, person or message id is a label or a value anywhere.
        for secret in (referrer, provider, case_id, sent.event_id, MARK):
            assert secret not in text, (service.name, secret)
