"""The offset commit after a batch: a rebalance that took the partitions in between is not an
error (the next owner redelivers, the inbox skips what was applied); any other failure is."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError

from shared.kafka.consumer import ReliableConsumer, RetryPolicy


class Message:
    """Stands in for FastStream's batch message: no records, and an ack that fails."""

    def __init__(self, error: BaseException | None) -> None:
        self.raw_message: tuple[Any, ...] = ()
        self.error = error
        self.acked = 0

    async def ack(self) -> None:
        self.acked += 1
        if self.error is not None:
            raise self.error


def _consumer() -> ReliableConsumer:
    def no_pool() -> Any:
        raise AssertionError("the database was used")

    return ReliableConsumer(
        group="test",
        pool=no_pool,
        dead_letters=cast(Any, None),
        handlers={},
        retry=RetryPolicy(max_attempts=1),
        max_message_bytes=1024,
    )


@pytest.mark.parametrize("error", [IllegalStateError(), CommitFailedError()])
def test_a_commit_lost_to_a_rebalance_is_not_an_error(error: BaseException) -> None:
    message = Message(error)
    asyncio.run(_consumer().on_batch(cast(Any, message)))
    assert message.acked == 1


def test_any_other_commit_failure_still_raises() -> None:
    message = Message(KafkaConnectionError())
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_consumer().on_batch(cast(Any, message)))
