"""A fresh schema of the real notification database per test, for tests that run the
notification's code and CLI in-process: the CLI reaches it through the DSN's ``search_path``
(asyncpg passes unknown DSN query parameters on as server settings)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from shared.db.migrations import SHARED_MIGRATIONS, discover, migrate

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "notification" / "migrations"


@dataclass
class Schema:
    name: str
    pool: asyncpg.Pool
    dsn: str = field(repr=False)  # the notification database, confined to this schema


@asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[Schema]:
    """A new schema holding the shared plumbing (outbox, inbox); dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA "{name}"')
    pool = await asyncpg.create_pool(
        url, min_size=1, max_size=2, server_settings={"search_path": name}
    )
    assert pool is not None
    async with pool.acquire() as conn:
        await migrate(conn, discover("shared", SHARED_MIGRATIONS))
    separator = "&" if "?" in url else "?"
    try:
        yield Schema(name, pool, f"{url}{separator}search_path={name}")
    finally:
        await pool.close()
        await admin.execute(f'DROP SCHEMA "{name}" CASCADE')
        await admin.close()


async def migrate_notification(schema: Schema, up_to: str | None = None) -> None:
    """The notification's own migrations, all or up to (and with) ``up_to``."""
    migrations = discover("notification", MIGRATIONS)
    if up_to is not None:
        migrations = [m for m in migrations if m.version <= f"notification/{up_to}"]
    async with schema.pool.acquire() as conn:
        await migrate(conn, migrations)
