"""Who may do what on the real broker (SASL/SCRAM, KRaft authorizer, ACLs from the catalogue).

Each denial test has a positive control with the same client, so a test cannot pass merely
because the client could not connect at all. A write denial is the broker's own answer
(TopicAuthorizationFailedError), not a write that merely did not show up in time, and the topic
is read back to its end offsets to prove nothing of it landed."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from ops import kafka_access
from ops.access_policy import agency_user
from shared.contracts import topics
from shared.kafka.admin import visible_topics
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.acl_checks import can_read, check_writes, end_offsets, read_range, values, write
from tests.e2e.kafka_helpers import register_agency_access


@pytest.fixture
async def agency_a(kafka: KafkaConnection) -> tuple[str, KafkaConnection]:
    agency = f.unique("ngo")
    return agency, await register_agency_access(kafka, agency)


@pytest.fixture
async def agency_b(kafka: KafkaConnection) -> tuple[str, KafkaConnection]:
    agency = f.unique("gov")
    return agency, await register_agency_access(kafka, agency)


def service(kafka: KafkaConnection, name: str) -> KafkaConnection:
    return kafka.as_user(name, os.environ[f"{name.upper()}_KAFKA_PASSWORD"])


# ----- agencies -----


async def test_an_agency_reads_only_its_own_inbox(
    kafka: KafkaConnection,
    agency_a: tuple[str, KafkaConnection],
    agency_b: tuple[str, KafkaConnection],
) -> None:
    (a, as_a), (b, _) = agency_a, agency_b
    assert await can_read(as_a, topics.agency_inbox(a), kafka)
    assert not await can_read(as_a, topics.agency_inbox(b), kafka)


async def test_every_agency_reads_intake_s_submission_keys_and_cannot_write_them(
    kafka: KafkaConnection, agency_a: tuple[str, KafkaConnection]
) -> None:
    a, as_a = agency_a
    assert await can_read(as_a, topics.INTAKE_KEYS, kafka)
    await check_writes(
        as_a, kafka, allowed=[topics.AGENCY_SUBMISSIONS.name(a)], denied=[topics.INTAKE_KEYS]
    )


async def test_other_agencies_topics_are_invisible(
    agency_a: tuple[str, KafkaConnection], agency_b: tuple[str, KafkaConnection]
) -> None:
    (a, as_a), (b, _) = agency_a, agency_b
    seen = await visible_topics(as_a)
    assert {t.name for t in topics.agency_topics(a)} <= seen
    assert not any(name.startswith(f"agency.{b}.") for name in seen)
    assert topics.INTAKE_CASES not in seen and topics.DIRECTORY_AGENCIES not in seen


async def test_an_agency_cannot_publish_as_another(
    kafka: KafkaConnection,
    agency_a: tuple[str, KafkaConnection],
    agency_b: tuple[str, KafkaConnection],
) -> None:
    (a, as_a), (b, _) = agency_a, agency_b
    families = (topics.AGENCY_SUBMISSIONS, topics.AGENCY_LISTINGS, topics.AGENCY_RESPONSES)
    await check_writes(
        as_a, kafka, allowed=[x.name(a) for x in families], denied=[x.name(b) for x in families]
    )


@pytest.mark.parametrize(
    "topic",
    [
        topics.INTAKE_CASES,
        topics.REFERRAL_EVENTS,
        topics.DIRECTORY_AGENCIES,
        topics.NOTIFICATION_DELIVERIES,
        "intake.dlq.v1",
    ],
)
async def test_an_agency_cannot_write_service_or_operator_topics(
    kafka: KafkaConnection, agency_a: tuple[str, KafkaConnection], topic: str
) -> None:
    a, as_a = agency_a
    # nor its own inbox, which only notification writes
    await check_writes(
        as_a,
        kafka,
        allowed=[topics.AGENCY_SUBMISSIONS.name(a)],
        denied=[topic, topics.agency_inbox(a)],
    )


async def test_an_agency_uses_only_its_own_consumer_groups(
    kafka: KafkaConnection,
    agency_a: tuple[str, KafkaConnection],
    agency_b: tuple[str, KafkaConnection],
) -> None:
    (a, as_a), (b, _) = agency_a, agency_b
    inbox = topics.agency_inbox(a)
    assert await can_read(as_a, inbox, kafka, group=f"agency.{a}.casework")
    for group in (f"agency.{b}.casework", "notification", "intake", f"{a}-casework"):
        assert not await can_read(as_a, inbox, kafka, group=group), group


async def test_a_wrong_password_is_refused(
    kafka: KafkaConnection, agency_a: tuple[str, KafkaConnection]
) -> None:
    a, _ = agency_a
    impostor = kafka.as_user(agency_user(a), "not-the-password-" + uuid.uuid4().hex)
    with pytest.raises(KafkaConnectionError):
        await write(impostor, topics.AGENCY_SUBMISSIONS.name(a))


async def test_a_deregistered_agency_loses_access_at_once(
    kafka: KafkaConnection, agency_a: tuple[str, KafkaConnection]
) -> None:
    a, as_a = agency_a
    submissions = topics.AGENCY_SUBMISSIONS.name(a)
    marker = f"marker-{uuid.uuid4().hex}".encode()
    live = AIOKafkaProducer(**as_a.client_kwargs(), acks="all", request_timeout_ms=5000)
    await live.start()
    try:
        # the positive control: the same producer's write lands before the revocation
        meta = await live.send_and_wait(submissions, b"{}", key=b"k")
        tp = TopicPartition(submissions, meta.partition)
        assert await read_range(kafka, {tp: meta.offset}, {tp: meta.offset + 1}) == [b"{}"]
        access = kafka_access.KafkaAccess(kafka)
        await asyncio.to_thread(access.revoke_user, agency_user(a))
        await asyncio.sleep(1)  # the ACL change travels through the metadata log
        # The connection that is already open is refused too: ACLs are checked per request.
        before = await end_offsets(kafka, submissions)
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(live.send_and_wait(submissions, marker, key=b"k"), 15)
    finally:
        await live.stop()
    after = await end_offsets(kafka, submissions)
    assert marker not in await read_range(kafka, before, after)


# ----- services -----


@pytest.mark.parametrize(
    ("name", "topic"),
    [
        ("referral", topics.INTAKE_CASES),
        ("notification", topics.REFERRAL_EVENTS),
        ("intake", topics.DIRECTORY_AGENCIES),
        ("intake", "referral.dlq.v1"),
    ],
)
async def test_a_service_cannot_write_a_topic_it_does_not_own(
    kafka: KafkaConnection, name: str, topic: str
) -> None:
    own = next(t.name for t in topics.CATALOGUE if t.owner.value == name and "dlq" in t.name)
    await check_writes(service(kafka, name), kafka, allowed=[own], denied=[topic])


async def test_services_reach_only_their_share_of_an_agency(
    kafka: KafkaConnection, agency_a: tuple[str, KafkaConnection]
) -> None:
    a, _ = agency_a
    intake, notification = service(kafka, "intake"), service(kafka, "notification")
    assert await can_read(intake, topics.AGENCY_SUBMISSIONS.name(a), kafka)
    assert not await can_read(intake, topics.agency_inbox(a), kafka), "the inbox is the agency's"
    # no forging of an agency's submissions
    await check_writes(
        intake, kafka, allowed=["intake.dlq.v1"], denied=[topics.AGENCY_SUBMISSIONS.name(a)]
    )
    await check_writes(notification, kafka, allowed=[topics.agency_inbox(a)], denied=[])
    assert not await can_read(notification, topics.AGENCY_SUBMISSIONS.name(a), kafka)


async def test_a_service_uses_only_its_own_consumer_group(kafka: KafkaConnection) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        await values(service(kafka, "referral"), topics.INTAKE_CASES, group="intake")
