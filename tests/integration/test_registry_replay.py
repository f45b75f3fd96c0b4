"""A fresh referral database rebuilds its directory from the compacted registry topics, skipping
(not dead-lettering again) the records that are invalid."""

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.referral.decisions import RoutingPolicy
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.topics import Owner, TopicSpec
from shared.db import DbConnection
from shared.db.migrations import discover, migrate
from shared.kafka.admin import ensure_agency_topics, ensure_topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.consumer import ReliableConsumer, RetryPolicy
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.inbound import InboundEvent
from shared.kafka.oneshot import publish_events, publish_tombstone
from shared.kafka.replay import replay_registries
from shared.unit import raw_handler, typed_handler
from tests import factories as f
from tests.conftest import TopicFactory
from tests.raw_kafka import RawHeaderName, raw_header_names

REFERRAL_MIGRATIONS = Path(__file__).resolve().parents[2] / "services/referral/migrations"


async def test_fresh_database_rebuilds_the_directory_and_replays_are_idempotent(
    kafka: KafkaConnection, scratch_pool: asyncpg.Pool
) -> None:
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("referral", REFERRAL_MIGRATIONS))
    provider = f.unique("ngo")
    await ensure_agency_topics(kafka, provider)
    kept, withdrawn = f.listing(provider), f.listing(provider)
    await publish_events(
        kafka,
        [f.agency_event(f.agency(provider)), f.listing_event(kept), f.listing_event(withdrawn)],
    )
    await publish_tombstone(kafka, topics.AGENCY_LISTINGS.name(provider), withdrawn.service_id)
    invalid = f.listing_event(f.listing(provider))
    await publish_events(kafka, [replace(invalid, body=b'{"not": "a listing"}')])

    group = f"test-replay-{uuid.uuid4().hex[:6]}"
    await ensure_topics(kafka, [TopicSpec(f"{group}.dlq.v1", Owner.OPERATORS, "k", 1)])
    dead_letters = DeadLetterPublisher(kafka, group)
    await dead_letters.start()
    handlers = ReferralHandlers(RoutingPolicy(max_attempts=3))
    consumer = ReliableConsumer(
        group=group,
        pool=lambda: scratch_pool,
        dead_letters=dead_letters,
        handlers={  # as services/referral/app.py wires them
            topics.AGENCY_LISTINGS: raw_handler(handlers.on_listing, ReferralStore, SOURCE),
            topics.DIRECTORY_AGENCIES: typed_handler(
                {ev.AGENCY_REGISTERED: handlers.on_agency}, ReferralStore, SOURCE
            ),
        },
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.01),
        max_message_bytes=1 << 20,
    )
    try:
        registries = [topics.DIRECTORY_AGENCIES, topics.AGENCY_LISTINGS]
        first = await replay_registries(kafka, consumer, registries)
        second = await replay_registries(kafka, consumer, registries)
    finally:
        await dead_letters.stop()
    assert first >= 4 and second >= first  # everything read both times ...
    async with scratch_pool.acquire() as conn:
        listed = {
            r["service_id"]
            for r in await conn.fetch(
                "SELECT service_id FROM listings WHERE agency_id = $1", provider
            )
        }
        agency = await conn.fetchval("SELECT 1 FROM agencies WHERE agency_id = $1", provider)
        applied = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", group)
    assert listed == {kept.service_id}  # ... the withdrawn one stays withdrawn
    assert agency == 1
    assert applied == first  # ... and the second replay applied nothing twice
    # the invalid listing was skipped both times: dead-lettering is the consumer group's job
    # (once), not every start's
    reader = AIOKafkaConsumer(**kafka.client_kwargs())
    await reader.start()
    try:
        dlq = TopicPartition(f"{group}.dlq.v1", 0)
        assert (await reader.end_offsets([dlq]))[dlq] == 0
    finally:
        await reader.stop()


async def test_a_record_aiokafka_cannot_read_does_not_stop_a_replay(
    kafka: KafkaConnection, scratch_pool: asyncpg.Pool, new_topic: TopicFactory
) -> None:
    """Found by fuzzing: a header name that is not UTF-8 on any agency's listings topic made
    every replay raise, so referral could not start any more. (A scratch topic stands in for
    the registry: such a record would trip every other reader of a shared topic.)"""
    registry = await new_topic()
    with raw_header_names():
        producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
        await producer.start()
        try:
            for n, name in enumerate(["x-ok", RawHeaderName("\xff\xfe"), "x-ok"]):
                await producer.send_and_wait(
                    registry, f"{n}".encode(), key=b"k", headers=[(name, b"")]
                )
        finally:
            await producer.stop()
    applied: list[int] = []

    async def handler(event: InboundEvent, conn: DbConnection) -> None:
        applied.append(event.offset)

    group = f"test-replay-{uuid.uuid4().hex[:6]}"
    consumer = ReliableConsumer(
        group=group,
        pool=lambda: scratch_pool,
        dead_letters=DeadLetterPublisher(kafka, group),  # not started: must not be used
        handlers={registry: handler},
        retry=RetryPolicy(max_attempts=1),
        max_message_bytes=1 << 20,
    )
    assert await asyncio.wait_for(replay_registries(kafka, consumer, [registry]), 60) == 2
    assert applied == [0, 2]  # the records around it
