"""Who sends a request: an agency principal whose credential the broker accepts right now.

The API takes HTTP Basic (the principal's name and SCRAM password); the console, a session
opened by a login form with the same credential. Either way each request is checked with the
broker (one SASL handshake, kafka_login.py), so a removed user or changed password is refused at
once. Failed logins are throttled per name typed (shared.web.throttle), in this process's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.kafka.connection import KafkaConnection
from shared.web.throttle import (
    Failures,
    ThrottlePolicy,
    failures_after,
    wait_before_next_attempt,
)

from .kafka_login import LoginResult, check_login
from .metrics import count_login
from .principals import Principal, principal_of


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: Principal
    connection: KafkaConnection


@dataclass(frozen=True, slots=True)
class Refused:
    status: int  # 401 wrong credential, 429 throttled, 503 no broker
    reason: str
    retry_after_s: int | None = None


class Authenticator:
    def __init__(self, kafka: KafkaConnection, throttle: ThrottlePolicy) -> None:
        # The broker and how to reach it (TLS included), with no principal of its own.
        self._kafka = kafka
        self._throttle = throttle
        self._failures: dict[str, Failures] = {}

    async def authenticate(self, login: str, password: str) -> Authenticated | Refused:
        outcome = await self._authenticate(login, password)
        count_login(outcome.status if isinstance(outcome, Refused) else None)
        return outcome

    async def _authenticate(self, login: str, password: str) -> Authenticated | Refused:
        now = datetime.now(UTC)
        wait = wait_before_next_attempt(self._failures.get(login), now, self._throttle)
        if wait is not None:
            return Refused(429, "too many failed logins; wait", int(wait.total_seconds()) + 1)
        principal = principal_of(login)
        if principal is None or not password:
            return self._failed(login, now)
        connection = self._kafka.as_user(principal.name, password)
        result = await check_login(connection)
        if result is LoginResult.UNREACHABLE:
            return Refused(503, "the exchange cannot be reached; try again shortly")
        if result is LoginResult.REFUSED:
            return self._failed(login, now)
        self._failures.pop(login, None)
        return Authenticated(principal, connection)

    async def still_valid(self, connection: KafkaConnection) -> LoginResult:
        return await check_login(connection)

    def _failed(self, login: str, now: datetime) -> Refused:
        # Bounded: a flood of invented names must not grow the table without end.
        if len(self._failures) > 100_000:
            cutoff = now - timedelta(seconds=self._throttle.forget_after_s)
            self._failures = {k: v for k, v in self._failures.items() if v.last_at > cutoff}
        self._failures[login] = failures_after(self._failures.get(login), now, self._throttle)
        return Refused(401, "unknown user or wrong password")
