"""The raw baseline: the same number of messages through a 3-hop aiokafka consume → produce
chain on the same broker, with no database, no validation and no business logic.

Each hop is its own process (as each service is), with the services' delivery settings: an
idempotent producer with ``acks=all``, and the offset committed only after the batch's produced
records are acknowledged (at-least-once). Its throughput is what this machine's broker and
Python client can do at best; the pipeline's ratio to it says how much the services cost.

``python -m tests.bench.baseline HOP_FROM HOP_TO GROUP`` runs one hop until SIGTERM, with the
operator's credentials from the environment (REFEX_KAFKA_*)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts.topics import Owner, TopicSpec
from shared.kafka.admin import ensure_topics
from shared.kafka.connection import KafkaConnection

HOPS = 3
PARTITIONS = 6  # as referral.events.v1 and intake.cases.v1


async def forward(kafka: KafkaConnection, source: str, target: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        source,
        **kafka.client_kwargs(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            sends = [
                await producer.send(target, r.value, key=r.key, headers=list(r.headers))
                for records in batches.values()
                for r in records
            ]
            if sends:
                await asyncio.gather(*sends)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


@dataclass
class BaselineResult:
    messages: int
    messages_per_s: float
    seconds: float
    cpu_seconds: float


class Chain:
    """Topics ``bench.<id>.hop0..3`` and one forwarding process per hop."""

    def __init__(self, kafka: KafkaConnection) -> None:
        self.kafka = kafka
        self.run_id = uuid.uuid4().hex[:8]
        self.topics = [f"bench.{self.run_id}.hop{n}.v1" for n in range(HOPS + 1)]
        self.processes: list[subprocess.Popen[bytes]] = []

    async def start(self) -> None:
        await ensure_topics(
            self.kafka,
            [TopicSpec(t, Owner.OPERATORS, "key", PARTITIONS) for t in self.topics],
        )
        self._spawn()

    def _spawn(self) -> None:
        for n in range(HOPS):
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.bench.baseline",
                        self.topics[n],
                        self.topics[n + 1],
                        f"bench.{self.run_id}.hop{n}",
                    ],
                    env=os.environ.copy(),
                )
            )

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def stop(self) -> None:
        for p in self.processes:
            p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        admin = AIOKafkaAdminClient(**self.kafka.client_kwargs())
        await admin.start()
        try:
            with contextlib.suppress(Exception):
                await admin.delete_topics(self.topics)
        finally:
            await admin.close()


async def drive(chain: Chain, bodies: list[bytes], count: int) -> tuple[float, list[float]]:
    """Send ``count`` messages into hop 0 as fast as possible (after one warm-up message has
    gone through, so every hop is assigned its partitions), and return the send start and the
    arrival times at the last hop."""
    producer = AIOKafkaProducer(
        **chain.kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
    )
    sink = AIOKafkaConsumer(
        chain.topics[-1],
        **chain.kafka.client_kwargs(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await sink.start()
    try:
        await producer.send_and_wait(chain.topics[0], b"warm-up", key=b"warm-up")
        await _receive(sink, 1, timeout_s=120)
        started = time.time()
        sends = []
        for n in range(count):
            key = f"k{n}".encode()
            sends.append(await producer.send(chain.topics[0], bodies[n % len(bodies)], key=key))
            if len(sends) >= 1000:
                await asyncio.gather(*sends)
                sends.clear()
        await asyncio.gather(*sends)
        return started, await _receive(sink, count, timeout_s=600)
    finally:
        await producer.stop()
        await sink.stop()


async def _receive(sink: AIOKafkaConsumer, count: int, timeout_s: float) -> list[float]:
    arrivals: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(arrivals) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"baseline chain delivered {len(arrivals)} of {count} messages")
        for records in (await sink.getmany(timeout_ms=500, max_records=5000)).values():
            arrivals += [r.timestamp / 1000 for r in records]
    return arrivals


def main() -> None:
    source, target, group = sys.argv[1:4]
    asyncio.run(forward(KafkaConnection.from_env(), source, target, group))


if __name__ == "__main__":
    main()
