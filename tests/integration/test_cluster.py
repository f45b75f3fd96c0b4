"""Replication (issue 22): every topic on REFEX_KAFKA_REPLICATION_FACTOR brokers with its
min.insync.replicas, and, on a cluster of three (``make test-cluster``), acknowledged writes
surviving a SIGKILL of their partitions' leader, and the CA rotated under writes.

On make test's single broker the first test checks the single-node settings (RF 1, min.insync 1,
the internal topics likewise); the bounce and the rotation need three brokers and are skipped
there."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

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


def _replicas_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`refex platform replicas` as the operator runs it (REFEX_KAFKA_* of the test run)."""
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "refex"), "platform", "replicas", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
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
        # What an operator asks before restarting another node: this topic is a replica short.
        short = await asyncio.to_thread(_replicas_cli)
        assert short.returncode == 1 and topic in short.stdout, short.stdout
        await write(30)
    finally:
        await producer.stop()
        await asyncio.to_thread(_kafka_sh, "up", leader)
    await _wait_for_isr(kafka, topic, 3, timeout_s=120)
    whole = await asyncio.to_thread(_replicas_cli, "--wait", "120")
    assert whole.returncode == 0, whole.stdout

    read = await _read_all(kafka, topic, 3)
    assert len(acknowledged) == 330
    assert sorted(read) == sorted(acknowledged), "every acknowledged write, once"


def _tls_sh(*args: str) -> str:
    """deploy/local/tls.sh with make test-cluster's environment: each step rolls the three nodes."""
    done = subprocess.run(
        [str(REPO / "deploy" / "local" / "tls.sh"), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.stderr


def _trusting(kafka: KafkaConnection, ca_file: Path) -> KafkaConnection:
    return KafkaConnection(kafka.bootstrap_servers, kafka.username, kafka.password, str(ca_file))


async def _connects(kafka: KafkaConnection) -> bool:
    producer = AIOKafkaProducer(**kafka.client_kwargs(), request_timeout_ms=10_000)
    try:
        await producer.start()
    except KafkaConnectionError:
        return False
    finally:
        await producer.stop()
    return True


async def _database_accepts(url: str, ca_file: Path) -> bool:
    """Whether PostgreSQL's certificate verifies (verify-full) against ``ca_file`` alone."""
    trusting = re.sub(r"sslrootcert=[^&]*", f"sslrootcert={ca_file}", url)
    try:
        connection = await asyncpg.connect(trusting, timeout=10)
    except ssl.SSLError:
        return False
    await connection.close()
    return True


class _Writer:
    """Writes acks=all, idempotent, one record after another, as long as it runs; ``restart``
    makes it a new client (as a restarted service is), which reads ca.crt again."""

    def __init__(self, kafka: KafkaConnection, topic: str) -> None:
        self._kafka, self._topic = kafka, topic
        self._producer: AIOKafkaProducer | None = None
        self._restart = asyncio.Event()
        self._stop = asyncio.Event()
        self.acknowledged: list[tuple[str, float]] = []

    async def _start(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self._kafka.client_kwargs(),
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=60_000,
        )
        await producer.start()
        return producer

    async def run(self) -> None:
        producer = await self._start()
        try:
            while not self._stop.is_set():
                if self._restart.is_set():
                    self._restart.clear()
                    await producer.stop()
                    producer = await self._start()
                value = f"{len(self.acknowledged):06d}"
                await producer.send_and_wait(
                    self._topic,
                    value.encode(),
                    key=value.encode(),
                    partition=len(self.acknowledged) % 3,
                )
                self.acknowledged.append((value, time.monotonic()))
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()

    def restart(self) -> None:
        self._restart.set()

    def stop(self) -> None:
        self._stop.set()

    def longest_gap(self) -> float:
        times = [t for _, t in self.acknowledged]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@pytest.mark.timeout(1500)
async def test_the_ca_is_rotated_without_downtime(
    kafka: KafkaConnection,
    new_topic: TopicFactory,
    database_urls: dict[str, str],
    tmp_path: Path,
) -> None:
    """Issue 22 item 6: tls.sh rotate-ca begin, switch and finish, each rolling the three
    nodes one by one, while a client writes without pause: every write is acknowledged, none is
    lost or doubled, a client trusting only the old CA works until the switch and is refused
    after it, a client trusting only the new one works from the switch on."""
    if BROKERS < 3:
        pytest.skip("one broker (make test): make test-cluster rotates the CA on three")
    tls = Path(os.environ["REFEX_LOCAL_DIR"]) / "tls"
    old_ca = tmp_path / "old-ca.crt"
    old_ca.write_text((tls / "ca.crt").read_text())
    database = database_urls["intake"]
    topic = await new_topic(partitions=3)
    writer = _Writer(kafka, topic)
    writing = asyncio.create_task(writer.run())
    steps: dict[str, tuple[int, int]] = {}

    async def step(name: str, *args: str) -> None:
        before = len(writer.acknowledged)
        await asyncio.to_thread(_tls_sh, *args)
        assert not writing.done(), writing.exception()
        steps[name] = (before, len(writer.acknowledged))

    try:
        await asyncio.sleep(2)
        await step("begin", "rotate-ca", "begin")
        new_ca = tmp_path / "new-ca.crt"
        new_ca.write_text((tls / "ca-next.crt").read_text())
        # The overlap: an agency not yet given the new CA still connects.
        assert await _connects(_trusting(kafka, old_ca))
        assert await _database_accepts(database, old_ca)
        writer.restart()  # the clients restarted after begin: they trust both now

        await step("switch", "rotate-ca", "switch")
        assert not await _connects(_trusting(kafka, old_ca)), "the old CA's clients are refused"
        assert await _connects(_trusting(kafka, new_ca))
        assert not await _database_accepts(database, old_ca)
        assert await _database_accepts(database, new_ca)

        await step("finish", "rotate-ca", "finish")
        writer.restart()  # and after finish: they trust the new CA alone
        assert (tls / "ca.crt").read_text() == new_ca.read_text()
        assert await _connects(kafka) and await _database_accepts(database, tls / "ca.crt")
        await asyncio.sleep(2)
    finally:
        writer.stop()
        await writing

    # Each step rolled three nodes while the writes went on.
    for name, (before, after) in steps.items():
        assert after - before > 30, (name, before, after)
    gap = writer.longest_gap()
    print(f"CA rotation: {len(writer.acknowledged)} writes, longest pause {gap:.1f} s, {steps}")
    assert gap < 30, "no step stopped the writes for long"
    read = await _read_all(kafka, topic, 3)
    assert sorted(read) == sorted(v for v, _ in writer.acknowledged), "every write, once"


async def _read_all(kafka: KafkaConnection, topic: str, partitions_count: int) -> list[str]:
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partitions_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        read: list[str] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*partitions, timeout_ms=2000)
            read += [r.value.decode() for records in batch.values() for r in records if r.value]
        return read
    finally:
        await consumer.stop()
