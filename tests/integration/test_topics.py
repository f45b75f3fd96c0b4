"""The catalogue's topics exist on the real broker as declared, nothing auto-creates topics, and
each topic has one size limit: the catalogue's, the broker's, the service check's, the guide's."""

import asyncio
import logging
import re
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
)

from shared.contracts import topics
from shared.contracts.topics import AGENCY_FAMILIES, CATALOGUE, Owner, TopicSpec, agency_topics
from shared.kafka.admin import ensure_agency_topics, ensure_topics, topic_configs
from shared.kafka.connection import KafkaConnection
from shared.kafka.inbound import InboundEvent


async def test_catalogue_topics_exist_with_partitions_and_cleanup_policy(
    kafka: KafkaConnection,
) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        described = {
            t["topic"]: t for t in await admin.describe_topics([t.name for t in CATALOGUE])
        }
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in CATALOGUE]
        )
    finally:
        await admin.close()
    policies: dict[str, str] = {}
    for response in configs:
        for resource in response.resources:
            _, _, _, name, entries = resource[:5]
            policies[name] = next(e[1] for e in entries if e[0] == "cleanup.policy")
    for spec in CATALOGUE:
        assert described[spec.name]["error_code"] == 0, spec.name
        assert len(described[spec.name]["partitions"]) == spec.partitions, spec.name
        assert policies[spec.name] == spec.cleanup_policy.value, spec.name


async def test_ensure_topics_is_idempotent(kafka: KafkaConnection) -> None:
    results = await ensure_topics(kafka, CATALOGUE)
    assert results and not any(r.created for r in results)


async def test_broker_does_not_auto_create_topics(kafka: KafkaConnection) -> None:
    producer = AIOKafkaProducer(**kafka.client_kwargs(), request_timeout_ms=3000)
    await producer.start()
    try:
        try:
            await asyncio.wait_for(producer.send_and_wait("not.in.catalogue.v1", b"x"), 10)
        except (KafkaTimeoutError, UnknownTopicOrPartitionError, TimeoutError):
            pass
        else:
            raise AssertionError("publishing to an unknown topic should not succeed")
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        assert "not.in.catalogue.v1" not in await admin.list_topics()
    finally:
        await admin.close()


async def test_new_topics_take_writes_at_once_without_retries(
    kafka: KafkaConnection, caplog: pytest.LogCaptureFixture
) -> None:
    """ensure_topics returns once every new partition's leader takes writes: the first write
    (e.g. an operator command's audit record right after provisioning) needs no
    NotLeaderForPartition retries, which aiokafka would log as warnings. Several topics at once,
    as provisioning and registration create them: that is when the leaders lag."""
    specs = [
        TopicSpec(f"test.{uuid.uuid4().hex[:12]}.v1", Owner.OPERATORS, "k", partitions=3)
        for _ in range(8)
    ]
    with caplog.at_level(logging.WARNING, logger="aiokafka"):
        results = await ensure_topics(kafka, specs)
        producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
        await producer.start()
        try:
            for spec in specs:
                for partition in range(spec.partitions):
                    await producer.send_and_wait(spec.name, b"x", partition=partition)
        finally:
            await producer.stop()
    assert all(r.created for r in results)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# ----- one size limit per topic: catalogue, broker, service check and guide -----

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "integrators.md").read_text()


def _guide_limits() -> dict[str, int]:
    """The limits table of the guide's §1: topic template → bytes."""
    rows = re.findall(r"^\| `(agency\.<id>\.[a-z]+\.v1)` \| ([0-9,]+) \(", GUIDE, re.M)
    return {name.replace("<id>", "<agency_id>"): int(n.replace(",", "")) for name, n in rows}


