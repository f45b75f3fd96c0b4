"""Intake's submission keys as the gateway knows them (decision 33): ``intake.keys.v1`` read as
the principal of a request that needs them, kept for this process, read again once older than
``max_age_s`` or once an inbox the gateway reads says they changed.

Why one copy per process, although the gateway has no credential of its own: the keys are
public, the same for every reader (only intake writes the topic, and every agency principal
may read it), so a copy read as one agency's principal tells another agency nothing it could
not read itself. Reading the topic per request would cost a consumer's login, metadata and
fetch on every submission. There is no background refresh: between requests the gateway holds
no credential to read with, so the request that finds the copy stale reads it again, as its
own principal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.contracts import events as ev
from shared.kafka.agency_input import Refusal
from shared.kafka.connection import KafkaConnection
from shared.logging import get_logger

from .agency_kafka import KafkaRefused
from .inbox import InboxMessage
from .ingress import Checked, Family, check
from .sealing import clear_block, current_key, says_keys_changed, sealed_value

log = get_logger(__name__)

Fetch = Callable[[KafkaConnection], Awaitable[list[ev.SubmissionKey]]]
# A topic with no current key is read again sooner: that is what intake's first start looks
# like (its key is on its way through the outbox), and every clear block sent meanwhile would
# be refused on a platform that requires sealing.
NO_KEY_MAX_AGE_S = 30.0


class KeysUnavailable(RuntimeError):
    """Intake's keys could not be read, and no earlier copy is at hand: nothing may be
    published in clear on the chance that intake takes it (decision 33)."""


@dataclass(frozen=True, slots=True)
class _Copy:
    keys: list[ev.SubmissionKey]
    read_at: float


class IntakeKeys:
    def __init__(
        self, fetch: Fetch, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._clock = clock
        self._copy: _Copy | None = None
        self._stale = False
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        copy = self._copy
        if copy is None or self._stale:
            return False
        max_age = self._max_age_s
        if current_key(copy.keys) is None:
            max_age = min(max_age, NO_KEY_MAX_AGE_S)
        return self._clock() - copy.read_at < max_age

    async def keys(self, connection: KafkaConnection) -> list[ev.SubmissionKey]:
        """Every key on intake.keys.v1, the current one first: the copy while fresh, else read
        again as ``connection``'s principal. A read that fails falls back on the stale copy (a
        key rotation keeps the previous key opening, so sealing for it still works); with no
        copy at all it raises KeysUnavailable."""
        if self._fresh():
            assert self._copy is not None
            return self._copy.keys
        async with self._lock:
            if self._fresh():  # another request read them while this one waited
                assert self._copy is not None
                return self._copy.keys
            try:
                keys = await self._fetch(connection)
            except KafkaRefused as exc:
                log.warning("gateway_intake_keys_unreadable", error=str(exc))
                if self._copy is None:
                    raise KeysUnavailable(str(exc)) from exc
                return self._copy.keys
            self._copy, self._stale = _Copy(keys, self._clock()), False
            current = current_key(keys)
            log.info(
                "gateway_intake_keys_read",
                keys=len(keys),
                current=current.key_sha256 if current else None,
            )
            return keys

    async def current(self, connection: KafkaConnection) -> ev.SubmissionKey | None:
        """The key to seal for; None when intake publishes none (it then takes clear blocks)."""
        return current_key(await self.keys(connection))

    def invalidate(self) -> None:
        """The next request reads the keys again (the copy stays, as a fallback)."""
        self._stale = True

    def saw(self, message: InboxMessage) -> None:
        """An inbox message the gateway read for someone: a rejection for a key intake no
        longer holds, or for a clear block where intake now requires sealing, makes the next
        submission read the keys again."""
        if says_keys_changed(message):
            self.invalidate()


async def sealed_for_intake(
    checked: Checked, family: Family, agency_id: str, connection: KafkaConnection, keys: IntakeKeys
) -> Checked | Refusal:
    """``checked`` with its clear ``personal`` block sealed for intake's current key, checked
    again as sealed (the box is larger than the block: the topic's size limit applies to what
    is published); ``checked`` itself when there is nothing to seal or intake has no key.
    Raises KeysUnavailable when the keys cannot be read."""
    record = checked.record
    # Only a message with a clear block reads the keys: a needs update or a block its sender
    # sealed goes on as it is, whether the keys can be read or not.
    if family is not Family.SUBMISSIONS or clear_block(record.ce_type, record.value) is None:
        return checked
    key = await keys.current(connection)
    if key is None:
        return checked
    value = sealed_value(record.ce_type, record.value, key)
    assert value is not None  # it has a clear block (above)
    return check(family, agency_id, list(record.headers), value)
