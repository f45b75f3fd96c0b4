"""All SQL of the dashboard's accounts: who may log in, with which role and country scope, and
the failed logins that throttle an account name (migration 0002)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.db import DbConnection
from shared.web.throttle import Failures


class Role(StrEnum):
    OPERATOR = "operator"  # runs the platform: every page, the accounts page too
    VIEWER = "viewer"  # a government or programme manager: the figures, maybe of one country


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    username: str
    password_hash: str
    role: Role
    country: str | None  # a viewer's scope: it sees this country only; None: every country
    disabled_at: datetime | None
    sessions_not_before: datetime
    last_login_at: datetime | None
    created_at: datetime

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def normal_username(username: str) -> str:
    """Account names are compared in lower case, without surrounding spaces."""
    return username.strip().lower()


def _digest(username: str) -> str:
    return hashlib.sha256(normal_username(username).encode()).hexdigest()


_COLUMNS = """account_id, username, password_hash, role, country, disabled_at,
              sessions_not_before, last_login_at, created_at"""


def _account(row: object) -> Account:
    r = dict(row)  # type: ignore[call-overload]
    return Account(**{**r, "role": Role(r["role"])})


class AccountStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    async def by_username(self, username: str) -> Account | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM dashboard_accounts WHERE username = $1",
            normal_username(username),
        )
        return _account(row) if row else None

    async def by_id(self, account_id: str) -> Account | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM dashboard_accounts WHERE account_id = $1", account_id
        )
        return _account(row) if row else None

    async def all(self) -> list[Account]:
        rows = await self.conn.fetch(f"SELECT {_COLUMNS} FROM dashboard_accounts ORDER BY username")
        return [_account(r) for r in rows]

    async def add(
        self, account_id: str, username: str, password_hash: str, role: Role, country: str | None
    ) -> bool:
        """False when the name is taken (nothing is changed then)."""
        status = await self.conn.execute(
            """INSERT INTO dashboard_accounts (account_id, username, password_hash, role, country)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING""",
            account_id,
            normal_username(username),
            password_hash,
            role.value,
            country,
        )
        return status == "INSERT 0 1"

    async def set_disabled(self, username: str, disabled: bool, at: datetime) -> Account | None:
        """Disable or re-enable; either way the account's sessions so far end."""
        row = await self.conn.fetchrow(
            f"""UPDATE dashboard_accounts
                   SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, $3) END,
                       sessions_not_before = $3
                 WHERE username = $1
             RETURNING {_COLUMNS}""",
            normal_username(username),
            disabled,
            at,
        )
        return _account(row) if row else None

    async def set_password(self, username: str, password_hash: str, at: datetime) -> bool:
        """A new password ends the account's sessions so far."""
        status = await self.conn.execute(
            """UPDATE dashboard_accounts SET password_hash = $2, sessions_not_before = $3
                WHERE username = $1""",
            normal_username(username),
            password_hash,
            at,
        )
        return status == "UPDATE 1"

    async def record_login(self, account_id: str, at: datetime) -> None:
        await self.conn.execute(
            "UPDATE dashboard_accounts SET last_login_at = $2 WHERE account_id = $1",
            account_id,
            at,
        )

    # ----- failed logins, by the name typed -----

    async def failures(self, username: str) -> Failures | None:
        row = await self.conn.fetchrow(
            """SELECT failures, last_failed_at FROM dashboard_login_failures
                WHERE username_digest = $1""",
            _digest(username),
        )
        return Failures(row["failures"], row["last_failed_at"]) if row else None

    async def save_failures(
        self, username: str, failures: Failures, forget_before: datetime
    ) -> None:
        """Record a name's failures; names whose last failure is older than ``forget_before``
        are forgotten on the way (the table stays small under a guessing run)."""
        await self.conn.execute(
            "DELETE FROM dashboard_login_failures WHERE last_failed_at < $1", forget_before
        )
        await self.conn.execute(
            """INSERT INTO dashboard_login_failures (username_digest, failures, last_failed_at)
               VALUES ($1, $2, $3)
               ON CONFLICT (username_digest) DO UPDATE
                   SET failures = EXCLUDED.failures, last_failed_at = EXCLUDED.last_failed_at""",
            _digest(username),
            failures.count,
            failures.last_at,
        )

    async def clear_failures(self, username: str) -> None:
        await self.conn.execute(
            "DELETE FROM dashboard_login_failures WHERE username_digest = $1", _digest(username)
        )