async def test_each_topic_has_one_size_limit_on_the_broker_in_the_service_and_in_the_guide(
    kafka: KafkaConnection,
) -> None:
    agency = f"limits-{uuid.uuid4().hex[:8]}"
    await ensure_agency_topics(kafka, agency)
    specs = [*CATALOGUE, *agency_topics(agency)]
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        configs = await topic_configs(admin, [s.name for s in specs])
    finally:
        await admin.close()
    for spec in specs:
        assert configs[spec.name]["max.message.bytes"] == str(spec.max_message_bytes), spec.name
        record = ConsumerRecord(spec.name, 0, 0, 0, 0, b"k", b"{}", None, 1, 2, [])
        assert InboundEvent.from_record(record).max_bytes == spec.max_message_bytes
    documented = _guide_limits()
    assert documented == {
        fam.template.name: fam.template.max_message_bytes
        for fam in AGENCY_FAMILIES
        if fam.template.owner is Owner.AGENCY
    }


async def test_the_broker_refuses_a_message_over_the_limit_and_takes_one_within(
    kafka: KafkaConnection,
) -> None:
    agency = f"limits-{uuid.uuid4().hex[:8]}"
    await ensure_agency_topics(kafka, agency)
    spec = topics.AGENCY_RESPONSES.spec(agency)
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", max_request_size=1 << 20)
    await producer.start()
    try:
        # Within: the record plus its batch's framing (about 70 bytes) fits.
        await producer.send_and_wait(spec.name, b"x" * (spec.max_message_bytes - 200), key=b"k")
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_and_wait(spec.name, b"x" * (spec.max_message_bytes + 1), key=b"k")
    finally:
        await producer.stop()


async def _limit_becomes(admin: AIOKafkaAdminClient, topic: str, value: str) -> bool:
    """A config change reaches the broker's view through the metadata log, shortly after."""
    deadline = asyncio.get_running_loop().time() + 15
    while (await topic_configs(admin, [topic]))[topic]["max.message.bytes"] != value:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def test_provisioning_sets_a_drifted_limit_back_to_the_catalogue(
    kafka: KafkaConnection,
) -> None:
    agency = f"limits-{uuid.uuid4().hex[:8]}"
    await ensure_agency_topics(kafka, agency)
    spec = topics.AGENCY_SUBMISSIONS.spec(agency)
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        # What topics created before the limits were one number still carry.
        old = {**spec.config(), "max.message.bytes": str(spec.max_message_bytes + 16 * 1024)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, old)])
        assert await _limit_becomes(admin, spec.name, old["max.message.bytes"])
        [result] = [r for r in await ensure_agency_topics(kafka, agency) if r.name == spec.name]
        assert result.reconciled == ("max.message.bytes",)
        assert await _limit_becomes(admin, spec.name, str(spec.max_message_bytes))
        configs = await topic_configs(admin, [spec.name])
        assert configs[spec.name]["retention.ms"] == spec.config()["retention.ms"]
        [again] = [r for r in await ensure_agency_topics(kafka, agency) if r.name == spec.name]
        assert again.reconciled == () and again.state == "exists"
    finally:
        await admin.close()


async def test_a_submissions_topic_made_before_trimming_gets_its_segment_age(
    kafka: KafkaConnection,
) -> None:
    """Issue 22: the segment age bounds how long trimmed submissions stay on the disk; a topic
    created without it (before this version) is brought to the catalogue's."""
    agency = f"segments-{uuid.uuid4().hex[:8]}"
    await ensure_agency_topics(kafka, agency)
    spec = topics.AGENCY_SUBMISSIONS.spec(agency)
    assert spec.config()["segment.ms"] == str(3600 * 1000)
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        assert (await topic_configs(admin, [spec.name]))[spec.name]["segment.ms"] == "3600000"
        old = {k: v for k, v in spec.config().items() if k != "segment.ms"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, old)])
        deadline = asyncio.get_running_loop().time() + 30
        while (await topic_configs(admin, [spec.name]))[spec.name]["segment.ms"] == "3600000":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        [result] = [r for r in await ensure_agency_topics(kafka, agency) if r.name == spec.name]
        assert result.reconciled == ("segment.ms",)
        deadline = asyncio.get_running_loop().time() + 30
        while (await topic_configs(admin, [spec.name]))[spec.name]["segment.ms"] != "3600000":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        # the other families keep the broker's
        inbox = topics.agency_inbox(agency)
        assert "segment.ms" not in topics.spec(inbox).config()
    finally:
        await admin.close()
