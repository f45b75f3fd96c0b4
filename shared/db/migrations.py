"""A small forward-only SQL migration runner (see docs/decisions/0004-migrations.md).

Migrations are ``NNNN_name.sql`` files, applied in order, each in its own transaction, once.
The shared plumbing migrations run first, then the service's own. An advisory lock makes two
instances starting together apply each file exactly once; a changed, already-applied file is an
error rather than a silent divergence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared.db import DbConnection
from shared.logging import get_logger

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x5EF_E0C5  # arbitrary, constant: "migrations running" for this database

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # "<namespace>/<file stem>"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(namespace: str, folder: Path) -> list[Migration]:
    files = sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [Migration(f"{namespace}/{f.stem}", f.read_text()) for f in files]


async def migrate(conn: DbConnection, migrations: list[Migration]) -> list[str]:
    """Apply what is missing; return the versions applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(f"migration {m.version} was changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    m.version,
                    m.checksum,
                )
            applied_now.append(m.version)
            log.info("migration_applied", version=m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now


async def migrate_service(pool: asyncpg.Pool, service: str, service_folder: Path) -> list[str]:
    migrations = discover("shared", SHARED_MIGRATIONS) + discover(service, service_folder)
    async with pool.acquire() as conn:
        return await migrate(conn, migrations)
