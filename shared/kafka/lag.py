"""How far a consumer group is behind: for every partition it has committed, the records
written after its committed offset, summed per topic label (shared.metrics.topic_label).

Measured from the broker (the group's committed offsets and the partitions' end offsets), not
from the consumer's own position: a consumer that is stuck or dead still shows its lag growing,
which is what an alert must see. Any instance of a service measures the whole group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.connection import KafkaConnection
from shared.metrics import topic_label


def lag_by_topic(
    committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
) -> dict[str, int]:
    """Records behind per topic label. A partition the group never committed is not counted
    (it has no position to be behind of); an end below the commit (a trimmed or recreated
    topic) counts as none behind."""
    lag: dict[str, int] = defaultdict(int)
    for tp, offset in committed.items():
        if offset < 0 or tp not in ends:
            continue
        lag[topic_label(tp.topic)] += max(0, ends[tp] - offset)
    return dict(lag)


class GroupLag:
    """Keeps an admin client and an offsets reader (no group of its own) open between
    measurements."""

    def __init__(self, kafka: KafkaConnection, group: str) -> None:
        self.group = group
        self._admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id=f"{group}-lag")
        self._reader = AIOKafkaConsumer(**kafka.client_kwargs(), client_id=f"{group}-lag")
        self._started = False

    async def measure(self) -> dict[str, int]:
        if not self._started:
            await self._admin.start()
            await self._reader.start()
            self._started = True
        offsets = await self._admin.list_consumer_group_offsets(self.group)
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        ends = await self._reader.end_offsets(list(committed)) if committed else {}
        return lag_by_topic(committed, ends)

    async def close(self) -> None:
        if self._started:
            await self._reader.stop()
            await self._admin.close()
            self._started = False
