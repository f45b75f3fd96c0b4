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
from shared.kafka.offsets import end_offsets
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
        self._kafka = kafka
        # Made at the first measurement: aiokafka's clients need the running event loop.
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None

    async def measure(self) -> dict[str, int]:
        if self._clients is None:
            kwargs = {**self._kafka.client_kwargs(), "client_id": f"{self.group}-lag"}
            admin, reader = AIOKafkaAdminClient(**kwargs), AIOKafkaConsumer(**kwargs)
            await admin.start()
            await reader.start()
            self._clients = (admin, reader)
        admin, reader = self._clients
        offsets = await admin.list_consumer_group_offsets(self.group)
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        ends = await end_offsets(reader, list(committed)) if committed else {}
        return lag_by_topic(committed, ends)

    async def close(self) -> None:
        if self._clients is not None:
            admin, reader = self._clients
            self._clients = None
            await reader.stop()
            await admin.close()
