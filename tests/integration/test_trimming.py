"""Trimming on the real broker (issue 22): a submissions partition loses exactly the records
below what the group committed, never one more, only on the family's topics, and intake's
principal may delete records on the agencies' submissions and on nothing else it reads."""

from __future__ import annotations

import os

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import TopicAuthorizationFailedError

from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.trimming import GroupTrimmer
from tests import factories as f
from tests.e2e.kafka_helpers import register_agency_access

pytestmark = pytest.mark.integration


async def _produce(kafka: KafkaConnection, topic: str, counts: dict[int, int]) -> None:
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        for partition, count in counts.items():
            for n in range(count):
                await producer.send_and_wait(topic, b"x%d" % n, partition=partition)
    finally:
        await producer.stop()


async def _commit(kafka: KafkaConnection, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _starts(kafka: KafkaConnection, partitions: list[TopicPartition]) -> list[int]:
    consumer = AIOKafkaConsumer(**kafka.client_kwargs())
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(partitions)
        return [starts[tp] for tp in partitions]
    finally:
        await consumer.stop()


async def test_a_partition_is_trimmed_up_to_the_group_s_commit_and_not_beyond(
    kafka: KafkaConnection,
) -> None:
    agency, group = f.unique("trim"), f.unique("trim-group")
    await register_agency_access(kafka, agency)
    submissions, inbox = topics.AGENCY_SUBMISSIONS.name(agency), topics.agency_inbox(agency)
    p0, p1, p2 = (TopicPartition(submissions, p) for p in range(3))
    other = TopicPartition(inbox, 0)
    await _produce(kafka, submissions, {0: 10, 1: 4, 2: 3})
    await _produce(kafka, inbox, {0: 5})
    trimmer = GroupTrimmer(kafka, group, topics.AGENCY_SUBMISSIONS)

    # p0 applied up to 6, p1 committed at its start, p2 never: only p0 moves, to 6 exactly;
    # the inbox, committed by the same group, is not of the family
    await _commit(kafka, group, {p0: 6, p1: 0, other: 5})
    result = await trimmer.trim()
    assert (result.trimmed, result.partitions, result.failed_topics) == (6, 1, 0)
    assert await _starts(kafka, [p0, p1, p2, other]) == [6, 0, 0, 0]

    # what the group applied since goes at the next run; a commit past the end stops at it
    await _commit(kafka, group, {p0: 10, p1: 100})
    assert (await trimmer.trim()).trimmed == 4 + 4
    assert await _starts(kafka, [p0, p1, p2]) == [10, 4, 0]
    assert (await trimmer.trim()).trimmed == 0  # nothing new: nothing asked

    # records written after the commit stay until they are committed
    await _produce(kafka, submissions, {0: 2})
    assert (await trimmer.trim()).trimmed == 0
    assert await _starts(kafka, [p0]) == [10]


async def test_intake_may_delete_records_of_the_submissions_and_of_nothing_else(
    kafka: KafkaConnection,
) -> None:
    agency = f.unique("trim")
    await register_agency_access(kafka, agency)
    intake = kafka.as_user("intake", os.environ["INTAKE_KAFKA_PASSWORD"])
    admin = AIOKafkaAdminClient(**intake.client_kwargs())
    await admin.start()
    try:
        submissions = TopicPartition(topics.AGENCY_SUBMISSIONS.name(agency), 0)
        low = await admin.delete_records({submissions: RecordsToDelete(0)})
        assert low == {submissions: 0}  # allowed (nothing to delete yet)
        for readable in (topics.REFERRAL_EVENTS, topics.DIRECTORY_AGENCIES):
            with pytest.raises(TopicAuthorizationFailedError):
                await admin.delete_records({TopicPartition(readable, 0): RecordsToDelete(0)})
    finally:
        await admin.close()
