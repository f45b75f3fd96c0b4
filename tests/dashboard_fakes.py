"""A fixed evidence report and in-memory accounts for the dashboard's tests: unit tests of the
web app, and browser tests of it before the read model is there to build the report."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

from argon2 import PasswordHasher
from pydantic import SecretStr

from services.evidence.report import (
    ANSWERS_BY_PROVIDER,
    SCORES_BY_PATHWAY,
    UNMET_BY_AREA,
    Filters,
    Report,
    Row,
    Table,
)
from services.evidence.web.account_store import Account, Role
from services.evidence.web.config import DashboardConfig
from shared.unit import Unit
from shared.web.throttle import Failures, ThrottlePolicy

GENERATED_AT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"

_UNMET = (
    ("SN01", "no_listing", 12.0, 12),
    ("SN01", "consent_scope", None, None),
    ("SN02", "no_listing", 7.0, 7),
    ("SN02", "consent_scope", None, None),
    ("ML01", "no_listing", 9.0, 9),
)
_ANSWERS = (
    ("ngo-jamm", "psychosocial.counselling", 25, 25, 20, 15, 2, 0.8, 30.5, 70.0, 25),
    ("gov-emploi", "economic.job_placement", 15, 12, 9, None, None, 0.6, 48.0, 120.0, 15),
)
_SCORES = (
    ("psychosocial.counselling", "month_6", 0.05, 0.08, 0.21, 0.11, 25),
    ("economic.job_placement", "month_6", 0.18, 0.04, 0.02, 0.08, 15),
    ("economic.job_placement+psychosocial.counselling", "month_6", None, None, None, None, None),
)


def _country_of(area: str) -> str:
    return area[:2]


def sample_report(filters: Filters, k: int = 5) -> Report:
    """A report as the read model would build one, narrowed by country and dimension."""
    unmet = tuple(
        Row((area, reason), (value,), cases)
        for area, reason, value, cases in _UNMET
        if filters.country in (None, _country_of(area))
        and (filters.region is None or area.startswith(filters.region))
    )
    answers = tuple(
        Row((provider, category), tuple(values), cases)
        for provider, category, *values, cases in _ANSWERS
        if filters.dimension is None or category.startswith(filters.dimension.value)
    )
    scores = tuple(Row((pathway, wave), tuple(v), c) for pathway, wave, *v, c in _SCORES)
    handovers = Table(
        "handovers", ("area", "period"), ("handovers",), (Row(("SN01", "2026-11"), (6,), 6),)
    )
    return Report(
        filters=filters,
        k=k,
        generated_at=GENERATED_AT,
        tables=(
            Table(UNMET_BY_AREA, ("area", "reason"), ("unmet_needs",), unmet),
            Table(
                ANSWERS_BY_PROVIDER,
                ("provider", "category"),
                (
                    "referrals_made",
                    "answered",
                    "accepted",
                    "completed",
                    "failed",
                    "acceptance_rate",
                    "answer_hours_p50",
                    "answer_hours_p90",
                ),
                answers,
            ),
            Table(
                SCORES_BY_PATHWAY,
                ("pathway", "wave"),
                ("economic_change", "social_change", "psychosocial_change", "composite_change"),
                scores,
            ),
            handovers,
        ),
        options={
            "country": ("ML", "SN"),
            "region": ("ML01", "SN01", "SN02"),
            "period": ("2026-11", "2026-12"),
            "dimension": ("economic", "social", "psychosocial"),
            "level": ("individual", "community", "structural"),
        },
    )


async def sample_source(filters: Filters) -> Report:
    return sample_report(filters)


def config(**overrides: object) -> DashboardConfig:
    base = DashboardConfig(
        session_key=SecretStr("test-session-key-" + "x" * 32),
        secure_cookies=False,
        throttle=ThrottlePolicy(free_failures=3, first_wait_s=60, longest_wait_s=600),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@functools.cache
def password_hash() -> str:
    # Cheap parameters (they travel in the hash): a check with the real ones takes tens of ms.
    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(PASSWORD)


class FakeAccounts:
    """AccountStore's methods over dictionaries."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.failed: dict[str, Failures] = {}

    def add_account(self, username: str, role: Role, country: str | None = None) -> Account:
        account = Account(
            account_id=str(uuid.uuid4()),
            username=username,
            password_hash=password_hash(),
            role=role,
            country=country,
            disabled_at=None,
            sessions_not_before=datetime(2020, 1, 1, tzinfo=UTC),
            last_login_at=None,
            created_at=datetime(2020, 1, 1, tzinfo=UTC),
        )
        self.accounts[account.account_id] = account
        return account

    async def by_username(self, username: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.username == username.lower()), None)

    async def by_id(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    async def all(self) -> list[Account]:
        return sorted(self.accounts.values(), key=lambda a: a.username)

    async def record_login(self, account_id: str, at: datetime) -> None:
        self.accounts[account_id] = replace(self.accounts[account_id], last_login_at=at)

    async def failures(self, username: str) -> Failures | None:
        return self.failed.get(username.lower())

    async def save_failures(
        self, username: str, failures: Failures, forget_before: datetime
    ) -> None:
        self.failed[username.lower()] = failures

    async def clear_failures(self, username: str) -> None:
        self.failed.pop(username.lower(), None)

    def units(self) -> contextlib.AbstractAsyncContextManager[Unit[FakeAccounts]]:
        @contextlib.asynccontextmanager
        async def unit() -> AsyncIterator[Unit[FakeAccounts]]:
            yield Unit(None, self, "test")  # type: ignore[arg-type]

        return unit()
