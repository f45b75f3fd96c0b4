"""Replication (issue 22): every topic on REFEX_KAFKA_REPLICATION_FACTOR brokers with its
min.insync.replicas, and, on a cluster of three (``make test-cluster``), acknowledged writes
surviving a SIGKILL of their partitions' leader.

On make test's single broker the first test checks the single-node settings (RF 1, min.insync 1,
the internal topics likewise); the bounce needs three brokers and is skipped there."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts.topics import CATALOGUE, agency_topics
from shared.kafka.admin import (
    ensure_agency_topics,
    min_insync_replicas,
    replication_factor_from_env,
    topic_configs,
)
from shared.kafka.connection import KafkaConnection
from tests.conftest import TopicFactory

REPO = Path(__file__).resolve().parents[2]
BROKERS = int(os.environ.get("REFEX_KAFKA_BROKERS", "1"))


async def _partitions(kafka: KafkaConnection, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-test")
    await admin.start()
    try:
        return {t["topic"]: t["partitions"] for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def _configs(kafka: KafkaConnection, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-test")
    await admin.start()
    try:
        return await topic_configs(admin, names)
    finally:
        await admin.close()


async def test_every_topic_has_the_configured_replicas_and_min_insync(
    kafka: KafkaConnection,
) -> None:
    rf = replication_factor_from_env()
    assert rf == min(BROKERS, 3), "deploy/local/env.sh writes the factor the brokers run with"
    # An agency's topics, made as register-agency makes them (then deleted: other tests count
    # the registered agencies' topics).
    agency = f"rf-{uuid.uuid4().hex[:8]}"
    own = [s.name for s in agency_topics(agency)]
    await ensure_agency_topics(kafka, agency)
    try:
        names = [*(s.name for s in CATALOGUE), *own]
        described = await _partitions(kafka, [*names, "__consumer_offsets"])
        configs = await _configs(kafka, names)
    finally:
        admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-test")
        await admin.start()
        try:
            await admin.delete_topics(own)
        finally:
            await admin.close()
    for name in [*names, "__consumer_offsets"]:
        assert described[name], name
        for partition in described[name]:
            assert len(partition["replicas"]) == rf, (name, partition)
            assert len(set(partition["replicas"])) == rf, (name, partition)
    for name in names:
        assert configs[name]["min.insync.replicas"] == str(min_insync_replicas(rf)), name
    assert min_insync_replicas(3) == 2 and min_insync_replicas(1) == 1


def _kafka_sh(action: str, node: int) -> None:
    """deploy/local/kafka.sh with make test-cluster's environment (folder, ports, brokers)."""
    subprocess.run(
        [str(REPO / "deploy" / "local" / "kafka.sh"), action, str(node)],
        check=True,
        capture_output=True,
        timeout=180,
    )


async def _wait_for_isr(kafka: KafkaConnection, topic: str, size: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = (await _partitions(kafka, [topic]))[topic]
        if all(len(p["isr"]) == size for p in partitions):
            return
        assert time.monotonic() < deadline, f"in-sync replicas never {size}: {partitions}"
        await asyncio.sleep(1)


@pytest.mark.timeout(420)
async def test_acknowledged_writes_survive_a_sigkill_of_the_partitions_leader(
    kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    if BROKERS < 3:
        pytest.skip("one broker (make test): make test-cluster runs this on three")
    topic = await new_topic(partitions=3)
    leader = (await _partitions(kafka, [topic]))[topic][0]["leader"]
    # acks=all, idempotent, as every producer of the services (shared/kafka/broker.py): a send
    # retried to the new leader is written once. A long timeout: the controller fences a
    # SIGKILLed broker only after its session (9 s) ran out.
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(), acks="all", enable_idempotence=True, request_timeout_ms=60_000
    )
    await producer.start()
    acknowledged: list[str] = []

    async def write(count: int) -> None:
        for i in range(count):
            value = f"{len(acknowledged):05d}"
            await producer.send_and_wait(topic, value.encode(), key=value.encode(), partition=i % 3)
            acknowledged.append(value)
            await asyncio.sleep(0.02)

    try:
        await write(60)
        writer = asyncio.create_task(write(240))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(_kafka_sh, "kill", leader)
        await writer
        during = (await _partitions(kafka, [topic]))[topic]
        # Written and acknowledged with one replica down: min.insync.replicas 2 of 3.
        assert all(p["leader"] != leader for p in during), during
        assert all(leader not in p["isr"] and len(p["isr"]) == 2 for p in during), during
        await write(30)
    finally:
        await producer.stop()
        await asyncio.to_thread(_kafka_sh, "up", leader)
    await _wait_for_isr(kafka, topic, 3, timeout_s=120)

    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        read: list[str] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*partitions, timeout_ms=2000)
            read += [r.value.decode() for records in batch.values() for r in records if r.value]
    finally:
        await consumer.stop()
    assert len(acknowledged) == 330
    assert sorted(read) == sorted(acknowledged), "every acknowledged write, once"
