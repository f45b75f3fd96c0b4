"""The faults only a replicated cluster has (REFEX_KAFKA_BROKERS=3, decision 34): the leader of
the busiest partitions SIGKILLed and restarted, a node stopped for a while, the active
controller restarted, a node partitioned from the others and from every client (its veth link
down: REFEX_KAFKA_NETNS=1). Each returns once the cluster is whole again: the node answers and
every partition of the run's topics has all its replicas in sync, so the next fault never
finds a partition already one replica short."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.admin import wait_until_in_sync
from shared.kafka.connection import KafkaConnection

from .invariants import end_offsets
from .processes import REPO

BROKERS = int(os.environ.get("REFEX_KAFKA_BROKERS", "1"))
NETNS = os.environ.get("REFEX_KAFKA_NETNS", "0") == "1"


def kafka_sh(*args: str) -> str:
    """deploy/local/kafka.sh with this run's environment (folder, ports, brokers, netns)."""
    done = subprocess.run(
        [str(REPO / "deploy" / "local" / "kafka.sh"), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return done.stdout.strip()


async def _describe(kafka: KafkaConnection, names: Iterable[str]) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-chaos")
    await admin.start()
    try:
        partitions: list[dict[str, Any]] = []
        for topic in await admin.describe_topics(sorted(names)):
            partitions += [{"topic": topic["topic"], **p} for p in topic["partitions"]]
        return partitions
    finally:
        await admin.close()


async def busiest_leader(kafka: KafkaConnection, names: Iterable[str], top: int = 6) -> int:
    """The node leading most of the ``top`` partitions with the most records: where a SIGKILL
    interrupts the most writes and reads in flight."""
    names = set(names)
    ends = await end_offsets(kafka, names)
    described = await _describe(kafka, names)
    leaders = {(p["topic"], p["partition"]): int(p["leader"]) for p in described}
    busiest = sorted(ends, key=lambda tp: ends[tp], reverse=True)[:top]
    votes = Counter(leaders[(tp.topic, tp.partition)] for tp in busiest)
    leader, _ = votes.most_common(1)[0]
    return leader


async def wait_until_whole(
    kafka: KafkaConnection, names: Iterable[str], timeout_s: float = 240.0
) -> float:
    """Seconds until every partition of ``names`` (and of the consumer offsets) has all its
    replicas in sync again; raises after ``timeout_s``."""
    started = time.monotonic()
    short = await wait_until_in_sync(kafka, timeout_s, {*names, "__consumer_offsets"})
    if short:
        raise RuntimeError(f"partitions still under-replicated after {timeout_s} s: {short}")
    return time.monotonic() - started


async def bounce_busiest_leader(kafka: KafkaConnection, names: set[str]) -> str:
    node = await busiest_leader(kafka, names)
    await asyncio.to_thread(kafka_sh, "kill", str(node))
    await asyncio.to_thread(kafka_sh, "up", str(node))
    return f"node {node}"


async def stop_node(kafka: KafkaConnection, names: set[str], seconds: float) -> str:
    node = await busiest_leader(kafka, names)
    await asyncio.to_thread(kafka_sh, "down", str(node))
    await asyncio.sleep(seconds)
    await asyncio.to_thread(kafka_sh, "up", str(node))
    return f"node {node}"


async def restart_controller() -> str:
    node = await asyncio.to_thread(kafka_sh, "controller")
    await asyncio.to_thread(kafka_sh, "down", node)
    await asyncio.to_thread(kafka_sh, "up", node)
    return f"node {node}"


async def partition_node(kafka: KafkaConnection, names: set[str], seconds: float) -> str:
    node = await busiest_leader(kafka, names)
    await asyncio.to_thread(kafka_sh, "cut", str(node))
    try:
        await asyncio.sleep(seconds)
    finally:
        await asyncio.to_thread(kafka_sh, "heal", str(node))
    return f"node {node}"
