"""The migration runner against real PostgreSQL: once only, ordered, tamper-evident, race-free."""

import asyncio
from pathlib import Path

import asyncpg
import pytest

from shared.db.migrations import Migration, MigrationError, discover, migrate


def _write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql)


async def test_applies_in_order_once(scratch_pool: asyncpg.Pool, tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    _write(tmp_path, "0002_b.sql", "INSERT INTO a VALUES (1);")
    _write(tmp_path, "notes.txt", "ignored")
    migrations = discover("svc", tmp_path)
    assert [m.version for m in migrations] == ["svc/0001_a", "svc/0002_b"]
    async with scratch_pool.acquire() as conn:
        assert await migrate(conn, migrations) == ["svc/0001_a", "svc/0002_b"]
        assert await migrate(conn, migrations) == []
        assert await conn.fetchval("SELECT count(*) FROM a") == 1


async def test_changed_applied_migration_is_an_error(
    scratch_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with scratch_pool.acquire() as conn:
        await migrate(conn, [Migration("svc/0001_a", "CREATE TABLE a2 (id int);")])
        with pytest.raises(MigrationError, match="changed"):
            await migrate(conn, [Migration("svc/0001_a", "CREATE TABLE a2 (id bigint);")])


async def test_failed_migration_rolls_back_and_is_not_recorded(scratch_pool: asyncpg.Pool) -> None:
    bad = Migration("svc/0001_bad", "CREATE TABLE c (id int); SELECT no_such_function();")
    async with scratch_pool.acquire() as conn:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, [bad])
        assert await conn.fetchval("SELECT to_regclass('c')") is None
        recorded = await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = $1", bad.version
        )
        assert recorded == 0


async def test_two_instances_starting_together_apply_once(scratch_pool: asyncpg.Pool) -> None:
    m = Migration(
        "svc/0001_counter", "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);"
    )

    async def start_instance() -> list[str]:
        async with scratch_pool.acquire() as conn:
            return await migrate(conn, [m])

    results = await asyncio.gather(start_instance(), start_instance())
    assert sorted(len(r) for r in results) == [0, 1]
    async with scratch_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM counter") == 1
