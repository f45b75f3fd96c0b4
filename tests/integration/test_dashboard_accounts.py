"""The dashboard's account store on the real PostgreSQL: evidence's migrations in a schema of
its own, then what login, throttling and the account commands read and write."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.evidence.web.account_store import AccountStore, Role
from shared.db.migrations import SHARED_MIGRATIONS, discover, migrate
from shared.web.throttle import Failures

pytestmark = pytest.mark.integration

EVIDENCE_MIGRATIONS = Path(__file__).parents[2] / "services" / "evidence" / "migrations"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_urls: dict[str, str]) -> AsyncIterator[AccountStore]:
    schema = f"test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(database_urls["evidence"])
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'SET search_path TO "{schema}"')
    try:
        await migrate(
            conn, discover("shared", SHARED_MIGRATIONS) + discover("evidence", EVIDENCE_MIGRATIONS)
        )
        yield AccountStore(conn)
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def test_an_account_is_found_by_its_name_in_any_case_and_names_are_unique(
    store: AccountStore,
) -> None:
    assert await store.add("a1", "Amina.Sow", "hash", Role.VIEWER, "SN")
    assert not await store.add("a2", " amina.sow ", "other", Role.OPERATOR, None)
    found = await store.by_username("AMINA.SOW")
    assert found is not None and found.account_id == "a1"
    assert (found.username, found.role, found.country, found.active) == (
        "amina.sow",
        Role.VIEWER,
        "SN",
        True,
    )
    assert await store.by_id("a1") == found
    assert [a.account_id for a in await store.all()] == ["a1"]


async def test_only_a_viewer_has_a_country_scope(store: AccountStore) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await store.add("o1", "ops", "hash", Role.OPERATOR, "SN")


async def test_disabling_or_a_new_password_ends_the_sessions_so_far(store: AccountStore) -> None:
    await store.add("a1", "ops", "hash", Role.OPERATOR, None)
    disabled = await store.set_disabled("ops", True, NOW)
    assert disabled is not None and not disabled.active
    assert disabled.sessions_not_before == NOW
    again = await store.set_disabled("ops", True, NOW + timedelta(hours=1))
    assert again is not None and again.disabled_at == NOW  # the first disabling is kept
    enabled = await store.set_disabled("ops", False, NOW + timedelta(hours=2))
    assert enabled is not None and enabled.active
    assert await store.set_password("ops", "new hash", NOW + timedelta(hours=3))
    account = await store.by_username("ops")
    assert account is not None and account.password_hash == "new hash"
    assert account.sessions_not_before == NOW + timedelta(hours=3)
    assert await store.set_disabled("nobody", True, NOW) is None
    assert not await store.set_password("nobody", "x", NOW)


async def test_failed_logins_are_kept_by_a_digest_of_the_name_and_old_ones_forgotten(
    store: AccountStore,
) -> None:
    await store.save_failures("Guess.Me", Failures(3, NOW), NOW - timedelta(days=1))
    assert await store.failures("guess.me") == Failures(3, NOW)
    names = await store.conn.fetch("SELECT username_digest FROM dashboard_login_failures")
    assert all("guess" not in r["username_digest"] for r in names)
    later = NOW + timedelta(days=2)
    await store.save_failures("other", Failures(1, later), later - timedelta(days=1))
    assert await store.failures("guess.me") is None  # older than a day: forgotten on the way
    await store.clear_failures("other")
    assert await store.failures("other") is None
