"""Agency inbox topics: notification writes them but does not create them.

Operators create an agency's topics and ACLs when they register it (``refex platform
register-agency``), before its record reaches directory.agencies.v1. Notification checks that the
inbox is there, and visible to its own principal, before the first event for it is enqueued: an
outbox row addressed to a missing topic would hold up the relay (topics are never auto-created).
"""

from __future__ import annotations

from shared.contracts import topics
from shared.kafka.admin import visible_topics
from shared.kafka.connection import KafkaConnection


class InboxMissing(LookupError):
    """Transient for the consumer: retried, then dead-lettered with this message."""


class InboxTopics:
    def __init__(self, kafka: KafkaConnection) -> None:
        self._kafka = kafka
        self._known: set[str] = set()

    async def ensure(self, agency_id: str) -> str:
        name = topics.agency_inbox(agency_id)
        if name not in self._known:
            if name not in await visible_topics(self._kafka):
                raise InboxMissing(
                    f"{name} does not exist or notification may not write it: register the "
                    "agency with `refex platform register-agency`"
                )
            self._known.add(name)
        return name
