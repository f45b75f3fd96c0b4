"""SQL statements per service database, from PostgreSQL's own count (pg_stat_statements), over
one phase of the run: reset before, read after. Transaction control (BEGIN, COMMIT, SAVEPOINT…)
is counted apart: it is a round trip too, but not work the handlers asked for."""

from __future__ import annotations

import asyncpg

_CONTROL = r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|START TRANSACTION)\b"


async def reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def statements(dsn: str, databases: list[str]) -> dict[str, dict[str, int]]:
    """Per database: statements executed since the reset, with and without transaction
    control."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT d.datname AS db, sum(s.calls)::bigint AS calls,
                      sum(s.calls) FILTER (WHERE s.query !~* $2)::bigint AS work
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                WHERE d.datname = ANY($1::text[]) GROUP BY d.datname""",
            databases,
            _CONTROL,
        )
    finally:
        await conn.close()
    found = {r["db"]: {"all": int(r["calls"] or 0), "work": int(r["work"] or 0)} for r in rows}
    return {db: found.get(db, {"all": 0, "work": 0}) for db in databases}
