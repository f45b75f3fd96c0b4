"""How long a service keeps its inbox claims and its sent outbox rows (decision 29): pure
functions over the topic catalogue, used by the settings' validator and the pruning job.

An inbox claim is what makes a redelivery change nothing, so it must outlive every way the same
event can still reach the service:
- a copy on the topic it came from: Kafka deletes a record only with its whole log segment, once
  the segment's newest record is older than the topic's retention; a segment is rolled at the
  latest ``log.roll.hours`` (default 168 h) after its first record. So a record can be read up to
  retention + one segment roll after it was written;
- a replayed dead letter (``refex platform replay-dead-letters``): a copy that failed earlier
  stays on ``<service>.dlq.v1`` for its retention (and a roll) and can be sent back to the
  original topic at any moment of that, where it lives the topic's retention (and a roll) again.

Both are counted from when the record was written, which is before the claim's
``processed_at``: a window of (longest retention of what the service consumes) + (its
dead-letter topic's retention) + two segment rolls, counted from the claim, covers both.

Compacted registries (retention: forever) are replayed from their beginning at every start
(``shared/kafka/replay.py``): a claim of theirs can always be asked again, so it is never pruned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from shared.contracts.topics import (
    AGENCY_FAMILIES,
    CATALOGUE,
    Owner,
    TopicSpec,
    dead_letter_topic,
    spec,
)

# The catalogue sets no segment.ms and the brokers keep Kafka's default log.roll.hours (168):
# a record may outlive its topic's retention by up to this much.
SEGMENT_ROLL = timedelta(days=7)

# The services that consume (each has an inbox), by the prefix of their settings.
SERVICE_PREFIXES = {
    f"{o.value.upper()}_": o
    for o in (Owner.INTAKE, Owner.REFERRAL, Owner.NOTIFICATION, Owner.EVIDENCE)
}


@dataclass(frozen=True, slots=True)
class InboxFloor:
    """The shortest time a service's inbox may keep a claim, and where it comes from."""

    service: Owner
    longest_topic: str  # the consumed topic of longest (finite) retention
    topic_retention: timedelta
    dead_letter_retention: timedelta

    @property
    def window(self) -> timedelta:
        return self.topic_retention + self.dead_letter_retention + 2 * SEGMENT_ROLL

    def explain(self) -> str:
        return (
            f"{_days(self.window)} days: {_days(self.topic_retention)} d retention of "
            f"{self.longest_topic} + {_days(self.dead_letter_retention)} d of "
            f"{dead_letter_topic(self.service.value)} (dead-letter replay) + 2 x "
            f"{_days(SEGMENT_ROLL)} d Kafka segment roll"
        )


def _days(d: timedelta) -> str:
    return f"{d / timedelta(days=1):g}"


def consumed_topics(service: Owner) -> tuple[TopicSpec, ...]:
    """The fixed topics and the agency families' templates the service consumes."""
    fixed = tuple(t for t in CATALOGUE if service in t.consumers)
    families = tuple(f.template for f in AGENCY_FAMILIES if service in f.template.consumers)
    return (*fixed, *families)


def inbox_floor(service: Owner) -> InboxFloor:
    finite = [t for t in consumed_topics(service) if t.retention_days is not None]
    if not finite:
        raise ValueError(f"{service.value} consumes no topic of finite retention")
    longest = max(finite, key=lambda t: t.retention_days or 0)
    dlq = spec(dead_letter_topic(service.value))
    if dlq.retention_days is None:
        raise ValueError(f"{dlq.name} keeps its records forever: no claim could ever be pruned")
    return InboxFloor(
        service,
        longest.name,
        timedelta(days=longest.retention_days or 0),
        timedelta(days=dlq.retention_days),
    )


def claims_kept_forever(service: Owner) -> tuple[str, ...]:
    """Anchored regular expressions (PostgreSQL's and Python's alike) of the consumed topics
    whose claims are never pruned: those kept forever (compacted registries)."""
    fixed = [
        re.escape(t.name) for t in CATALOGUE if service in t.consumers and t.retention_days is None
    ]
    families = [
        f.regex
        for f in AGENCY_FAMILIES
        if service in f.template.consumers and f.template.retention_days is None
    ]
    return tuple(f"^(?:{p})$" for p in (*fixed, *families))


def inbox_keep(service: Owner, configured_days: float | None) -> timedelta:
    """How long the service's inbox keeps a claim: the floor, or longer when configured.
    Shorter is refused: a redelivery after the claim is gone would be applied again."""
    floor = inbox_floor(service)
    if configured_days is None:
        return floor.window
    wanted = timedelta(days=configured_days)
    if wanted < floor.window:
        raise ValueError(
            f"{service.value.upper()}_INBOX_KEEP_DAYS={configured_days:g} is shorter than "
            f"the time an event {service.value} consumes can still be redelivered, "
            f"{floor.explain()}; "
            "leave it unset or raise it (a shorter window would apply a redelivery twice)"
        )
    return wanted


def service_of_prefix(env_prefix: str) -> Owner | None:
    """The consuming service whose settings read this environment prefix (``INTAKE_``)."""
    return SERVICE_PREFIXES.get(env_prefix)
