"""Explicit topic creation from the catalogue (subscribers never create topics)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.contracts.topics import CATALOGUE, TopicSpec, agency_topics
from shared.kafka.connection import KafkaConnection

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicResult:
    name: str
    created: bool
    error: str | None = None


class TopicCreationError(RuntimeError):
    pass


async def ensure_topics(
    kafka: KafkaConnection,
    specs: Iterable[TopicSpec] = CATALOGUE,
    *,
    replication_factor: int = 1,
) -> list[TopicResult]:
    """Create the topics that are missing; existing ones are left as they are."""
    specs = list(specs)
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        results = [TopicResult(s.name, created=False) for s in specs if s.name in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.config())
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
    return sorted(results, key=lambda r: r.name)


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
