"""Each service's role reaches its own database and no other."""

import asyncpg
import pytest

from tests.dsn import with_database

SERVICES = ("intake", "referral", "notification", "evidence")


async def test_each_role_connects_to_its_own_database(database_urls: dict[str, str]) -> None:
    for service in SERVICES:
        conn = await asyncpg.connect(database_urls[service])
        try:
            assert await conn.fetchval("SELECT current_database()") == service
            assert await conn.fetchval("SELECT current_user") == service
        finally:
            await conn.close()


FOREIGN = [(role, db) for role in SERVICES for db in (*SERVICES, "postgres") if db != role]


@pytest.mark.parametrize(("role", "database"), FOREIGN)
async def test_role_cannot_connect_to_another_database(
    database_urls: dict[str, str], role: str, database: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        # The URL's query (sslmode, sslrootcert) is kept: the refusal is the role's, not TLS's.
        await asyncpg.connect(with_database(database_urls[role], database))
