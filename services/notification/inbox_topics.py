"""Agency inbox topics: notification owns them and makes sure one exists before writing to it.

An outbox row addressed to a missing topic would hold up the relay (topics are never
auto-created), so a topic is created, idempotently, before the first event for it is enqueued.
"""

from __future__ import annotations

from shared.contracts import topics
from shared.kafka.admin import ensure_agency_topics


class InboxTopics:
    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        self._known: set[str] = set()

    async def ensure(self, agency_id: str) -> str:
        name = topics.agency_inbox(agency_id)
        if name not in self._known:
            # All the agency's topics, not only the inbox: an agency registered by other tooling
            # than `refex platform register-agency` can then publish at once.
            await ensure_agency_topics(self._bootstrap, agency_id)
            self._known.add(name)
        return name
