"""Trimming what a consumer group has applied: each partition of a topic family loses its
records below the group's committed offset (Kafka's DeleteRecords), so they do not stay on the
broker's disk for the topic's whole retention (issue 22, decision 32: the agencies' submissions
hold personal data in clear, and only intake ever reads them).

Why the committed offset, and never more: the reliable consumer (shared.kafka.consumer) commits
an offset only after the database transaction that applied every record below it (or after the
record went to the dead-letter topic), so what lies below it will never be read again. Records
at or after it are the group's still to apply, and stay. The committed offsets are the group's,
read from the broker, so any instance of the service may trim, and two trimming at once ask for
the same thing (a DeleteRecords below the log start changes nothing).

A topic the group can no longer see (an agency deregistered: its ACLs are gone) is skipped; a
topic that fails is logged by its type and tried again at the next run, without holding up the
others. Counts only are logged and measured, never a record or an id."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError

from shared.contracts.topics import TopicFamily
from shared.kafka.connection import KafkaConnection
from shared.kafka.offsets import beginning_offsets, end_offsets
from shared.logging import get_logger
from shared.metrics import TRIMMED_RECORDS, family_label, topic_label

log = get_logger(__name__)


def trim_points(
    committed: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """The new log start of each partition worth trimming: the group's committed offset (the
    first record it has not applied), never past the partition's end (an offset beyond it is
    refused by the broker, and could only come from a topic deleted and made again), and only
    where that is past the current log start. A partition without a commit (negative: none
    yet), or whose start or end could not be read, is left as it is."""
    points: dict[TopicPartition, int] = {}
    for tp, offset in committed.items():
        if offset < 0 or tp not in starts or tp not in ends:
            continue
        point = min(offset, ends[tp])
        if point > starts[tp]:
            points[tp] = point
    return points


@dataclass(frozen=True, slots=True)
class TrimResult:
    trimmed: int  # records deleted, over every partition
    partitions: int  # partitions whose log start moved
    failed_topics: int  # topics whose DeleteRecords failed (tried again next run)


class GroupTrimmer:
    """Trims ``family``'s topics up to what ``group`` committed. Its clients live for one run:
    it runs every minute or so, and a broker restart in between costs it nothing."""

    def __init__(self, kafka: KafkaConnection, group: str, family: TopicFamily) -> None:
        self._kafka = kafka
        self._group = group
        self._family = family

    async def trim(self) -> TrimResult:
        kwargs = {**self._kafka.client_kwargs(), "client_id": f"{self._group}-trim"}
        admin, reader = AIOKafkaAdminClient(**kwargs), AIOKafkaConsumer(**kwargs)
        await admin.start()
        try:
            await reader.start()
            try:
                return await self._trim(admin, reader)
            finally:
                await reader.stop()
        finally:
            await admin.close()

    async def _trim(self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer) -> TrimResult:
        visible = set(await admin.list_topics())  # what this principal may still describe
        offsets = await admin.list_consumer_group_offsets(self._group)
        committed = {
            tp: meta.offset
            for tp, meta in offsets.items()
            if tp.topic in visible and self._family.agency_of(tp.topic) is not None
        }
        if not committed:
            # Also what a group coordinator still loading (after a broker restart) answers:
            # aiokafka returns no commits then, and nothing is trimmed until it has them.
            return TrimResult(0, 0, 0)
        partitions = sorted(committed)
        starts = await beginning_offsets(reader, partitions)
        ends = await end_offsets(reader, partitions)
        by_topic: dict[str, dict[TopicPartition, int]] = defaultdict(dict)
        for tp, point in trim_points(committed, starts, ends).items():
            by_topic[tp.topic][tp] = point
        trimmed = moved = failed = 0
        for topic, points in sorted(by_topic.items()):
            try:
                # One request per topic: a topic that fails (deleted meanwhile, say) does not
                # keep the others' records on the disk.
                low = await admin.delete_records(
                    {tp: RecordsToDelete(o) for tp, o in points.items()}
                )
            except KafkaError as exc:
                failed += 1
                log.warning("trim_failed", topic=topic_label(topic), error=type(exc).__name__)
                continue
            for tp, watermark in low.items():
                gone = max(watermark - starts[tp], 0)
                trimmed += gone
                moved += 1 if gone else 0
        label = family_label(self._family)
        if trimmed:
            TRIMMED_RECORDS.labels(topic=label).inc(trimmed)
        # A run that trimmed nothing (most, on a quiet system) says so at debug level only.
        (log.info if trimmed or failed else log.debug)(
            "records_trimmed", topic=label, records=trimmed, partitions=moved, failed_topics=failed
        )
        return TrimResult(trimmed, moved, failed)
