"""Explicit topic creation from the catalogue (subscribers never create topics), and waiting
until what was created can be used: the new partitions' leaders, the consumer groups'
coordinators; and the partitions a replica short (a rolling restart waits for none)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from shared.contracts.topics import CATALOGUE, TopicSpec, agency_topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.offsets import end_offsets

_TOPIC_ALREADY_EXISTS = 36
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class TopicResult:
    name: str
    created: bool
    error: str | None = None
    # Broker-side settings brought back to the catalogue's (e.g. a size limit that changed).
    reconciled: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        if self.created:
            return "created"
        return f"updated {', '.join(self.reconciled)}" if self.reconciled else "exists"


class TopicCreationError(RuntimeError):
    pass


# The one setting both the brokers (deploy/kafka/broker-properties.sh) and the topic creation
# read: one node 1 (make run, make test), a replicated cluster 3 (REFEX_KAFKA_BROKERS=3, compose's
# docker-compose.cluster.yml).
REPLICATION_FACTOR_VARIABLE = "REFEX_KAFKA_REPLICATION_FACTOR"


def replication_factor_from_env() -> int:
    value = os.environ.get(REPLICATION_FACTOR_VARIABLE, "1").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{REPLICATION_FACTOR_VARIABLE} must be a positive number, not {value!r}")
    return int(value)


def min_insync_replicas(replication_factor: int) -> int:
    """One replica may be down without refusing writes, and a write acknowledged to an
    ``acks=all`` producer is on two brokers at least: RF 3 → 2, one node → 1 (as
    broker_min_insync in deploy/kafka/broker-properties.sh)."""
    return max(replication_factor - 1, 1)


def replication_config(replication_factor: int) -> dict[str, str]:
    """The topic settings that follow from its replication factor."""
    return {"min.insync.replicas": str(min_insync_replicas(replication_factor))}


async def ensure_topics(
    kafka: KafkaConnection,
    specs: Iterable[TopicSpec] = CATALOGUE,
    *,
    replication_factor: int | None = None,
) -> list[TopicResult]:
    """Create the topics that are missing, each on ``replication_factor`` brokers (default:
    :data:`REPLICATION_FACTOR_VARIABLE`, else 1) with its ``min.insync.replicas``. Existing
    ones keep their partitions and replicas, but the settings the catalogue reconciles
    (:data:`RECONCILED_CONFIGS`) are set back to the catalogue's values, so a limit changed in
    the catalogue reaches deployed topics too."""
    specs = list(specs)
    if replication_factor is None:
        replication_factor = replication_factor_from_env()
    replicated = replication_config(replication_factor)
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        results = await _reconcile(admin, [s for s in specs if s.name in existing])
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        s.name,
                        s.partitions,
                        replication_factor,
                        topic_configs=s.config() | replicated,
                    )
                    for s in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code in (0, _TOPIC_ALREADY_EXISTS):
                    results.append(TopicResult(name, created=code == 0))
                else:
                    message = rest[0] if rest else ""
                    results.append(TopicResult(name, False, f"error {code}: {message}"))
    finally:
        await admin.close()
    failed = [r for r in results if r.error]
    if failed:
        raise TopicCreationError("; ".join(f"{r.name}: {r.error}" for r in failed))
    created = {r.name for r in results if r.created}
    await wait_until_led(kafka, [s for s in specs if s.name in created])
    return sorted(results, key=lambda r: r.name)


# Settings of an existing topic that must follow the catalogue: the size limit is the contract
# with the senders (docs/integrators.md quotes it) and the consumer checks the same number; the
# segment age bounds how long trimmed submissions stay on the disk (issue 22). A setting the
# catalogue does not give a topic is left as the broker has it.
RECONCILED_CONFIGS = ("max.message.bytes", "segment.ms")


async def _reconcile(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[TopicResult]:
    if not specs:
        return []
    current = await topic_configs(admin, [s.name for s in specs])
    results: list[TopicResult] = []
    drifted: list[ConfigResource] = []
    for s in specs:
        wanted = s.config()
        # Altering replaces the whole dynamic configuration: a topic keeps the
        # min.insync.replicas it has (its replicas do not change here either).
        if "min.insync.replicas" in current.get(s.name, {}):
            wanted["min.insync.replicas"] = current[s.name]["min.insync.replicas"]
        changed = tuple(
            k
            for k in RECONCILED_CONFIGS
            if k in wanted and current.get(s.name, {}).get(k) != wanted[k]
        )
        if changed:
            # AlterConfigs replaces a topic's whole dynamic configuration: send all of it.
            drifted.append(ConfigResource(ConfigResourceType.TOPIC, s.name, wanted))
        results.append(TopicResult(s.name, created=False, reconciled=changed))
    if drifted:
        for response in await admin.alter_configs(drifted):
            for code, message, _type, name in response.resources:
                if code:
                    raise TopicCreationError(f"{name}: error {code} altering configs: {message}")
    return results


async def topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The broker's current configuration of each topic, name → value."""
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            _code, _message, _type, name, entries = resource[:5]
            out[name] = {entry[0]: entry[1] for entry in entries}
    return out


