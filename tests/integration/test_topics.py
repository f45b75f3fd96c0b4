"""The catalogue's topics exist on the real broker as declared, and nothing auto-creates topics."""

import asyncio
import logging
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from shared.contracts.topics import CATALOGUE, Owner, TopicSpec
from shared.kafka.admin import ensure_topics
from shared.kafka.connection import KafkaConnection


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
