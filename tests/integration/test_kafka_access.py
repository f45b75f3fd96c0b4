"""Who may do what on the real broker (SASL/SCRAM, KRaft authorizer, ACLs from the catalogue).

Each denial test has a positive control with the same client, so a test cannot pass merely
because the client could not connect at all."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from ops import kafka_access
from ops.access_policy import agency_user
from shared.contracts import topics
from shared.kafka.admin import visible_topics
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.e2e.kafka_helpers import register_agency_access

DENIED = (TopicAuthorizationFailedError, KafkaTimeoutError)


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


async def write(connection: KafkaConnection, topic: str) -> bytes:
    """Try to write a unique marker as ``connection``; returns it, refused or not."""
    marker = f"marker-{uuid.uuid4().hex}".encode()
    p = AIOKafkaProducer(**connection.client_kwargs(), acks="all", request_timeout_ms=5000)
    await p.start()
    try:
        await asyncio.wait_for(p.send_and_wait(topic, marker, key=b"k"), timeout=10)
    except DENIED:
        pass
    finally:
        await p.stop()
    return marker


async def values(
    connection: KafkaConnection, topic: str, *, group: str | None = None, wait_s: float = 2.0
) -> set[bytes]:
    """Every value ``connection`` manages to read from the topic (from the beginning) within
    ``wait_s`` seconds; a group it may not use is refused outright."""
    c = AIOKafkaConsumer(
        **connection.client_kwargs(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=5000,
    )
    await c.start()
    found: set[bytes] = set()
    try:
        if group is None:
            c.assign([TopicPartition(topic, p) for p in range(topics.spec(topic).partitions)])
        else:
            c.subscribe([topic])
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            for records in (await c.getmany(timeout_ms=500)).values():
                found.update(r.value for r in records if r.value is not None)
    finally:
        await c.stop()
    return found


async def can_write(connection: KafkaConnection, topic: str, admin: KafkaConnection) -> bool:
    """Whether a write by ``connection`` really landed (read back as the operator)."""
    marker = await write(connection, topic)
    return marker in await values(admin, topic, wait_s=1.5)


async def can_read(
    connection: KafkaConnection, topic: str, admin: KafkaConnection, group: str | None = None
) -> bool:
    """Whether ``connection`` receives a marker the operator wrote to the topic."""
    marker = await write(admin, topic)
    try:
        return marker in await values(connection, topic, group=group)
    except GroupAuthorizationFailedError:
        return False


# ----- agencies -----


async def test_an_agency_reads_only_its_own_inbox(
    kafka: KafkaConnection,
    agency_a: tuple[str, KafkaConnection],
    agency_b: tuple[str, KafkaConnection],
) -> None:
    (a, as_a), (b, _) = agency_a, agency_b
    assert await can_read(as_a, topics.agency_inbox(a), kafka)
    assert not await can_read(as_a, topics.agency_inbox(b), kafka)


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
    assert await can_write(as_a, topics.AGENCY_SUBMISSIONS.name(a), kafka)
    for family in (topics.AGENCY_SUBMISSIONS, topics.AGENCY_LISTINGS, topics.AGENCY_RESPONSES):
        assert not await can_write(as_a, family.name(b), kafka), family.stream


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
    assert not await can_write(as_a, topic, kafka)
    # nor its own inbox, which only notification writes
    assert not await can_write(as_a, topics.agency_inbox(a), kafka)


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
        await can_write(impostor, topics.AGENCY_SUBMISSIONS.name(a), kafka)


async def test_a_deregistered_agency_loses_access_at_once(
    kafka: KafkaConnection, agency_a: tuple[str, KafkaConnection]
) -> None:
    a, as_a = agency_a
    submissions = topics.AGENCY_SUBMISSIONS.name(a)
    live = AIOKafkaProducer(**as_a.client_kwargs(), acks="all", request_timeout_ms=5000)
    await live.start()
    try:
        await live.send_and_wait(submissions, b"{}", key=b"k")
        access = kafka_access.KafkaAccess(kafka)
        await asyncio.to_thread(access.revoke_user, agency_user(a))
        await asyncio.sleep(1)  # the ACL change travels through the metadata log
        # The connection that is already open is refused too: ACLs are checked per request.
        with pytest.raises(DENIED):
            await asyncio.wait_for(live.send_and_wait(submissions, b"{}", key=b"k"), 15)
    finally:
        await live.stop()


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
    assert await can_write(service(kafka, name), own, kafka)
    assert not await can_write(service(kafka, name), topic, kafka)


async def test_services_reach_only_their_share_of_an_agency(
    kafka: KafkaConnection, agency_a: tuple[str, KafkaConnection]
) -> None:
    a, _ = agency_a
    intake, notification = service(kafka, "intake"), service(kafka, "notification")
    assert await can_read(intake, topics.AGENCY_SUBMISSIONS.name(a), kafka)
    assert not await can_read(intake, topics.agency_inbox(a), kafka), "the inbox is the agency's"
    assert not await can_write(intake, topics.AGENCY_SUBMISSIONS.name(a), kafka), "no forging"
    assert await can_write(notification, topics.agency_inbox(a), kafka)
    assert not await can_read(notification, topics.AGENCY_SUBMISSIONS.name(a), kafka)


async def test_a_service_uses_only_its_own_consumer_group(kafka: KafkaConnection) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        await values(service(kafka, "referral"), topics.INTAKE_CASES, group="intake")