async def wait_until_led(
    kafka: KafkaConnection, specs: Iterable[TopicSpec], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Return once every partition of these (new) topics has a leader that answers for it.

    CreateTopics succeeds before the broker has made itself the partitions' leader; a write in
    between is refused (NotLeaderForPartition) and retried by aiokafka with a warning per try,
    which every first operator command after provisioning printed. Asking each partition's end
    offset goes to its leader and is retried quietly until the leader serves it."""
    partitions = [TopicPartition(s.name, p) for s in specs for p in range(s.partitions)]
    if not partitions:
        return
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        client_id="refex-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await consumer.start()
        await end_offsets(consumer, partitions)
    except KafkaError as exc:
        raise TopicCreationError(f"new topics have no leader yet: {type(exc).__name__}") from exc
    finally:
        await consumer.stop()


async def wait_for_group_coordinators(
    kafka: KafkaConnection, groups: Iterable[str], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Return once each consumer group has a coordinator.

    On a fresh broker the first group lookup creates the internal offsets topic; until its
    partitions are led, consumers starting at the same time log errors and warnings
    (GroupCoordinatorNotAvailable, "Marking the coordinator dead") while they retry. Provisioning
    waits here instead, so the services start against a ready broker."""
    pending = list(groups)
    deadline = asyncio.get_running_loop().time() + timeout_s
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-admin")
    try:
        await admin.start()
        while pending:
            try:
                await admin.find_coordinator(pending[0])  # raises until there is one
                pending.pop(0)
            except KafkaError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise TopicCreationError(
                        f"no coordinator for consumer group {pending[0]}: {type(exc).__name__}"
                    ) from exc
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def ensure_agency_topics(kafka: KafkaConnection, agency_id: str) -> list[TopicResult]:
    """An agency's own topics: its inbound submissions, listings and responses, and its inbox."""
    return await ensure_topics(kafka, agency_topics(agency_id))


async def visible_topics(kafka: KafkaConnection) -> set[str]:
    """The topics this principal may see (the broker hides those it has no ACL on)."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-admin")
    try:
        await admin.start()
        return set(await admin.list_topics())
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class UnderReplicated:
    """A partition whose in-sync replicas are fewer than its replicas: a node is down, or still
    catching up after a restart. Restarting another node then could leave fewer than
    min.insync.replicas in sync, and writes to it would stop."""

    topic: str
    partition: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


async def under_replicated(
    kafka: KafkaConnection, names: Iterable[str] | None = None
) -> list[UnderReplicated]:
    """The partitions of ``names`` (default: every topic this principal sees, the internal ones
    included) not fully in sync, in topic and partition order."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-admin")
    await admin.start()
    try:
        topics = sorted(names) if names is not None else sorted(await admin.list_topics())
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    short = [
        UnderReplicated(t["topic"], p["partition"], tuple(p["replicas"]), tuple(p["isr"]))
        for t in described
        for p in t["partitions"]
        if len(p["isr"]) < len(p["replicas"])
    ]
    return sorted(short, key=lambda u: (u.topic, u.partition))


async def wait_until_in_sync(
    kafka: KafkaConnection, timeout_s: float, names: Iterable[str] | None = None
) -> list[UnderReplicated]:
    """Ask every second until no partition is a replica short, or ``timeout_s`` passed; returns
    what is still short (empty: all in sync). A request refused while a node rejoins is asked
    again."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    names = None if names is None else list(names)
    while True:
        try:
            short = await under_replicated(kafka, names)
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        else:
            if not short or asyncio.get_running_loop().time() > deadline:
                return short
        await asyncio.sleep(1)
