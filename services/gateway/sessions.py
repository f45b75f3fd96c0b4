"""Console sessions, kept in this process's memory: who logged in, with which credential (the
gateway must talk to Kafka as that person, so the password stays here, never in the cookie,
never on disk), when, and the live view of the agency's inbox read as that person.

The cookie (Starlette's signed session) holds only the session's random id and its form token.
A session ends after ``idle_s`` without a request, ``max_s`` after its login, at logout, or
when the broker refuses its credential; its inbox reader stops with it. One gateway instance
holds a session: behind several, the proxy keeps a user on one (docs/console.md)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.kafka.connection import KafkaConnection
from shared.logging import get_logger

from .agency_kafka import KafkaRefused, follow
from .console.view import AgencyView
from .inbox import Cursor, InboxMessage
from .principals import Principal

log = get_logger(__name__)


@dataclass
class Session:
    session_id: str
    principal: Principal
    connection: KafkaConnection
    login_at: float
    seen_at: float
    view: AgencyView = field(init=False)
    tail: asyncio.Task[None] | None = None
    tail_error: str | None = None
    # Told of every inbox message the session reads (intake_keys.IntakeKeys.saw).
    watch: Callable[[InboxMessage], None] | None = None

    def __post_init__(self) -> None:
        self.view = AgencyView(self.principal.agency_id)

    def start_tail(self) -> None:
        if self.tail is None:
            self.tail = asyncio.create_task(self._follow(), name=f"inbox-{self.session_id[:6]}")

    async def _follow(self) -> None:
        try:
            async for item in follow(self.connection, self.principal.agency_id, Cursor({})):
                if item is not None:
                    self.view.apply(item[0])
                    if self.watch is not None:
                        self.watch(item[0])
        except KafkaRefused as exc:
            self.tail_error = str(exc)
            log.warning("console_inbox_refused", agency_id=self.principal.agency_id, error=str(exc))

    async def close(self) -> None:
        if self.tail is not None:
            self.tail.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.tail


class Sessions:
    def __init__(
        self, idle_s: float, max_s: float, watch: Callable[[InboxMessage], None] | None = None
    ) -> None:
        self.idle_s, self.max_s = idle_s, max_s
        self._watch = watch
        self._sessions: dict[str, Session] = {}

    def open(self, principal: Principal, connection: KafkaConnection) -> Session:
        now = time.monotonic()
        session = Session(
            secrets.token_urlsafe(32), principal, connection, now, now, watch=self._watch
        )
        self._sessions[session.session_id] = session
        session.start_tail()
        return session

    async def get(self, session_id: object) -> Session | None:
        """The live session of this id (its last use now), or None: unknown, expired or ended."""
        if not isinstance(session_id, str):
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen_at > self.idle_s or now - session.login_at > self.max_s:
            await self.end(session_id)
            return None
        session.seen_at = now
        return session

    async def end(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            await session.close()

    async def end_expired(self) -> None:
        now = time.monotonic()
        for sid, s in list(self._sessions.items()):
            if now - s.seen_at > self.idle_s or now - s.login_at > self.max_s:
                await self.end(sid)

    async def close(self) -> None:
        for sid in list(self._sessions):
            await self.end(sid)
